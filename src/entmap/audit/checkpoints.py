"""Checkpoint comparison: one adapter's saved epochs side by side, and the one to publish (docs/audit.md).

Per checkpoint c (a model of the map), over the unrelated prompts p of the run:

* mean_e_sem(c) = mean_p E_sem(p, c), the map's cells;
* frac_disrupted(c) = #{p : q_sem(p, c) < alpha or q_per(p, c) < alpha} / #p, the share of unrelated
  prompts whose shift exceeds the base's seed-to-seed noise after Benjamini-Hochberg
  (results/tables/cell_significance.csv);
* leakage(c): :func:`entmap.audit.leakage.leakage` without the trigger;
* target_fidelity(c): :func:`entmap.audit.strength.target_fidelity` at scale 1.

The recommended checkpoint keeps target fidelity for the least collateral disruption: among the
checkpoints whose target fidelity is at least (best fidelity - ``audit.checkpoint_tolerance``), the
one with the lowest mean_e_sem; ties go to the lower frac_disrupted, then the earlier epoch. When no
checkpoint has a fidelity (NaN), all are eligible.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: columns of results/audit/checkpoints.csv
CHECKPOINT_COLUMNS = ["adapter", "checkpoint", "epoch", "final", "mean_e_sem", "mean_e_per", "frac_disrupted"]
CHECKPOINT_COLUMNS += ["leakage", "leakage_low", "leakage_high", "target_fidelity", "recommended"]


def disruption_numbers(cells: pd.DataFrame, significance: pd.DataFrame, model: str, unrelated: set[str], alpha: float):
    """(mean_e_sem, mean_e_per, frac_disrupted) of ``model`` over the ``unrelated`` prompt ids (module docstring)."""
    own = cells[(cells["model"] == model) & cells["prompt_id"].isin(unrelated)]
    flags = significance[(significance["model"] == model) & significance["prompt_id"].isin(unrelated)]
    disrupted = (flags["q_sem"] < alpha) | (flags["q_per"] < alpha)
    frac = float(disrupted.mean()) if len(flags) else float("nan")
    return float(own["e_sem"].mean()), float(own["e_per"].mean()), frac


def recommend(table: pd.DataFrame, tolerance: float) -> str:
    """The recommended checkpoint of one adapter's rows (module docstring); returns its ``checkpoint``."""
    fidelity = table["target_fidelity"].astype(float)
    eligible = table if fidelity.isna().all() else table[fidelity >= fidelity.max() - tolerance]
    epochs = eligible["epoch"].astype(float).fillna(np.inf)
    order = eligible.assign(_epoch=epochs).sort_values(["mean_e_sem", "frac_disrupted", "_epoch"], na_position="last")
    return str(order.iloc[0]["checkpoint"])


def mark_recommended(table: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """``table`` (every adapter's checkpoints) with ``recommended`` set per adapter."""
    table = table.copy()
    table["recommended"] = False
    for _, rows in table.groupby("adapter", sort=False):
        table.loc[table["checkpoint"] == recommend(rows, tolerance), "recommended"] = True
    return table
