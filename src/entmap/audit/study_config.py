"""The study config ``entmap audit`` writes (OUT/config.yaml) and runs with the repository's Snakefile.

It is a template config (the toy world's ``config.yaml`` by default; a family's study config for a
real base) with nothing to train (``subjects: {}``), the adapters as ``external:`` entries (a
checkpoint ``NAME-eN`` records ``adapter: NAME`` and ``epoch: N``), the stages an audit does not
need switched off (TEA, attention, block attribution, the planted-effect control) and an
``audit:`` block with every default written out. Relative paths of the template are made absolute
against the repository, so the workflow runs with ``--directory OUT``.

The base model, when ``--base`` does not name one: offline, the toy world's shipped base
(``resources/models/toyworld/sd``, with its scorer); online (``HF_HUB_OFFLINE=0``), the reference
model of the family the files declare (:data:`HUB_BASES`), else the toy world. A file that declares
another family than SD 1.x is refused offline without ``--base``, naming the flag.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from entmap.audit.describe import Adapter, AdapterInputError
from entmap.config.plan import AUDIT_DEFAULTS, VERDICT_DEFAULTS
from entmap.core.atomic import write_text
from entmap.models.families import FamilyError, family_of

TOYWORLD_BASE = "resources/models/toyworld/sd"
#: a family's reference base model on the Hub (used online when the files declare the family)
HUB_BASES = {
    "sd1": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
    "sd3": "stabilityai/stable-diffusion-3-medium-diffusers",
    "flux": "black-forest-labs/FLUX.1-dev",
}
#: the study config a family's real base starts from
TEMPLATES = {"toyworld": "config.yaml", "sd1": "configs/paper.yaml", "sdxl": "configs/sdxl.yaml"}
TEMPLATES |= {"sd3": "configs/sd3.yaml", "flux": "configs/flux.yaml"}
#: stages an audit does not run
DROPPED = ("tea", "attention", "block_attribution", "perturb", "variants", "toyworld_training")


def choose_base(adapters: list[Adapter], base: str | None, online: bool) -> tuple[str, str, str]:
    """(base model, template key, why) by the module docstring's rules."""
    declared = sorted({c.file.family for a in adapters for c in a.checkpoints if c.file.family})
    if base is not None:
        if Path(base).resolve() == (repository() / TOYWORLD_BASE).resolve():
            return TOYWORLD_BASE, "toyworld", "--base"
        return base, _family_of_base(base, declared), "--base"
    if online and len(declared) == 1:
        return HUB_BASES[declared[0]], declared[0], f"the files declare the {declared[0]} family"
    other = [family for family in declared if family != "sd1"]
    if other:
        file = next(c.file for a in adapters for c in a.checkpoints if c.file.family == other[0])
        raise AdapterInputError(
            f"{file.path}: made for the {other[0]} family ({file.family_source}), but the offline default base is "
            f"the toy world (SD 1.x); pass --base with a {other[0]} diffusers folder, or set HF_HUB_OFFLINE=0 to "
            f"use {HUB_BASES[other[0]]}"
        )
    return TOYWORLD_BASE, "toyworld", "the default offline base (the toy world)"


def _family_of_base(base: str, declared: list[str]) -> str:
    try:
        return family_of(base).name
    except FamilyError:
        if Path(base).exists():
            raise AdapterInputError(f"--base {base}: not a diffusers pipeline folder (model_index.json)") from None
        return declared[0] if len(declared) == 1 else "sd1"


def repository() -> Path:
    """The checkout entmap runs from (its Snakefile and resources)."""
    root = Path(os.environ.get("ENTMAP_REPOSITORY") or Path(__file__).resolve().parents[3])
    if not (root / "Snakefile").is_file():
        raise AdapterInputError(
            f"{root}: no Snakefile; entmap audit runs the workflow of a checkout: run it from a clone's "
            "environment (pip install -e .) or set ENTMAP_REPOSITORY to the clone"
        )
    return root


def _absolute(path: str, root: Path) -> str:
    """A template's relative path against the repository; Hub ids and absolute paths as they are."""
    candidate = root / path
    return str(candidate) if not Path(path).is_absolute() and candidate.exists() else path


def entries(adapters: list[Adapter], category: str, trigger: str | None) -> dict[str, dict[str, Any]]:
    """The ``external:`` entries of the adapters' checkpoints (``--trigger`` overrides the files')."""
    out: dict[str, dict[str, Any]] = {}
    for adapter in adapters:
        for checkpoint in adapter.checkpoints:
            f = checkpoint.file
            path = f.path if not Path(f.path).exists() else str(Path(f.path).resolve())
            entry: dict[str, Any] = {"kind": f.kind, "path": path, "category": category}
            token = trigger or f.trigger
            if token:
                entry["token"] = token
            entry.update(adapter=adapter.name, epoch=f.epoch)
            out[checkpoint.entry] = entry
    return out


def study_config(
    adapters: list[Adapter],
    base: str,
    template_key: str,
    *,
    category: str = "style",
    trigger: str | None = None,
    prompts: str | None = None,
    per_category: int | None = None,
    seeds: int | None = None,
    references: str | None = None,
    scales: list[float] | None = None,
) -> dict[str, Any]:
    """The study config (module docstring); ``None`` options keep the template's values."""
    root = repository()
    config = yaml.safe_load((root / TEMPLATES[template_key]).read_text(encoding="utf-8"))
    for key in DROPPED:
        config.pop(key, None)
    config["base"] = {"kind": "pretrained", "model": _absolute(base, root)}
    scorer = config["scorer"].get("model") or ""
    if scorer.startswith("local-dir:"):
        config["scorer"]["model"] = "local-dir:" + _absolute(scorer.removeprefix("local-dir:"), root)
    config["prompts"]["suite"] = (
        str(Path(prompts).resolve()) if prompts else _absolute(config["prompts"]["suite"], root)
    )
    if per_category is not None:
        config["prompts"]["per_category"] = per_category
    if seeds is not None:
        if seeds < 2:
            raise AdapterInputError(f"--seeds {seeds}: the noise floor needs at least 2 seeds")
        config["generation"]["seeds"] = seeds
    config["noise_floor"]["pairs"] = max(1, min(config["noise_floor"]["pairs"], config["generation"]["seeds"] // 2))
    own = config["subject_categories"]
    if category not in own:
        raise AdapterInputError(
            f"--category {category!r}: use one of {sorted(own)} (the template's subject categories)"
        )
    config["subject_categories"] = {category: own[category]}
    config["methods"] = {}
    config["subjects"] = {}
    config["external"] = entries(adapters, category, trigger)
    audit = copy.deepcopy(AUDIT_DEFAULTS)
    audit["references"] = str(Path(references).resolve()) if references else None
    if scales is not None:
        audit["scales"] = list(scales)
    audit["verdict"] = dict(VERDICT_DEFAULTS)
    config["audit"] = audit
    return config


HEADER = """\
# Written by `entmap audit` (docs/audit.md): the adapters below as external entries, nothing to
# train, and the audit's settings. Edit and rerun the same command, or run the workflow yourself:
#   snakemake -s {snakefile} --directory {out} --configfile {out}/config.yaml --cores 2
"""


def write_study_config(config: dict[str, Any], out: str | os.PathLike[str]) -> Path:
    """Write ``OUT/config.yaml`` atomically and return its path."""
    out = Path(out).resolve()
    path = out / "config.yaml"
    text = HEADER.format(snakefile=repository() / "Snakefile", out=out) + yaml.safe_dump(config, sort_keys=False)
    write_text(path, text)
    return path
