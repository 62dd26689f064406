"""The prompt features whose geometry is measured, at the two places personalization acts.

* Text-encoder level: each text encoder's last hidden state of each prompt, padded to the
  tokenizer's length (CLIP 77): what Textual Inversion changes (and text-encoder LoRA).
* Where text meets image: for each cross-attention layer of a UNet, the keys and the values it
  makes of the prompt's conditioning, E W_k^T and E W_v^T: what Custom Diffusion and LoRA on
  ``to_k/to_v`` change. In SD3 and Flux the text stream of joint attention is transformed block by
  block together with the image, so its keys and values depend on the image too; entmap does not
  measure them yet and says so.
"""

from __future__ import annotations

import torch

from entmap.models.families import family_of_pipeline


@torch.no_grad()
def text_encoder_features(pipe, prompts: list[str]) -> dict[str, torch.Tensor]:
    """{text encoder attribute: last hidden states (B, L, d)} for ``prompts``, in float64 on the CPU."""
    family = family_of_pipeline(pipe)
    features = {}
    for encoder_name, tokenizer_name in zip(family.text_encoders, family.tokenizers, strict=True):
        encoder, tokenizer = getattr(pipe, encoder_name, None), getattr(pipe, tokenizer_name, None)
        if encoder is None or tokenizer is None:
            continue
        length = min(tokenizer.model_max_length, 77 if "clip" in type(encoder).__name__.lower() else 256)
        ids = tokenizer(prompts, padding="max_length", max_length=length, truncation=True, return_tensors="pt")
        hidden = encoder(ids.input_ids.to(encoder.device))[0]
        features[encoder_name] = hidden.double().cpu()
    return features


@torch.no_grad()
def conditioning(pipe, prompts: list[str]) -> torch.Tensor:
    """The prompt embeddings the UNet's cross-attention reads (B, L, d), as the pipeline encodes them."""
    family = family_of_pipeline(pipe)
    device = pipe.device
    if family.name == "sd1":
        return pipe.encode_prompt(prompts, device, 1, False)[0]
    if family.name == "sdxl":
        return pipe.encode_prompt(prompts, device=device, do_classifier_free_guidance=False)[0]
    raise ValueError(
        f"{family.name}: keys and values of joint attention depend on the image as well as the text; "
        "entmap measures their geometry for the UNet families (sd1, sdxl) only so far"
    )


@torch.no_grad()
def cross_attention_features(pipe, prompts: list[str]) -> dict[str, torch.Tensor]:
    """{``<layer>.to_k`` / ``<layer>.to_v``: E W^T (B, L, d)} for every cross-attention layer, float64 on the CPU."""
    family = family_of_pipeline(pipe)
    embeddings = conditioning(pipe, prompts)
    denoiser = getattr(pipe, family.denoiser)
    features = {}
    for name, weight in family.text_kv_parameters(denoiser).items():
        features[name.removesuffix(".weight")] = (embeddings.to(weight.dtype) @ weight.T).double().cpu()
    return features
