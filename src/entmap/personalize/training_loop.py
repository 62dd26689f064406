"""Pieces every personalization method shares: the denoising loss, optimizer, schedule, logs."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from entmap.core.parquet_schemas import TRAIN_LOG, write_table
from entmap.models.families import family_of_pipeline

log = logging.getLogger("entmap")


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


def mixed_precision(settings: dict[str, Any], device: torch.device):
    """(autocast context, GradScaler or None) for ``settings['mixed_precision']`` (no|fp16|bf16).

    Mixed precision applies on CUDA only; weights and optimizer state stay in float32, the
    forward pass runs in half precision under autocast, and fp16 losses are scaled.
    """
    mode = settings.get("mixed_precision", "no")
    if mode == "no":
        return contextlib.nullcontext(), None
    if device.type != "cuda":
        log.warning("mixed_precision=%s applies on CUDA only; training in float32 on %s", mode, device)
        return contextlib.nullcontext(), None
    dtype = torch.float16 if mode == "fp16" else torch.bfloat16
    scaler = torch.amp.GradScaler("cuda") if mode == "fp16" else None
    return torch.autocast("cuda", dtype=dtype), scaler


def optimize(
    param_groups: list[dict[str, Any]],
    settings: dict[str, Any],
    device: torch.device,
    compute_loss: Callable[[], torch.Tensor],
    after_step: Callable[[int], None] | None = None,
    desc: str = "train",
) -> TrainLog:
    """The training loop every method shares: AdamW, LR schedule, accumulation, clipping, AMP.

    ``compute_loss`` draws one micro-batch and returns its loss; ``after_step`` runs after
    each optimizer step (e.g. to restore frozen embedding rows). Returns the per-step log.
    """
    optimizer = make_optimizer(param_groups, settings, effective_lr(settings))
    lr_scheduler = make_lr_scheduler(optimizer, settings)
    autocast, scaler = mixed_precision(settings, device)
    params: list[torch.Tensor] = [p for group in param_groups for p in group["params"]]
    accumulation = settings.get("gradient_accumulation_steps", 1)
    max_norm = settings.get("max_grad_norm")
    train_log = TrainLog()
    for step in tqdm(range(1, settings["steps"] + 1), desc=desc, mininterval=2):
        total = 0.0
        for _ in range(accumulation):
            with autocast:
                loss = compute_loss()
            scaled = loss / accumulation
            (scaler.scale(scaled) if scaler else scaled).backward()
            total += loss.item() / accumulation
        if scaler:
            scaler.unscale_(optimizer)
        if max_norm:
            torch.nn.utils.clip_grad_norm_(params, max_norm)
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if after_step is not None:
            after_step(step)
        train_log.add(step, total, lr_scheduler.get_last_lr()[0])
    return train_log


def trainable(modules: Iterable[torch.nn.Module]) -> list[torch.Tensor]:
    """The parameters of ``modules`` that require gradients."""
    return [p for module in modules for p in module.parameters() if p.requires_grad]


def denoiser_of(pipe) -> torch.nn.Module:
    """The pipeline's denoiser (UNet or transformer, by its family)."""
    return getattr(pipe, family_of_pipeline(pipe).denoiser)


def freeze(pipe) -> None:
    """Freeze the VAE, the denoiser and every text encoder; methods then unfreeze what they train."""
    family = family_of_pipeline(pipe)
    for name in ("vae", family.denoiser, *family.text_encoders):
        module = getattr(pipe, name, None)
        if module is not None:
            module.requires_grad_(False)


def end_training(pipe, settings: dict[str, Any]) -> None:
    """Back to inference: eval mode, gradient checkpointing off."""
    denoiser = denoiser_of(pipe)
    denoiser.eval()
    encoders = [getattr(pipe, name) for name in family_of_pipeline(pipe).text_encoders if getattr(pipe, name, None)]
    for encoder in encoders:
        encoder.eval()
    if settings.get("gradient_checkpointing", False):
        denoiser.disable_gradient_checkpointing()
        for encoder in encoders:
            if getattr(encoder, "is_gradient_checkpointing", False):
                encoder.gradient_checkpointing_disable()


class FrozenRows:
    """Keeps every embedding row but ``token_id``'s at its original value.

    AdamW's weight decay moves rows whose gradient is zero, so zeroing gradients is not
    enough (the diffusers Custom Diffusion script's mistake): the rows are restored after
    each optimizer step instead, which leaves the text encoder different from the base in
    exactly one row.
    """

    def __init__(self, embeddings: torch.nn.Embedding, token_id: int) -> None:
        self.embeddings = embeddings
        self.original = embeddings.weight.detach().clone()
        self.keep = torch.ones(embeddings.weight.shape[0], dtype=torch.bool, device=self.original.device)
        self.keep[token_id] = False

    def restore(self) -> None:
        with torch.no_grad():
            self.embeddings.weight[self.keep] = self.original[self.keep]
