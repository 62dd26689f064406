"""The run plan: semantic checks of a schema-valid config, and everything the rules derive from it.

The Snakefile calls :func:`load_plan` before any rule is defined, so a bad
config stops the run before a job starts, with a message naming the key (or
file) and the fix. Everything the rules need (selected prompts, shards,
personalized models, per-subject settings) is derived here, in one place.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from entmap.config.validation import ConfigError, validate_config
from entmap.core.vocabulary import CONTROL_CATEGORY, TEA_METHODS, split_method
from entmap.inputs.prompt_structure import PromptStructureError, load_structure
from entmap.inputs.prompt_suites import (
    Shard,
    anchor_prompts,
    load_context_prompts,
    load_prompts,
    make_shards,
    select_prompts,
)
from entmap.inputs.references import check_reference_folder
from entmap.models.adapter_formats import check_source, is_hub_id
from entmap.models.blocks import unswitchable_reason
from entmap.models.families import FAMILIES, Family, FamilyError, family_of

#: Where derived artefacts of tiny models live (outputs of build_tiny_base).
TINY_BASE_DIR = "results/models/tiny-sd"
TINY_SCORER_DIR = "results/models/tiny-clip"


def tiny_base_dir(config: dict[str, Any]) -> str:
    """Folder of the tiny base pipeline: ``tiny-sd`` for SD 1.x, ``tiny-{family}`` for the others."""
    family = config["base"].get("tiny_family", "sd1")
    return TINY_BASE_DIR if family == "sd1" else f"results/models/tiny-{family}"


def base_family(config: dict[str, Any]) -> Family | None:
    """The base model's family: the tiny family asked for, else read from the model's
    model_index.json (:func:`entmap.models.families.family_of`); None when that cannot be read yet
    (a hub id not downloaded: the jobs read it when they load the model)."""
    if config["base"]["kind"] == "tiny":
        return FAMILIES[config["base"].get("tiny_family", "sd1")]
    try:
        return family_of(config["base"]["model"])
    except FamilyError as exc:
        if Path(config["base"]["model"]).exists():
            raise ConfigError(f"base.model: {exc}") from None
        return None


@dataclass(frozen=True)
class Plan:
    """What one run does, derived from a validated config."""

    config: dict[str, Any]
    prompts: pd.DataFrame
    shards: tuple[Shard, ...]
    models: tuple[str, ...]  # personalized models as "subject/method"

    @property
    def shard_names(self) -> list[str]:
        return [s.name for s in self.shards]

    def shard(self, name: str) -> Shard:
        for shard in self.shards:
            if shard.name == name:
                return shard
        raise KeyError(f"unknown shard {name!r}")


def check_semantics(config: dict[str, Any]) -> None:
    """Checks the schema cannot express: cross-references, files, seed counts."""
    problems = []
    gen = config["generation"]
    if 2 * config["noise_floor"]["pairs"] > gen["seeds"]:
        problems.append(
            f"noise_floor.pairs = {config['noise_floor']['pairs']} needs at least "
            f"{2 * config['noise_floor']['pairs']} seeds, but generation.seeds = {gen['seeds']}"
        )
    if config["base"]["kind"] == "pretrained" and not config["base"].get("model"):
        problems.append("base.model must name a diffusers folder or hub id when base.kind is pretrained")
    if config["scorer"]["kind"] == "open_clip" and not config["scorer"].get("model"):
        problems.append("scorer.model must name an open_clip model when scorer.kind is open_clip")
    for name, subject in config["subjects"].items():
        where = f"subjects.{name}"
        if subject["category"] not in config["subject_categories"]:
            problems.append(
                f"{where}.category: unknown subject category {subject['category']!r}; "
                f"use one of {sorted(config['subject_categories'])} or add it to subject_categories"
            )
        for method in subject["methods"]:
            base, variant = split_method(method)
            if base not in config["methods"]:
                problems.append(f"{where}.methods: method {base!r} has no settings block methods.{base}")
            if variant is not None and variant not in config.get("variants", {}):
                problems.append(
                    f"{where}.methods: {method!r} names variant {variant!r}, which has no block variants.{variant}; "
                    f"add that block or remove {method!r}"
                )
        refs = subject["references"]
        if isinstance(refs, str):
            try:
                check_reference_folder(refs)
            except ValueError as exc:
                problems.append(f"{where}.references: {exc}")
    for name in perturbation_scales(config):
        if name in config["subjects"] or name in config.get("external", {}):
            problems.append(f"perturb.scales: model name {name} is also a subject or external entry; rename it")
    if not config["subjects"] and not config.get("external") and not perturbation_scales(config):
        problems.append(
            "subjects, external and perturb.scales are all empty: the map needs at least one personalized model"
        )
    family = base_family(config)
    if family is not None:
        problems += family_problems(config, family)
    for name, entry in config.get("external", {}).items():
        if name in config["subjects"]:
            problems.append(f"external.{name}: the name is also a subject; use another name")
        if entry["category"] not in config["subject_categories"]:
            problems.append(
                f"external.{name}.category: unknown subject category {entry['category']!r}; "
                f"use one of {sorted(config['subject_categories'])}"
            )
        if not _produced_by_workflow(entry["path"]):
            try:
                check_source(name, entry)
            except ValueError as exc:
                problems.append(str(exc))
    problems += audit_problems(config)
    tea = config.get("tea") or {}
    if tea.get("enabled"):
        try:
            load_context_prompts(tea["suite"], tea.get("prompts"))
        except ValueError as exc:
            problems.append(f"tea.suite: {exc}")
    if problems:
        raise ConfigError("invalid configuration:\n" + "\n".join(f"  {p}" for p in problems))


def family_problems(config: dict[str, Any], family: Family) -> list[str]:
    """Methods and adapter kinds the base model's family does not support (yet), one line each."""
    problems = []
    available = sorted(family.methods)
    for name, subject in config["subjects"].items():
        for method in subject["methods"]:
            if split_method(method)[0] not in family.methods:
                problems.append(
                    f"subjects.{name}.methods: {method!r} is not available for the {family.name} family of "
                    f"base.model (available: {', '.join(available)})"
                )
    scheduler = config["generation"].get("scheduler", "ddim")
    if scheduler != family.scheduler_key:
        problems.append(
            f"generation.scheduler: {scheduler!r} is not the {family.name} family's sampler; set it to "
            f"{family.scheduler_key!r} ({family.scheduler})"
        )
    if tea_enabled(config) and family.name != "sd1":
        problems.append(f"tea.enabled: TEA sweeps run on SD 1.x models only so far, not {family.name}; set it to false")
    for name, entry in config.get("external", {}).items():
        if entry["kind"] not in family.external_kinds:
            problems.append(
                f"external.{name}.kind: {entry['kind']!r} adapters cannot be audited on the {family.name} family "
                f"of base.model yet (available: {', '.join(family.external_kinds)})"
            )
    return problems


def anchor_overlaps(config: dict[str, Any], prompts) -> list[str]:
    """The geometry regularizer's anchors must be held out: one line per method whose anchors are evaluated."""
    evaluated = {text.casefold() for text in prompts["text"]}
    problems = []
    for name, subject in config["subjects"].items():
        for method in subject["methods"]:
            spec = method_settings(config, name, method).get("geometry_regularizer")
            if not spec:
                continue
            key = f"subjects.{name}: {method}.geometry_regularizer.anchor_suite"
            try:
                anchors = anchor_prompts(spec["anchor_suite"], spec.get("anchor_count"))
            except ValueError as exc:
                problems.append(f"{key}: {exc}")
                continue
            shared = [a for a in anchors if a.casefold() in evaluated]
            if shared:
                problems.append(
                    f"{key}: {len(shared)} anchor prompts are also evaluated ({shared[:3]}); anchors must be held "
                    "out from prompts.suite, or the map would measure what the regularizer was trained to keep"
                )
            if len(anchors) < 2:
                problems.append(f"{key}: needs at least 2 anchor prompts, has {len(anchors)}")
    return problems


#: defaults of the prompts.vqa block
VQA_DEFAULTS = {"batch_size": 32, "dtype": "float32"}


def vqa_spec(config: dict[str, Any]) -> dict[str, Any] | None:
    """The VQA model of ``prompts.structure: vqa``, defaults filled in; None under any other structure."""
    if config["prompts"].get("structure") != "vqa":
        return None
    return {**VQA_DEFAULTS, **(config["prompts"].get("vqa") or {})}


def structure_problems(config: dict[str, Any], prompts) -> list[str]:
    """``structure: vqa`` needs a model, well-formed structured cells, and selected prompts that state something."""
    spec = vqa_spec(config)
    if spec is None:
        return []
    if "model" not in spec:
        return ["prompts.vqa: structure vqa needs this block naming the VQA model (model: a ViLT VQA hub id or folder)"]
    problems = []
    model = spec["model"]
    if not Path(model).exists() and not is_hub_id(model):
        problems.append(f"prompts.vqa.model: {model!r} is neither a folder nor a hub id (owner/name)")
    suite = config["prompts"]["suite"]
    try:
        structure = load_structure(suite)
    except PromptStructureError as exc:
        return [*problems, f"prompts.suite: {exc}"]
    if not any(structure[pid] for pid in prompts["id"]):
        problems.append(
            f"prompts.structure: vqa, but none of the {len(prompts)} selected prompts of {suite} has structured "
            "cells (objects, counts, colours, attributes, relations) to ask about; annotate the suite "
            "(docs/geometry.md) or set prompts.structure: null"
        )
    return problems


def load_plan(config: dict[str, Any], schema_path: str | os.PathLike[str]) -> Plan:
    """Validate ``config`` completely and derive the run plan."""
    validate_config(config, schema_path)
    check_semantics(config)
    try:
        prompts = select_prompts(load_prompts(config["prompts"]["suite"]), config["prompts"].get("per_category"))
    except ValueError as exc:
        raise ConfigError(f"prompts.suite: {exc}") from exc
    problems = (
        anchor_overlaps(config, prompts)
        + structure_problems(config, prompts)
        + attention_problems(config, list(prompts["id"]))
    )
    if problems:
        raise ConfigError("invalid configuration:\n" + "\n".join(f"  {p}" for p in problems))
    present = sorted(set(prompts["category"]))
    missing = {k: v for k, v in config["subject_categories"].items() if v not in present}
    if missing:
        raise ConfigError(
            "invalid configuration:\n"
            + "\n".join(
                f"  subject_categories.{k}: prompt category {v!r} is not in the selected prompts of "
                f"{config['prompts']['suite']}; use one of {present}"
                for k, v in missing.items()
            )
        )
    problems = block_prompt_problems(config)
    if problems:
        raise ConfigError("invalid configuration:\n" + "\n".join(f"  {p}" for p in problems))
    shards = make_shards(list(prompts["id"]), config["prompts"]["shard_size"])
    models = tuple(f"{name}/{method}" for name, subject in config["subjects"].items() for method in subject["methods"])
    models += tuple(f"{name}/external" for name in config.get("external", {}))
    models += tuple(f"{name}/perturb" for name in perturbation_scales(config))
    return Plan(config=config, prompts=prompts, shards=tuple(shards), models=models)


def method_settings(config: dict[str, Any], subject: str, method: str) -> dict[str, Any]:
    """The training settings of ``method`` for ``subject``: the methods block, then the subject's
    overrides, then (for ``METHOD+VARIANT``) the variant's settings."""
    base, variant = split_method(method)
    settings = copy.deepcopy(config["methods"][base])
    settings.update(config["subjects"][subject].get("train", {}).get(base, {}))
    if variant is not None:
        settings.update(copy.deepcopy(config["variants"][variant]))
    return settings


def subject_token(config: dict[str, Any], subject: str) -> str:
    """The placeholder token of a subject (default ``<subject>``)."""
    return config["subjects"][subject].get("token") or f"<{subject}>"


def method_token(config: dict[str, Any], subject: str, method: str) -> str:
    """The token a method learns: a new token for ti/cd, the rare-token identifier for LoRA."""
    if split_method(method)[0] == "lora":
        return method_settings(config, subject, method).get("identifier", "sks")
    return subject_token(config, subject)


def subject_category(config: dict[str, Any], name: str) -> str:
    """The (declared) subject category of a subject or an external adapter; "control" for perturbations."""
    if name in config["subjects"]:
        return config["subjects"][name]["category"]
    if name in config.get("external", {}):
        return config["external"][name]["category"]
    return CONTROL_CATEGORY


def perturbation_scales(config: dict[str, Any]) -> dict[str, float]:
    """Model subject name -> relative noise scale of the planted-effect control (e.g. kv0p1 -> 0.1)."""
    scales = config.get("perturb", {}).get("scales", [])
    return {"kv" + f"{scale:g}".replace(".", "p").replace("-", "m"): float(scale) for scale in scales}


def class_image_counts(config: dict[str, Any]) -> dict[str, int]:
    """Class word -> number of prior-preservation images (the most any subject of it needs)."""
    counts: dict[str, int] = {}
    for name, subject in config["subjects"].items():
        for method in subject["methods"]:
            settings = method_settings(config, name, method)
            if settings.get("prior_preservation", False):
                word = subject["class_word"]
                counts[word] = max(counts.get(word, 0), settings.get("num_class_images", 100))
    return counts


def class_slug(class_word: str) -> str:
    """A file-name-safe name of a class word ("stuffed animal" -> "stuffed-animal")."""
    return re.sub(r"[^a-z0-9]+", "-", class_word.lower()).strip("-") or "class"


def is_hub_source(path: str) -> bool:
    """Whether an external adapter's path is a Hub id (not a local file, nor an output of this workflow)."""
    return not _produced_by_workflow(path) and is_hub_id(path)


def _produced_by_workflow(path: str) -> bool:
    """Paths under results/ are outputs of this workflow (e.g. the default's example adapter)."""
    return Path(path).parts[:1] == ("results",)


def base_model_id(config: dict[str, Any]) -> str:
    """Folder or hub id of the base diffusers pipeline."""
    return tiny_base_dir(config) if config["base"]["kind"] == "tiny" else config["base"]["model"]


def scorer_spec(config: dict[str, Any]) -> dict[str, str | None]:
    """open_clip model name and pretrained tag/file of the CLIP scorer."""
    if config["scorer"]["kind"] == "tiny":
        return {"model": f"local-dir:{TINY_SCORER_DIR}", "pretrained": None}
    return {"model": config["scorer"]["model"], "pretrained": config["scorer"].get("pretrained")}


def generation_settings(config: dict[str, Any]) -> dict[str, Any]:
    """Everything that must be equal for two images to be seed-matched (the model aside)."""
    gen = config["generation"]
    return {
        "base_model": base_model_id(config),
        "steps": gen["steps"],
        "guidance_scale": gen["guidance_scale"],
        "resolution": gen["resolution"],
        "negative_prompt": gen.get("negative_prompt", ""),
        "scheduler": gen.get("scheduler", "ddim"),
        "dtype": config["dtype"],
        "batch_size": gen["batch_size"],
    }


def reuse_settings(config: dict[str, Any]) -> dict[str, Any]:
    """``generation.reuse`` with its defaults: ``enabled`` (true) and ``verify`` (1 prompt per model and shard)."""
    reuse = config["generation"].get("reuse") or {}
    return {"enabled": reuse.get("enabled", True), "verify": reuse.get("verify", 1)}


def seeds(config: dict[str, Any]) -> list[int]:
    """The K seeds z_1..z_K: first_seed, first_seed + 1, ..."""
    first = config["generation"].get("first_seed", 0)
    return list(range(first, first + config["generation"]["seeds"]))


def tea_enabled(config: dict[str, Any]) -> bool:
    return bool((config.get("tea") or {}).get("enabled"))


def tea_models(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The models TEA applies to, model -> {level, token, class_word, references}.

    Token level: Textual Inversion (trained, or external kind ti). Prompt level: LoRA trained
    with a text-encoder adapter, Custom Diffusion, and external lora/cd/checkpoint adapters that
    declare ``token`` and ``class_word``. A variant (``lora+sage``) goes with its method, so its
    identity (CLIP-I of the unadjusted model) is measured beside the method's. ``references`` is
    the folder CLIP-I compares against (None: an external adapter without references).
    """
    if not tea_enabled(config):
        return {}
    methods = set(config["tea"].get("methods", TEA_METHODS))
    models: dict[str, dict[str, Any]] = {}
    for name, subject in config["subjects"].items():
        refs = subject["references"]
        folder = refs if isinstance(refs, str) else f"results/references/{name}"
        for method in subject["methods"]:
            base = split_method(method)[0]
            if base not in methods:
                continue
            if base == "lora" and not method_settings(config, name, method).get("train_text_encoder", False):
                continue
            models[f"{name}/{method}"] = {
                "level": "token" if base == "ti" else "prompt",
                "token": method_token(config, name, method),
                "class_word": subject["class_word"],
                "references": folder,
            }
    if "external" in methods:
        for name, entry in config.get("external", {}).items():
            if entry.get("token") and entry.get("class_word"):
                models[f"{name}/external"] = {
                    "level": "token" if entry["kind"] == "ti" else "prompt",
                    "token": entry["token"],
                    "class_word": entry["class_word"],
                    "references": entry.get("references"),
                }
    return models


def collapse_subjects(config: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Subjects with a Textual Inversion trajectory to diagnose, subject -> {token, class_word}."""
    if not tea_enabled(config):
        return {}
    return {
        name: {"token": subject_token(config, name), "class_word": subject["class_word"]}
        for name, subject in config["subjects"].items()
        if "ti" in subject["methods"]
    }


def tea_seeds(config: dict[str, Any]) -> list[int]:
    """The sweep's seeds: the first ``tea.seeds`` of the map's seed sequence."""
    first = config["generation"].get("first_seed", 0)
    return list(range(first, first + config["tea"]["seeds"]))


def tea_sweep_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The TEA settings a sweep's images depend on (not ``methods``: which models are swept).

    ``norm_mix`` is kept only for the variant that reads it.
    """
    if not tea_enabled(config):
        return {}
    tea = config["tea"]
    variant = tea.get("variant", "tea")
    return {
        "prompts": tea.get("prompts"),
        "alphas": list(tea["alphas"]),
        "betas": list(tea["betas"]),
        "variant": variant,
        "norm_mix": tea.get("norm_mix") if variant == "norm_mix" else None,
        "anchor_reduction": tea.get("anchor_reduction"),
    }


def collapse_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The settings a Textual Inversion trajectory's collapse diagnostics depend on."""
    if not tea_enabled(config):
        return {}
    tea = config["tea"]
    return {
        "prompts": tea.get("collapse_prompts"),
        "anchor_reduction": tea.get("anchor_reduction"),
        "distances": tea.get("collapse_distances", "paper"),
        "kl_temperature": tea.get("kl_temperature", 1.0),
    }


def attention_enabled(config: dict[str, Any]) -> bool:
    return bool((config.get("attention") or {}).get("enabled"))


def attention_spec(config: dict[str, Any]) -> dict[str, Any]:
    """What an attention job's tables depend on besides the model, the seeds and generation: which
    prompts, the kept steps and the layers (docs/attention.md)."""
    if not attention_enabled(config):
        return {}
    block = config["attention"]
    prompts = block["prompts"]
    return {
        "prompts": list(prompts) if isinstance(prompts, list) else dict(prompts),
        "steps": sorted(block["steps"]) if block.get("steps") is not None else None,
        "layers": list(block["layers"]) if block.get("layers") else None,
    }


def attention_seeds(config: dict[str, Any]) -> list[int]:
    """The attention jobs' seeds: the first ``attention.seeds`` of the map's seed sequence."""
    return seeds(config)[: config["attention"]["seeds"]]


def own_prompt_category(config: dict[str, Any], name: str) -> str | None:
    """The prompt category a subject or external adapter belongs to (None for the planted controls)."""
    return config["subject_categories"].get(subject_category(config, name))


def attention_problems(config: dict[str, Any], prompt_ids: list[str]) -> list[str]:
    """The ``attention`` block against the rest of the config: seeds, steps and listed prompts that exist."""
    if not attention_enabled(config):
        return []
    block, problems = config["attention"], []
    if block["seeds"] > config["generation"]["seeds"]:
        problems.append(
            f"attention.seeds = {block['seeds']} is more than the map's generation.seeds = "
            f"{config['generation']['seeds']}"
        )
    late = [s for s in block.get("steps") or [] if s >= config["generation"]["steps"]]
    if late:
        problems.append(
            f"attention.steps: {late} are not denoising steps of generation.steps = {config['generation']['steps']} "
            "(0 is the first)"
        )
    if isinstance(block["prompts"], list):
        unknown = [pid for pid in block["prompts"] if pid not in set(prompt_ids)]
        if unknown:
            problems.append(f"attention.prompts: {unknown} are not among the evaluated prompts of prompts.suite")
    elif not block["prompts"].get("most_disrupted") and not block["prompts"].get("least_disrupted"):
        problems.append("attention.prompts: most_disrupted and least_disrupted are both 0; choose some prompts")
    return problems


#: defaults of the ``block_attribution`` block's optional keys
BLOCK_DEFAULTS = {"prompts": 3, "rank_by": "e_sem", "seeds": 2, "transformer_groups": 4, "isolated": False}


def block_attribution_enabled(config: dict[str, Any]) -> bool:
    return bool((config.get("block_attribution") or {}).get("enabled"))


def block_attribution_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The block attribution job's settings: ``prompts`` (N most disrupted, or a list of prompt ids),
    ``rank_by``, ``seeds`` (the first N of the map's seed sequence, as a list), ``transformer_groups``
    and ``isolated``; {} when the stage is off."""
    if not block_attribution_enabled(config):
        return {}
    block = {**BLOCK_DEFAULTS, **config["block_attribution"]}
    first = config["generation"].get("first_seed", 0)
    return {
        "prompts": block["prompts"],
        "rank_by": block["rank_by"],
        "seeds": list(range(first, first + block["seeds"])),
        "transformer_groups": block["transformer_groups"],
        "isolated": block["isolated"],
    }


def adapter_kind(config: dict[str, Any], model: str) -> str:
    """The kind of adapter file a personalized model of the map is made of (ti, lora, cd, checkpoint);
    the planted-effect control is a ``cd`` file."""
    name, method = model.split("/", 1)
    if method == "external":
        return config["external"][name]["kind"]
    if method == "perturb":
        return "cd"
    return split_method(method)[0]


def block_attribution_models(config: dict[str, Any], models: tuple[str, ...] | list[str]) -> tuple[list[str], dict]:
    """(models measured block by block, {model without blocks: why}); both empty when the stage is off.

    Textual Inversion (trained or external) and full checkpoints have no blocks
    (:func:`entmap.models.block_switch.unswitchable_reason`).
    """
    if not block_attribution_enabled(config):
        return [], {}
    reasons = {model: unswitchable_reason(adapter_kind(config, model)) for model in models}
    return [m for m, reason in reasons.items() if reason is None], {m: r for m, r in reasons.items() if r}


def block_prompt_problems(config: dict[str, Any]) -> list[str]:
    """Prompt ids the block attribution names that the prompt suite does not have, as one line."""
    chosen = (config.get("block_attribution") or {}).get("prompts")
    if not block_attribution_enabled(config) or not isinstance(chosen, list):
        return []
    known = set(load_prompts(config["prompts"]["suite"])["id"])
    unknown = [pid for pid in chosen if pid not in known]
    if unknown:
        return [f"block_attribution.prompts: {unknown[:5]} are not prompt ids of {config['prompts']['suite']}"]
    return []


#: the audit block's defaults (docs/audit.md)
AUDIT_DEFAULTS: dict[str, Any] = {
    "scales": [0, 0.25, 0.5, 0.75, 1],
    "sweep_prompts": 4,
    "references": None,
    "checkpoint_tolerance": 0.02,
}
VERDICT_DEFAULTS: dict[str, float] = {
    "warn_frac_disrupted": 0.0,
    "fail_frac_disrupted": 0.25,
    "warn_leakage": 0.02,
    "fail_leakage": 0.05,
    "min_fidelity_gain": 0.0,
}


def audit_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The ``audit`` block with its defaults (``bootstrap`` defaults to ``analysis.bootstrap``)."""
    block = {**AUDIT_DEFAULTS, **(config.get("audit") or {})}
    block["verdict"] = {**VERDICT_DEFAULTS, **(block.get("verdict") or {})}
    block.setdefault("bootstrap", config["analysis"]["bootstrap"])
    return block


def audit_problems(config: dict[str, Any]) -> list[str]:
    """What the schema cannot say about the ``audit`` block, one line each."""
    if "audit" not in config:
        return []
    block, problems = audit_settings(config), []
    if 0 not in block["scales"] or 1 not in block["scales"]:
        problems.append(f"audit.scales: {block['scales']} must hold 0 (the base) and 1 (the adapter as published)")
    verdict = block["verdict"]
    for metric in ("frac_disrupted", "leakage"):
        if verdict[f"warn_{metric}"] > verdict[f"fail_{metric}"]:
            problems.append(
                f"audit.verdict: warn_{metric} = {verdict[f'warn_{metric}']} is above fail_{metric} = "
                f"{verdict[f'fail_{metric}']}; a warning threshold must not exceed the failure one"
            )
    refs = block["references"]
    if refs is not None and not Path(refs).is_dir():
        problems.append(f"audit.references: {refs} is not a folder of reference images")
    if not config.get("external"):
        problems.append("audit: there are no external adapters to audit; add `external:` entries or remove `audit:`")
    return problems


def audit_enabled(config: dict[str, Any]) -> bool:
    """Whether the run audits its external adapters: the config has an ``audit:`` block (docs/audit.md)."""
    return "audit" in config and bool(config.get("external"))


def audit_adapters(config: dict[str, Any]) -> dict[str, list[str]]:
    """Adapter -> its external entries (checkpoints), earliest epoch first and the final one last.

    An entry belongs to ``adapter`` (default: its own name). The final checkpoint is the entry named
    as the adapter (kohya's last save), else the latest epoch.
    """
    groups: dict[str, list[str]] = {}
    for name, entry in config.get("external", {}).items():
        groups.setdefault(entry.get("adapter") or name, []).append(name)

    def order(adapter: str, name: str) -> tuple[bool, float]:
        epoch = config["external"][name].get("epoch")
        return name == adapter, float("-inf") if epoch is None else float(epoch)

    return {adapter: sorted(names, key=lambda n, a=adapter: order(a, n)) for adapter, names in groups.items()}
