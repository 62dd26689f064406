"""The text tokens' keys and values in joint attention (SD3, Flux), measured at a reference input.

SD3's MMDiT blocks and Flux's double-stream blocks have no cross-attention: text and image tokens
attend jointly, and the text tokens' keys and values come from the text stream's own projections
(``attn.add_k_proj`` / ``attn.add_v_proj``, what Custom Diffusion trains in these families). In
block b, with c_b the text stream entering it (c_0 = ``context_embedder`` of the encoded prompt),
y the pooled text vector and t the timestep,

    m_b = AdaLN_b(c_b; t, y) = LayerNorm(c_b) * (1 + scale_b(t, y)) + shift_b(t, y)   (``norm1_context``)
    K_b = m_b W_{k,b}^T + bias_{k,b},   V_b = m_b W_{v,b}^T + bias_{v,b}

So unlike a UNet's cross-attention keys E W_k^T they depend on the timestep and the pooled vector
in every block (adaLN modulation), and from block 1 on also on the image: c_{b+1} adds block b's
attention over text and image tokens. Flux's single-stream blocks project the concatenated
sequence [text; image] with one ``attn.to_k`` / ``attn.to_v`` (LoRA's targets); the text tokens'
rows of that output are the text's keys and values there, and are taken too, named after the
projection (``single_transformer_blocks.N.attn.to_k``).

The measurement, the same for every prompt and for a base and its personalized models: one
forward pass of the denoiser per batch of prompts at a reference input, forward hooks capturing
the output of each such projection (text tokens only; before heads are split, q/k-normalized or,
in Flux, rotated: what a LoRA or Custom Diffusion on the projection changes):

* latent: the noise of seed :data:`REFERENCE_SEED` at :data:`REFERENCE_RESOLUTION` pixels, drawn
  as generation draws it (:func:`entmap.models.sampling.pipeline_latents`), one for all prompts;
* noise level sigma = :data:`REFERENCE_SIGMA` = 1 (timestep 1000 in SD3's convention, 1 in
  Flux's): the first step of sampling, where the latent is that noise exactly;
* Flux's distilled guidance input, when the transformer embeds one (FLUX.1-dev):
  :data:`REFERENCE_GUIDANCE`, FluxPipeline's default;
* the prompts encoded as the pipeline encodes them (``encode_prompt``, no classifier-free guidance).

Caveat: past the first block the text keys and values mix in the reference image, so their
geometry there is the prompts' geometry *at that image and timestep*, not the text's alone. Block
0 sees no image; it still sees t and y, so a weight that moves the pooled vector (a Textual
Inversion token in a prompt) moves every text token's keys and values through the modulation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from entmap.models.families import family_of_pipeline
from entmap.models.sampling import pipeline_latents

#: the reference latent: generation's noise of this seed at this resolution (pixels)
REFERENCE_SEED, REFERENCE_RESOLUTION = 0, 256
#: the reference noise level sigma (1: pure noise, the first sampling step)
REFERENCE_SIGMA = 1.0
#: Flux's guidance input where the transformer embeds one (FluxPipeline's default guidance_scale)
REFERENCE_GUIDANCE = 3.5


def joint_kv_modules(pipe) -> dict[str, torch.nn.Module]:
    """{module name: projection} of every joint-attention key/value projection of text tokens."""
    family = family_of_pipeline(pipe)
    if family.denoiser != "transformer":
        raise ValueError(f"{family.name}: no joint attention (its text meets the image in cross-attention)")
    return family.joint_kv_modules(getattr(pipe, family.denoiser))


def reference_inputs(pipe, prompts: list[str]) -> dict[str, Any]:
    """The denoiser's keyword arguments for ``prompts`` at the reference latent and noise level."""
    name = family_of_pipeline(pipe).name
    if name == "sd3":
        return _sd3_inputs(pipe, prompts)
    if name == "flux":
        return _flux_inputs(pipe, prompts)
    raise ValueError(f"{name}: no joint attention (its text meets the image in cross-attention)")


def _constant(value: float, count: int, like: torch.Tensor) -> torch.Tensor:
    return torch.full((count,), value, dtype=like.dtype, device=like.device)


def _sd3_inputs(pipe, prompts: list[str]) -> dict[str, Any]:
    """SD3: timestep = sigma * num_train_timesteps, as the pipeline passes it."""
    transformer = pipe.transformer
    embeds, _, pooled, _ = pipe.encode_prompt(
        prompts, prompts, prompts, device=transformer.device, do_classifier_free_guidance=False
    )
    latents = pipeline_latents(pipe, [REFERENCE_SEED] * len(prompts), REFERENCE_RESOLUTION)
    steps = pipe.scheduler.config.num_train_timesteps
    return {
        "hidden_states": latents,
        "timestep": _constant(REFERENCE_SIGMA * steps, len(prompts), latents),
        "encoder_hidden_states": embeds.to(latents.dtype),
        "pooled_projections": pooled.to(latents.dtype),
    }


def _flux_inputs(pipe, prompts: list[str]) -> dict[str, Any]:
    """Flux: packed latents with their position ids, timestep = sigma (the transformer scales it by 1000)."""
    transformer = pipe.transformer
    embeds, pooled, text_ids = pipe.encode_prompt(prompts, prompts, device=transformer.device)
    latents = pipeline_latents(pipe, [REFERENCE_SEED] * len(prompts), REFERENCE_RESOLUTION)
    side = REFERENCE_RESOLUTION // pipe.vae_scale_factor // 2  # packed 2x2 patches per side
    image_ids = pipe._prepare_latent_image_ids(len(prompts), side, side, latents.device, latents.dtype)
    guidance = transformer.config.guidance_embeds
    return {
        "hidden_states": latents,
        "timestep": _constant(REFERENCE_SIGMA, len(prompts), latents),
        "guidance": _constant(REFERENCE_GUIDANCE, len(prompts), latents) if guidance else None,
        "encoder_hidden_states": embeds.to(latents.dtype),
        "pooled_projections": pooled.to(latents.dtype),
        "txt_ids": text_ids,
        "img_ids": image_ids,
    }


@contextmanager
def captured_outputs(
    modules: dict[str, torch.nn.Module], tokens: int, keep: Callable[[torch.Tensor], torch.Tensor]
) -> Iterator[dict[str, torch.Tensor]]:
    """While open, each module's forward output, cut to its first ``tokens`` tokens and passed
    through ``keep``, is stored under the module's name. The hooks return nothing (the forward pass
    is unchanged) and are removed on leaving, whatever happened."""
    captured: dict[str, torch.Tensor] = {}

    def hook_for(name: str):
        def hook(module, args, output) -> None:
            if name in captured:
                raise RuntimeError(f"{name} ran twice in one forward pass; its keys would be ambiguous")
            captured[name] = keep(output[:, :tokens])

        return hook

    handles = []
    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(hook_for(name)))
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def joint_attention_features(pipe, prompts: list[str], grad: bool = False) -> dict[str, torch.Tensor]:
    """{projection name: the text tokens' keys or values (B, L, d)} at the reference input.

    L is the encoded prompt's length (SD3: 77 CLIP + 256 T5 tokens; Flux: 512 T5 tokens).
    Diagnostics (``grad=False``): float64 on the CPU. Training (``grad=True``): the denoiser's dtype
    and device, differentiable in its weights (and in the text encoders' when they train).
    """
    modules = joint_kv_modules(pipe)
    keep = (lambda t: t) if grad else (lambda t: t.detach().double().cpu())
    with torch.set_grad_enabled(grad):
        inputs = reference_inputs(pipe, prompts)
        with captured_outputs(modules, inputs["encoder_hidden_states"].shape[1], keep) as captured:
            pipe.transformer(**inputs, return_dict=False)
    missing = [name for name in modules if name not in captured]
    if missing:
        raise RuntimeError(
            f"{', '.join(missing[:3])}: not called in the forward pass (fused q/k/v projections?); "
            "unfuse them to measure joint-attention keys and values"
        )
    return {name: captured[name] for name in modules}
