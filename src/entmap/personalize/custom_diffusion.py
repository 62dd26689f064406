"""Custom Diffusion (Kumari et al. 2023) as in diffusers' train_custom_diffusion.py.

Only the weights where text meets image and the embedding of one new modifier token ``V*`` are
trained: in the UNet families every cross-attention key and value projection (``attn2.to_k`` and
``attn2.to_v``); in SD3 and Flux, which have no cross-attention, the analogue: the joint
attention's projections of the text tokens into keys and values (``attn.add_k_proj`` and
``attn.add_v_proj``, weights only; Flux's single-stream blocks have none, as the text and image
tokens share one projection there). The token gets a row in every CLIP encoder of the family.
They are trained with the denoising loss on prompts such as "a photo of V* dog" and,
optionally, a prior-preservation loss on class images. Other embedding rows are restored after
each step (see :class:`entmap.personalize.training_loop.FrozenRows`).

File format (safetensors): ``{unet|transformer}.<module>.weight`` for each trained k/v projection
and ``token_embedding`` (1, d) for the modifier token (``token_embedding.clip_l`` and
``.clip_g`` with two CLIP encoders), whose string is in meta.json. The loader puts the weights in
place with ``load_state_dict(strict=False)``, refusing any key that does not name a text k/v
weight of the base denoiser or whose shape differs, and registers the token in each encoder.
(diffusers' ``unet.load_attn_procs`` silently does nothing on this model family without a private
argument, so it is not used.) The processor-style keys of
diffusers' own Custom Diffusion checkpoints (``...attn2.processor.to_k_custom_diffusion.weight``)
are accepted too.

Explained in docs/methods.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from entmap.core.atomic import atomic_path
from entmap.models.adapter_formats import text_kv_parameters
from entmap.models.embeddings import add_placeholder_token, clip_encoders
from entmap.personalize.geometry_regularizer import GeometryRegularizer, regularized
from entmap.personalize.lora import class_prompt, instance_prompt
from entmap.personalize.objectives import instance_prior_loss
from entmap.personalize.training_loop import FrozenRows, TrainLog, denoiser_of, end_training, freeze, optimize


@dataclass
class CustomDiffusionResult:
    token: str
    #: the modifier token's id in each CLIP encoder, by encoder key
    token_ids: dict[str, int]
    instance_prompt: str
    log: TrainLog


def train_custom_diffusion(
    pipe,
    images: list[Image.Image],
    class_images: list[Image.Image] | None,
    token: str,
    class_word: str,
    settings: dict[str, Any],
    device: torch.device,
) -> CustomDiffusionResult:
    """Train the text k/v weights and the modifier token in ``pipe`` (float32, in place)."""
    ids = add_placeholder_token(pipe, token, settings.get("modifier_init") or class_word)
    freeze(pipe)
    _, kv = text_kv_parameters(pipe)
    for param in kv.values():
        param.requires_grad_(True)
    tables = [encoder.get_input_embeddings() for _, _, encoder in clip_encoders(pipe)]
    frozen = [FrozenRows(table, token_id) for table, (token_id, _) in zip(tables, ids.values(), strict=True)]
    for table, (_, _, encoder) in zip(tables, clip_encoders(pipe), strict=True):
        table.weight.requires_grad_(True)
        encoder.train()
    denoiser = denoiser_of(pipe)
    denoiser.train()
    if settings.get("gradient_checkpointing", False):
        denoiser.enable_gradient_checkpointing()
    prompt = instance_prompt(settings, token, class_word)
    compute_loss = instance_prior_loss(pipe, settings, device, images, prompt, class_images, class_prompt(class_word))
    compute_loss = regularized(compute_loss, GeometryRegularizer.build(pipe, settings))

    def restore_rows(step: int) -> None:
        for rows in frozen:
            rows.restore()

    groups = [{"params": list(kv.values())}, {"params": [table.weight for table in tables]}]
    log = optimize(groups, settings, device, compute_loss, restore_rows, f"custom diffusion {prompt!r}")
    end_training(pipe, settings)
    for _, _, encoder in clip_encoders(pipe):
        encoder.eval()
    for param in [*kv.values(), *(table.weight for table in tables)]:
        param.requires_grad_(False)
    return CustomDiffusionResult(
        token=token, token_ids={k: i for k, (i, _) in ids.items()}, instance_prompt=prompt, log=log
    )


def save_custom_diffusion(pipe, token_ids: dict[str, int], path: str | os.PathLike[str]) -> None:
    """Write the text k/v weights and the modifier token's embeddings to one safetensors file.

    Keys: ``{unet|transformer}.<name>`` per k/v weight; ``token_embedding`` (one CLIP encoder) or
    ``token_embedding.clip_l`` and ``token_embedding.clip_g`` (SDXL, SD3).
    """
    from safetensors.torch import save_file

    denoiser, kv = text_kv_parameters(pipe)
    tensors = {f"{denoiser}.{name}": p.detach().cpu().contiguous() for name, p in kv.items()}
    encoders = clip_encoders(pipe)
    for key, _, encoder in encoders:
        name = "token_embedding" if len(encoders) == 1 else f"token_embedding.{key}"
        tensors[name] = encoder.get_input_embeddings().weight[token_ids[key]].detach().cpu()[None]
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
