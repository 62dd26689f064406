"""A stand-in for "an adapter someone else trained", so the default run audits one offline.

:func:`train_example_lora` trains a small DreamBooth-LoRA (rank 4, alpha 8) on a synthetic
style the default subjects do not use, and saves it with diffusers' ``save_lora_weights`` and
nothing of entmap's (no meta.json): exactly what a user downloads from a model hub.
"""

from __future__ import annotations

import os

import torch

from entmap.core.runtime import configure_torch
from entmap.inputs.references import draw_synthetic
from entmap.models.loading import load_pipeline
from entmap.personalize.lora import save_lora, train_lora

EXAMPLE_LORA_SETTINGS = {
    "steps": 20,
    "learning_rate": 1e-3,
    "batch_size": 2,
    "resolution": 64,
    "rank": 4,
    "alpha": 8,
    "identifier": "xyz",
    "seed": 7,
}


def train_example_lora(
    base_model: str, out_path: str | os.PathLike[str], threads: int = 1, resolution: int | None = None
) -> None:
    """Train and save the example external LoRA (CPU, seconds on the tiny base).

    ``resolution``: training size in pixels (the run's generation resolution; default 64).
    """
    configure_torch(threads)
    device = torch.device("cpu")
    pipe = load_pipeline(base_model, device, torch.float32)
    images = [draw_synthetic("style", i, seed=7) for i in range(4)]
    settings = dict(EXAMPLE_LORA_SETTINGS, resolution=resolution or EXAMPLE_LORA_SETTINGS["resolution"])
    train_lora(pipe, images, None, "xyz", "painting", settings, device)
    save_lora(pipe, out_path)
