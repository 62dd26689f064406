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
    # scored cells (e_struct not NaN): 7; CLIP moved & struct moved: cell 2 (.25, True), cell 3 (.5, True)
    overall = table.loc["all"]
    assert overall[["cells", "both", "only_clip", "only_struct", "neither"]].tolist() == [7, 2, 1, 1, 3]
    assert overall["struct_missed_by_clip"] == pytest.approx(1 / 3)
    assert table.loc["lora", "cells"] == 4 and table.loc["cd", "cells"] == 1
