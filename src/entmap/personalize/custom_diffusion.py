"""Custom Diffusion (Kumari et al. 2023) as in diffusers' train_custom_diffusion.py.

Only the cross-attention key and value projections of the UNet (every ``attn2.to_k`` and
``attn2.to_v`` weight: the text-to-image interface) and the embedding of one new modifier token
``V*`` are trained, with the denoising loss on prompts such as "a photo of V* dog" and,
optionally, a prior-preservation loss on class images. Other embedding rows are restored after
each step (see :class:`entmap.personalize.training_loop.FrozenRows`).

File format (safetensors): ``unet.<module>.weight`` for each trained k/v projection and
``token_embedding`` (1, d) for the modifier token, whose string is in meta.json. The loader
puts the weights in place with ``load_state_dict(strict=False)``, refusing any key that does not
name an attn2 k/v weight of the base UNet or whose shape differs, and registers the token with
``pipe.load_textual_inversion``. (diffusers' ``unet.load_attn_procs`` silently does nothing on
this model family without a private argument, so it is not used.) The processor-style keys of
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
from entmap.models.adapter_formats import kv_parameters
from entmap.personalize.lora import class_prompt, instance_prompt
from entmap.personalize.objectives import instance_prior_loss
from entmap.personalize.textual_inversion import add_placeholder_token
from entmap.personalize.training_loop import FrozenRows, TrainLog, end_training, freeze, optimize


@dataclass
class CustomDiffusionResult:
    token: str
    token_id: int
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
    """Train attn2 k/v weights and the modifier token in ``pipe`` (float32, in place)."""
    token_id, _ = add_placeholder_token(pipe, token, settings.get("modifier_init") or class_word)
    freeze(pipe)
    kv = kv_parameters(pipe.unet)
    for param in kv.values():
        param.requires_grad_(True)
    embeddings = pipe.text_encoder.get_input_embeddings()
    embeddings.weight.requires_grad_(True)
    frozen = FrozenRows(embeddings, token_id)
    pipe.unet.train()
    pipe.text_encoder.train()
    if settings.get("gradient_checkpointing", False):
        pipe.unet.enable_gradient_checkpointing()
    prompt = instance_prompt(settings, token, class_word)
    compute_loss = instance_prior_loss(pipe, settings, device, images, prompt, class_images, class_prompt(class_word))

    groups = [{"params": list(kv.values())}, {"params": [embeddings.weight]}]
    log = optimize(
        groups, settings, device, compute_loss, lambda step: frozen.restore(), f"custom diffusion {prompt!r}"
    )
    end_training(pipe, settings)
    for param in [*kv.values(), embeddings.weight]:
        param.requires_grad_(False)
    return CustomDiffusionResult(token=token, token_id=token_id, instance_prompt=prompt, log=log)


def save_custom_diffusion(pipe, token_id: int, path: str | os.PathLike[str]) -> None:
    """Write the k/v weights and the modifier token's embedding to one safetensors file."""
    from safetensors.torch import save_file

    tensors = {f"unet.{name}": p.detach().cpu().contiguous() for name, p in kv_parameters(pipe.unet).items()}
    tensors["token_embedding"] = pipe.text_encoder.get_input_embeddings().weight[token_id].detach().cpu()[None]
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
