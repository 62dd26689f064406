"""results/audit/: the audit's tables, its JSON document and the model-card block, from a finished map.

:func:`audit_document` puts together, per adapter and checkpoint, the numbers of
:mod:`~entmap.audit.strength`, :mod:`~entmap.audit.leakage` and :mod:`~entmap.audit.checkpoints`
and the :mod:`~entmap.audit.verdict` of each adapter's final checkpoint; :func:`write_audit` reads
the run's tables and writes strength.csv, checkpoints.csv, audit.json and model_card.md
(docs/outputs.md lists their columns and keys).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from entmap.audit.checkpoints import CHECKPOINT_COLUMNS, disruption_numbers, mark_recommended
from entmap.audit.leakage import leakage, reference_vector, triggered_leakage
from entmap.audit.model_card import model_card
from entmap.audit.strength import STRENGTH_COLUMNS, strength_table, target_fidelity
from entmap.audit.verdict import verdict
from entmap.core.atomic import write_text
from entmap.core.parquet_schemas import AUDIT_SWEEP, CELLS, SCORES, read_table, read_tables
from entmap.models.adapter_formats import SCALE_UNDEFINED


def _clean(value: Any) -> Any:
    """JSON-ready: NaN -> None, numpy scalars -> Python."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def checkpoint_numbers(
    model: str,
    unrelated: set[str],
    cells: pd.DataFrame,
    significance: pd.DataFrame,
    scores: pd.DataFrame,
    sweep: pd.DataFrame,
    alpha: float,
    replicates: int,
) -> dict[str, Any]:
    """Every number of one checkpoint (a model of the map) over its ``unrelated`` prompt ids."""
    mean_e_sem, mean_e_per, frac = disruption_numbers(cells, significance, model, unrelated, alpha)
    look, look_source = reference_vector(sweep)
    refs = look if (sweep["part"] == "reference").any() else None
    columns = ["prompt_id", "seed", "image_embedding"]
    mine = scores[(scores["model"] == model) & scores["prompt_id"].isin(unrelated)][columns]
    base = scores[(scores["model"] == "base") & scores["prompt_id"].isin(unrelated)][columns]
    fidelity, base_fidelity = target_fidelity(sweep, 1.0, refs), target_fidelity(sweep, 0.0, refs)
    return {
        "mean_e_sem": mean_e_sem,
        "mean_e_per": mean_e_per,
        "frac_disrupted": frac,
        "n_unrelated": len(unrelated),
        **leakage(mine, base, look, replicates),
        "leakage_with_trigger": triggered_leakage(sweep, look, replicates),
        "leakage_reference": look_source,
        "target_fidelity": fidelity,
        "base_fidelity": base_fidelity,
        "fidelity_gain": fidelity - base_fidelity,
        "fidelity_measure": "CLIP-I to the reference images"
        if refs is not None
        else "CLIP score of the trigger prompt",
        "strength": strength_table(sweep, refs, replicates),
    }


def audit_document(
    cells: pd.DataFrame,
    significance: pd.DataFrame,
    scores: pd.DataFrame,
    sweeps: dict[str, pd.DataFrame],
    metas: dict[str, dict[str, Any]],
    adapters: dict[str, list[str]],
    externals: dict[str, dict[str, Any]],
    settings: dict[str, Any],
    own_category: dict[str, str],
    alpha: float,
    noise_floor: dict[str, Any],
    family: str | None,
) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """(audit.json's document, strength.csv, checkpoints.csv) (module docstring).

    ``adapters``: adapter -> its external entries, final last (:func:`entmap.config.plan.audit_adapters`);
    ``own_category``: subject category -> its prompt category (excluded as related).
    """
    strength_rows, checkpoint_rows, numbers = [], [], {}
    for adapter, names in adapters.items():
        for name in names:
            model = f"{name}/external"
            own = own_category.get(externals[name]["category"])
            unrelated = set(cells.loc[(cells["model"] == model) & (cells["category"] != own), "prompt_id"])
            numbers[name] = checkpoint_numbers(
                model, unrelated, cells, significance, scores, sweeps[name], alpha, settings["bootstrap"]
            )
            epoch = externals[name].get("epoch")
            final = name == names[-1]
            table = numbers[name]["strength"]
            strength_rows.append(table.assign(adapter=adapter, checkpoint=model, epoch=epoch, final=final))
            row = {"adapter": adapter, "checkpoint": model, "epoch": epoch, "final": final}
            row.update({key: numbers[name][key] for key in CHECKPOINT_COLUMNS if key in numbers[name]})
            checkpoint_rows.append(row)
    checkpoints = mark_recommended(
        pd.DataFrame(checkpoint_rows, columns=[c for c in CHECKPOINT_COLUMNS if c != "recommended"]),
        settings["checkpoint_tolerance"],
    )[CHECKPOINT_COLUMNS]
    checkpoints["epoch"] = checkpoints["epoch"].astype("Int64")
    strength = pd.concat(strength_rows, ignore_index=True) if strength_rows else pd.DataFrame()
    strength = strength[["adapter", "checkpoint", "epoch", "final", *STRENGTH_COLUMNS]]
    strength["epoch"] = strength["epoch"].astype("Int64")
    entries = []
    for adapter, names in adapters.items():
        final = names[-1]
        metrics = {k: v for k, v in numbers[final].items() if k != "strength"}
        outcome, reasons = verdict(metrics, settings["verdict"])
        rows = checkpoints[checkpoints["adapter"] == adapter]
        recommended = rows.loc[rows["recommended"], "checkpoint"].iloc[0] if len(rows) > 1 else None
        if recommended is not None and recommended != f"{final}/external":
            reasons.append(
                f"checkpoint {recommended} keeps the target fidelity (within {settings['checkpoint_tolerance']} of "
                "the best) with less collateral disruption than the final one; consider publishing it"
            )
        kind = externals[final]["kind"]
        meta = metas.get(final, {})
        entries.append(
            {
                "name": adapter,
                "file": externals[final]["path"],
                "model": f"{final}/external",
                "kind": kind,
                "family": family,
                "base": meta.get("base_model"),
                "trigger": meta.get("token"),
                "sha256": meta.get("sha256"),
                "verdict": outcome,
                "reasons": reasons,
                "metrics": metrics,
                "recommended_checkpoint": recommended,
                "strength": numbers[final]["strength"].to_dict("records"),
                "checkpoints": rows.to_dict("records"),
                "notes": [f"strength sweep: only scales 0 and 1 for kind {kind}: {SCALE_UNDEFINED[kind]}"]
                if kind in SCALE_UNDEFINED
                else [],
            }
        )
    prompts = cells["prompt_id"].nunique()
    document = {
        "thresholds": dict(settings["verdict"]),
        "checkpoint_tolerance": settings["checkpoint_tolerance"],
        "alpha": alpha,
        "scales": list(settings["scales"]),
        "noise_floor": {k: noise_floor.get(k) for k in ("tau_sem", "tau_per")},
        "n_prompts": int(prompts),
        "n_seeds": int(scores.loc[scores["model"] == "base", "seed"].nunique()),
        "adapters": entries,
    }
    return _clean(document), strength, checkpoints


def write_audit(
    cells_path: str,
    significance_path: str,
    noise_floor_path: str,
    score_paths: list[str],
    sweep_paths: dict[str, str],
    meta_paths: dict[str, str],
    adapters: dict[str, list[str]],
    externals: dict[str, dict[str, Any]],
    settings: dict[str, Any],
    own_category: dict[str, str],
    alpha: float,
    family: str | None,
    out: dict[str, str | os.PathLike[str]],
) -> dict[str, Any]:
    """Read a finished run's tables, write ``out['strength']``, ``['checkpoints']``, ``['json']``, ``['card']``."""
    document, strength, checkpoints = audit_document(
        cells=read_table(cells_path, CELLS),
        significance=pd.read_csv(significance_path),
        scores=read_tables(score_paths, SCORES),
        sweeps={name: read_table(path, AUDIT_SWEEP) for name, path in sweep_paths.items()},
        metas={name: json.loads(Path(path).read_text(encoding="utf-8")) for name, path in meta_paths.items()},
        adapters=adapters,
        externals=externals,
        settings=settings,
        own_category=own_category,
        alpha=alpha,
        noise_floor=json.loads(Path(noise_floor_path).read_text(encoding="utf-8")),
        family=family,
    )
    write_text(out["strength"], strength.to_csv(index=False))
    write_text(out["checkpoints"], checkpoints.to_csv(index=False))
    write_text(out["json"], json.dumps(document, indent=2) + "\n")
    write_text(out["card"], model_card(document))
    return document
