"""Seed-matched sampling: the initial latent of each image, and one denoising pass of a batch.

Image x(p, k, model) = G(p, z_k; model). The initial latent z_k is drawn from its own
``torch.Generator`` seeded with k, on the CPU in float32, then cast and moved: it depends only on
(seed, resolution, dtype), never on the order of generation, the batch it lands in, or the
device. Base and personalized models receive the exact same prompt text.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any

import torch
from tqdm.auto import tqdm

from entmap.models.families import family_of_pipeline

LATENT_CHANNELS = 4
VAE_FACTOR = 8


def initial_latents(
    seeds: list[int],
    resolution: int,
    dtype: torch.dtype,
    device: torch.device,
    vae_factor: int = VAE_FACTOR,
    channels: int = LATENT_CHANNELS,
    packed: bool = False,
) -> torch.Tensor:
    """z_k for each seed: N(0, I) of shape (C, res/f, res/f) from ``torch.Generator().manual_seed(k)``.

    f is the VAE's downsampling factor (8 for every supported family; ``pipe.vae_scale_factor``), C
    the family's latent channels (4 for SD 1.x and SDXL, 16 for SD3 and Flux). ``packed`` turns each
    latent into Flux's sequence of 2x2 patches, (res/2f)^2 x 4C (:func:`pack_latents`), after the
    draw, so the noise itself is the same whichever layout the pipeline takes.
    """
    side = resolution // vae_factor
    noise = [torch.randn((channels, side, side), generator=torch.Generator("cpu").manual_seed(s)) for s in seeds]
    latents = torch.stack(noise)
    return (pack_latents(latents) if packed else latents).to(device=device, dtype=dtype)


def pack_latents(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H/2 * W/2, 4C): each 2x2 patch of every channel as one token (Flux's layout)."""
    b, c, h, w = latents.shape
    patches = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return patches.reshape(b, (h // 2) * (w // 2), c * 4)


def pipeline_latents(pipe, seeds: list[int], resolution: int) -> torch.Tensor:
    """:func:`initial_latents` in the layout ``pipe``'s family takes, on its device and in its dtype."""
    family = family_of_pipeline(pipe)
    denoiser = getattr(pipe, family.denoiser)
    return initial_latents(
        seeds,
        resolution,
        denoiser.dtype,
        pipe.device,
        pipe.vae_scale_factor,
        family.latent_channels,
        family.packed_latents,
    )


def render(
    pipe,
    latents: torch.Tensor,
    settings: dict[str, Any],
    prompts: list[str] | None = None,
    prompt_embeds: torch.Tensor | None = None,
) -> list:
    """One batch of PIL images from initial ``latents`` and either prompt texts or ``prompt_embeds``.

    The negative prompt is always given as text, so the unconditional branch is the same either way.
    Families without a negative prompt (Flux: guidance is a distilled input) get none.
    """
    family = family_of_pipeline(pipe)
    extra = {"negative_prompt": [settings.get("negative_prompt", "")] * len(latents)} if family.negative_prompt else {}
    with torch.inference_mode():
        return pipe(
            prompt=prompts,
            prompt_embeds=prompt_embeds,
            latents=latents,
            height=settings["resolution"],
            width=settings["resolution"],
            num_inference_steps=settings["steps"],
            guidance_scale=settings["guidance_scale"],
            output_type="pil",
            **extra,
        ).images


def job_batches(n_jobs: int, batch_size: int) -> list[range]:
    """The batches :func:`render_jobs` renders: jobs [b * batch_size, (b + 1) * batch_size), the last shorter."""
    return [range(start, min(start + batch_size, n_jobs)) for start in range(0, n_jobs, batch_size)]


def render_jobs(
    pipe,
    jobs: list[tuple[str, int]],
    settings: dict[str, Any],
    desc: str,
    batches: Collection[int] | None = None,
) -> Iterator[tuple[int, Any]]:
    """Render (prompt text, seed) jobs in order, in batches of ``settings['batch_size']``.

    Yields (job index, PIL image). The same job list and batch size always give the same batch
    composition, so the same images, byte for byte, on the same machine. ``batches`` (indices into
    :func:`job_batches`; None: all) renders only those batches, each exactly as a full run composes it.
    """
    layout = job_batches(len(jobs), settings["batch_size"])
    chosen = layout if batches is None else [layout[b] for b in sorted(set(batches))]
    for batch_range in tqdm(chosen, desc=desc, mininterval=2):
        batch = [jobs[i] for i in batch_range]
        latents = pipeline_latents(pipe, [seed for _, seed in batch], settings["resolution"])
        images = render(pipe, latents, settings, prompts=[text for text, _ in batch])
        yield from zip(batch_range, images, strict=True)
