"""Custom Diffusion (Kumari et al. 2023) as in diffusers' train_custom_diffusion.py.

Only the cross-attention key and value projections of the UNet (every ``attn2.to_k`` and
``attn2.to_v`` weight: the text-to-image interface) and the embedding of one new modifier token
``V*`` are trained, with the denoising loss on prompts such as "a photo of V* dog" and,
optionally, a prior-preservation loss on class images. Other embedding rows are restored after
each step (see :class:`entmap.methods.common.FrozenRows`).

File format (safetensors): ``unet.<module>.weight`` for each trained k/v projection and
``token_embedding`` (1, d) for the modifier token, whose string is in meta.json. The loader
puts the weights in place with ``load_state_dict(strict=False)``, refusing any key that does not
name an attn2 k/v weight of the base UNet or whose shape differs, and registers the token with
``pipe.load_textual_inversion``. (diffusers' ``unet.load_attn_procs`` silently does nothing on
this model family without a private argument, so it is not used.) The processor-style keys of
diffusers' own Custom Diffusion checkpoints (``...attn2.processor.to_k_custom_diffusion.weight``)
are accepted too.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from entmap.atomic import atomic_path
from entmap.external import AdapterMismatchError
from entmap.methods.common import FrozenRows, TrainLog, end_training, freeze, instance_prior_loss, optimize
from entmap.methods.lora import class_prompt, instance_prompt
from entmap.methods.textual_inversion import add_placeholder_token

KV_PATTERN = re.compile(r"attn2\.to_[kv]\.weight$")
_PROCESSOR_KEY = re.compile(r"attn2\.processor\.to_([kv])_custom_diffusion\.weight$")


@dataclass
class CustomDiffusionResult:
    token: str
    token_id: int
    instance_prompt: str
    log: TrainLog


def kv_parameters(unet) -> dict[str, torch.nn.Parameter]:
    """The cross-attention key/value weights of ``unet``, by state-dict name."""
    return {name: p for name, p in unet.named_parameters() if KV_PATTERN.search(name)}


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


def split_custom_diffusion(
    tensors: dict[str, torch.Tensor], unet, source: str
) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """Map a Custom Diffusion state dict onto ``unet``'s k/v weight names; check keys and shapes.

    Returns (k/v weights by UNet state-dict name, token embedding or None).
    """
    expected = {name: p.shape for name, p in kv_parameters(unet).items()}
    weights: dict[str, torch.Tensor] = {}
    token = None
    unknown, mismatched = [], []
    for key, value in tensors.items():
        if key in ("token_embedding", "modifier_token"):
            token = value
            continue
        name = key.removeprefix("unet.")
        name = _PROCESSOR_KEY.sub(lambda m: f"attn2.to_{m.group(1)}.weight", name)
        if name not in expected:
            unknown.append(key)
        elif tuple(value.shape) != tuple(expected[name]):
            mismatched.append(f"{key} {tuple(value.shape)} != {tuple(expected[name])}")
        else:
            weights[name] = value
    if unknown or mismatched:
        raise AdapterMismatchError(
            f"{source}: does not fit the base model's cross-attention k/v weights: "
            + "; ".join(
                part
                for part in (
                    f"unknown keys {unknown[:5]}" + (f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else "")
                    if unknown
                    else "",
                    f"wrong shapes {mismatched[:5]}" if mismatched else "",
                )
                if part
            )
        )
    if not weights:
        raise AdapterMismatchError(f"{source}: holds no attn2 to_k/to_v weights")
    return weights, token


def apply_custom_diffusion(pipe, tensors: dict[str, torch.Tensor], token: str | None, source: str) -> None:
    """Apply Custom Diffusion tensors to ``pipe`` in place (k/v weights, then the modifier token)."""
    weights, embedding = split_custom_diffusion(tensors, pipe.unet, source)
    dtype = pipe.unet.dtype
    result = pipe.unet.load_state_dict({k: v.to(dtype) for k, v in weights.items()}, strict=False)
    if result.unexpected_keys:
        raise AdapterMismatchError(f"{source}: unexpected keys {result.unexpected_keys[:5]}")
    if embedding is not None:
        if token is None:
            raise AdapterMismatchError(f"{source}: has a modifier token embedding but no token string was given")
        pipe.load_textual_inversion({token: embedding.to(pipe.text_encoder.dtype)}, token=token)
