"""Loading the base pipeline and turning it into a personalized model.

A *model* is ``base`` or ``{subject}/{method}``. Every model is the base
pipeline loaded with ``from_pretrained`` plus, for personalized models, the
adapter applied through the public diffusers loader of its method.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

ADAPTER_FILE = "adapter.safetensors"
META_FILE = "meta.json"


def load_pipeline(model_id: str, device: torch.device, dtype: torch.dtype, allow_pickle: bool = False):
    """Load a StableDiffusionPipeline (folder or hub id) with a DDIM scheduler, no safety checker.

    Only safetensors weights are read unless ``allow_pickle``.
    """
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(
        model_id,
        torch_dtype=dtype,
        safety_checker=None,
        requires_safety_checker=False,
        use_safetensors=None if allow_pickle else True,
    )
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def read_meta(adapter_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The meta.json an adapter folder carries (method, token, settings, ...)."""
    path = Path(adapter_dir) / META_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{path}: adapter metadata missing; retrain the adapter") from exc


def apply_adapter(pipe, kind: str, path: str | os.PathLike[str], token: str | None, allow_pickle: bool = False) -> None:
    """Apply an adapter file of ``kind`` to ``pipe`` in place with its public loader, checking its fit.

    ti: ``pipe.load_textual_inversion``; lora: ``pipe.load_lora_weights`` after every key and
    shape was checked against the base; cd: native attn2 k/v weights plus the modifier token.
    """
    from entmap.external import (
        AdapterMismatchError,
        ExternalAdapterError,
        check_lora_keys,
        read_tensors,
        ti_embedding,
    )
    from entmap.methods.custom_diffusion import apply_custom_diffusion

    path = Path(path)
    if kind == "ti":
        file_token, embedding = ti_embedding(read_tensors(path, allow_pickle), str(path))
        width = pipe.text_encoder.get_input_embeddings().weight.shape[1]
        if embedding.shape[-1] != width:
            raise AdapterMismatchError(f"{path}: embedding width {embedding.shape[-1]} != the text encoder's {width}")
        token = token or file_token
        if token is None:
            raise ExternalAdapterError(f"{path}: the file names no token; set `token:` in its config entry")
        pipe.load_textual_inversion({token: embedding.to(pipe.text_encoder.dtype)}, token=token)
    elif kind == "lora":
        if path.suffix != ".safetensors" and not allow_pickle:
            raise ExternalAdapterError(f"{path}: pickle-based file refused (allow_pickle is off)")
        state_dict, _ = pipe.lora_state_dict(str(path.parent), weight_name=path.name)
        check_lora_keys(pipe, state_dict, str(path))
        pipe.load_lora_weights(str(path.parent), weight_name=path.name)
    elif kind == "cd":
        apply_custom_diffusion(pipe, read_tensors(path, allow_pickle), token, str(path))
    else:
        raise ValueError(f"{path}: unknown adapter kind {kind!r}")


def open_model(base_model: str, adapter_dir: str | os.PathLike[str] | None, device: str, dtype: str, threads: int):
    """A job's pipeline: fix torch threads, resolve device and dtype ("auto"), then :func:`load_model`."""
    from entmap.runtime import configure_torch, resolve_device, resolve_dtype

    configure_torch(threads)
    torch_device = resolve_device(device)
    return load_model(base_model, adapter_dir, torch_device, resolve_dtype(dtype, torch_device))


def load_model(base_model: str, adapter_dir: str | os.PathLike[str] | None, device: torch.device, dtype: torch.dtype):
    """The pipeline of one model of the map: the base, or the base with an adapter folder applied.

    The adapter folder's meta.json says how: a trained method (adapter.safetensors) or an
    audited external adapter (its source file, or a full checkpoint loaded instead of the base).
    """
    if adapter_dir is None:
        return load_pipeline(base_model, device, dtype)
    meta = read_meta(adapter_dir)
    if meta["method"] == "external":
        allow_pickle = meta.get("allow_pickle", False)
        if meta["kind"] == "checkpoint":
            return load_pipeline(meta["source"], device, dtype, allow_pickle=allow_pickle)
        pipe = load_pipeline(base_model, device, dtype)
        apply_adapter(pipe, meta["kind"], meta["source"], meta.get("token"), allow_pickle)
        return pipe
    pipe = load_pipeline(base_model, device, dtype)
    apply_adapter(pipe, meta.get("format", meta["method"]), Path(adapter_dir) / ADAPTER_FILE, meta.get("token"))
    return pipe
