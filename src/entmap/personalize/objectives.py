"""The training objective of each model family, as the diffusers reference training scripts define it.

* SD 1.x (and the toy world): latent diffusion with the UNet's epsilon (or v) prediction,
  z0 = VAE(x) * scaling, t ~ U{0..T-1}, z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps, loss
  MSE(eps_hat, eps) (:func:`entmap.personalize.training_loop.denoising_loss`); the text encoder's
  hidden states are computed with gradients, so its adapters can train.
* SDXL: the same loss, with SDXL's extra conditioning: the second encoder's pooled vector
  (``text_embeds``) and the six size-and-crop numbers (``time_ids`` = original size, crop
  top-left (0, 0), target size, all the training resolution), as in train_dreambooth_lora_sdxl.py.
* SD3 and Flux: rectified flow. z0 = (VAE(x) - shift) * scaling, sigma drawn per image (SD3:
  logit-normal u, Flux: uniform u, as the two scripts' default ``weighting_scheme``; then the
  scheduler's shifted sigma at index u * T), z_sigma = (1 - sigma) z0 + sigma eps, target
  eps - z0, loss MSE. Flux takes its latents packed into 2x2 patch tokens with their position ids.

Text conditioning of SDXL, SD3 and Flux comes from the pipeline's own ``encode_prompt``, with
gradients when a text-encoder weight trains (Textual Inversion, Custom Diffusion's modifier token);
all randomness from one CPU generator, so a run repeats. Build the objective after the trained
weights are marked ``requires_grad``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from entmap.models.families import family_of_pipeline
from entmap.models.sampling import pack_latents
from entmap.personalize.captions import ReferenceBatches
from entmap.personalize.training_loop import denoising_loss, encode_captions

#: (pixels (B, 3, H, W) in [-1, 1], captions) -> loss
Objective = Callable[[torch.Tensor, list[str]], torch.Tensor]


def objective_for(pipe, device: torch.device, generator: torch.Generator) -> Objective:
    """The family's training loss as a function of a batch of images and their captions."""
    from diffusers import DDPMScheduler

    family = family_of_pipeline(pipe).name
    if family == "sd1":
        noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)

        def sd1(pixels: torch.Tensor, captions: list[str]) -> torch.Tensor:
            hidden = encode_captions(pipe, captions, device)
            return denoising_loss(pipe, noise_scheduler, pixels.to(device), hidden, generator)

        return sd1
    if family == "sdxl":
        return _sdxl_objective(pipe, device, generator)
    return _flow_objective(pipe, device, generator, family)


def text_encoders_train(pipe) -> bool:
    """Whether any text-encoder weight requires gradients (then prompts are encoded with them)."""
    encoders = [getattr(pipe, name, None) for name in family_of_pipeline(pipe).text_encoders]
    return any(p.requires_grad for encoder in encoders if encoder is not None for p in encoder.parameters())


def vae_latents(pipe, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """z0 = (sample of VAE(x) - shift_factor) * scaling_factor in float32 (shift 0 when the VAE has none)."""
    with torch.no_grad():
        dist = pipe.vae.encode(pixels.to(pipe.vae.dtype)).latent_dist
        sample = torch.randn(dist.mean.shape, generator=generator).to(pixels.device, dist.mean.dtype)
        latents = dist.mean + dist.std * sample
    shift = pipe.vae.config.get("shift_factor") or 0.0
    return ((latents - shift) * pipe.vae.config.scaling_factor).float()


def _sdxl_objective(pipe, device: torch.device, generator: torch.Generator) -> Objective:
    from diffusers import DDPMScheduler

    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    text_trains = text_encoders_train(pipe)

    def loss(pixels: torch.Tensor, captions: list[str]) -> torch.Tensor:
        pixels = pixels.to(device)
        with torch.set_grad_enabled(text_trains):
            embeds, _, pooled, _ = pipe.encode_prompt(captions, device=device, do_classifier_free_guidance=False)
        latents = vae_latents(pipe, pixels, generator)
        noise = torch.randn(latents.shape, generator=generator).to(device)
        steps = noise_scheduler.config.num_train_timesteps
        timesteps = torch.randint(0, steps, (latents.shape[0],), generator=generator).to(device)
        noisy = noise_scheduler.add_noise(latents, noise, timesteps)
        size = pixels.shape[-1]
        time_ids = torch.tensor([[size, size, 0, 0, size, size]] * len(captions), dtype=torch.float32, device=device)
        dtype = pipe.unet.dtype
        prediction = pipe.unet(
            noisy.to(dtype),
            timesteps,
            embeds.to(dtype),
            added_cond_kwargs={"text_embeds": pooled.to(dtype), "time_ids": time_ids.to(dtype)},
        ).sample
        epsilon = noise_scheduler.config.prediction_type == "epsilon"
        target = noise if epsilon else noise_scheduler.get_velocity(latents, noise, timesteps)
        return F.mse_loss(prediction.float(), target.float())

    return loss


def _flow_objective(pipe, device: torch.device, generator: torch.Generator, family: str) -> Objective:
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)
    train_sigmas = scheduler.sigmas[:-1].clone()  # the shifted training sigmas, high to low
    steps = len(train_sigmas)
    text_trains = text_encoders_train(pipe)

    def loss(pixels: torch.Tensor, captions: list[str]) -> torch.Tensor:
        pixels = pixels.to(device)
        with torch.set_grad_enabled(text_trains):
            if family == "sd3":
                embeds, _, pooled, _ = pipe.encode_prompt(
                    captions, captions, captions, device=device, do_classifier_free_guidance=False
                )
            else:
                embeds, pooled, text_ids = pipe.encode_prompt(captions, captions, device=device)
        latents = vae_latents(pipe, pixels, generator)
        b = latents.shape[0]
        if family == "sd3":  # logit-normal(0, 1) timestep density
            u = torch.sigmoid(torch.randn(b, generator=generator))
        else:  # uniform
            u = torch.rand(b, generator=generator)
        sigmas = train_sigmas[(u * steps).long().clamp(max=steps - 1)].to(device)
        noise = torch.randn(latents.shape, generator=generator).to(device)
        noisy = (1 - sigmas[:, None, None, None]) * latents + sigmas[:, None, None, None] * noise
        target = noise - latents
        dtype = pipe.transformer.dtype
        if family == "sd3":
            prediction = pipe.transformer(
                hidden_states=noisy.to(dtype),
                timestep=(sigmas * scheduler.config.num_train_timesteps).to(dtype),
                encoder_hidden_states=embeds.to(dtype),
                pooled_projections=pooled.to(dtype),
            ).sample
        else:
            _, c, h, w = latents.shape
            image_ids = pipe._prepare_latent_image_ids(b, h // 2, w // 2, device, dtype)
            packed = pipe.transformer(
                hidden_states=pack_latents(noisy).to(dtype),
                timestep=sigmas.to(dtype),
                guidance=None,
                pooled_projections=pooled.to(dtype),
                encoder_hidden_states=embeds.to(dtype),
                txt_ids=text_ids,
                img_ids=image_ids,
            ).sample
            prediction = unpack_latents(packed, c, h, w)
        return F.mse_loss(prediction.float(), target.float())

    return loss


def unpack_latents(tokens: torch.Tensor, channels: int, height: int, width: int) -> torch.Tensor:
    """The inverse of :func:`entmap.models.sampling.pack_latents`: (B, H/2 * W/2, 4C) -> (B, C, H, W)."""
    b = tokens.shape[0]
    patches = tokens.view(b, height // 2, width // 2, channels, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return patches.reshape(b, channels, height, width)


def instance_prior_loss(
    pipe,
    settings: dict[str, Any],
    device: torch.device,
    images: list,
    instance_prompt: str,
    class_images: list | None = None,
    class_prompt: str | None = None,
) -> Callable[[], torch.Tensor]:
    """The DreamBooth objective as a closure: L = L_instance + prior_loss_weight * L_class.

    L_instance is the family's training loss (:func:`objective_for`) on the reference images
    captioned ``instance_prompt``;
    L_class (only with ``prior_preservation``) the same on base-model class images captioned
    ``class_prompt``. Batches and noise come from generators seeded by ``settings['seed']``.
    """
    seed = settings.get("seed", 0)
    crop, flip = settings.get("center_crop", False), settings.get("flip_p", 0.0)
    instance = ReferenceBatches(images, "", (instance_prompt,), settings["resolution"], crop, flip, seed)
    prior = None
    if settings.get("prior_preservation", False):
        if not class_images or class_prompt is None:
            raise ValueError("prior_preservation is on but no class images were given")
        prior = ReferenceBatches(class_images, "", (class_prompt,), settings["resolution"], crop, flip, seed + 2)
    generator = torch.Generator().manual_seed(seed + 1)
    objective = objective_for(pipe, device, generator)
    weight = settings.get("prior_loss_weight", 1.0)

    def loss_on(batches) -> torch.Tensor:
        pixels, captions = batches.sample(settings["batch_size"])
        return objective(pixels, captions)

    def compute_loss() -> torch.Tensor:
        loss = loss_on(instance)
        return loss + weight * loss_on(prior) if prior is not None else loss

    return compute_loss
