"""Leakage: how much of an adapter's look shows up on prompts that never ask for it (docs/audit.md).

The look is a reference vector r_bar in CLIP image space: the mean of the L2-normalized embeddings
of the reference images (``audit.references``), else of the adapter's own images of its trigger
prompt at scale 1. CLIP-I(x) = <x_hat, r_bar> = mean_j cos(x, r_j), the mean cosine to each
reference. Leakage is the shift this adapter causes, against the base's seed-matched images:

    L = mean_p mean_k [CLIP-I(x_pers(p, k)) - CLIP-I(x_base(p, k))]

over unrelated prompts p (outside the adapter's own prompt category). Without the trigger: the
map's prompts as written (every unrelated prompt of the run, every seed). With the trigger: the
sweep's unrelated prompts with the trigger in front, adapter at scale 1 against the base (scale 0).
The interval resamples prompts (:func:`entmap.audit.strength.bootstrap_mean`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from entmap.audit.strength import bootstrap_mean


def reference_vector(sweep: pd.DataFrame) -> tuple[np.ndarray | None, str]:
    """(r_bar, what it is made of): the reference images' mean embedding, else the trigger images' at scale 1."""
    refs = sweep[sweep["part"] == "reference"]
    source = "reference images"
    if refs.empty:
        refs = sweep[(sweep["part"] == "trigger") & (sweep["scale"] == 1.0)]
        source = "the adapter's own images of its trigger prompt"
    if refs.empty:
        return None, "none"
    return np.stack(refs["image_embedding"].to_numpy()).astype(float).mean(axis=0), source


def leakage(
    pers: pd.DataFrame, base: pd.DataFrame, look: np.ndarray | None, replicates: int = 1000, seed: int = 0
) -> dict[str, float]:
    """L with its 95% interval (module docstring) from two tables of (prompt_id, seed, image_embedding).

    Images are matched on (prompt_id, seed); prompts without a match are left out. Returns leakage,
    leakage_low, leakage_high and n_prompts (NaNs when nothing matches or there is no look).
    """
    if look is None:
        return {"leakage": float("nan"), "leakage_low": float("nan"), "leakage_high": float("nan"), "n_prompts": 0}
    merged = pers.merge(base, on=["prompt_id", "seed"], suffixes=("_pers", "_base"))
    if merged.empty:
        return {"leakage": float("nan"), "leakage_low": float("nan"), "leakage_high": float("nan"), "n_prompts": 0}
    pers_i = np.stack(merged["image_embedding_pers"].to_numpy()).astype(float) @ look
    base_i = np.stack(merged["image_embedding_base"].to_numpy()).astype(float) @ look
    per_prompt = pd.Series(pers_i - base_i).groupby(merged["prompt_id"].to_numpy()).mean().to_numpy()
    value, low, high = bootstrap_mean(per_prompt, replicates, seed)
    return {"leakage": value, "leakage_low": low, "leakage_high": high, "n_prompts": int(per_prompt.size)}


def triggered_leakage(sweep: pd.DataFrame, look: np.ndarray | None, replicates: int = 1000, seed: int = 0) -> dict:
    """L with the trigger: the sweep's ``triggered`` images at scale 1 against scale 0 (:func:`leakage`)."""
    rows = sweep[sweep["part"] == "triggered"]
    return leakage(rows[rows["scale"] == 1.0], rows[rows["scale"] == 0.0], look, replicates, seed)
