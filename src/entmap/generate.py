"""The ``generate`` stage: seed-matched images of one model for one shard of prompts.

Image x(p, k, model) = G(p, z_k; model). The initial latent z_k is drawn from
its own ``torch.Generator`` seeded with k, on the CPU in float32, then cast
and moved: it depends only on (seed, resolution, dtype), never on the order
of generation, the batch it lands in, or the device. Base and personalized
models receive the exact same prompt text (no subject token is inserted).
"""

from __future__ import annotations

import os
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from entmap.images import png_bytes
from entmap.tables import IMAGES, write_table

LATENT_CHANNELS = 4
VAE_FACTOR = 8


def initial_latents(
    seeds: list[int], resolution: int, dtype: torch.dtype, device: torch.device, vae_factor: int = VAE_FACTOR
) -> torch.Tensor:
    """z_k for each seed: N(0, I) of shape (4, res/f, res/f) from ``torch.Generator().manual_seed(k)``.

    f is the VAE's downsampling factor (8 for Stable Diffusion; ``pipe.vae_scale_factor``).
    """
    side = resolution // vae_factor
    noise = [torch.randn((LATENT_CHANNELS, side, side), generator=torch.Generator("cpu").manual_seed(s)) for s in seeds]
    return torch.stack(noise).to(device=device, dtype=dtype)


def render(
    pipe,
    latents: torch.Tensor,
    settings: dict[str, Any],
    prompts: list[str] | None = None,
    prompt_embeds: torch.Tensor | None = None,
) -> list:
    """One batch of PIL images from initial ``latents`` and either prompt texts or ``prompt_embeds``.

    The negative prompt is always given as text, so the unconditional branch is the same either way.
    """
    with torch.inference_mode():
        return pipe(
            prompt=prompts,
            prompt_embeds=prompt_embeds,
            negative_prompt=[settings.get("negative_prompt", "")] * len(latents),
            latents=latents,
            height=settings["resolution"],
            width=settings["resolution"],
            num_inference_steps=settings["steps"],
            guidance_scale=settings["guidance_scale"],
            output_type="pil",
        ).images


def generate_shard(
    pipe,
    prompts: pd.DataFrame,
    seeds: list[int],
    settings: dict[str, Any],
    model_name: str,
    settings_hash: str,
) -> pd.DataFrame:
    """Generate every (prompt, seed) image of ``prompts`` with ``pipe``; one row per image.

    Jobs run in a fixed order (prompts in suite order, seeds ascending) in
    batches of ``settings['batch_size']``, so the same shard with the same
    batch size always sees the same batch composition.
    """
    jobs = [(row.id, row.text, seed) for row in prompts.itertuples() for seed in seeds]
    batch_size = settings["batch_size"]
    resolution = settings["resolution"]
    device = pipe.device
    dtype = pipe.unet.dtype
    rows = []
    for start in tqdm(range(0, len(jobs), batch_size), desc=f"generate {model_name}", mininterval=2):
        batch = jobs[start : start + batch_size]
        latents = initial_latents([seed for _, _, seed in batch], resolution, dtype, device, pipe.vae_scale_factor)
        images = render(pipe, latents, settings, prompts=[text for _, text, _ in batch])
        for (prompt_id, _, seed), image in zip(batch, images, strict=True):
            rows.append(
                {
                    "prompt_id": prompt_id,
                    "seed": seed,
                    "model": model_name,
                    "settings_hash": settings_hash,
                    "width": image.width,
                    "height": image.height,
                    "png": png_bytes(image),
                }
            )
    return pd.DataFrame(rows, columns=IMAGES.names)


def write_images(frame: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    write_table(frame, path, IMAGES)


def generate_model_shard(
    base_model: str,
    adapter_dir: str | os.PathLike[str] | None,
    prompts: pd.DataFrame,
    seeds: list[int],
    settings: dict[str, Any],
    model_name: str,
    out_path: str | os.PathLike[str],
    device: str = "auto",
    dtype: str = "auto",
    threads: int = 1,
) -> None:
    """Load the base pipeline (plus the adapter, if any), generate one shard, write its table."""
    from entmap.config import settings_hash
    from entmap.pipeline import open_model

    pipe = open_model(base_model, adapter_dir, device, dtype, threads)
    frame = generate_shard(pipe, prompts, seeds, settings, model_name, settings_hash(settings))
    write_images(frame, out_path)
