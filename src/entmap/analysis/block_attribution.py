"""How much of a model's disruption each block of its adapter carries (docs/blocks.md).

From the per-seed rows of :mod:`entmap.measure.block_attribution`, for a model, a block b and a
quantity X (sem: d_sem, per: LPIPS), over the subset's prompts P and seeds K:

    E_X(c)            = mean over (p, k) of d_X(p, k, c)       (c = full, off b, only b)
    contribution_X(b) = E_X(full) - E_X(off b)                 (what switching b off removes)
    share_X(b)        = contribution_X(b) / E_X(full)          (NaN when E_X(full) = 0)
    E_X(only b)       = the disruption of block b's part of the adapter alone

E_X(full) is the model's E_sem (E_per) over the subset, each image measured against the
seed-matched base image, as in the map. Shares need not sum to 1: their sum minus 1 measures how
far the blocks' effects are from adding up. contribution_X(b) has a 95% percentile bootstrap
interval that resamples prompts and seeds (one set of each per replicate, the same for full and
off b, as the analysis stage's intervals do). A block where the adapter changes nothing has
E_X(off b) = E_X(full) exactly, so a contribution of 0.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from entmap.analysis.summaries import CI_LEVEL
from entmap.core.atomic import atomic_path
from entmap.core.parquet_schemas import BLOCK_ATTRIBUTION, read_tables

QUANTITIES = {"sem": "d_sem", "per": "lpips"}
COLUMNS = [
    "model",
    "method",
    "block",
    "adapted_modules",
    "n_prompts",
    "n_seeds",
    *[
        f"{column}_{q}"
        for q in QUANTITIES
        for column in ("e_full", "contribution", "contribution_ci_low", "contribution_ci_high", "share", "e_only")
    ],
    "note",
]
NO_MODULES = "the adapter changes nothing in this block"
NO_DISRUPTION = "E(full) = 0 on the subset: nothing to attribute"


def shares(contribution: float, total: float) -> float:
    """contribution / total, NaN when total is 0."""
    return float(contribution / total) if total != 0 else float("nan")


def _weights(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Row 0: all ones (the point estimate); rows 1..B: multinomial resampling counts of n units."""
    return np.vstack([np.ones(n), rng.multinomial(n, np.full(n, 1 / n), n_boot)])


def _means(values: np.ndarray, prompt_w: np.ndarray, seed_w: np.ndarray) -> np.ndarray:
    """Weighted means over (prompt, seed) of ``values`` (P, K): one per replicate (B + 1,)."""
    weights = prompt_w[:, :, None] * seed_w[:, None, :]
    return (weights * values[None]).sum(axis=(1, 2)) / weights.sum(axis=(1, 2))


def _cube(rows: pd.DataFrame, column: str, prompts: list[str], seeds: list[int]) -> np.ndarray:
    """(P, K) array of ``column`` over one configuration's rows; every (prompt, seed) must be there."""
    index = pd.MultiIndex.from_product([prompts, seeds], names=["prompt_id", "seed"])
    frame = rows.set_index(["prompt_id", "seed"])[column].reindex(index)
    if frame.isna().any():
        raise ValueError(f"block attribution rows are incomplete (e.g. {frame[frame.isna()].index[0]}); rerun")
    return frame.to_numpy(dtype=float).reshape(len(prompts), len(seeds))


def model_attribution(rows: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per block of one model's per-seed rows (:data:`COLUMNS` but ``method``), blocks in order."""
    model = rows["model"].iloc[0]
    prompts = list(dict.fromkeys(rows["prompt_id"]))
    seeds = sorted(rows["seed"].unique())
    rng = np.random.default_rng(seed)
    prompt_w, seed_w = _weights(len(prompts), n_boot, rng), _weights(len(seeds), n_boot, rng)
    full = rows[rows["config"] == "full"]
    totals = {q: _means(_cube(full, col, prompts, seeds), prompt_w, seed_w) for q, col in QUANTITIES.items()}
    alpha = (1 - CI_LEVEL) / 2
    out = []
    for block in dict.fromkeys(rows.loc[rows["config"] == "off", "block"]):
        off = rows[(rows["config"] == "off") & (rows["block"] == block)]
        only = rows[(rows["config"] == "only") & (rows["block"] == block)]
        record = {
            "model": model,
            "block": block,
            "adapted_modules": int(off["adapted_modules"].iloc[0]),
            "n_prompts": len(prompts),
            "n_seeds": len(seeds),
        }
        for q, column in QUANTITIES.items():
            contribution = totals[q] - _means(_cube(off, column, prompts, seeds), prompt_w, seed_w)
            record[f"e_full_{q}"] = float(totals[q][0])
            record[f"contribution_{q}"] = float(contribution[0])
            low, high = np.quantile(contribution[1:], [alpha, 1 - alpha]) if n_boot else (np.nan, np.nan)
            record[f"contribution_ci_low_{q}"], record[f"contribution_ci_high_{q}"] = float(low), float(high)
            record[f"share_{q}"] = shares(contribution[0], totals[q][0])
            record[f"e_only_{q}"] = float(_cube(only, column, prompts, seeds).mean()) if len(only) else float("nan")
        notes = []
        if record["adapted_modules"] == 0:
            notes.append(NO_MODULES)
        if record["e_full_sem"] == 0 and record["e_full_per"] == 0:
            notes.append(NO_DISRUPTION)
        record["note"] = "; ".join(notes)
        out.append(record)
    return pd.DataFrame(out)


def attribution_table(
    per_seed: pd.DataFrame, unmeasured: dict[str, str], n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Every measured model's blocks (:func:`model_attribution`), then one row per model without blocks.

    ``unmeasured``: model -> why it has no blocks (Textual Inversion, full checkpoints); its row has
    block "" and the reason as its note. ``method`` is the model's method (``subject/method``).
    """
    frames = [model_attribution(rows, n_boot, seed) for _, rows in per_seed.groupby("model", sort=True)]
    skipped = pd.DataFrame(
        [{"model": model, "block": "", "adapted_modules": 0, "note": reason} for model, reason in unmeasured.items()]
    )
    table = pd.concat([*frames, skipped], ignore_index=True) if frames or len(skipped) else pd.DataFrame()
    table = table.reindex(columns=COLUMNS)
    counts = ["adapted_modules", "n_prompts", "n_seeds"]
    table[counts] = table[counts].astype("Int64")  # integers, blank for a model without blocks
    table["method"] = table["model"].str.split("/", n=1).str[1]
    table["note"] = table["note"].fillna("")
    return table


def write_attribution_table(
    paths: list[str],
    unmeasured: dict[str, str],
    n_boot: int,
    seed: int,
    out_path: str | os.PathLike[str],
) -> pd.DataFrame:
    """Read the models' per-seed tables, write :func:`attribution_table` as CSV (atomically), return it."""
    table = attribution_table(read_tables(paths, BLOCK_ATTRIBUTION), unmeasured, n_boot, seed)
    with atomic_path(out_path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    return table
