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
  are scored structurally, whether the CLIP score moved (E_sem above its noise floor tau_sem) and
  whether the structured score moved (E_struct above its noise floor tau_struct, from the base
  model's seed pairs): both, only CLIP, only E_struct, neither; and the share
  of E_struct changes the CLIP score misses, only_struct / (both + only_struct). Per method and
  overall.
* **Claim 3, the regularizer restores fidelity** (``tables/sage_regularizer.csv``): each variant of
  a method (``lora+sage``, the config's ``variants``) against the method itself, per subject, one
  row per quantity. For E_sem, E_per and E_struct over the subject's non-target prompts (both
  models scored): the two means and delta = mean_p [E(variant, p) - E(method, p)] (< 0: the variant
  disrupts less), with a 95% percentile interval from resampling the paired prompts. For each
  geometry level: the mean distortion and spread ratio of both. Where the TEA sweep measured it,
  the identity the subject kept: CLIP-I of the unadjusted model's images against the references.

Explained in docs/geometry.md.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from entmap.core.atomic import write_text
from entmap.core.parquet_schemas import CELLS, GEOMETRY, read_table, read_tables
from entmap.core.vocabulary import UNADJUSTED, split_method

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
        clip, struct = group["above_tau_sem"].astype(bool), group["above_tau_struct"].astype(bool)
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


def paired_delta(method: np.ndarray, variant: np.ndarray, n_boot: int, rng: np.random.Generator) -> dict:
    """Mean of ``variant - method`` over paired prompts and its 95% percentile interval (prompts resampled)."""
    difference = np.asarray(variant, float) - np.asarray(method, float)
    if len(difference) == 0:
        return {"delta": np.nan, "ci_low": np.nan, "ci_high": np.nan}
    means = difference[rng.integers(0, len(difference), (n_boot, len(difference)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"delta": float(difference.mean()), "ci_low": float(low), "ci_high": float(high)}


def variant_pairs(models: list[str]) -> list[tuple[str, str]]:
    """(method model, variant model) for every variant whose method is mapped too: ``a/lora``, ``a/lora+sage``."""
    present = set(models)
    pairs = []
    for model in sorted(present):
        subject, method = model.split("/", 1)
        base, variant = split_method(method)
        if variant is not None and f"{subject}/{base}" in present:
            pairs.append((f"{subject}/{base}", model))
    return pairs


def regularizer_comparison(
    cells: pd.DataFrame,
    summary: pd.DataFrame,
    own_category: dict[str, str],
    n_boot: int,
    seed: int,
    identity: pd.Series | None = None,
) -> pd.DataFrame:
    """Claim 3: one row per (method model, variant model, quantity), the variant against its method.

    Disruptions (E_sem, E_per, E_struct) are paired over the subject's non-target prompts scored for
    both; geometry (``<level>_distortion``, ``<level>_spread_ratio``) and ``identity_clip_image``
    (CLIP-I of the unadjusted model, from the TEA sweep; ``identity`` is indexed by model) are one
    number per model, with no interval.
    """
    rng = np.random.default_rng(seed)
    geometry = summary.set_index(["model", "level"])
    rows = []
    for method_model, variant_model in variant_pairs(list(cells["model"].unique())):
        subject, method = method_model.split("/", 1)
        variant = split_method(variant_model.split("/", 1)[1])[1]
        own = own_category.get(cells.loc[cells["model"] == method_model, "subject_category"].iloc[0], "")
        pair = {"subject": subject, "method": method, "variant": variant}
        non_target = cells[cells["category"] != own]
        # pivot, not pivot_table: an all-NaN column (no prompt scored structurally) must stay
        by_prompt = non_target.pivot(index="prompt_id", columns="model", values=list(DISRUPTIONS))
        for target in DISRUPTIONS:
            paired = by_prompt[target][[method_model, variant_model]].dropna()
            a, b = paired[method_model].to_numpy(float), paired[variant_model].to_numpy(float)
            rows.append(
                {
                    **pair,
                    "quantity": target,
                    "n_prompts": len(paired),
                    "method_value": float(a.mean()) if len(a) else np.nan,
                    "variant_value": float(b.mean()) if len(b) else np.nan,
                    **paired_delta(a, b, n_boot, rng),
                }
            )
        single = {}
        for level in sorted(summary["level"].unique()):
            for measure in ("distortion", "spread_ratio"):
                single[f"{level}_{measure}"] = tuple(
                    float(geometry[measure].get((m, level), np.nan)) for m in (method_model, variant_model)
                )
        if identity is not None:
            single["identity_clip_image"] = tuple(float(identity.get(m, np.nan)) for m in (method_model, variant_model))
        for quantity, (a_value, b_value) in single.items():
            rows.append(
                {
                    **pair,
                    "quantity": quantity,
                    "n_prompts": np.nan,
                    "method_value": a_value,
                    "variant_value": b_value,
                    "delta": b_value - a_value,
                    "ci_low": np.nan,
                    "ci_high": np.nan,
                }
            )
    columns = ["subject", "method", "variant", "quantity", "n_prompts", "method_value", "variant_value"]
    return pd.DataFrame(rows, columns=[*columns, "delta", "ci_low", "ci_high"])


def unadjusted_identity(tradeoff_csv: str | None) -> pd.Series | None:
    """CLIP-I of each model's unadjusted TEA-sweep images (None without a sweep)."""
    if not tradeoff_csv:
        return None
    table = pd.read_csv(tradeoff_csv)
    return table[table["setting"] == UNADJUSTED].set_index("model")["clip_image"]


def write_sage_tables(
    geometry_paths: list[str],
    cells_path: str,
    settings: dict,
    summary_path: str,
    correlations_path: str,
    agreement_path: str,
    regularizer_path: str,
    own_category: dict[str, str],
    tradeoff_csv: str | None = None,
) -> None:
    """Read every model's geometry table, the map's cells and the TEA trade-off (when swept); write
    the four tables as CSV. ``own_category``: subject category -> its own prompt category."""
    summary = geometry_summary(read_tables(geometry_paths, GEOMETRY))
    cells = read_table(cells_path, CELLS)
    n_boot, seed = settings["bootstrap"], settings.get("bootstrap_seed", 0)
    correlations = claim_correlations(summary, cells, n_boot, seed)
    regularizer = regularizer_comparison(cells, summary, own_category, n_boot, seed, unadjusted_identity(tradeoff_csv))
    write_text(summary_path, summary.to_csv(index=False))
    write_text(correlations_path, correlations.to_csv(index=False))
    write_text(agreement_path, struct_agreement(cells).to_csv(index=False))
    write_text(regularizer_path, regularizer.to_csv(index=False))
