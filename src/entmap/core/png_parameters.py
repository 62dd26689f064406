"""Generation parameters in a PNG, as AUTOMATIC1111's web UI writes and reads them.

An image exported into the report carries a ``tEXt`` chunk ``parameters`` whose text is::

    {prompt}
    Negative prompt: {negative prompt}          (this line only when there is one)
    Steps: 10, Sampler: DDIM, CFG scale: 5.0, Seed: 3, Size: 32x32, Model: sd, Lora hashes: "face1-lora: 0123456789ab"

the format of A1111's ``create_infotext``: ``key: value`` pairs joined by ", ", a value quoted as
JSON when it holds a comma, a colon or a newline, a pair with no value (None) left out. A1111,
its forks and the tools that read its PNGs (civitai, image browsers) parse it back.

Only copies get the chunk: the stored image shards keep their bytes (reuse and the reproducibility
checks compare them), and the chunk changes no pixel.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from entmap.core.checksums import file_sha256

PARAMETERS_KEY = "parameters"
# entmap's scheduler names -> A1111's sampler names
SAMPLERS = {"ddim": "DDIM", "flow_euler": "Euler"}


def quote(value: Any) -> str:
    """A1111's quoting: the text as is, or as a JSON string when it holds ',', ':' or a newline."""
    text = str(value)
    if "," not in text and ":" not in text and "\n" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def network_hashes(hashes: Mapping[str, str]) -> str | None:
    """``name: hash, name: hash`` as A1111's Lora/TI hashes value (',' and ':' dropped from names)."""
    if not hashes:
        return None
    return ", ".join(f"{name.replace(':', '').replace(',', '')}: {value}" for name, value in hashes.items())


def parameters_text(
    prompt: str,
    *,
    steps: int,
    sampler: str,
    cfg_scale: float,
    seed: int,
    width: int,
    height: int,
    negative_prompt: str = "",
    model: str | None = None,
    model_hash: str | None = None,
    lora_hashes: Mapping[str, str] | None = None,
    ti_hashes: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """The ``parameters`` text of one image (module docstring); ``extra`` pairs come last, in order."""
    pairs: dict[str, Any] = {
        "Steps": steps,
        "Sampler": SAMPLERS.get(sampler, sampler),
        "CFG scale": cfg_scale,
        "Seed": seed,
        "Size": f"{width}x{height}",
        "Model hash": model_hash,
        "Model": model,
        "Lora hashes": network_hashes(lora_hashes or {}),
        "TI hashes": network_hashes(ti_hashes or {}),
        **(extra or {}),
    }
    settings = ", ".join(f"{key}: {quote(value)}" for key, value in pairs.items() if value is not None)
    negative = f"\nNegative prompt: {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative}\n{settings}".strip()


def with_parameters(png: bytes, text: str) -> bytes:
    """A copy of the PNG ``png`` with a ``tEXt`` chunk ``parameters`` = ``text`` (pixels unchanged).

    Text outside Latin-1 goes into an ``iTXt`` chunk of the same key (PIL's choice), which A1111 reads too.
    """
    info = PngImagePlugin.PngInfo()
    info.add_text(PARAMETERS_KEY, text)
    with Image.open(io.BytesIO(png)) as image:
        image.load()
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def read_parameters(png: bytes) -> str | None:
    """The ``parameters`` text of a PNG, or None."""
    with Image.open(io.BytesIO(png)) as image:
        image.load()
        return image.text.get(PARAMETERS_KEY)


def safetensors_hash(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a .safetensors file's tensor bytes, its JSON header skipped: A1111's LoRA hash
    (sd-scripts' "addnet" hash), unchanged when only the header's metadata is edited."""
    with open(path, "rb") as handle:
        header = int.from_bytes(handle.read(8), "little")
        handle.seek(8 + header)
        digest = hashlib.sha256()
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def lora_short_hash(path: str | os.PathLike[str]) -> str:
    """The 12 hex digits A1111 shows for a LoRA file: of :func:`safetensors_hash`, or of the whole file otherwise."""
    path = Path(path)
    return (safetensors_hash(path) if path.suffix == ".safetensors" else file_sha256(path))[:12]


def embedding_short_hash(path: str | os.PathLike[str]) -> str:
    """The 12 hex digits A1111 shows for a textual-inversion embedding: SHA-256 of the whole file."""
    return file_sha256(path)[:12]
