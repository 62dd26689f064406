"""What an adapter file says about itself, and which files are checkpoints of one training.

:func:`describe` reads a file's keys and safetensors metadata (never its tensors' values):

* kind: ``lora`` (diffusers/peft or kohya names), ``ti`` (a Textual Inversion embedding), ``cd``
  (Custom Diffusion k/v weights) or ``checkpoint`` (a diffusers pipeline folder); LyCORIS files
  (LoHa, LoKr, ...) are refused with their algorithm named;
* family: ``modelspec.architecture``, kohya's ``ss_base_model_version`` / ``ss_sd_model_name``
  (:func:`entmap.models.adapter_formats.declared_family`); None when the file says nothing;
* trigger: ``modelspec.trigger_phrase``; a Textual Inversion file's own token; kohya's DreamBooth
  folder name (``ss_dataset_dirs`` key ``10_zwx style`` -> ``zwx style``) when there is one; else
  the tag that occurs most often in kohya's ``ss_tag_frequency``;
* epoch: kohya's file-name suffix (``name-000004.safetensors`` is epoch 4), else ``ss_epoch``;
* training: kohya's ``ss_output_name`` (else the file name without its epoch suffix), joined with
  every file that shares its ``ss_session_id``.

:func:`group_checkpoints` turns described files into adapters: files of one training are one
adapter's checkpoints. Each gets a model name of the map: a file without an epoch suffix (kohya's
last save, ``name.safetensors``) is ``NAME``; a numbered one is ``NAME-eN``. The adapter's final
checkpoint is its un-numbered file, else its latest epoch. Adding a checkpoint never renames
another, so a rerun with one more checkpoint computes only that checkpoint's jobs.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from entmap.models.adapter_formats import (
    PICKLE_SUFFIXES,
    ExternalAdapterError,
    declared_family,
    file_metadata,
    hub_online,
    is_hub_id,
    resolve_source,
)
from entmap.models.kohya import is_kohya, lycoris_algorithm

#: kohya's intermediate saves: ``{output_name}-{epoch:06d}.safetensors``
EPOCH_SUFFIX = re.compile(r"^(?P<stem>.+)-(?P<epoch>\d{6})$")
#: kohya's DreamBooth-style dataset folders: ``{repeats}_{instance prompt}``
_DATASET_DIR = re.compile(r"^\d+_(?P<prompt>.+)$")
_LORA_KEY = re.compile(r"(lora_A|lora_B|lora\.down|lora\.up|lora_down|lora_up|lora_linear_layer)")
_CD_KEY = re.compile(r"(attn2\.(to_k|to_v)\.weight|_custom_diffusion\.weight|add_[kv]_proj\.weight)$")
KINDS = ("lora", "ti", "cd", "checkpoint")


class AdapterInputError(ValueError):
    """An adapter given to ``entmap audit`` cannot be audited; the message names it and the fix."""


@dataclass(frozen=True)
class AdapterFile:
    """One adapter file (or pipeline folder) and what it says about itself."""

    path: str  # local path, or the Hub id as given
    local: Path  # where its bytes are
    kind: str
    family: str | None
    family_source: str | None
    trigger: str | None
    trigger_source: str | None
    training: str  # the training it belongs to (before session grouping)
    epoch: int | None
    numbered: bool  # the file name carries kohya's epoch suffix
    session: str | None


@dataclass(frozen=True)
class Checkpoint:
    """One file of an adapter, as a model of the map: ``NAME`` or ``NAME-eN`` (method external)."""

    entry: str
    file: AdapterFile

    @property
    def model(self) -> str:
        return f"{self.entry}/external"


@dataclass(frozen=True)
class Adapter:
    """An adapter: its name, its checkpoints (by epoch, final last) and the final one."""

    name: str
    checkpoints: tuple[Checkpoint, ...]
    final: Checkpoint
    notes: tuple[str, ...] = field(default=())


def slug(text: str) -> str:
    """A model name of the map (``[a-z0-9_-]+``) from a file or training name."""
    name = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")
    return name or "adapter"


def _keys(path: Path) -> list[str]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return list(handle.keys())
    except (SafetensorError, OSError) as exc:
        raise AdapterInputError(f"{path}: not a readable safetensors file ({exc}); download it again") from None


def kind_of_keys(keys: list[str], path: Path) -> str:
    """``lora``, ``cd`` or ``ti`` from a state dict's key names; LyCORIS files are refused by name."""
    algorithm = lycoris_algorithm(dict.fromkeys(keys))
    if algorithm is not None:
        raise AdapterInputError(
            f"{path}: a LyCORIS {algorithm} file; entmap audits LoRA files (diffusers, peft, kohya) but has no "
            "exact loader for LyCORIS algorithms; merge it into the base model and audit the merged "
            "checkpoint folder instead"
        )
    if is_kohya(dict.fromkeys(keys)) or any(_LORA_KEY.search(key) for key in keys):
        return "lora"
    if any(_CD_KEY.search(key) for key in keys):
        return "cd"
    if 0 < len(keys) <= 4:
        return "ti"
    raise AdapterInputError(
        f"{path}: its {len(keys)} keys are neither LoRA, Custom Diffusion nor Textual Inversion weights "
        f"(first: {keys[:3]}); pass --kind if you know what it is"
    )


def trigger_of_metadata(metadata: dict[str, str]) -> tuple[str | None, str | None]:
    """(trigger phrase, the metadata key it came from) by the module docstring's order; (None, None)."""
    if metadata.get("modelspec.trigger_phrase"):
        return metadata["modelspec.trigger_phrase"], "modelspec.trigger_phrase"
    try:
        dirs = json.loads(metadata.get("ss_dataset_dirs") or "{}")
        frequency = json.loads(metadata.get("ss_tag_frequency") or "{}")
    except json.JSONDecodeError:
        return None, None
    prompts = sorted({m["prompt"].strip() for d in dirs if (m := _DATASET_DIR.match(Path(d).name))})
    if len(prompts) == 1 and prompts[0]:
        return prompts[0], "ss_dataset_dirs"
    tags: Counter[str] = Counter()
    for folder in frequency.values():
        if isinstance(folder, dict):
            tags.update({str(tag).strip(): int(count) for tag, count in folder.items() if str(tag).strip()})
    if tags:
        return tags.most_common(1)[0][0], "ss_tag_frequency"
    return None, None


def _ti_token(keys: list[str]) -> str | None:
    plain = [key for key in keys if key not in ("emb_params", "string_to_param", "string_to_token", "clip_l", "clip_g")]
    return plain[0] if len(plain) == 1 else None


def describe(source: str, kind: str | None = None, allow_pickle: bool = False) -> AdapterFile:
    """Describe one adapter file, pipeline folder or Hub id (module docstring)."""
    local = Path(source)
    if not local.exists():
        if not is_hub_id(source):
            raise AdapterInputError(f"{source}: no such file or folder")
        if not hub_online():
            raise AdapterInputError(
                f"{source} does not exist locally; as a Hub id (owner/name or owner/name/file) it is downloaded "
                "only with HF_HUB_OFFLINE=0: run `HF_HUB_OFFLINE=0 entmap audit ...`, or download the file and "
                "pass its path"
            )
        try:
            local = Path(resolve_source(source))
        except ExternalAdapterError as exc:
            raise AdapterInputError(str(exc)) from None
    if local.is_dir():
        if not (local / "model_index.json").is_file():
            raise AdapterInputError(f"{source}: a folder without model_index.json is not a pipeline checkpoint")
        return AdapterFile(
            str(source), local, "checkpoint", None, None, None, None, slug(local.name), None, False, None
        )
    if local.suffix.lower() in PICKLE_SUFFIXES and not allow_pickle:
        raise AdapterInputError(
            f"{source}: pickle-based weights can run arbitrary code when loaded; convert the file to safetensors, "
            "or pass --allow-pickle if you trust it"
        )
    metadata = file_metadata(local)
    keys = _keys(local) if local.suffix == ".safetensors" else []
    kind = kind or kind_of_keys(keys, local)
    if kind not in KINDS:
        raise AdapterInputError(f"--kind {kind!r}: use one of {', '.join(KINDS)}")
    family = declared_family(metadata)
    trigger, trigger_source = trigger_of_metadata(metadata)
    if trigger is None and kind == "ti":
        trigger, trigger_source = _ti_token(keys), "the file's token"
        if trigger is None:
            trigger_source = None
    match = EPOCH_SUFFIX.match(local.stem)
    epoch = int(match["epoch"]) if match else None
    if epoch is None and str(metadata.get("ss_epoch", "")).isdigit():
        epoch = int(metadata["ss_epoch"])
    training = metadata.get("ss_output_name") or (match["stem"] if match else local.stem)
    return AdapterFile(
        path=str(source),
        local=local,
        kind=kind,
        family=family[0] if family else None,
        family_source=family[1] if family else None,
        trigger=trigger,
        trigger_source=trigger_source,
        training=slug(training),
        epoch=epoch,
        numbered=match is not None,
        session=metadata.get("ss_session_id") or None,
    )


def _trainings(files: list[AdapterFile]) -> dict[str, list[AdapterFile]]:
    """Files by training: the same ``training`` name, or a shared ``ss_session_id`` (union of both)."""
    parent = {f.training: f.training for f in files}

    def root(name: str) -> str:
        while parent[name] != name:
            name = parent[name]
        return name

    first_of_session: dict[str, str] = {}
    for f in files:
        if f.session is None:
            continue
        other = first_of_session.setdefault(f.session, f.training)
        a, b = sorted((root(other), root(f.training)))
        parent[b] = a
    groups: dict[str, list[AdapterFile]] = {}
    for f in files:
        groups.setdefault(root(f.training), []).append(f)
    return groups


def group_checkpoints(files: list[AdapterFile]) -> list[Adapter]:
    """Adapters from described files: one per training, its checkpoints named as the module docstring says."""
    seen: dict[Path, str] = {}
    for f in files:
        if f.local.resolve() in seen:
            raise AdapterInputError(f"{f.path}: given twice (also as {seen[f.local.resolve()]}); pass each file once")
        seen[f.local.resolve()] = f.path
    adapters = []
    for name, members in sorted(_trainings(files).items()):
        unnumbered = [f for f in members if not f.numbered]
        if len(unnumbered) > 1:
            paths = ", ".join(f.path for f in unnumbered)
            raise AdapterInputError(
                f"{paths}: several files of training {name!r} without kohya's epoch suffix (-NNNNNN); rename the "
                "intermediate ones to NAME-<epoch, 6 digits>.safetensors, or audit them in separate calls"
            )
        checkpoints = []
        for f in members:
            if f.numbered:
                checkpoints.append(Checkpoint(f"{name}-e{f.epoch}", f))
            else:
                checkpoints.append(Checkpoint(name, f))
        entries = Counter(c.entry for c in checkpoints)
        twice = [entry for entry, n in entries.items() if n > 1]
        if twice:
            paths = ", ".join(c.file.path for c in checkpoints if c.entry in twice)
            raise AdapterInputError(f"{paths}: two checkpoints of training {name!r} at the same epoch; pass one")
        kinds = {c.file.kind for c in checkpoints}
        if len(kinds) > 1:
            raise AdapterInputError(f"training {name!r}: its files are of different kinds {sorted(kinds)}")
        checkpoints.sort(key=lambda c: (not c.file.numbered, c.file.epoch if c.file.epoch is not None else -1))
        adapters.append(Adapter(name, tuple(checkpoints), checkpoints[-1]))
    return adapters
