"""SAGE's claims from a run's tables: geometry summary, rank correlations across models, and the
agreement of the CLIP score with E_struct, on hand-made tables checked against scipy and by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from entmap.analysis.sage_claims import claim_correlations, geometry_summary, struct_agreement


def geometry_rows() -> pd.DataFrame:
    rows = []
    for i, model in enumerate(["a/lora", "b/cd", "c/ti", "d/lora"]):
        for layer, scale in (("x.to_k", 1.0), ("x.to_v", 3.0)):
            rows.append((model, "kv", layer, 6, 1.0, 1.0 - 0.1 * i, 1.0 - 0.1 * i, 0.05 * i * scale))
        rows.append((model, "text", "text_encoder", 6, 1.0, 1.0, 1.0, 0.0))
    columns = ["model", "level", "layer", "n_prompts", "spread_base", "spread_model", "spread_ratio", "distortion"]
    return pd.DataFrame(rows, columns=columns)


def cells(e_sem: list[float]) -> pd.DataFrame:
    models = ["a/lora", "b/cd", "c/ti", "d/lora"]
    return pd.DataFrame(
        {
            "model": np.repeat(models, 2),
            "method": np.repeat([m.split("/")[1] for m in models], 2),
            "e_sem": np.repeat(e_sem, 2),
            "e_per": np.repeat([0.4, 0.1, 0.3, 0.2], 2),
            "e_struct": [0.0, 0.25, 0.5, np.nan, 0.0, 0.0, 0.25, 0.0],
            "above_tau_sem": [False, True, True, False, False, True, False, False],
            # E_struct above its noise floor, tau_struct = .3 (NaN never is)
            "above_tau_struct": [False, False, True, False, False, False, False, False],
        }
    )


def test_the_summary_averages_layers_per_model_and_level():
    summary = geometry_summary(geometry_rows()).set_index(["model", "level"])
    assert summary.loc[("b/cd", "kv"), "layers"] == 2
    assert summary.loc[("b/cd", "kv"), "distortion"] == pytest.approx((0.05 + 0.15) / 2)
    assert summary.loc[("d/lora", "kv"), "contraction"] == pytest.approx(0.3)
    assert summary.loc[("a/lora", "text"), "spread_ratio"] == 1.0


def test_correlations_are_scipys_spearman_across_models_with_an_interval_around_them():
    summary = geometry_summary(geometry_rows())
    e_sem = [0.01, 0.03, 0.02, 0.05]
    table = claim_correlations(summary, cells(e_sem), n_boot=300, seed=0).set_index(["level", "geometry", "disruption"])
    kv = summary[summary["level"] == "kv"].set_index("model")
    expected = stats.spearmanr(kv["distortion"].to_numpy(), e_sem).statistic
    row = table.loc[("kv", "distortion", "e_sem")]
    assert row["spearman_rho"] == pytest.approx(expected) and row["n_models"] == 4
    assert row["ci_low"] <= row["spearman_rho"] <= row["ci_high"]
    assert np.isnan(table.loc[("text", "distortion", "e_sem"), "spearman_rho"])  # no variation: undefined


def test_agreement_counts_each_cell_once_by_hand():
    table = struct_agreement(cells([0.01, 0.03, 0.02, 0.05])).set_index("method")
    # scored cells (e_struct not NaN): 7; E_struct clears tau_struct in cell 2 only (.5), where CLIP moved
    # too; CLIP alone moved in cells 1 and 5 (E_struct .25 and 0 are within the floor)
    overall = table.loc["all"]
    assert overall[["cells", "both", "only_clip", "only_struct", "neither"]].tolist() == [7, 1, 2, 0, 4]
    assert overall["struct_missed_by_clip"] == 0
    assert table.loc["lora", "cells"] == 4 and table.loc["cd", "cells"] == 1


def variant_cells() -> pd.DataFrame:
    """Two subjects' lora and lora+sage over four prompts (one of them the subject's own category)."""
    rows = []
    values = {
        "s/lora": [0.10, 0.20, 0.30, 0.90],
        "s/lora+sage": [0.05, 0.25, 0.10, 0.00],
        "t/lora": [0.2, 0.2, 0.2, 0.2],
        "t/cd": [0.1, 0.1, 0.1, 0.1],
    }
    struct = {"s/lora": [0.0, 0.5, np.nan, 0.0], "s/lora+sage": [0.0, 0.25, np.nan, 1.0]}
    for model, e_sem in values.items():
        subject, method = model.split("/")
        for i, (category, value) in enumerate(zip(["animals", "scenes", "objects", "people"], e_sem, strict=True)):
            rows.append(
                {
                    "prompt_id": f"p{i}",
                    "category": category,
                    "model": model,
                    "subject": subject,
                    "method": method,
                    "subject_category": "face",
                    "e_sem": value,
                    "e_per": 2 * value,
                    "e_struct": struct.get(model, [np.nan] * 4)[i],
                }
            )
    return pd.DataFrame(rows)


def test_a_variant_is_compared_with_its_own_method_over_the_paired_non_target_prompts():
    from entmap.analysis.sage_claims import regularizer_comparison, variant_pairs

    assert variant_pairs(["s/lora", "s/lora+sage", "t/lora", "u/cd+sage"]) == [("s/lora", "s/lora+sage")]
    summary = pd.DataFrame(
        {
            "model": ["s/lora", "s/lora+sage"],
            "level": ["kv", "kv"],
            "layers": [2, 2],
            "spread_ratio": [0.8, 0.95],
            "contraction": [0.2, 0.05],
            "distortion": [0.3, 0.1],
        }
    )
    identity = pd.Series({"s/lora": 0.7, "s/lora+sage": 0.65})
    table = regularizer_comparison(variant_cells(), summary, {"face": "people"}, 500, 0, identity)
    table = table.set_index("quantity")
    assert set(table["subject"]) == {"s"} and set(table["method"]) == {"lora"} and set(table["variant"]) == {"sage"}
    # non-target prompts p0-p2 (p3 is people, the face subject's own category): differences -.05, .05, -.2
    row = table.loc["e_sem"]
    assert row["n_prompts"] == 3 and row["delta"] == pytest.approx((-0.05 + 0.05 - 0.2) / 3)
    assert row["method_value"] == pytest.approx(0.2) and row["variant_value"] == pytest.approx(0.4 / 3)
    # the bootstrap resamples the three paired differences: its interval lies within their range
    assert -0.2 <= row["ci_low"] <= row["delta"] <= row["ci_high"] <= 0.05
    assert table.loc["e_per", "delta"] == pytest.approx(2 * row["delta"])
    # E_struct: only prompts scored for both (p0, p1; p2 unscored, p3 own category)
    assert table.loc["e_struct", "n_prompts"] == 2 and table.loc["e_struct", "delta"] == pytest.approx(-0.125)
    assert table.loc["kv_distortion", ["method_value", "variant_value"]].tolist() == [0.3, 0.1]
    assert table.loc["kv_spread_ratio", "delta"] == pytest.approx(0.15)
    assert table.loc["identity_clip_image", "delta"] == pytest.approx(-0.05)
    # a run that scores nothing structurally: E_struct has no pairs, the rest is unchanged
    unscored = regularizer_comparison(variant_cells().assign(e_struct=np.nan), summary, {"face": "people"}, 500, 0)
    unscored = unscored.set_index("quantity")
    assert unscored.loc["e_struct", "n_prompts"] == 0 and np.isnan(unscored.loc["e_struct", "delta"])
    assert unscored.loc["e_sem", "delta"] == pytest.approx(row["delta"])


def test_claim_three_in_words_reports_the_variant_against_its_method():
    from entmap.analysis.sage_claims import regularizer_comparison
    from entmap.present.report import regularizer_in_words

    table = regularizer_comparison(variant_cells(), geometry_summary(geometry_rows()), {"face": "people"}, 200, 0)
    words = regularizer_in_words(table)
    assert words.startswith("Claim 3") and "lora+sage against lora over 1 subject:" in words
    assert "mean E_sem 0.2 -> 0.133" in words
    assert "no method runs with and without it" in regularizer_in_words(table.iloc[0:0])
