"""The ``train`` stage: one subject x one method -> an adapter folder.

Writes ``adapter.safetensors`` (loadable by the method's public diffusers
loader), ``meta.json`` (what was trained, from what, with which settings) and
``train_log.parquet`` (loss per step), plus method extras such as the Textual
Inversion trajectory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

import entmap
from entmap.methods.common import write_meta
from entmap.methods.data import templates_for
from entmap.methods.textual_inversion import save_textual_inversion, train_textual_inversion
from entmap.pipeline import load_pipeline
from entmap.references import load_reference_images
from entmap.runtime import configure_torch, resolve_device


def train_adapter(
    method: str,
    base_model: str,
    reference_dir: str | os.PathLike[str],
    subject: str,
    subject_config: dict[str, Any],
    token: str,
    settings: dict[str, Any],
    out_dir: str | os.PathLike[str],
    device: str = "auto",
    threads: int = 1,
) -> None:
    """Train ``method`` for ``subject`` on its reference images and write the adapter folder."""
    configure_torch(threads)
    torch_device = resolve_device(device)
    out_dir = Path(out_dir)
    pipe = load_pipeline(base_model, torch_device, torch.float32)
    images = load_reference_images(reference_dir)
    templates = templates_for(subject_config["category"])
    if method != "ti":
        raise ValueError(f"unknown method {method!r}")
    result = train_textual_inversion(
        pipe, images, token, subject_config["class_word"], templates, settings, torch_device
    )
    save_textual_inversion(result, out_dir)
    result.log.write(out_dir / "train_log.parquet")
    write_meta(
        out_dir / "meta.json",
        {
            "method": method,
            "subject": subject,
            "subject_category": subject_config["category"],
            "class_word": subject_config["class_word"],
            "token": token,
            "base_model": base_model,
            "settings": settings,
            "reference_images": len(images),
            "final_loss": result.log.rows[-1]["loss"],
            "entmap_version": entmap.__version__,
        },
    )
