"""Statistics of the map (docs/analysis.md).

* H1: face personalizations disrupt people prompts more than non-people prompts;
* H2: style personalizations disrupt non-target prompts more than face personalizations do;
* H3: objects lie between faces and styles on E (two one-sided tests on per-model E);
  H1-H3 are over the study population only (trained models; see entmap.analysis.summaries);
  all one-sided Mann-Whitney U tests (scipy) on per-cell E_sem, with the rank-biserial
  correlation r = 2U / (n1 n2) - 1 as effect size and the exact sample sizes;
* per-cell significance against the noise floor: one-sided Mann-Whitney U of a cell's per-seed
  shifts against all base-model seed-pair shifts, Benjamini-Hochberg FDR over the cells of each
  population separately (study, external, control, variant), so adding a control moves no study q-value;
* a linear mixed model of E_sem on method x subject category + prompt category with crossed
  random intercepts for prompt and subject, fitted by REML from cross-products
  (entmap.analysis.crossed_reml; statsmodels' MixedLM gives the same numbers on small data);
* per model, a paired test of the personalized against the base model's CLIP score across
  prompts: the per-prompt mean signed shift e_sem_signed = mean_k (a_pers,k - a_base,k) against 0,
  two-sided one-sample t-test and Wilcoxon signed-rank test (scipy), BH over the models of each
  population;
* the Frechet distance between base and personalized CLIP image embeddings per prompt category:
  FD = ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2}).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from scipy import linalg, stats

from entmap.core.parquet_schemas import SCORES, read_tables
from entmap.core.vocabulary import STUDY, SUBJECT_CATEGORIES, TRAINED_METHODS, population

#: The mixed model's crossed random intercepts: variance component name -> the cells' column.
RANDOM_INTERCEPTS: dict[str, str] = {"prompt": "prompt_id", "subject": "subject"}


def mann_whitney(x: np.ndarray, y: np.ndarray, alternative: str = "greater") -> dict[str, Any]:
    """One-sided Mann-Whitney U of x against y, with sizes, means and rank-biserial r."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) == 0 or len(y) == 0:
        return {"testable": False, "n_x": int(len(x)), "n_y": int(len(y)), "reason": "an empty group"}
    result = stats.mannwhitneyu(x, y, alternative=alternative)
    return {
        "testable": True,
        "test": "Mann-Whitney U (scipy.stats.mannwhitneyu)",
        "alternative": alternative,
        "U": float(result.statistic),
        "p": float(result.pvalue),
        "n_x": int(len(x)),
        "n_y": int(len(y)),
        "mean_x": float(x.mean()),
        "mean_y": float(y.mean()),
        "rank_biserial": float(2 * result.statistic / (len(x) * len(y)) - 1),
    }


def _verdict(result: dict[str, Any], alpha: float) -> dict[str, Any]:
    if result.get("testable"):
        result["supported"] = bool(result["p"] < alpha)
    return result


def hypotheses(
    cells: pd.DataFrame, per_model: pd.DataFrame, own_category: dict[str, str], alpha: float = 0.05
) -> dict[str, Any]:
    """H1, H2 and H3 on the study's cells (E_sem) and per-model E (``population`` == study).

    ``per_model`` carries the population (:func:`entmap.analysis.summaries.summarize`); cells get it
    from their model.
    """
    study_models = set(per_model.loc[per_model["population"] == STUDY, "model"])
    cells = cells[cells["model"].isin(study_models)]
    per_model = per_model[per_model["model"].isin(study_models)]
    people = own_category.get("face", "people")
    own = cells["subject_category"].map(lambda c: own_category.get(c, ""))
    non_target = cells[cells["category"] != own]
    face = cells[cells["subject_category"] == "face"]
    h1 = mann_whitney(face.loc[face["category"] == people, "e_sem"], face.loc[face["category"] != people, "e_sem"])
    h1["hypothesis"] = f"face personalizations disrupt {people} prompts more than other prompts (E_sem per cell)"
    h2 = mann_whitney(
        non_target.loc[non_target["subject_category"] == "style", "e_sem"],
        non_target.loc[non_target["subject_category"] == "face", "e_sem"],
    )
    h2["hypothesis"] = "style personalizations disrupt non-target prompts more than face personalizations"
    e = {c: per_model.loc[per_model["subject_category"] == c, "E"].to_numpy() for c in SUBJECT_CATEGORIES}
    h3 = {
        "hypothesis": "objects lie between faces and styles on E: E_face < E_object < E_style",
        "means": {c: (float(v.mean()) if len(v) else None) for c, v in e.items()},
        "object_vs_face": _verdict(mann_whitney(e["object"], e["face"]), alpha),
        "style_vs_object": _verdict(mann_whitney(e["style"], e["object"]), alpha),
    }
    means = [h3["means"][c] for c in SUBJECT_CATEGORIES]
    h3["ordering_holds"] = None if None in means else bool(means[0] < means[1] < means[2])
    h3["supported"] = bool(
        h3["ordering_holds"] and h3["object_vs_face"].get("supported") and h3["style_vs_object"].get("supported")
    )
    return {
        "alpha": alpha,
        "population": f"the study: {len(study_models)} models ({', '.join(sorted(study_models))})",
        "H1": _verdict(h1, alpha),
        "H2": _verdict(h2, alpha),
        "H3": h3,
    }


def _bh_by_population(p_values: pd.Series, populations: pd.Series) -> np.ndarray:
    """Benjamini-Hochberg q-values computed within each population separately."""
    q = np.full(len(p_values), np.nan)
    for name in populations.unique():
        where = (populations == name).to_numpy()
        q[where] = stats.false_discovery_control(p_values.to_numpy()[where], method="bh")
    return q


def cell_significance(
    disruption: pd.DataFrame, noise: pd.DataFrame, alpha: float = 0.05, include_external: bool = False
) -> pd.DataFrame:
    """Per (prompt, model): p-values of its per-seed shifts exceeding the noise floor, BH q-values per population."""
    rows = []
    noise_sem, noise_per = noise["d_sem"].to_numpy(), noise["lpips"].to_numpy()
    for (prompt_id, model), group in disruption.groupby(["prompt_id", "model"], sort=False):
        rows.append(
            {
                "prompt_id": prompt_id,
                "model": model,
                "p_sem": stats.mannwhitneyu(group["d_sem"], noise_sem, alternative="greater").pvalue,
                "p_per": stats.mannwhitneyu(group["lpips"], noise_per, alternative="greater").pvalue,
            }
        )
    table = pd.DataFrame(rows, columns=["prompt_id", "model", "p_sem", "p_per"])
    # a model is "subject/method"
    table.insert(2, "population", table["model"].map(lambda m: population(m.rsplit("/", 1)[-1], include_external)))
    for kind in ("sem", "per"):
        table[f"q_{kind}"] = _bh_by_population(table[f"p_{kind}"], table["population"])
        table[f"flagged_{kind}"] = table[f"q_{kind}"] < alpha
    return table


def paired_shift(cells: pd.DataFrame, alpha: float = 0.05, include_external: bool = False) -> dict[str, Any]:
    """Does a model's CLIP score differ from the base model's across prompts? (module docstring)."""
    by_model: dict[str, Any] = {}
    for model, group in cells.groupby("model", sort=False):
        shifts = group["e_sem_signed"].to_numpy(dtype=float)
        row: dict[str, Any] = {
            "population": population(model.rsplit("/", 1)[-1], include_external),
            "n_prompts": int(len(shifts)),
            "mean_signed_shift": float(shifts.mean()),
        }
        if len(shifts) >= 2 and np.ptp(shifts) > 0:
            t = stats.ttest_1samp(shifts, 0.0)
            w = stats.wilcoxon(shifts)
            row.update(
                t=float(t.statistic), p_t=float(t.pvalue), wilcoxon=float(w.statistic), p_wilcoxon=float(w.pvalue)
            )
        else:
            row.update(t=None, p_t=None, wilcoxon=None, p_wilcoxon=None, reason="no variation across prompts")
        by_model[model] = row
    testable = [m for m, r in by_model.items() if r["p_t"] is not None]
    q = _bh_by_population(
        pd.Series([by_model[m]["p_t"] for m in testable], dtype=float),
        pd.Series([by_model[m]["population"] for m in testable], dtype=object),
    )
    for model, value in zip(testable, q, strict=True):
        by_model[model].update(q_t=float(value), significant=bool(value < alpha))
    for model in set(by_model) - set(testable):
        by_model[model].update(q_t=None, significant=False)
    return {
        "test": "per model: mean signed CLIP-score shift per prompt vs 0 (paired personalized - base), "
        "two-sided one-sample t-test and Wilcoxon signed-rank; BH on the t-test over the models of each "
        "population (study, external, control, variant)",
        "alpha": alpha,
        "significant_models": sorted(m for m, r in by_model.items() if r["significant"]),
        "by_model": by_model,
    }


def mixed_model(cells: pd.DataFrame) -> dict[str, Any]:
    """Linear mixed model: e_sem ~ C(method) * C(subject_category) + C(category), crossed random intercepts.

    Fitted on the trained methods' cells (external adapters and controls are outside the
    method x category design), by REML with crossed random intercepts for prompt and subject
    (:func:`entmap.analysis.crossed_reml.fit_crossed_intercepts`, the numbers statsmodels'
    ``MixedLM`` gives with both as variance components of one group, in memory that does not grow
    with the cells x levels product). The fixed-effects design is statsmodels' formula interface's.
    p-values are two-sided Wald z-tests, as MixedLM reports them.
    """
    import statsmodels.formula.api as smf

    from entmap.analysis.crossed_reml import fit_crossed_intercepts

    data = cells[cells["subject_category"].isin(SUBJECT_CATEGORIES) & cells["method"].isin(TRAINED_METHODS)]
    data = data.copy()
    if len(data) < 10:
        return {"fitted": False, "reason": f"too few cells ({len(data)})"}
    methods, categories = data["method"].nunique(), data["subject_category"].nunique()
    combos = data.groupby(["method", "subject_category"]).ngroups
    if methods > 1 and categories > 1 and combos == methods * categories:
        formula = "e_sem ~ C(method) * C(subject_category) + C(category)"
    else:  # an incomplete design: one factor per observed (method, subject category) pair
        data["method_x_subject_category"] = data["method"] + ":" + data["subject_category"]
        formula = "e_sem ~ C(method_x_subject_category) + C(category)"
    design = smf.ols(formula, data)
    factors = {name: pd.factorize(data[column], sort=True)[0] for name, column in RANDOM_INTERCEPTS.items()}
    try:
        fit = fit_crossed_intercepts(design.endog, design.exog, factors)
    except (ValueError, np.linalg.LinAlgError) as exc:
        return {"fitted": False, "reason": f"{type(exc).__name__}: {exc}", "formula": formula}
    z = fit.beta / fit.standard_errors
    p_values = 2.0 * stats.norm.sf(np.abs(z))
    warnings_ = [f"the {name} variance component is on the boundary (0)" for name in fit.boundary]
    if not fit.converged:
        warnings_.append("the REML optimizer did not report convergence")
    return {
        "fitted": True,
        "formula": formula,
        "random_effects": "crossed random intercepts: prompt, subject (variance components)",
        "fit": "REML from cross-products (entmap.analysis.crossed_reml)",
        "n_cells": int(len(data)),
        "converged": fit.converged,
        "fixed_effects": {
            name: {"coef": float(coef), "se": float(se), "p": float(p)}
            for name, coef, se, p in zip(design.exog_names, fit.beta, fit.standard_errors, p_values, strict=True)
        },
        "variance_components": fit.variance_components,
        "residual_variance": fit.residual_variance,
        "reml_deviance": fit.deviance,
        "warnings": warnings_,
    }


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """FD between N(mu1, S1) and N(mu2, S2): ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2})."""
    diff = np.asarray(mu1, float) - np.asarray(mu2, float)
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():  # singular product: regularize as pytorch-fid does
        offset = np.eye(len(sigma1)) * 1e-6
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def frechet_between(x: np.ndarray, y: np.ndarray) -> float:
    """FD between the Gaussians fitted to two samples (rows are embeddings)."""
    return frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))


def frechet_from_score_files(score_paths: list[str], prompts: pd.DataFrame) -> pd.DataFrame:
    """:func:`frechet_by_category` over score shards read one personalized model at a time.

    The base's embeddings stay in memory; each model's only while its distances are computed, so
    the peak is the base plus one model whatever the number of models (a study 10x larger needs
    no more memory here). Rows come in the order the models first appear in ``score_paths``.
    """
    by_model: dict[str, list[str]] = {}
    for path in score_paths:
        for model in pq.read_table(path, columns=["model"])["model"].unique().to_pylist():
            by_model.setdefault(model, []).append(path)
    base = read_tables(by_model.pop("base", []), SCORES)
    base = base[base["model"] == "base"]
    frames = []
    for model, paths in by_model.items():
        own = read_tables(paths, SCORES)
        frames.append(frechet_by_category(pd.concat([base, own[own["model"] == model]], ignore_index=True), prompts))
    columns = ["model", "prompt_category", "n_images", "frechet"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def frechet_by_category(scores: pd.DataFrame, prompts: pd.DataFrame) -> pd.DataFrame:
    """Per personalized model and prompt category: FD of its CLIP image embeddings to the base's."""
    category = dict(zip(prompts["id"], prompts["category"], strict=True))
    scores = scores.assign(category=scores["prompt_id"].map(category))
    base = scores[scores["model"] == "base"]
    rows = []
    for model, pers in scores[scores["model"] != "base"].groupby("model", sort=False):
        for cat, group in pers.groupby("category", sort=False):
            x = np.stack(base.loc[base["category"] == cat, "image_embedding"].to_numpy())
            y = np.stack(group["image_embedding"].to_numpy())
            rows.append({"model": model, "prompt_category": cat, "n_images": len(y), "frechet": frechet_between(x, y)})
    return pd.DataFrame(rows, columns=["model", "prompt_category", "n_images", "frechet"])
