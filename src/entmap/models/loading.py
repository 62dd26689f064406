"""Loading the base pipeline and turning it into a personalized model.

A *model* is ``base`` or ``{subject}/{method}``. Every model is the base
pipeline loaded with ``from_pretrained`` plus, for personalized models, the
adapter applied through the public diffusers loader of its method.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from entmap.core.runtime import configure_torch, resolve_device, resolve_dtype
from entmap.models.adapter_formats import apply_adapter
from entmap.models.adapter_meta import ADAPTER_FILE, read_meta
from entmap.models.families import SD1, family_of


def load_pipeline(model_id: str, device: torch.device, dtype: torch.dtype, allow_pickle: bool = False):
    """Load a pipeline (folder or hub id) of any supported family with its deterministic scheduler.

    The family comes from the model's model_index.json (:func:`entmap.models.families.family_of`);
    its pipeline class loads it with ``from_pretrained``, the family's scheduler (DDIM for the UNet
    families, flow-matching Euler for SD3 and Flux) is built from the model's scheduler config, SD 1.x
    loads without a safety checker. Only safetensors weights are read unless ``allow_pickle``.
    """
    import diffusers

    family = family_of(model_id)
    extra = {"safety_checker": None, "requires_safety_checker": False} if family is SD1 else {}
    pipe = getattr(diffusers, family.pipeline_class).from_pretrained(
        model_id, dtype=dtype, use_safetensors=None if allow_pickle else True, **extra
    )
    scheduler = getattr(diffusers, family.scheduler)
    config = dict(pipe.scheduler.config)
    if "stochastic_sampling" in config:
        config["stochastic_sampling"] = False
    pipe.scheduler = scheduler.from_config(config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def job_runtime(device: str, dtype: str, threads: int) -> tuple[torch.device, torch.dtype]:
    """Fix torch threads (:func:`configure_torch`) and resolve a job's device and dtype ("auto")."""
    configure_torch(threads)
    torch_device = resolve_device(device)
    return torch_device, resolve_dtype(dtype, torch_device)


def open_model(base_model: str, adapter_dir: str | os.PathLike[str] | None, device: str, dtype: str, threads: int):
    """A job's pipeline: fix torch threads, resolve device and dtype ("auto"), then :func:`load_model`."""
    return load_model(base_model, adapter_dir, *job_runtime(device, dtype, threads))


def is_checkpoint(meta: dict) -> bool:
    """Whether an adapter folder's meta.json names a full checkpoint, loaded instead of the base."""
    return meta["method"] == "external" and meta["kind"] == "checkpoint"


@dataclass(frozen=True)
class AdapterSource:
    """How an adapter folder's model is made: ``kind`` (ti, lora, cd, or checkpoint: a whole pipeline)
    applied from ``path``, with its ``token`` and whether pickle files may be read."""

    kind: str
    path: str
    token: str | None
    allow_pickle: bool = False


def adapter_source(adapter_dir: str | os.PathLike[str]) -> AdapterSource:
    """What the adapter folder's meta.json says: a trained method's adapter.safetensors in its file
    ``format`` (the planted control is a ``cd`` file), or an audited external adapter's source."""
    meta = read_meta(adapter_dir)
    if meta["method"] == "external":
        return AdapterSource(meta["kind"], meta["source"], meta.get("token"), meta.get("allow_pickle", False))
    return AdapterSource(meta.get("format", meta["method"]), str(Path(adapter_dir) / ADAPTER_FILE), meta.get("token"))


def apply_source(pipe, source: AdapterSource) -> None:
    """Apply an adapter (not a checkpoint) to ``pipe`` in place with its public loader (``apply_adapter``)."""
    apply_adapter(pipe, source.kind, source.path, source.token, source.allow_pickle)


def load_model(base_model: str, adapter_dir: str | os.PathLike[str] | None, device: torch.device, dtype: torch.dtype):
    """The pipeline of one model of the map: the base, or the base with an adapter folder applied.

    The adapter folder's meta.json says how (:func:`adapter_source`): a trained method
    (adapter.safetensors) or an audited external adapter (its source file, or a full checkpoint
    loaded instead of the base).
    """
    if adapter_dir is None:
        return load_pipeline(base_model, device, dtype)
    source = adapter_source(adapter_dir)
    if source.kind == "checkpoint":
        return load_pipeline(source.path, device, dtype, allow_pickle=source.allow_pickle)
    return apply_model_adapter(load_pipeline(base_model, device, dtype), adapter_dir)


def apply_model_adapter(pipe, adapter_dir: str | os.PathLike[str]):
    """Apply the adapter of ``adapter_dir`` to a freshly loaded base ``pipe`` in place, and return it.

    A trained method's adapter.safetensors, or an external adapter's audited source file; a full
    checkpoint (:func:`is_checkpoint`) is not an adapter and is refused.
    """
    source = adapter_source(adapter_dir)
    if source.kind == "checkpoint":
        raise ValueError(f"{adapter_dir}: a full checkpoint is loaded instead of the base, not applied to it")
    apply_source(pipe, source)
    return pipe
