"""Seed-matched sampling: the initial latent of each image, and one denoising pass of a batch.

Image x(p, k, model) = G(p, z_k; model). The initial latent z_k is drawn from its own
``torch.Generator`` seeded with k, on the CPU in float32, then cast and moved: it depends only on
(seed, resolution, dtype), never on the order of generation, the batch it lands in, or the
device. Base and personalized models receive the exact same prompt text.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from tqdm.auto import tqdm

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


def render_jobs(pipe, jobs: list[tuple[str, int]], settings: dict[str, Any], desc: str) -> Iterator[tuple[int, Any]]:
    """Render (prompt text, seed) jobs in order, in batches of ``settings['batch_size']``.

    Yields (job index, PIL image). The same job list and batch size always give the same batch
    composition, so the same images, byte for byte, on the same machine.
    """
    batch_size = settings["batch_size"]
    for start in tqdm(range(0, len(jobs), batch_size), desc=desc, mininterval=2):
        batch = jobs[start : start + batch_size]
        latents = initial_latents(
            [seed for _, seed in batch], settings["resolution"], pipe.unet.dtype, pipe.device, pipe.vae_scale_factor
        )
        images = render(pipe, latents, settings, prompts=[text for text, _ in batch])
        yield from enumerate(images, start)
