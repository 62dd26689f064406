"""The ``train`` stage: one subject x one method -> an adapter folder.

Writes ``adapter.safetensors`` (loadable by the method's public diffusers loader, see
:func:`entmap.models.adapter_formats.apply_adapter`), ``meta.json`` (what was trained, from what, with which
settings) and ``train_log.parquet`` (loss per step), plus, for Textual Inversion, the embedding
trajectory. Also generates the class images of prior preservation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from entmap.core.atomic import atomic_dir
from entmap.core.image_codec import png_bytes
from entmap.core.provenance import __version__
from entmap.core.runtime import configure_torch, resolve_device
from entmap.core.vocabulary import split_method
from entmap.inputs.references import load_images, load_reference_images
from entmap.models.adapter_meta import ADAPTER_FILE, write_meta
from entmap.models.loading import load_pipeline, open_model
from entmap.models.sampling import render_jobs
from entmap.personalize.captions import templates_for
from entmap.personalize.custom_diffusion import save_custom_diffusion, train_custom_diffusion
from entmap.personalize.lora import class_prompt, save_lora, train_lora
from entmap.personalize.textual_inversion import save_textual_inversion, train_textual_inversion


def train_adapter(
    method: str,
    base_model: str,
    reference_dir: str | os.PathLike[str],
    subject: str,
    subject_config: dict[str, Any],
    token: str,
    settings: dict[str, Any],
    out_dir: str | os.PathLike[str],
    class_dir: str | os.PathLike[str] | None = None,
    device: str = "auto",
    threads: int = 1,
) -> None:
    """Train ``method`` for ``subject`` on its reference images and write the adapter folder.

    ``method`` is ti, lora or cd, or a variant of one (``lora+sage``: ``settings`` already carry the
    variant's); the adapter file is the method's, so it loads as the method's (``format``).
    """
    configure_torch(threads)
    torch_device = resolve_device(device)
    out_dir = Path(out_dir)
    pipe = load_pipeline(base_model, torch_device, torch.float32)
    images = load_reference_images(reference_dir)
    class_images = load_images(class_dir) if class_dir else None
    class_word = subject_config["class_word"]
    extra: dict[str, Any] = {}
    kind = split_method(method)[0]
    if kind == "ti":
        result = train_textual_inversion(
            pipe, images, token, class_word, templates_for(subject_config["category"]), settings, torch_device
        )
        save_textual_inversion(result, out_dir)
    elif kind == "lora":
        result = train_lora(pipe, images, class_images, token, class_word, settings, torch_device)
        save_lora(pipe, out_dir / ADAPTER_FILE)
        extra["instance_prompt"] = result.instance_prompt
    elif kind == "cd":
        result = train_custom_diffusion(pipe, images, class_images, token, class_word, settings, torch_device)
        save_custom_diffusion(pipe, result.token_ids, out_dir / ADAPTER_FILE)
        extra["instance_prompt"] = result.instance_prompt
    else:
        raise ValueError(f"unknown method {method!r}; use ti, lora or cd, or METHOD+VARIANT")
    result.log.write(out_dir / "train_log.parquet")
    write_meta(
        out_dir / "meta.json",
        {
            "method": method,
            "format": kind,
            "subject": subject,
            "subject_category": subject_config["category"],
            "class_word": class_word,
            "token": token,
            "base_model": base_model,
            "settings": settings,
            "reference_images": len(images),
            "class_images": len(class_images or []),
            "final_loss": result.log.rows[-1]["loss"],
            "entmap_version": __version__,
            **extra,
        },
    )


def generate_class_images(
    base_model: str,
    class_word: str,
    count: int,
    settings: dict[str, Any],
    out_dir: str | os.PathLike[str],
    device: str = "auto",
    dtype: str = "auto",
    threads: int = 1,
) -> None:
    """Prior-preservation images: ``count`` base-model images of "a photo of a {class_word}"."""
    pipe = open_model(base_model, None, device, dtype, threads)
    jobs = [(class_prompt(class_word), seed) for seed in range(count)]
    with atomic_dir(out_dir) as tmp:
        for seed, image in render_jobs(pipe, jobs, settings, desc=f"class images {class_word}"):
            (tmp / f"{seed:04d}.png").write_bytes(png_bytes(image))


def make_perturbation(
    base_model: str, scale: float, seed: int, out_dir: str | os.PathLike[str], threads: int = 1
) -> None:
    """Write a planted-effect adapter: k/v weights with relative Gaussian noise ``scale``."""
    from entmap.personalize.perturb import save_perturbation

    configure_torch(threads)
    pipe = load_pipeline(base_model, torch.device("cpu"), torch.float32)
    out_dir = Path(out_dir)
    save_perturbation(pipe, scale, seed, out_dir / ADAPTER_FILE)
    write_meta(
        out_dir / "meta.json",
        {
            "method": "perturb",
            "format": "cd",
            "scale": scale,
            "seed": seed,
            "token": None,
            "base_model": base_model,
            "subject_category": "control",
            "entmap_version": __version__,
        },
    )
