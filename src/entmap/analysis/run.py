"""The ``analyze`` stage: tables and statistics from the stored per-seed tables (no new images).

Writes, under ``results/``:

* ``tables/per_model``, ``table1``, ``table2``, ``category_matrix``, ``frechet`` (CSV + Markdown)
  and ``tables/cell_significance.csv``;
* ``stats/hypotheses.json`` (H1-H3), ``stats/normalization.json`` (min-max bounds of E),
  ``stats/mixed_model.json``, ``stats/significance.json`` (BH-flagged cells per model),
  ``stats/paired_shift.json`` (per model: paired test of its CLIP scores against the base's).

Explained in docs/analysis.md and docs/outputs.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from entmap.analysis.element_damage import element_damage
from entmap.analysis.hypothesis_tests import (
    cell_significance,
    frechet_from_score_files,
    hypotheses,
    mixed_model,
    paired_shift,
)
from entmap.analysis.summaries import summarize
from entmap.core.atomic import atomic_path, write_text
from entmap.core.parquet_schemas import CELLS, DISRUPTION, NOISE_PAIRS, read_table, read_tables


def write_table_files(frame: pd.DataFrame, stem: str | os.PathLike[str]) -> None:
    """``stem.csv`` for machines and ``stem.md`` (a Markdown table, 4 significant digits) for people."""
    with atomic_path(f"{stem}.csv") as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")
    write_text(f"{stem}.md", frame.to_markdown(index=False, floatfmt=".4g") + "\n")


def write_json(data: Any, path: str | os.PathLike[str]) -> None:
    def default(value: Any) -> Any:
        if isinstance(value, np.generic):
            return value.item()
        raise TypeError(f"not JSON serializable: {type(value)}")

    write_text(path, json.dumps(data, indent=2, default=default, allow_nan=True) + "\n")


def run_analysis(
    cells_path: str | os.PathLike[str],
    disruption_paths: list[str],
    noise_paths: list[str],
    score_paths: list[str],
    prompts: pd.DataFrame,
    own_category: dict[str, str],
    settings: dict[str, Any],
    tables_dir: str | os.PathLike[str],
    stats_dir: str | os.PathLike[str],
) -> None:
    """Compute every table and statistic of the map and write them."""
    tables_dir, stats_dir = Path(tables_dir), Path(stats_dir)
    cells = read_table(cells_path, CELLS)
    disruption = read_tables(disruption_paths, DISRUPTION)
    noise = read_tables(noise_paths, NOISE_PAIRS)
    alpha = settings.get("alpha", 0.05)
    include_external = settings.get("include_external", False)
    summaries = summarize(
        cells,
        disruption,
        own_category,
        n_boot=settings.get("bootstrap", 1000),
        seed=settings.get("bootstrap_seed", 0),
        n_extreme=settings.get("extreme_prompts", 5),
        include_external=include_external,
    )
    significance = cell_significance(disruption, noise, alpha, include_external)
    flagged = significance.groupby("model")[["flagged_sem", "flagged_per"]].sum().astype(int)
    per_model = summaries.per_model.join(flagged, on="model")
    frechet = frechet_from_score_files(score_paths, prompts)
    damage = element_damage(
        disruption, cells, own_category, settings.get("bootstrap", 1000), settings.get("bootstrap_seed", 0)
    )
    for name, frame in (
        ("per_model", per_model),
        ("table1", summaries.table1),
        ("table2", summaries.table2),
        ("category_matrix", summaries.category_matrix),
        ("frechet", frechet),
        ("element_damage", damage),
    ):
        write_table_files(frame, tables_dir / name)
    with atomic_path(tables_dir / "cell_significance.csv") as tmp:
        significance.to_csv(tmp, index=False, float_format="%.6g")
    write_json(hypotheses(cells, per_model, own_category, alpha), stats_dir / "hypotheses.json")
    write_json(summaries.bounds, stats_dir / "normalization.json")
    write_json(mixed_model(cells), stats_dir / "mixed_model.json")
    write_json(paired_shift(cells, alpha, include_external), stats_dir / "paired_shift.json")
    write_json(
        {
            "test": "one-sided Mann-Whitney U of a cell's per-seed shifts vs all base seed-pair shifts",
            "correction": "Benjamini-Hochberg (scipy.stats.false_discovery_control) within each population",
            "fdr": alpha,
            "cells": int(len(significance)),
            "flagged_sem": int(significance["flagged_sem"].sum()),
            "flagged_per": int(significance["flagged_per"].sum()),
            "by_model": flagged.to_dict(orient="index"),
        },
        stats_dir / "significance.json",
    )
