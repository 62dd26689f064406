"""Every statistic against an independent computation on data with a known answer."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from entmap.analysis.hypothesis_tests import (
    cell_significance,
    frechet_between,
    frechet_distance,
    hypotheses,
    mixed_model,
)
from entmap.analysis.summaries import Cube, minmax, normalization_bounds, summarize

OWN = {"face": "people", "object": "objects", "style": "styles"}
CATEGORIES = ["people", "animals", "objects", "scenes", "styles", "abstract"]


def synthetic(rng, style_shift=0.0, n_subjects=3, n_prompts=4, n_seeds=3, methods=("ti", "lora", "cd")):
    """Per-seed disruption and cells for subjects of each category; styles shifted by ``style_shift``."""
    rows = []
    for category in ("face", "object", "style"):
        for s in range(n_subjects):
            for method in methods:
                for c in CATEGORIES:
                    for p in range(n_prompts):
                        for k in range(n_seeds):
                            d = abs(rng.normal(0.02 + (style_shift if category == "style" else 0), 0.01))
                            rows.append(
                                (
                                    f"{category}{s}/{method}",
                                    f"{category}{s}",
                                    method,
                                    category,
                                    f"{c}-{p}",
                                    c,
                                    k,
                                    d,
                                    abs(rng.normal(0.3, 0.05)),
                                )
                            )
    seeds = pd.DataFrame(
        rows,
        columns=[
            "model",
            "subject",
            "method",
            "subject_category",
            "prompt_id",
            "category",
            "seed",
            "d_sem",
            "lpips",
        ],
    )
    keys = ["model", "subject", "method", "subject_category", "prompt_id", "category"]
    cells = seeds.groupby(keys, sort=False).agg(e_sem=("d_sem", "mean"), e_per=("lpips", "mean")).reset_index()
    cells["text"] = cells["prompt_id"]
    cells["e_sem_signed"] = 0.0
    cells["above_tau_sem"] = cells["e_sem"] > 0.04
    cells["above_tau_per"] = cells["e_per"] > 0.4
    return seeds, cells


def test_h2_detects_a_planted_style_effect_and_not_a_null_one():
    rng = np.random.default_rng(0)
    seeds, cells = synthetic(rng, style_shift=0.01)
    result = hypotheses(cells, summarize(cells, seeds, OWN, n_boot=0).per_model, OWN)
    assert result["H2"]["supported"] and result["H2"]["p"] < 1e-6
    # the counts are exact: non-target cells of style vs face models
    per_group = 3 * 3 * 5 * 4  # subjects x methods x non-target categories x prompts
    assert (result["H2"]["n_x"], result["H2"]["n_y"]) == (per_group, per_group)
    false_positives = 0
    for seed in range(40):
        seeds, cells = synthetic(np.random.default_rng(100 + seed))
        per_model = summarize(cells, seeds, OWN, n_boot=0).per_model
        false_positives += hypotheses(cells, per_model, OWN)["H2"]["supported"]
    assert false_positives <= 6  # about 5% of 40 expected at alpha 0.05


def test_h1_matches_scipy_on_the_same_split():
    seeds, cells = synthetic(np.random.default_rng(1))
    result = hypotheses(cells, summarize(cells, seeds, OWN, n_boot=0).per_model, OWN)["H1"]
    face = cells[cells["subject_category"] == "face"]
    expected = sps.mannwhitneyu(
        face.loc[face.category == "people", "e_sem"],
        face.loc[face.category != "people", "e_sem"],
        alternative="greater",
    )
    assert result["p"] == pytest.approx(expected.pvalue) and result["U"] == expected.statistic
    assert result["rank_biserial"] == pytest.approx(2 * expected.statistic / (result["n_x"] * result["n_y"]) - 1)


def test_bh_matches_statsmodels():
    seeds, _ = synthetic(np.random.default_rng(2))
    noise = pd.DataFrame(
        {
            "d_sem": np.abs(np.random.default_rng(3).normal(0.02, 0.01, 60)),
            "lpips": np.abs(np.random.default_rng(4).normal(0.3, 0.05, 60)),
        }
    )
    table = cell_significance(seeds, noise, alpha=0.1)
    for kind in ("sem", "per"):
        reject, q, _, _ = multipletests(table[f"p_{kind}"], alpha=0.1, method="fdr_bh")
        np.testing.assert_allclose(table[f"q_{kind}"], q)
        assert (table[f"flagged_{kind}"] == reject).all()


def test_frechet_distance_matches_the_gaussian_closed_form():
    rng = np.random.default_rng(5)
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    a, b = rng.uniform(0.5, 2, 4), rng.uniform(0.5, 2, 4)
    closed = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)  # diagonal covariances
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(closed)
    # a rotated (non-diagonal) pair: the distance is rotation invariant
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    rotated = frechet_distance(q @ mu1, q @ np.diag(a) @ q.T, q @ mu2, q @ np.diag(b) @ q.T)
    assert rotated == pytest.approx(closed)
    # from samples it converges to the closed form
    x = rng.multivariate_normal(mu1, np.diag(a), 200_000)
    y = rng.multivariate_normal(mu2, np.diag(b), 200_000)
    assert frechet_between(x, y) == pytest.approx(closed, rel=0.02)
    assert frechet_between(x, x) == pytest.approx(0, abs=1e-6)


def test_bootstrap_interval_covers_the_true_mean_at_about_the_nominal_rate():
    rng = np.random.default_rng(6)
    mu, covered, runs = 0.05, 0, 150
    for _ in range(runs):  # prompts and seeds are random effects; the target is the population mean
        prompt = rng.normal(0, 0.01, 25)
        seed = rng.normal(0, 0.005, 8)
        values = mu + prompt[None, :, None] + seed[None, None, :] + rng.normal(0, 0.01, (1, 25, 8))
        cube = Cube(["m"], [f"p{i}" for i in range(25)], list(range(8)), values, values)
        seed_w, weights = cube.bootstrap_weights(400, seed=int(rng.integers(1 << 31)))
        sem, _ = cube.cell_means(seed_w, slice(None))
        estimates = (sem[:, 0, :] * weights).sum(1) / weights.sum(1)
        low, high = np.quantile(estimates[1:], [0.025, 0.975])
        covered += low <= mu <= high
    assert 0.88 <= covered / runs <= 0.995


def test_entanglement_score_by_hand():
    cells = pd.DataFrame(
        {
            "model": ["a/ti"] * 3 + ["b/ti"] * 3,
            "subject": ["a"] * 3 + ["b"] * 3,
            "method": ["ti"] * 6,
            "subject_category": ["face"] * 3 + ["style"] * 3,
            "prompt_id": ["p1", "p2", "p3"] * 2,
            "category": ["people", "styles", "animals"] * 2,
            "text": ["x"] * 6,
            "e_sem": [0.0, 0.2, 0.4, 0.1, 0.3, 0.2],
            "e_per": [0.5, 1.0, 0.0, 0.25, 0.75, 1.0],
            "e_sem_signed": [0.0] * 6,
            "above_tau_sem": [False] * 6,
            "above_tau_per": [False] * 6,
        }
    )
    seeds = cells.assign(seed=0, d_sem=cells["e_sem"], lpips=cells["e_per"])
    bounds = normalization_bounds(cells)
    assert bounds["e_sem"] == {"min": 0.0, "max": 0.4} and bounds["e_per"] == {"min": 0.0, "max": 1.0}
    np.testing.assert_allclose(minmax(np.array([0.1, 0.4]), bounds["e_sem"]), [0.25, 1.0])
    per_model = summarize(cells, seeds, OWN, n_boot=0).per_model.set_index("model")
    # face excludes people: p2 (0.5 + 1.0)/2 = 0.75, p3 (1.0 + 0.0)/2 = 0.5 -> E = 0.625
    # style excludes styles: p1 (0.25 + 0.25)/2 = 0.25, p3 (0.5 + 1.0)/2 = 0.75 -> E = 0.5
    assert per_model.loc["a/ti", "E"] == pytest.approx(0.625)
    assert per_model.loc["b/ti", "E"] == pytest.approx(0.5)
    assert per_model.loc["a/ti", "mean_e_sem"] == pytest.approx(0.2)


def test_tables_agree_with_pandas_group_means():
    seeds, cells = synthetic(np.random.default_rng(7), style_shift=0.005)
    out = summarize(cells, seeds, OWN, n_boot=50)
    matrix = out.category_matrix.set_index(["subject_category", "prompt_category"])["mean_e_sem"]
    manual = cells.groupby(["subject_category", "category"])["e_sem"].mean()
    for key, value in manual.items():
        assert matrix.loc[key] == pytest.approx(value)
    table2 = out.table2
    by_prompt = cells.groupby("prompt_id")["e_sem"].mean().sort_values(ascending=False)
    assert list(table2.loc[table2.kind == "most fragile", "prompt_id"]) == list(by_prompt.index[:5])
    assert list(table2.loc[table2.kind == "most robust", "prompt_id"]) == list(by_prompt.index[::-1][:5])
    row = out.table1.set_index(["method", "subject_category"]).loc[("lora", "style")]
    assert row["mean_e_sem_ci_low"] <= row["mean_e_sem"] <= row["mean_e_sem_ci_high"]
    assert row["n_subjects"] == 3


def test_mixed_model_recovers_a_planted_method_effect():
    rng = np.random.default_rng(8)
    seeds, cells = synthetic(rng)
    prompt_effect = {p: rng.normal(0, 0.003) for p in cells["prompt_id"].unique()}
    cells["e_sem"] = (
        0.02
        + 0.01 * (cells["method"] == "cd")
        + cells["prompt_id"].map(prompt_effect)
        + rng.normal(0, 0.002, len(cells))
    )
    fit = mixed_model(cells)
    assert fit["fitted"] and fit["converged"]
    effect = fit["fixed_effects"]["C(method)[T.ti]"]
    assert effect["coef"] == pytest.approx(-0.01, abs=0.002) and effect["p"] < 1e-6
    assert fit["variance_components"]["prompt"] == pytest.approx(0.003**2, rel=0.6)


def test_paired_shift_matches_scipy_and_flags_a_planted_shift():
    from scipy import stats as sps

    from entmap.analysis.hypothesis_tests import paired_shift

    rng = np.random.default_rng(4)
    shifted = rng.normal(-0.02, 0.01, 20)  # a model whose scores drop on every prompt
    null = rng.normal(0.0, 0.01, 20)
    cells = pd.DataFrame(
        {
            "model": ["a/lora"] * 20 + ["b/cd"] * 20 + ["c/ti"] * 20,
            "e_sem_signed": np.concatenate([shifted, null, np.zeros(20)]),
        }
    )
    out = paired_shift(cells, alpha=0.05)
    a = out["by_model"]["a/lora"]
    assert a["t"] == pytest.approx(sps.ttest_1samp(shifted, 0).statistic)
    assert a["p_wilcoxon"] == pytest.approx(sps.wilcoxon(shifted).pvalue)
    assert a["mean_signed_shift"] == pytest.approx(shifted.mean())
    q = sps.false_discovery_control([a["p_t"], out["by_model"]["b/cd"]["p_t"]], method="bh")
    assert a["q_t"] == pytest.approx(q[0])
    assert out["significant_models"] == ["a/lora"]
    assert out["by_model"]["c/ti"]["reason"] == "no variation across prompts"  # TI: exactly zero shifts


def with_extra_models(rng, seeds, cells, scale):
    """Append planted-effect controls (method perturb), external adapters declaring a category and a
    variant of a trained method."""
    extra_seeds = []
    for name, method, category in (
        ("kv0p2/perturb", "perturb", "control"),
        ("kv0p5/perturb", "perturb", "control"),
        ("watercolor/external", "external", "style"),
        ("someone/external", "external", "face"),
        ("face0/ti+sage", "ti+sage", "face"),  # a variant of a trained method (config `variants`)
    ):
        block = seeds[seeds["model"] == "face0/ti"].copy()
        block["model"], block["subject"], block["method"], block["subject_category"] = (
            name,
            name.split("/")[0],
            method,
            category,
        )
        block["d_sem"] = np.abs(rng.normal(scale, 0.01, len(block)))
        block["lpips"] = np.abs(rng.normal(0.6, 0.05, len(block)))
        extra_seeds.append(block)
    all_seeds = pd.concat([seeds, *extra_seeds], ignore_index=True)
    keys = ["model", "subject", "method", "subject_category", "prompt_id", "category"]
    extra = pd.concat(extra_seeds).groupby(keys, sort=False).agg(e_sem=("d_sem", "mean"), e_per=("lpips", "mean"))
    extra = extra.reset_index().assign(text=lambda f: f["prompt_id"], e_sem_signed=0.0)
    extra["above_tau_sem"], extra["above_tau_per"] = extra["e_sem"] > 0.04, extra["e_per"] > 0.4
    return all_seeds, pd.concat([cells, extra], ignore_index=True)


def test_study_tables_and_hypotheses_do_not_move_with_controls_variants_or_external_adapters():
    seeds, cells = synthetic(np.random.default_rng(7), style_shift=0.005)
    big_seeds, big_cells = with_extra_models(np.random.default_rng(8), seeds, cells, scale=0.2)
    other_seeds, other_cells = with_extra_models(np.random.default_rng(9), seeds, cells, scale=0.05)
    alone = summarize(cells, seeds, OWN, n_boot=50, seed=3)
    runs = [summarize(c, s, OWN, n_boot=50, seed=3) for s, c in ((big_seeds, big_cells), (other_seeds, other_cells))]
    for run in runs:
        assert run.bounds["e_sem"] == alone.bounds["e_sem"] and run.bounds["e_per"] == alone.bounds["e_per"]
        for name in ("table1", "table2", "category_matrix"):
            pd.testing.assert_frame_equal(getattr(run, name), getattr(alone, name))
        study = run.per_model[run.per_model["population"] == "study"].reset_index(drop=True)
        pd.testing.assert_frame_equal(study, alone.per_model)
        result = hypotheses(big_cells, run.per_model, OWN)
        expected = hypotheses(cells, alone.per_model, OWN)
        for key in ("H1", "H2"):
            assert result[key]["p"] == expected[key]["p"] and result[key]["n_x"] == expected[key]["n_x"]
        assert result["H3"]["means"] == expected["H3"]["means"]
    # the others are scored against the study's bounds: E by hand for one external adapter
    per_model = runs[0].per_model.set_index("model")
    populations = per_model.loc[["kv0p2/perturb", "watercolor/external", "face0/ti+sage"], "population"]
    assert list(populations) == ["control", "external", "variant"]
    ext = big_cells[big_cells["model"] == "someone/external"]
    non_target = ext[ext["category"] != "people"]
    b = alone.bounds
    e = ((non_target["e_sem"] - b["e_sem"]["min"]) / (b["e_sem"]["max"] - b["e_sem"]["min"])) / 2 + (
        (non_target["e_per"] - b["e_per"]["min"]) / (b["e_per"]["max"] - b["e_per"]["min"])
    ) / 2
    assert per_model.loc["someone/external", "E"] == pytest.approx(e.mean())
    # a config key moves external adapters into the study on purpose
    included = summarize(big_cells, big_seeds, OWN, n_boot=0, include_external=True)
    assert "watercolor/external" in included.bounds["models"] and included.bounds["e_per"] != alone.bounds["e_per"]
    assert "external" in set(included.table1["method"])


def test_significance_is_corrected_within_each_population():
    seeds, cells = synthetic(np.random.default_rng(1), n_subjects=1)
    noise = pd.DataFrame({"d_sem": np.abs(np.random.default_rng(2).normal(0.02, 0.01, 60)), "lpips": 0.3})
    big_seeds, _ = with_extra_models(np.random.default_rng(3), seeds, cells, scale=0.2)
    alone = cell_significance(seeds, noise).set_index(["prompt_id", "model"])
    both = cell_significance(big_seeds, noise).set_index(["prompt_id", "model"])
    study = both[both["population"] == "study"]
    pd.testing.assert_series_equal(study["q_sem"], alone.loc[study.index, "q_sem"])
    controls = both[both["population"] == "control"]
    q = sps.false_discovery_control(controls["p_sem"].to_numpy(), method="bh")
    np.testing.assert_allclose(controls["q_sem"].to_numpy(), q)


def test_frechet_read_one_model_at_a_time_equals_the_whole_table(tmp_path):
    from entmap.analysis.hypothesis_tests import frechet_by_category, frechet_from_score_files
    from entmap.core.parquet_schemas import SCORES, write_table

    rng = np.random.default_rng(0)
    prompts = pd.DataFrame({"id": [f"p{i}" for i in range(6)], "category": ["a", "b"] * 3, "text": "x"})

    def shard(model: str, ids: list[str], shift: float) -> pd.DataFrame:
        rows = [(pid, seed) for pid in ids for seed in range(4)]
        return pd.DataFrame(
            {
                "prompt_id": [pid for pid, _ in rows],
                "seed": [seed for _, seed in rows],
                "model": model,
                "settings_hash": "h",
                "clip_cos": 0.3,
                "image_embedding": [list((rng.normal(size=3) + shift).astype(np.float32)) for _ in rows],
            }
        )

    frames = {
        "base-0": shard("base", ["p0", "p1", "p2"], 0.0),
        "base-1": shard("base", ["p3", "p4", "p5"], 0.0),
        "s1-0": shard("s1/lora", ["p0", "p1", "p2"], 0.5),
        "s1-1": shard("s1/lora", ["p3", "p4", "p5"], 0.5),
        "s2-0": shard("s2/ti", ["p0", "p1", "p2", "p3", "p4", "p5"], 2.0),
    }
    paths = []
    for name, frame in frames.items():
        write_table(frame, tmp_path / f"{name}.parquet", SCORES)
        paths.append(str(tmp_path / f"{name}.parquet"))
    whole = frechet_by_category(pd.concat(frames.values(), ignore_index=True), prompts)
    streamed = frechet_from_score_files(paths, prompts)
    pd.testing.assert_frame_equal(streamed, whole)
    assert list(streamed["model"].unique()) == ["s1/lora", "s2/ti"]
    assert streamed.groupby("model")["frechet"].mean()["s2/ti"] > streamed.groupby("model")["frechet"].mean()["s1/lora"]


def test_the_bootstrap_in_blocks_of_models_equals_all_models_at_once(monkeypatch):
    """summarize walks the models in blocks (memory bounded by the block, not the study): one
    model per block and every model in one block give the same tables."""
    import entmap.analysis.summaries as summaries

    seeds, cells = synthetic(np.random.default_rng(7), style_shift=0.005)
    results = []
    for block in (1, 1000):
        monkeypatch.setattr(summaries, "MODEL_BLOCK", block)
        results.append(summarize(cells, seeds, OWN, n_boot=30, seed=5))
    for name in ("per_model", "table1", "table2", "category_matrix"):
        pd.testing.assert_frame_equal(getattr(results[0], name), getattr(results[1], name), rtol=1e-12)
