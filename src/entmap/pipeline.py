"""Loading the base pipeline and turning it into a personalized model.

A *model* is ``base`` or ``{subject}/{method}``. Every model is the base
pipeline loaded with ``from_pretrained`` plus, for personalized models, the
adapter applied through the public diffusers loader of its method.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

ADAPTER_FILE = "adapter.safetensors"
META_FILE = "meta.json"


def load_pipeline(model_id: str, device: torch.device, dtype: torch.dtype):
    """Load a StableDiffusionPipeline (folder or hub id) with a DDIM scheduler, no safety checker."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(
        model_id, torch_dtype=dtype, safety_checker=None, requires_safety_checker=False
    )
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def read_meta(adapter_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The meta.json an adapter folder carries (method, token, settings, ...)."""
    path = Path(adapter_dir) / META_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{path}: adapter metadata missing; retrain the adapter") from exc


def apply_adapter(pipe, adapter_dir: str | os.PathLike[str]) -> None:
    """Apply the adapter in ``adapter_dir`` to ``pipe`` in place, with the method's public loader."""
    adapter_dir = Path(adapter_dir)
    meta = read_meta(adapter_dir)
    method = meta["method"]
    if method == "ti":
        pipe.load_textual_inversion(str(adapter_dir / ADAPTER_FILE), token=meta["token"])
    else:
        raise ValueError(f"{adapter_dir}: unknown adapter method {method!r} in {META_FILE}")
