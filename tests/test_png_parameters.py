"""A1111 generation parameters in exported PNGs: the text, read back by PIL, pixels unchanged."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
from PIL import Image

from entmap.core.image_codec import decode_png, png_bytes
from entmap.core.png_parameters import (
    embedding_short_hash,
    lora_short_hash,
    parameters_text,
    read_parameters,
    with_parameters,
)


def _png(seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(8, 12, 3), dtype=np.uint8)
    return png_bytes(Image.fromarray(pixels))


def test_the_text_is_a1111s_infotext():
    text = parameters_text(
        "a photo of a cat, oil painting",
        negative_prompt="blurry",
        steps=10,
        sampler="ddim",
        cfg_scale=7.5,
        seed=3,
        width=512,
        height=768,
        model="sd-v1-5",
        model_hash="6ce0161689",
        lora_hashes={"face1/lora": "0123456789ab", "b:ad,name": "ba9876543210"},
        extra={"Entmap model": "face1/lora"},
    )
    expected = (
        "a photo of a cat, oil painting\n"
        "Negative prompt: blurry\n"
        "Steps: 10, Sampler: DDIM, CFG scale: 7.5, Seed: 3, Size: 512x768, Model hash: 6ce0161689, "
        'Model: sd-v1-5, Lora hashes: "face1/lora: 0123456789ab, badname: ba9876543210", Entmap model: face1/lora'
    )
    assert text == expected


def test_no_negative_prompt_line_and_no_missing_pairs():
    text = parameters_text("a dog", steps=4, sampler="flow_euler", cfg_scale=1.0, seed=0, width=32, height=32)
    assert text == "a dog\nSteps: 4, Sampler: Euler, CFG scale: 1.0, Seed: 0, Size: 32x32"


def test_the_chunk_reads_back_and_leaves_pixels_and_the_original_alone():
    original = _png()
    kept = bytes(original)
    text = 'a "quoted" prompt, é\nSteps: 4, Sampler: DDIM, CFG scale: 5.0, Seed: 1, Size: 12x8'
    exported = with_parameters(original, text)
    assert original == kept and read_parameters(original) is None
    with Image.open(io.BytesIO(exported)) as image:
        assert image.format == "PNG" and image.text["parameters"] == text
    assert read_parameters(exported) == text
    np.testing.assert_array_equal(decode_png(exported), decode_png(original))


def test_the_text_sits_in_a_text_chunk_named_parameters():
    exported = with_parameters(_png(1), "a cat\nSteps: 1, Sampler: DDIM, CFG scale: 1, Seed: 0, Size: 12x8")
    position, chunks = 8, []
    while position < len(exported):
        length = int.from_bytes(exported[position : position + 4], "big")
        chunks.append((exported[position + 4 : position + 8], exported[position + 8 : position + 8 + length]))
        position += 12 + length
    assert (b"tEXt", b"parameters\0a cat\nSteps: 1, Sampler: DDIM, CFG scale: 1, Seed: 0, Size: 12x8") in chunks


def test_short_hashes(tmp_path):
    tensors = b"\x01\x02\x03" * 100
    header = json.dumps({"__metadata__": {"name": "x"}}).encode()
    path = tmp_path / "adapter.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + tensors)
    assert lora_short_hash(path) == hashlib.sha256(tensors).hexdigest()[:12]  # the header is skipped
    assert embedding_short_hash(path) == hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    other = tmp_path / "adapter.pt"
    other.write_bytes(tensors)
    assert lora_short_hash(other) == hashlib.sha256(tensors).hexdigest()[:12]
