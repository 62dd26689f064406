"""Audit mode: adapters someone else trained, checked before they become models of the map.

A config entry under ``external`` names a file or folder and its kind:

* ``lora``: a diffusers/peft or kohya LoRA file (``pipe.load_lora_weights``);
* ``ti``: a Textual Inversion embedding (``pipe.load_textual_inversion``);
* ``cd``: Custom Diffusion k/v weights (entmap's or diffusers' processor key names);
* ``checkpoint``: a full fine-tuned diffusers pipeline folder (loaded instead of the base).

Only safetensors are read by default: pickle-based files (.bin, .pt, .pth, .ckpt, .pkl) can
run arbitrary code when loaded and are refused unless the entry sets ``allow_pickle: true``.
An adapter whose keys or shapes do not fit the base model is refused with the keys named.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from entmap.checksums import update_with_file

if TYPE_CHECKING:
    import torch

PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"}
WEIGHT_SUFFIXES = PICKLE_SUFFIXES | {".safetensors"}
_LORA_SUFFIX = re.compile(
    r"\.(lora_A|lora_B|lora\.down|lora\.up|lora_down|lora_up|lora_linear_layer\.down|lora_linear_layer\.up)\.weight$"
    r"|\.(alpha|lora_magnitude_vector)$"
)


class AdapterMismatchError(ValueError):
    """An adapter's keys or shapes do not fit the base model; the message names them."""


class ExternalAdapterError(ValueError):
    """An external adapter is refused; the message names the file and the fix."""


def weight_files(path: str | os.PathLike[str]) -> list[Path]:
    """The weight files an external entry points at (the file, or all weights in a folder)."""
    path = Path(path)
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in WEIGHT_SUFFIXES)


def check_source(name: str, spec: dict[str, Any]) -> None:
    """Cheap checks done before any job starts: the path exists and holds no refused pickle."""
    path = Path(spec["path"])
    where = f"external.{name}"
    if not path.exists():
        raise ExternalAdapterError(f"{where}.path: {path} does not exist")
    if spec["kind"] == "checkpoint":
        if not (path / "model_index.json").is_file():
            raise ExternalAdapterError(f"{where}.path: {path} is not a diffusers pipeline folder (no model_index.json)")
    elif not path.is_file():
        raise ExternalAdapterError(f"{where}.path: {path} must be a file for kind {spec['kind']!r}")
    if not spec.get("allow_pickle", False):
        for file in weight_files(path):
            if file.suffix.lower() in PICKLE_SUFFIXES and not _has_safetensors_twin(file):
                raise ExternalAdapterError(
                    f"{file}: pickle-based weights can run arbitrary code when loaded; convert them to "
                    f"safetensors, or opt in with `{where}.allow_pickle: true` if you trust the file"
                )


def _has_safetensors_twin(file: Path) -> bool:
    """A pipeline folder may hold both formats; diffusers then reads the safetensors one."""
    return any(p.suffix == ".safetensors" for p in file.parent.iterdir())


def sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 over the weight files of ``path`` (names and bytes, in sorted order)."""
    digest = hashlib.sha256()
    root = Path(path)
    for file in weight_files(root):
        digest.update(str(file.relative_to(root if root.is_dir() else root.parent)).encode())
        update_with_file(digest, file)
    return digest.hexdigest()


def read_tensors(path: Path, allow_pickle: bool) -> dict[str, Any]:
    """Read a weights file: safetensors always, pickle only when allowed (weights_only)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    if not allow_pickle:
        raise ExternalAdapterError(f"{path}: pickle-based file refused (allow_pickle is off)")
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def _module_index(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    return dict(model.named_modules())


def check_lora_keys(pipe, state_dict: dict[str, torch.Tensor], source: str) -> int:
    """Check every LoRA tensor targets an existing Linear/Conv layer with matching sizes.

    ``state_dict`` is in diffusers form (``unet.<module>.lora_A.weight`` or ``.lora.down.weight``),
    as ``StableDiffusionPipeline.lora_state_dict`` returns it for diffusers, peft and kohya files.
    Returns the number of adapted layers.
    """
    modules = {"unet": _module_index(pipe.unet), "text_encoder": _module_index(pipe.text_encoder)}
    unknown, mismatched, layers = [], [], set()
    for key, value in state_dict.items():
        prefix, _, rest = key.partition(".")
        match = _LORA_SUFFIX.search(rest)
        if prefix not in modules or not match:
            unknown.append(key)
            continue
        module_name = rest[: match.start()]
        module = next(
            (
                modules[prefix][name]
                for name in (module_name, module_name.removeprefix("text_model."), f"text_model.{module_name}")
                if name in modules[prefix]
            ),
            None,
        )
        if module is None:
            unknown.append(key)
            continue
        layers.add(f"{prefix}.{module_name}")
        kind = match.group(1) or ""
        if kind in ("lora_A", "lora.down", "lora_down", "lora_linear_layer.down"):
            fan_in = getattr(module, "in_features", getattr(module, "in_channels", None))
            if value.ndim < 2 or value.shape[1] != fan_in:
                mismatched.append(f"{key} {tuple(value.shape)} (layer input {fan_in})")
        elif kind in ("lora_B", "lora.up", "lora_up", "lora_linear_layer.up"):
            fan_out = getattr(module, "out_features", getattr(module, "out_channels", None))
            if value.shape[0] != fan_out:
                mismatched.append(f"{key} {tuple(value.shape)} (layer output {fan_out})")
    if unknown or mismatched:
        parts = []
        if unknown:
            parts.append(
                f"keys matching no layer of the base model {unknown[:5]}"
                + (f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else "")
            )
        if mismatched:
            parts.append(f"wrong shapes {mismatched[:5]}")
        raise AdapterMismatchError(f"{source}: " + "; ".join(parts))
    if not layers:
        raise AdapterMismatchError(f"{source}: no LoRA tensors found")
    return len(layers)


def ti_embedding(tensors: dict[str, Any], source: str) -> tuple[str | None, torch.Tensor]:
    """(token in the file or None, embedding (n, d)) from diffusers or A1111 embedding files."""
    if "string_to_param" in tensors:  # A1111 .pt
        tensors = {"*": next(iter(tensors["string_to_param"].values()))}
    if "emb_params" in tensors:  # A1111 .safetensors
        return None, tensors["emb_params"]
    if len(tensors) != 1:
        raise AdapterMismatchError(
            f"{source}: a Textual Inversion file holds one embedding; found keys {list(tensors)[:5]}"
        )
    key, value = next(iter(tensors.items()))
    value = value if value.ndim == 2 else value[None]
    return (key if key != "*" else None), value


def check_checkpoint(base_pipe, path: str | os.PathLike[str]) -> None:
    """A full checkpoint must share the base model's interfaces (latents, text width, vocabulary)."""
    path = Path(path)
    index = json.loads((path / "model_index.json").read_text(encoding="utf-8"))
    if index.get("_class_name") not in ("StableDiffusionPipeline", None):
        raise AdapterMismatchError(
            f"{path}/model_index.json: {index.get('_class_name')} is not a StableDiffusionPipeline"
        )
    unet = json.loads((path / "unet" / "config.json").read_text(encoding="utf-8"))
    for key in ("in_channels", "cross_attention_dim", "sample_size"):
        if unet.get(key) != base_pipe.unet.config.get(key):
            raise AdapterMismatchError(
                f"{path}/unet/config.json: {key} = {unet.get(key)} but the base model has "
                f"{base_pipe.unet.config.get(key)}"
            )


def audit_external(
    base_model: str, name: str, spec: dict[str, Any], meta_path: str | os.PathLike[str]
) -> dict[str, Any]:
    """Check an external adapter against the base model (loading it for real); write its meta.json."""
    from entmap.methods.common import write_meta
    from entmap.pipeline import apply_adapter, load_pipeline

    check_source(name, spec)
    allow_pickle = spec.get("allow_pickle", False)
    import torch

    base = load_pipeline(base_model, torch.device("cpu"), torch.float32)
    if spec["kind"] == "checkpoint":
        check_checkpoint(base, spec["path"])
        load_pipeline(spec["path"], torch.device("cpu"), torch.float32, allow_pickle=allow_pickle)
    else:
        apply_adapter(base, spec["kind"], spec["path"], spec.get("token"), allow_pickle)
    meta = {
        "method": "external",
        "kind": spec["kind"],
        "source": str(spec["path"]),
        "sha256": sha256(spec["path"]),
        "token": spec.get("token"),
        "allow_pickle": allow_pickle,
        "subject": name,
        "subject_category": spec["category"],
        "base_model": base_model,
    }
    write_meta(meta_path, meta)
    return meta
