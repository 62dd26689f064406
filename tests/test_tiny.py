"""The tiny models load through the same paths as real ones and have the SD v1.5 shape."""

import json

import open_clip
import torch

from entmap.models.loading import load_pipeline
from entmap.models.tiny import build_tiny_base


def test_tiny_base_loads_with_from_pretrained(tiny_dir):
    pipe = load_pipeline(str(tiny_dir / "tiny-sd"), torch.device("cpu"), torch.float32)
    assert type(pipe).__name__ == "StableDiffusionPipeline"
    assert pipe.vae_scale_factor == 8
    assert type(pipe.scheduler).__name__ == "DDIMScheduler"
    assert pipe.scheduler.config.beta_schedule == "scaled_linear"
    assert pipe.unet.config.cross_attention_dim == pipe.text_encoder.config.hidden_size
    assert any(name.endswith("attn2.to_k") for name, _ in pipe.unet.named_modules())
    # the real CLIP BPE: these ids are those of openai/clip-vit-large-patch14's tokenizer
    assert pipe.tokenizer("a photo of a dog").input_ids == [49406, 320, 1125, 539, 320, 1929, 49407]
    assert len(pipe.tokenizer) == 49408
    assert pipe.tokenizer.model_max_length == 77
    index = json.loads((tiny_dir / "tiny-sd" / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"


def test_tiny_base_is_reproducible(tiny_dir, tmp_path):
    build_tiny_base(tmp_path / "again", seed=0)
    for part in ("unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"):
        assert (tmp_path / "again" / part).read_bytes() == (tiny_dir / "tiny-sd" / part).read_bytes()


def test_tiny_scorer_loads_with_open_clip(tiny_dir):
    spec = f"local-dir:{tiny_dir / 'tiny-clip'}"
    model, _, preprocess = open_clip.create_model_and_transforms(spec)
    tokenizer = open_clip.get_tokenizer(spec)
    with torch.no_grad():
        text = model.encode_text(tokenizer(["a dog", "a cat"]))
        image = model.encode_image(torch.zeros(1, 3, 32, 32))
    assert text.shape == (2, 32) and image.shape == (1, 32)
    assert not torch.allclose(text[0], text[1])
