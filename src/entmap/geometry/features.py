"""The prompt features whose geometry is measured, at the two places personalization acts.

* Text-encoder level: each text encoder's last hidden state of each prompt, padded to the
  tokenizer's length (CLIP 77): what Textual Inversion changes (and text-encoder LoRA).
* Where text meets image (:func:`kv_features`): for each cross-attention layer of a UNet, the keys
  and the values it makes of the prompt's conditioning, E W_k^T and E W_v^T: what Custom Diffusion
  and LoRA on ``to_k/to_v`` change. In SD3 and Flux, the text tokens' keys and values of every
  joint-attention layer, taken in one forward pass at a fixed reference latent and timestep
  (:mod:`entmap.geometry.joint_attention`, which states the definition and its caveat: past the
  first block they mix in the image).
"""

from __future__ import annotations

import torch

from entmap.geometry.joint_attention import joint_attention_features
from entmap.models.families import family_of_pipeline


def text_encoder_features(pipe, prompts: list[str], grad: bool = False) -> dict[str, torch.Tensor]:
    """{text encoder attribute: last hidden states (B, L, d)} for ``prompts``.

    Diagnostics (``grad=False``): float64 on the CPU. Training (``grad=True``): the encoders' own
    dtype and device, differentiable in their weights.
    """
    family = family_of_pipeline(pipe)
    features = {}
    with torch.set_grad_enabled(grad):
        for encoder_name, tokenizer_name in zip(family.text_encoders, family.tokenizers, strict=True):
            encoder, tokenizer = getattr(pipe, encoder_name, None), getattr(pipe, tokenizer_name, None)
            if encoder is None or tokenizer is None:
                continue
            length = min(tokenizer.model_max_length, 77 if "clip" in type(encoder).__name__.lower() else 256)
            ids = tokenizer(prompts, padding="max_length", max_length=length, truncation=True, return_tensors="pt")
            hidden = encoder(ids.input_ids.to(encoder.device))[0]
            features[encoder_name] = hidden if grad else hidden.double().cpu()
    return features


def conditioning(pipe, prompts: list[str]) -> torch.Tensor:
    """The prompt embeddings the UNet's cross-attention reads (B, L, d), as the pipeline encodes them."""
    family = family_of_pipeline(pipe)
    device = pipe.device
    if family.name == "sd1":
        return pipe.encode_prompt(prompts, device, 1, False)[0]
    if family.name == "sdxl":
        return pipe.encode_prompt(prompts, device=device, do_classifier_free_guidance=False)[0]
    raise ValueError(
        f"{family.name}: no cross-attention; its text meets the image in joint attention (joint_attention_features)"
    )


def cross_attention_features(pipe, prompts: list[str], grad: bool = False) -> dict[str, torch.Tensor]:
    """{``<layer>.to_k`` / ``<layer>.to_v``: the layer's keys or values of the prompt (B, L, d)}.

    Each projection module is applied to the conditioning, so a LoRA on it counts. Diagnostics
    (``grad=False``): float64 on the CPU; training (``grad=True``): differentiable in the weights
    (and in the text encoders' when they train).
    """
    family = family_of_pipeline(pipe)
    denoiser = getattr(pipe, family.denoiser)
    features = {}
    with torch.set_grad_enabled(grad):
        embeddings = conditioning(pipe, prompts)
        for layer, module in family.text_kv_modules(denoiser).items():
            projected = module(embeddings.to(denoiser.dtype))
            features[layer] = projected if grad else projected.double().cpu()
    return features


def kv_features(pipe, prompts: list[str], grad: bool = False) -> dict[str, torch.Tensor]:
    """The keys and values where text meets image, by layer: cross-attention in the UNet families
    (:func:`cross_attention_features`), joint attention in SD3 and Flux (:func:`joint_attention_features`)."""
    if family_of_pipeline(pipe).denoiser == "unet":
        return cross_attention_features(pipe, prompts, grad)
    return joint_attention_features(pipe, prompts, grad)
