"""From map cells to the paper's summaries: E(s), Table 1, Table 2, category matrix, per-model.

Definitions (docs/map.md and docs/analysis.md):

* populations (:func:`entmap.core.vocabulary.population`): the *study* is the trained models
  (Textual Inversion, LoRA, Custom Diffusion; external adapters too when the config sets
  ``analysis.include_external``); external adapters and planted-effect controls are reported
  beside it and never move its numbers;
* min-max normalization over *the study's cells* (every prompt x every study model):
  norm(x) = (x - min) / (max - min), separately for E_sem and E_per; the bounds are stored with the
  results, and every model (study or not) is scored against them;
* E(s) = mean over p in P_non(s) of (norm(E_sem(p, s)) + norm(E_per(p, s))) / 2, where P_non(s)
  excludes the prompt category of the subject's own category (face -> people, ...);
* every table mean carries a percentile bootstrap 95% interval that resamples prompts and seeds
  (seeds are matched across models, so a replicate draws one set of prompts and one set of
  seeds for all models); normalization bounds stay fixed at the full map's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from entmap.core.vocabulary import STUDY, population

CI_LEVEL = 0.95


@dataclass(frozen=True)
class Cube:
    """Per-seed disruption as arrays [model, prompt, seed] (complete: seed-matched data)."""

    models: list[str]
    prompts: list[str]
    seeds: list[int]
    sem: np.ndarray
    per: np.ndarray

    @classmethod
    def from_disruption(cls, disruption: pd.DataFrame, models: list[str], prompts: list[str]) -> Cube:
        seeds = sorted(disruption["seed"].unique())
        duplicated = disruption.duplicated(["model", "prompt_id", "seed"])
        if duplicated.any():
            row = disruption[duplicated].iloc[0]
            raise ValueError(
                f"per-seed disruption has duplicate rows (e.g. {row.model} {row.prompt_id} seed {row.seed})"
            )
        index = pd.MultiIndex.from_product([models, prompts, seeds], names=["model", "prompt_id", "seed"])
        frame = disruption.set_index(["model", "prompt_id", "seed"])[["d_sem", "lpips"]].reindex(index)
        if frame.isna().any().any():
            missing = frame[frame.isna().any(axis=1)].index[:3].tolist()
            raise ValueError(f"per-seed disruption is incomplete (e.g. {missing}); rerun the workflow")
        shape = (len(models), len(prompts), len(seeds))
        return cls(
            models,
            prompts,
            seeds,
            frame["d_sem"].to_numpy().reshape(shape),
            frame["lpips"].to_numpy().reshape(shape),
        )

    def bootstrap_weights(self, n_boot: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Seed and prompt weights of the point estimate (row 0, all ones) and ``n_boot`` replicates:
        multinomial counts, i.e. how often a resample draws each seed / prompt.

        Returns (seed weights (B+1, K), prompt weights (B+1, P)).
        """
        rng = np.random.default_rng(seed)
        n_prompts, n_seeds = len(self.prompts), len(self.seeds)
        seed_w = np.vstack([np.ones(n_seeds), rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), n_boot)])
        prompt_w = np.vstack(
            [np.ones(n_prompts), rng.multinomial(n_prompts, np.full(n_prompts, 1 / n_prompts), n_boot)]
        )
        return seed_w, prompt_w

    def cell_means(self, seed_w: np.ndarray, models: slice) -> tuple[np.ndarray, np.ndarray]:
        """Seed-weighted cell means of the ``models`` rows: sem and per, each (B+1, m, P),
        sem[b, m, p] = sum_k w[b, k] d_sem[m, p, k] / sum_k w[b, k]."""
        total = seed_w.sum(axis=1)[:, None, None]
        sem = np.einsum("mpk,bk->bmp", self.sem[models], seed_w) / total
        per = np.einsum("mpk,bk->bmp", self.per[models], seed_w) / total
        return sem, per


#: models per block of the bootstrap: the replicates of one block are (B+1) x MODEL_BLOCK x P floats,
#: so the analysis' memory does not grow with the number of models
MODEL_BLOCK = 16


def with_population(frame: pd.DataFrame, include_external: bool = False) -> pd.DataFrame:
    """``frame`` (one row per model or cell, with a ``method`` column) plus its ``population``."""
    return frame.assign(population=frame["method"].map(lambda m: population(m, include_external)))


def normalization_bounds(cells: pd.DataFrame, include_external: bool = False) -> dict[str, dict[str, float] | str]:
    """Min and max of E_sem and E_per over the study's cells (:func:`with_population`).

    A run without study models (an audit of external adapters only) takes its bounds from the
    external adapters' cells, and from every cell only when there is nothing else.
    """
    cells = with_population(cells, include_external)
    scope = "the study's cells: every prompt x every trained model" + (
        " and external adapter (analysis.include_external)" if include_external else ""
    )
    chosen = cells[cells["population"] == STUDY]
    if chosen.empty:
        chosen, scope = cells[cells["method"] == "external"], "no trained models: the external adapters' cells"
    if chosen.empty:
        chosen, scope = cells, "no trained models or external adapters: every cell"
    return {
        "scope": scope,
        "models": sorted(chosen["model"].unique()),
        "e_sem": {"min": float(chosen["e_sem"].min()), "max": float(chosen["e_sem"].max())},
        "e_per": {"min": float(chosen["e_per"].min()), "max": float(chosen["e_per"].max())},
    }


def minmax(values: np.ndarray, bounds: dict[str, float]) -> np.ndarray:
    """(x - min) / (max - min); all zeros when the map is constant."""
    span = bounds["max"] - bounds["min"]
    return np.zeros_like(values, dtype=float) if span <= 0 else (np.asarray(values, float) - bounds["min"]) / span


def non_target_mask(models: pd.DataFrame, prompt_categories: list[str], own_category: dict[str, str]) -> np.ndarray:
    """mask[m, p] is True when prompt p is outside model m's own prompt category (P_non(s))."""
    own = models["subject_category"].map(lambda c: own_category.get(c, "")).to_numpy()
    return own[:, None] != np.asarray(prompt_categories)[None, :]


def _weighted_mean(values: np.ndarray, weights: np.ndarray, axis: int = -1) -> np.ndarray:
    total = weights.sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (values * weights).sum(axis=axis) / np.where(total > 0, total, 1), np.nan)


def _interval(replicates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    alpha = (1 - CI_LEVEL) / 2
    return np.nanquantile(replicates, alpha, axis=0), np.nanquantile(replicates, 1 - alpha, axis=0)


@dataclass
class Summaries:
    """Every table of the analysis stage, plus the normalization bounds used."""

    bounds: dict
    per_model: pd.DataFrame
    table1: pd.DataFrame
    table2: pd.DataFrame
    category_matrix: pd.DataFrame


def summarize(
    cells: pd.DataFrame,
    disruption: pd.DataFrame,
    own_category: dict[str, str],
    n_boot: int = 1000,
    seed: int = 0,
    n_extreme: int = 5,
    include_external: bool = False,
) -> Summaries:
    """Compute the per-model summary, Table 1, Table 2 and the category matrix with bootstrap CIs.

    The per-model summary has every model with its ``population``; Table 1, Table 2, the category
    matrix and the normalization bounds are over the study population only.
    """
    models = cells.drop_duplicates("model")[["model", "subject", "method", "subject_category"]]
    models = with_population(models.reset_index(drop=True), include_external)
    prompts = cells.drop_duplicates("prompt_id")[["prompt_id", "category", "text"]].reset_index(drop=True)
    cube = Cube.from_disruption(disruption, list(models["model"]), list(prompts["prompt_id"]))
    seed_w, prompt_w = cube.bootstrap_weights(n_boot, seed)
    bounds = normalization_bounds(cells, include_external)
    study = models[models["population"] == STUDY]
    mask = non_target_mask(models, list(prompts["category"]), own_category)  # (M, P)
    n_rep, n_models = len(prompt_w), len(models)
    model_e, model_sem_non, model_sem, model_per = (np.empty((n_rep, n_models)) for _ in range(4))
    # sums over the study's models of each subject category of the cell means, (B, P) each
    category_of = dict(zip(study.index, study["subject_category"], strict=True))
    category_sum = {c: np.zeros((n_rep, len(prompts))) for c in sorted(set(category_of.values()))}
    for start in range(0, n_models, MODEL_BLOCK):
        block = slice(start, min(start + MODEL_BLOCK, n_models))
        sem, per = cube.cell_means(seed_w, block)  # (B, m, P)
        weights = prompt_w[:, None, :] * mask[None, block]  # (B, m, P)
        combined = (minmax(sem, bounds["e_sem"]) + minmax(per, bounds["e_per"])) / 2
        model_e[:, block] = _weighted_mean(combined, weights)  # (B, m)
        model_sem_non[:, block] = _weighted_mean(sem, weights)
        all_w = np.broadcast_to(prompt_w[:, None, :], sem.shape)
        model_sem[:, block] = _weighted_mean(sem, all_w)
        model_per[:, block] = _weighted_mean(per, all_w)
        for row in range(block.start, block.stop):
            if row in category_of:
                category_sum[category_of[row]] += sem[:, row - block.start]

    flags = cells.groupby("model")[["above_tau_sem", "above_tau_per"]].mean()
    per_model = models.copy()
    for name, values in (
        ("mean_e_sem", model_sem),
        ("mean_e_per", model_per),
        ("mean_e_sem_non_target", model_sem_non),
        ("E", model_e),
    ):
        low, high = _interval(values[1:])
        per_model[name], per_model[f"{name}_ci_low"], per_model[f"{name}_ci_high"] = values[0], low, high
    per_model["mean_e_sem_signed"] = per_model["model"].map(cells.groupby("model")["e_sem_signed"].mean())
    per_model["share_above_tau_sem"] = per_model["model"].map(flags["above_tau_sem"])
    per_model["share_above_tau_per"] = per_model["model"].map(flags["above_tau_per"])
    per_model["n_prompts_non_target"] = mask.sum(axis=1)

    rows = []
    for (method, category), group in study.groupby(["method", "subject_category"], sort=True):
        idx = group.index.to_numpy()
        sem_g, e_g = model_sem_non[:, idx].mean(axis=1), model_e[:, idx].mean(axis=1)
        std = model_e[0, idx].std(ddof=1) if len(idx) > 1 else np.nan
        sem_lo, sem_hi = _interval(sem_g[1:])
        e_lo, e_hi = _interval(e_g[1:])
        rows.append(
            {
                "method": method,
                "subject_category": category,
                "n_subjects": len(idx),
                "mean_e_sem": sem_g[0],
                "mean_e_sem_ci_low": sem_lo,
                "mean_e_sem_ci_high": sem_hi,
                "mean_E": e_g[0],
                "mean_E_ci_low": e_lo,
                "mean_E_ci_high": e_hi,
                "std_E": std,
            }
        )
    table1 = pd.DataFrame(
        rows,
        columns=[
            "method",
            "subject_category",
            "n_subjects",
            "mean_e_sem",
            "mean_e_sem_ci_low",
            "mean_e_sem_ci_high",
            "mean_E",
            "mean_E_ci_low",
            "mean_E_ci_high",
            "std_E",
        ],
    )

    # (B, P): mean over the study's models; replicates resample seeds
    prompt_sem = sum(category_sum.values()) / len(study) if len(study) else np.full((n_rep, len(prompts)), np.nan)
    low, high = _interval(prompt_sem[1:])
    by_prompt = prompts.assign(mean_e_sem=prompt_sem[0], ci_low=low, ci_high=high)
    by_prompt = by_prompt.sort_values("mean_e_sem", ascending=False, kind="stable")
    n = min(n_extreme, len(by_prompt) // 2)
    table2 = pd.concat(
        [by_prompt.head(n).assign(kind="most fragile"), by_prompt.tail(n)[::-1].assign(kind="most robust")]
    ).reset_index(drop=True)[["kind", "prompt_id", "category", "text", "mean_e_sem", "ci_low", "ci_high"]]

    rows = []
    for category, group in study.groupby("subject_category", sort=True):
        idx = group.index.to_numpy()
        for prompt_category in prompts["category"].unique():
            pmask = (prompts["category"] == prompt_category).to_numpy()
            w = prompt_w[:, pmask]
            values = _weighted_mean((category_sum[category] / len(idx))[:, pmask], w)
            lo, hi = _interval(values[1:])
            rows.append(
                {
                    "subject_category": category,
                    "prompt_category": prompt_category,
                    "mean_e_sem": values[0],
                    "ci_low": lo,
                    "ci_high": hi,
                    "n_models": len(idx),
                }
            )
    category_matrix = pd.DataFrame(
        rows, columns=["subject_category", "prompt_category", "mean_e_sem", "ci_low", "ci_high", "n_models"]
    )
    return Summaries(bounds, per_model, table1, table2, category_matrix)
