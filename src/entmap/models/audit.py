"""Audit mode: adapters someone else trained, checked before they become models of the map.

A config entry under ``external`` names a file, a folder or a Hub id (``owner/name[/file]``,
downloaded only when ``HF_HUB_OFFLINE=0``) and its kind:

* ``lora``: a diffusers/peft or kohya LoRA file (``pipe.load_lora_weights``);
* ``ti``: a Textual Inversion embedding (``pipe.load_textual_inversion``);
* ``cd``: Custom Diffusion k/v weights (entmap's or diffusers' processor key names);
* ``checkpoint``: a full fine-tuned diffusers pipeline folder (loaded instead of the base).

The file formats themselves live in :mod:`entmap.models.adapter_formats`. An adapter whose keys or
shapes do not fit the base model is refused with the keys named. The token or trigger phrase comes
from the entry's ``token``, else from the file's ``modelspec.trigger_phrase`` metadata.

No silent no-ops: after loading, the seed-matched image of a probe prompt (the trigger phrase or
token in "a photo of ...", else a fixed prompt) must differ from the base model's; an adapter that
loads without error and changes nothing is refused, naming the file, what it adapted and the
likely causes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from entmap.models.adapter_formats import (
    AdapterMismatchError,
    apply_adapter,
    check_source,
    file_metadata,
    is_hub_id,
    resolve_source,
    sha256,
    ti_file_token,
)
from entmap.models.adapter_meta import write_meta
from entmap.models.loading import load_pipeline
from entmap.models.sampling import render_jobs

#: the probe prompt when an adapter names no token or trigger phrase
FIXED_PROBE = "a photo of a person walking a dog in a park"


def trigger_of(spec: dict[str, Any]) -> str | None:
    """The entry's ``token``, else the file's ``modelspec.trigger_phrase`` metadata, else the token a
    Textual Inversion file names, else None."""
    if spec.get("token"):
        return spec["token"]
    path = Path(spec["path"])
    if not path.is_file():
        return None
    trigger = file_metadata(path).get("modelspec.trigger_phrase")
    if trigger:
        return trigger
    if spec["kind"] == "ti":
        return ti_file_token(path, spec.get("allow_pickle", False))
    return None


def probe_prompt(trigger: str | None) -> str:
    """The prompt the no-op check renders: "a photo of {trigger}", or :data:`FIXED_PROBE`."""
    return f"a photo of {trigger}" if trigger else FIXED_PROBE


def probe_image(pipe, prompt: str, generation: dict[str, Any]) -> np.ndarray:
    """The seed-matched image of ``prompt`` at the run's first seed and settings, as an array."""
    jobs = [(prompt, generation.get("first_seed", 0))]
    return np.asarray(next(iter(render_jobs(pipe, jobs, generation, "probe")))[1])


def check_changes_the_image(base_image: np.ndarray, image: np.ndarray, path: str, kind: str, prompt: str) -> None:
    """Refuse an adapter whose probe image is byte-identical to the base model's."""
    if np.array_equal(base_image, image):
        raise AdapterMismatchError(
            f"{path}: the {kind} adapter loaded without error, but the seed-matched image of the probe prompt "
            f"{prompt!r} is byte-identical to the base model's: it changes nothing. Likely causes: its weights "
            "are zero or negligible, it adapts layers this base model never uses, or the token it defines is "
            "not the one in `token:` (set it to the adapter's token or trigger phrase)"
        )


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
    base_model: str,
    name: str,
    spec: dict[str, Any],
    meta_path: str | os.PathLike[str],
    generation: dict[str, Any],
) -> dict[str, Any]:
    """Check an external adapter against the base model (loading it for real, rendering a probe image
    with the ``generation`` settings); write its meta.json."""

    check_source(name, spec)
    hub_id = spec["path"] if is_hub_id(spec["path"]) else None
    spec = dict(spec, path=resolve_source(spec["path"]))
    allow_pickle = spec.get("allow_pickle", False)
    import torch

    cpu = torch.device("cpu")
    trigger = trigger_of(spec)
    prompt = probe_prompt(trigger)
    pipe = load_pipeline(base_model, cpu, torch.float32)
    base_image = probe_image(pipe, prompt, generation)
    if spec["kind"] == "checkpoint":
        check_checkpoint(pipe, spec["path"])
        pipe = load_pipeline(spec["path"], cpu, torch.float32, allow_pickle=allow_pickle)
    else:
        apply_adapter(pipe, spec["kind"], spec["path"], trigger, allow_pickle)
    check_changes_the_image(base_image, probe_image(pipe, prompt, generation), spec["path"], spec["kind"], prompt)
    meta = {
        "method": "external",
        "kind": spec["kind"],
        "source": str(spec["path"]),
        "hub_id": hub_id,
        "sha256": sha256(spec["path"]),
        "token": trigger,
        "probe_prompt": prompt,
        "allow_pickle": allow_pickle,
        "subject": name,
        "subject_category": spec["category"],
        "base_model": base_model,
    }
    write_meta(meta_path, meta)
    return meta
