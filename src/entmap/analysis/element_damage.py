"""Which elements of a prompt each personalized model damaged: E_struct taken apart.

E_struct says how much a model changes the share of a prompt's elements it draws right; this
table says which elements. For model m and element e (colour, shape, position, background), over
the seed-matched pairs (p, k) of m's non-target prompts p that require e:

    base accuracy   = mean over (p, k) of hit_base_e(p, k)      (1 if the base image shows e, else 0)
    model accuracy  = mean over (p, k) of hit_pers_e(p, k)
    change          = model accuracy - base accuracy            (negative: e is drawn wrong more often)

The 95% interval of ``change`` is a percentile bootstrap that resamples prompts with all their
seeds (a prompt's seeds share its text, so they are not independent). m *damaged* e when the whole
interval lies below zero. An element the base model rarely gets right cannot lose much: the base
accuracy stands beside the change so a reader can tell "not damaged" from "not measurable".
Non-target prompts exclude the prompt category of the model's own subject category, as for E(s).

Explained in docs/analysis.md.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from entmap.core.parquet_schemas import STRUCT_ELEMENTS

COLUMNS = [
    "model",
    "element",
    "n_prompts",
    "n_pairs",
    "base_accuracy",
    "model_accuracy",
    "change",
    "ci_low",
    "ci_high",
    "damaged",
]


def _bootstrap_change(per_prompt: pd.DataFrame, n_boot: int, rng: np.random.Generator) -> tuple[float, float]:
    """Percentile 95% interval of sum(diff) / sum(n) with prompts (rows) resampled."""
    sums, counts = per_prompt["diff"].to_numpy(), per_prompt["n"].to_numpy()
    draws = rng.integers(0, len(sums), size=(n_boot, len(sums)))
    replicates = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    low, high = np.percentile(replicates, [2.5, 97.5])
    return float(low), float(high)


def element_damage(
    disruption: pd.DataFrame,
    cells: pd.DataFrame,
    own_category: dict[str, str],
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (model, element) with structured pairs on non-target prompts (see the module docstring).

    ``disruption``: per-seed rows with ``f_base_<element>`` / ``f_pers_<element>`` (NaN where the
    prompt does not require the element); ``cells``: the map cells (prompt category and the model's
    subject category); ``own_category``: subject category -> its own prompt category.
    """
    info = cells[["prompt_id", "model", "category", "subject_category"]].drop_duplicates(["prompt_id", "model"])
    rows = disruption.merge(info, on=["prompt_id", "model"], how="left", validate="many_to_one")
    own = rows["subject_category"].map(lambda c: own_category.get(c, "")).fillna("")
    rows = rows[rows["category"] != own]
    rng = np.random.default_rng(seed)
    out = []
    for model, group in rows.groupby("model", sort=True):
        for element in STRUCT_ELEMENTS:
            base, pers = group[f"f_base_{element}"], group[f"f_pers_{element}"]
            scored = base.notna() & pers.notna()
            if not scored.any():
                continue
            pairs = pd.DataFrame({"prompt_id": group.loc[scored, "prompt_id"], "diff": (pers - base)[scored], "n": 1.0})
            per_prompt = pairs.groupby("prompt_id")[["diff", "n"]].sum()
            low, high = _bootstrap_change(per_prompt, n_boot, rng)
            out.append(
                {
                    "model": model,
                    "element": element,
                    "n_prompts": len(per_prompt),
                    "n_pairs": int(scored.sum()),
                    "base_accuracy": float(base[scored].mean()),
                    "model_accuracy": float(pers[scored].mean()),
                    "change": float((pers - base)[scored].mean()),
                    "ci_low": low,
                    "ci_high": high,
                    "damaged": bool(high < 0),
                }
            )
    return pd.DataFrame(out, columns=COLUMNS)
