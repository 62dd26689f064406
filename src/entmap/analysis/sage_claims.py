"""The numbers SAGE's claims call for, from this run's geometry tables and map.

* **Geometry summary** (``tables/geometry.csv``): per model and level (``text``: the text encoders'
  outputs; ``kv``: the keys and values where text meets image, cross- or joint attention), the mean
  over layers of the spread ratio and of the local-structure distortion, and the contraction
  1 - spread ratio.
* **Claim 2, geometry goes with damage** (``tables/sage_correlations.csv``): across models, the
  Spearman rank correlation between each geometry change (distortion, contraction; per level) and
  each disruption (the model's mean E_sem, E_per, E_struct over prompts), with a 95% percentile
  interval from resampling the models (``analysis.bootstrap`` replicates). Fewer than 3 models, or
  a constant column, give no correlation (NaN).
* **Claim 1, coarse scores miss fine damage** (``tables/sage_agreement.csv``): over the cells that
  are scored structurally, whether the CLIP score moved (E_sem above the noise floor) and whether
  the structured score moved (E_struct > 0): both, only CLIP, only E_struct, neither; and the share
  of E_struct changes the CLIP score misses, only_struct / (both + only_struct). Per method and
  overall.

Explained in docs/geometry.md.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from entmap.core.atomic import write_text
from entmap.core.parquet_schemas import CELLS, GEOMETRY, read_table, read_tables

GEOMETRY_MEASURES = ("distortion", "contraction")
DISRUPTIONS = ("e_sem", "e_per", "e_struct")


def geometry_summary(geometry: pd.DataFrame) -> pd.DataFrame:
    """Per (model, level): layers, mean spread ratio, mean contraction (1 - ratio), mean distortion."""
    summary = geometry.groupby(["model", "level"], sort=True).agg(
        layers=("layer", "count"), spread_ratio=("spread_ratio", "mean"), distortion=("distortion", "mean")
    )
    summary["contraction"] = 1.0 - summary["spread_ratio"]
    return summary.reset_index()[["model", "level", "layers", "spread_ratio", "contraction", "distortion"]]


def model_disruption(cells: pd.DataFrame) -> pd.DataFrame:
    """Per model: the mean over prompts of E_sem, E_per and E_struct (E_struct over scored prompts)."""
    return cells.groupby("model")[list(DISRUPTIONS)].mean()


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho (scipy), NaN when either side is constant or has fewer than 3 values."""
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.spearmanr(x, y).statistic)


def claim_correlations(summary: pd.DataFrame, cells: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """One row per (level, geometry measure, disruption): n_models, rho and its bootstrap interval."""
    disruption = model_disruption(cells)
    rng = np.random.default_rng(seed)
    rows = []
    for level, by_level in summary.groupby("level", sort=True):
        joined = by_level.set_index("model").join(disruption, how="inner")
        resamples = [rng.integers(0, len(joined), len(joined)) for _ in range(n_boot)] if len(joined) else []
        for measure in GEOMETRY_MEASURES:
            for target in DISRUPTIONS:
                x, y = joined[measure].to_numpy(float), joined[target].to_numpy(float)
                rho = spearman(x, y)
                boot = np.array([spearman(x[i], y[i]) for i in resamples]) if not np.isnan(rho) else np.array([])
                boot = boot[~np.isnan(boot)]
                low, high = np.percentile(boot, [2.5, 97.5]) if len(boot) else (np.nan, np.nan)
                rows.append(
                    {
                        "level": level,
                        "geometry": measure,
                        "disruption": target,
                        "n_models": int((~(np.isnan(x) | np.isnan(y))).sum()),
                        "spearman_rho": rho,
                        "ci_low": float(low),
                        "ci_high": float(high),
                    }
                )
    return pd.DataFrame(rows)


def struct_agreement(cells: pd.DataFrame) -> pd.DataFrame:
    """Per method and overall: how often the CLIP score and E_struct agree that a cell moved."""
    scored = cells[cells["e_struct"].notna()]
    rows = []
    for method, group in [*scored.groupby("method", sort=True), ("all", scored)]:
        clip, struct = group["above_tau_sem"].astype(bool), group["e_struct"] > 0
        both, only_clip = int((clip & struct).sum()), int((clip & ~struct).sum())
        only_struct, neither = int((~clip & struct).sum()), int((~clip & ~struct).sum())
        rows.append(
            {
                "method": method,
                "cells": len(group),
                "both": both,
                "only_clip": only_clip,
                "only_struct": only_struct,
                "neither": neither,
                "struct_missed_by_clip": only_struct / (both + only_struct) if both + only_struct else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def write_sage_tables(
    geometry_paths: list[str],
    cells_path: str,
    settings: dict,
    summary_path: str,
    correlations_path: str,
    agreement_path: str,
) -> None:
    """Read every model's geometry table and the map's cells; write the three tables as CSV."""
    summary = geometry_summary(read_tables(geometry_paths, GEOMETRY))
    cells = read_table(cells_path, CELLS)
    correlations = claim_correlations(summary, cells, settings["bootstrap"], settings.get("bootstrap_seed", 0))
    write_text(summary_path, summary.to_csv(index=False))
    write_text(correlations_path, correlations.to_csv(index=False))
    write_text(agreement_path, struct_agreement(cells).to_csv(index=False))
