"""Audit mode: adapters someone else trained, checked before they become models of the map.

A config entry under ``external`` names a file or folder and its kind:

* ``lora``: a diffusers/peft or kohya LoRA file (``pipe.load_lora_weights``);
* ``ti``: a Textual Inversion embedding (``pipe.load_textual_inversion``);
* ``cd``: Custom Diffusion k/v weights (entmap's or diffusers' processor key names);
* ``checkpoint``: a full fine-tuned diffusers pipeline folder (loaded instead of the base).

The file formats themselves live in :mod:`entmap.models.adapter_formats`. An adapter whose keys or
shapes do not fit the base model is refused with the keys named.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from entmap.models.adapter_formats import AdapterMismatchError, apply_adapter, check_source, sha256
from entmap.models.adapter_meta import write_meta
from entmap.models.loading import load_pipeline


def check_checkpoint(base_pipe, path: str | os.PathLike[str]) -> None:
    """A full checkpoint must share the base model's interfaces (latents, text width, vocabulary)."""
    path = Path(path)
    index = json.loads((path / "model_index.json").read_text(encoding="utf-8"))
    if index.get("_class_name") not in ("StableDiffusionPipeline", None):
        raise AdapterMismatchError(
            f"{path}/model_index.json: {index.get('_class_name')} is not a StableDiffusionPipeline"
        )
    unet = json.loads((path / "unet" / "config.json").read_text(encoding="utf-8"))
    for key in ("in_channels", "cross_attention_dim", "sample_size"):
        if unet.get(key) != base_pipe.unet.config.get(key):
            raise AdapterMismatchError(
                f"{path}/unet/config.json: {key} = {unet.get(key)} but the base model has "
                f"{base_pipe.unet.config.get(key)}"
            )


def audit_external(
    base_model: str, name: str, spec: dict[str, Any], meta_path: str | os.PathLike[str]
) -> dict[str, Any]:
    """Check an external adapter against the base model (loading it for real); write its meta.json."""

    check_source(name, spec)
    allow_pickle = spec.get("allow_pickle", False)
    import torch

    base = load_pipeline(base_model, torch.device("cpu"), torch.float32)
    if spec["kind"] == "checkpoint":
        check_checkpoint(base, spec["path"])
        load_pipeline(spec["path"], torch.device("cpu"), torch.float32, allow_pickle=allow_pickle)
    else:
        apply_adapter(base, spec["kind"], spec["path"], spec.get("token"), allow_pickle)
    meta = {
        "method": "external",
        "kind": spec["kind"],
        "source": str(spec["path"]),
        "sha256": sha256(spec["path"]),
        "token": spec.get("token"),
        "allow_pickle": allow_pickle,
        "subject": name,
        "subject_category": spec["category"],
        "base_model": base_model,
    }
    write_meta(meta_path, meta)
    return meta
