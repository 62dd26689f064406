"""Pieces every personalization method shares: the denoising loss, optimizer, schedule, logs."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F

from entmap.atomic import write_text
from entmap.tables import TRAIN_LOG, write_table


def encode_captions(pipe, captions: list[str], device: torch.device) -> torch.Tensor:
    """Text-encoder hidden states of ``captions`` padded to the tokenizer's max length (77)."""
    ids = pipe.tokenizer(
        captions,
        padding="max_length",
        max_length=pipe.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids.to(device)
    return pipe.text_encoder(ids)[0]


def denoising_loss(
    pipe,
    noise_scheduler,
    pixels: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """The latent-diffusion training loss: MSE between the UNet's prediction and its target.

    latents z0 = VAE(x) * scaling_factor, noise eps ~ N(0, I), t ~ U{0..T-1},
    z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps; target eps (epsilon
    prediction) or v = sqrt(abar_t) eps - sqrt(1 - abar_t) z0 (v prediction).
    All randomness comes from ``generator`` (on CPU), so a run repeats.
    """
    device = pixels.device
    vae_dtype = pipe.vae.dtype
    with torch.no_grad():
        dist = pipe.vae.encode(pixels.to(vae_dtype)).latent_dist
        sample = torch.randn(dist.mean.shape, generator=generator).to(device, dist.mean.dtype)
        latents = (dist.mean + dist.std * sample) * pipe.vae.config.scaling_factor
    latents = latents.float()
    noise = torch.randn(latents.shape, generator=generator).to(device)
    steps = noise_scheduler.config.num_train_timesteps
    timesteps = torch.randint(0, steps, (latents.shape[0],), generator=generator).to(device)
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    unet_dtype = pipe.unet.dtype
    prediction = pipe.unet(noisy.to(unet_dtype), timesteps, encoder_hidden_states.to(unet_dtype)).sample
    if noise_scheduler.config.prediction_type == "epsilon":
        target = noise
    elif noise_scheduler.config.prediction_type == "v_prediction":
        target = noise_scheduler.get_velocity(latents, noise, timesteps)
    else:
        raise ValueError(f"unsupported prediction_type {noise_scheduler.config.prediction_type!r}")
    return F.mse_loss(prediction.float(), target.float(), reduction="mean")


def make_optimizer(params, settings: dict[str, Any], lr: float) -> torch.optim.Optimizer:
    """AdamW with the diffusers scripts' defaults unless ``settings`` says otherwise."""
    return torch.optim.AdamW(
        params,
        lr=lr,
        betas=(settings.get("adam_beta1", 0.9), settings.get("adam_beta2", 0.999)),
        weight_decay=settings.get("adam_weight_decay", 1e-2),
        eps=settings.get("adam_epsilon", 1e-8),
    )


def make_lr_scheduler(optimizer: torch.optim.Optimizer, settings: dict[str, Any]):
    """The diffusers learning-rate schedule named in ``settings`` (constant, linear, cosine)."""
    from diffusers.optimization import get_scheduler

    return get_scheduler(
        settings.get("lr_scheduler", "constant"),
        optimizer=optimizer,
        num_warmup_steps=settings.get("lr_warmup_steps", 0),
        num_training_steps=settings["steps"],
    )


def effective_lr(settings: dict[str, Any]) -> float:
    """lr, times batch size x accumulation steps when ``scale_lr`` is on (as in diffusers)."""
    lr = settings["learning_rate"]
    if settings.get("scale_lr", False):
        lr *= settings["batch_size"] * settings.get("gradient_accumulation_steps", 1)
    return lr


@dataclass
class TrainLog:
    """Per-step loss and learning rate, written as train_log.parquet."""

    rows: list[dict[str, float]] = field(default_factory=list)

    def add(self, step: int, loss: float, lr: float) -> None:
        self.rows.append({"step": step, "loss": loss, "lr": lr})

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["step", "loss", "lr"])

    def write(self, path: str | os.PathLike[str]) -> None:
        write_table(self.frame(), path, TRAIN_LOG)


def write_meta(path: str | os.PathLike[str], meta: dict[str, Any]) -> None:
    """Write an adapter's meta.json atomically."""
    write_text(Path(path), json.dumps(meta, indent=2, sort_keys=True) + "\n")
