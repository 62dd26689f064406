"""Fingerprints that decide, from the tensors, whether a model renders a prompt exactly as the base does.

Generation is a function of the initial latent z_k (the same for every model), of what the
pipeline renders with (its denoiser, VAE and scheduler) and of the conditioning it feeds the
denoiser for the prompt. Two pipelines whose render parts are bitwise equal and whose conditioning
of prompt p is bitwise equal therefore draw the same image of p from every seed:

    render print  R(m)    = SHA-256 over the pipeline class, the scheduler's class and config, and
                            for the denoiser and the VAE: their config, the class of every module,
                            every attention processor's class, and (name, dtype, shape, bytes) of
                            every state-dict tensor
    prompt print  C(m, p) = SHA-256 over (name, dtype, shape, bytes) of every tensor the family's own
                            ``encode_prompt`` returns for p: conditional and unconditional (negative
                            prompt) embeddings, pooled embeddings, Flux's text ids
    reusable(p)  <=>  R(pers) == R(base)  and  C(pers, p) == C(base, p)

A LoRA adds parameters (and wraps modules), Custom Diffusion and the planted control at a non-zero
scale change k/v weights, a full checkpoint brings its own weights: R differs and nothing is reused.
Textual Inversion adds one embedding row that a prompt without its token never looks up: R is equal
and C is equal exactly for those prompts. Nothing here reads a method's name. Equal SHA-256 digests
stand for equal bytes (a collision is not a practical concern). Explained in docs/map.md.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch

from entmap.models.families import family_of_pipeline


def update_with_tensor(digest: hashlib._Hash, name: str, tensor: torch.Tensor) -> None:
    """Feed (name, dtype, shape, raw bytes) of ``tensor`` into ``digest``."""
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
    digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")


def _config_json(obj) -> str:
    """The object's diffusers config as JSON, without the bookkeeping keys (``_name_or_path`` and the like)."""
    config = dict(getattr(obj, "config", None) or {})
    return json.dumps({k: v for k, v in config.items() if not k.startswith("_")}, sort_keys=True, default=str)


def module_fingerprint(module: torch.nn.Module) -> str:
    """SHA-256 of a denoiser or VAE: its config, module classes, attention processors and state-dict tensors."""
    digest = hashlib.sha256()
    digest.update(_config_json(module).encode())
    for name, child in module.named_modules():
        digest.update(f"module {name}: {type(child).__name__}\n".encode())
    for name, processor in sorted(getattr(module, "attn_processors", {}).items()):
        digest.update(f"processor {name}: {type(processor).__name__}\n".encode())
    for name, tensor in module.state_dict().items():
        update_with_tensor(digest, name, tensor)
    return digest.hexdigest()


def render_fingerprint(pipe) -> str:
    """R(pipe): what draws an image from a latent and a conditioning (denoiser, VAE, scheduler), hashed."""
    family = family_of_pipeline(pipe)
    digest = hashlib.sha256()
    digest.update(f"{type(pipe).__name__}|{type(pipe.scheduler).__name__}|{_config_json(pipe.scheduler)}".encode())
    for part in (family.denoiser, "vae"):
        digest.update(f"{part}:{module_fingerprint(getattr(pipe, part))}".encode())
    return digest.hexdigest()


def prompt_conditioning(pipe, prompt: str, negative_prompt: str = "") -> dict[str, torch.Tensor]:
    """The tensors the pipeline feeds its denoiser for ``prompt``, from the family's own ``encode_prompt``.

    Called as :func:`entmap.models.sampling.render` makes the pipeline call it (prompt text, the
    negative prompt as text, classifier-free guidance on; Flux takes no negative prompt).
    """
    family = family_of_pipeline(pipe)
    device = pipe.device
    with torch.inference_mode():
        if family.name == "sd1":
            outputs = pipe.encode_prompt([prompt], device, 1, True, [negative_prompt])
            names = ("prompt_embeds", "negative_prompt_embeds")
        elif family.name == "sdxl":
            outputs = pipe.encode_prompt(
                [prompt], device=device, do_classifier_free_guidance=True, negative_prompt=[negative_prompt]
            )
            names = ("prompt_embeds", "negative_prompt_embeds", "pooled", "negative_pooled")
        elif family.name == "sd3":
            outputs = pipe.encode_prompt(
                [prompt], None, None, device=device, do_classifier_free_guidance=True, negative_prompt=[negative_prompt]
            )
            names = ("prompt_embeds", "negative_prompt_embeds", "pooled", "negative_pooled")
        else:
            outputs = pipe.encode_prompt([prompt], device=device)
            names = ("prompt_embeds", "pooled", "text_ids")
    return dict(zip(names, outputs, strict=True))


def conditioning_fingerprint(tensors: Mapping[str, torch.Tensor]) -> str:
    """C(m, p): SHA-256 over (name, dtype, shape, bytes) of each conditioning tensor, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        update_with_tensor(digest, name, tensors[name])
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelPrint:
    """R(m) and C(m, p) for the prompts of one shard (prompt id -> digest)."""

    render: str
    prompts: dict[str, str]


def model_print(pipe, prompts: Iterable[tuple[str, str]], negative_prompt: str = "") -> ModelPrint:
    """The fingerprints of ``pipe`` for (prompt id, text) pairs; each prompt is encoded on its own."""
    return ModelPrint(
        render=render_fingerprint(pipe),
        prompts={
            prompt_id: conditioning_fingerprint(prompt_conditioning(pipe, text, negative_prompt))
            for prompt_id, text in prompts
        },
    )


def reusable_prompts(base: ModelPrint, model: ModelPrint) -> set[str]:
    """The prompt ids ``model`` renders exactly as the base: R equal and C equal (see the module docstring)."""
    if base.render != model.render:
        return set()
    return {pid for pid, digest in model.prompts.items() if base.prompts.get(pid) == digest}
