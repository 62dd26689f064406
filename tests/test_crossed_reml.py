"""The mixed model's REML fit from cross-products against statsmodels' MixedLM (the reference)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from entmap.analysis.crossed_reml import fit_crossed_intercepts, indicator_matrix
from entmap.analysis.hypothesis_tests import mixed_model

FORMULA = "e_sem ~ C(method) * C(subject_category) + C(category)"


def crossed_cells(seed: int, subjects: int = 9, prompts: int = 24, subject_sd: float = 0.02) -> pd.DataFrame:
    """An unbalanced crossed design (a tenth of the cells dropped) with planted prompt and subject effects."""
    rng = np.random.default_rng(seed)
    rows = [(f"s{s}", m, f"p{p}") for s in range(subjects) for m in ("ti", "lora", "cd") for p in range(prompts)]
    cells = pd.DataFrame(rows, columns=["subject", "method", "prompt_id"]).sample(frac=0.9, random_state=seed)
    cells["subject_category"] = cells["subject"].map(lambda s: ("face", "object", "style")[int(s[1:]) % 3])
    cells["category"] = cells["prompt_id"].map(lambda p: f"c{int(p[1:]) % 4}")
    prompt_effect = dict(zip([f"p{p}" for p in range(prompts)], rng.normal(0, 0.01, prompts), strict=True))
    subject_effect = dict(zip([f"s{s}" for s in range(subjects)], rng.normal(0, subject_sd, subjects), strict=True))
    cells["e_sem"] = (
        cells["prompt_id"].map(prompt_effect)
        + cells["subject"].map(subject_effect)
        + 0.01 * (cells["method"] == "lora")
        + rng.normal(0, 0.01, len(cells))
    )
    return cells


def statsmodels_fit(cells: pd.DataFrame):
    data = cells.assign(all=1)
    vc = {"prompt": "0 + C(prompt_id)", "subject": "0 + C(subject)"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return smf.mixedlm(FORMULA, data, groups="all", vc_formula=vc, re_formula="0").fit(reml=True)


@pytest.mark.parametrize("seed, subject_sd", [(0, 0.02), (1, 0.005), (2, 0.05)])
def test_fit_matches_statsmodels_mixedlm(seed, subject_sd):
    cells = crossed_cells(seed, subject_sd=subject_sd)
    reference = statsmodels_fit(cells)
    design = smf.ols(FORMULA, cells)
    factors = {
        name: pd.factorize(cells[col], sort=True)[0] for name, col in (("prompt", "prompt_id"), ("subject", "subject"))
    }
    fit = fit_crossed_intercepts(design.endog, design.exog, factors)
    assert fit.converged
    np.testing.assert_allclose(fit.beta, reference.fe_params.to_numpy(), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(fit.standard_errors, reference.bse_fe.to_numpy(), rtol=5e-3)
    np.testing.assert_allclose(list(fit.variance_components.values()), reference.vcomp, rtol=5e-3)
    assert fit.residual_variance == pytest.approx(reference.scale, rel=1e-4)


def test_mixed_model_reports_statsmodels_numbers():
    cells = crossed_cells(3)
    reference = statsmodels_fit(cells)
    result = mixed_model(cells)
    assert result["fitted"] and result["converged"] and result["n_cells"] == len(cells)
    assert list(result["fixed_effects"]) == list(reference.fe_params.index)
    for name, effect in result["fixed_effects"].items():
        assert effect["coef"] == pytest.approx(reference.fe_params[name], rel=1e-4, abs=1e-7)
        assert effect["se"] == pytest.approx(reference.bse_fe[name], rel=5e-3)
        assert effect["p"] == pytest.approx(reference.pvalues[name], rel=0.05, abs=1e-12)
    assert result["variance_components"]["prompt"] == pytest.approx(reference.vcomp[0], rel=5e-3)


def test_balanced_one_way_design_gives_the_anova_estimates():
    """Balanced one-way random intercepts: REML is the ANOVA solution (MSB - MSW) / n and MSW."""
    rng = np.random.default_rng(5)
    groups, per_group = 12, 6
    codes = np.repeat(np.arange(groups), per_group)
    y = 3.0 + rng.normal(0, 0.5, groups)[codes] + rng.normal(0, 0.2, groups * per_group)
    fit = fit_crossed_intercepts(y, np.ones((len(y), 1)), {"group": codes})
    means = y.reshape(groups, per_group).mean(axis=1)
    msb = per_group * ((means - y.mean()) ** 2).sum() / (groups - 1)
    msw = ((y.reshape(groups, per_group) - means[:, None]) ** 2).sum() / (groups * (per_group - 1))
    assert fit.residual_variance == pytest.approx(msw, rel=1e-4)
    assert fit.variance_components["group"] == pytest.approx((msb - msw) / per_group, rel=1e-4)
    assert fit.beta[0] == pytest.approx(y.mean(), rel=1e-9)
    assert fit.standard_errors[0] == pytest.approx(np.sqrt(msb / (groups * per_group)), rel=1e-4)


def test_indicator_matrix_has_one_one_per_row():
    Z = indicator_matrix(np.array([2, 0, 2]), 3).toarray()
    np.testing.assert_array_equal(Z, [[0, 0, 1], [1, 0, 0], [0, 0, 1]])


def test_rank_deficient_design_is_reported_not_fitted():
    cells = crossed_cells(4)
    cells["category"] = np.where(cells["method"] == "ti", "c1", "c0")  # category = the ti indicator: not identifiable
    result = mixed_model(cells)
    assert not result["fitted"] and "LinAlgError" in result["reason"]
