"""Metric functions against independent computations."""

import lpips
import numpy as np
import pytest
import torch

from entmap.measure.metrics import Lpips, clip_cosine, e_sem, e_sem_signed, percentile_threshold, semantic_shift


def test_e_sem_hand_computed():
    a_base = [0.30, 0.25, 0.40, 0.10]
    a_pers = [0.32, 0.20, 0.40, 0.16]
    # |diffs| = .02 .05 0 .06 -> mean .0325 ; signed = (.02 - .05 + 0 + .06) / 4 = .0075
    assert e_sem(a_pers, a_base) == pytest.approx(0.0325)
    assert e_sem_signed(a_pers, a_base) == pytest.approx(0.0075)
    assert semantic_shift(a_pers, a_base) == pytest.approx([0.02, 0.05, 0.0, 0.06])


def test_e_sem_is_symmetric_and_zero_for_identical():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=10), rng.normal(size=10)
    assert e_sem(a, b) == pytest.approx(e_sem(b, a))
    assert e_sem_signed(a, b) == pytest.approx(-e_sem_signed(b, a))
    assert e_sem(a, a) == 0.0


def test_clip_cosine_matches_manual_normalize_and_dot():
    rng = np.random.default_rng(1)
    t, x = rng.normal(size=(5, 16)), rng.normal(size=(5, 16)) * 7.0
    manual = [np.dot(ti / np.linalg.norm(ti), xi / np.linalg.norm(xi)) for ti, xi in zip(t, x, strict=True)]
    got = clip_cosine(torch.tensor(t), torch.tensor(x)).numpy()
    np.testing.assert_allclose(got, manual, rtol=1e-5, atol=1e-6)
    # raw cosine: not x100, not clamped at 0
    assert (got < 0).any()
    assert np.abs(got).max() <= 1.0


def test_percentile_threshold_matches_numpy_and_hand_value():
    values = np.arange(1, 101, dtype=float)
    # linear interpolation: position 0.95 * 99 = 94.05 -> 95 + 0.05 * 1 = 95.05
    assert percentile_threshold(values, 95) == pytest.approx(95.05)
    rng = np.random.default_rng(2)
    sample = rng.gamma(2.0, size=600)
    assert percentile_threshold(sample, 95) == pytest.approx(np.percentile(sample, 95))
    with pytest.raises(ValueError):
        percentile_threshold([], 95)


def test_lpips_matches_direct_lpips_call():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, size=(3, 64, 64, 3), dtype=np.uint8)
    b = rng.integers(0, 256, size=(3, 64, 64, 3), dtype=np.uint8)
    ours = Lpips("alex", "random", seed=5).distance(a, b, batch_size=2)

    torch.manual_seed(5)
    reference = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False).eval()
    ta = torch.tensor(a, dtype=torch.float32).permute(0, 3, 1, 2) / 127.5 - 1
    tb = torch.tensor(b, dtype=torch.float32).permute(0, 3, 1, 2) / 127.5 - 1
    with torch.no_grad():
        expected = reference(ta, tb).flatten().numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-7)
    assert Lpips("alex", "random", seed=5).distance(a, a) == pytest.approx([0, 0, 0], abs=1e-6)


def test_lpips_does_not_touch_global_rng():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    Lpips("alex", "random", seed=1)
    assert torch.equal(torch.rand(3), expected)


def test_merge_builds_cells_with_the_metric_functions():
    import pandas as pd

    from entmap.measure.map_cells import merge_cells

    seeds = pd.DataFrame({
        "prompt_id": ["p1", "p1", "p2", "p2"], "seed": [0, 1, 0, 1], "model": ["s/lora"] * 4,
        "a_base": [0.30, 0.25, 0.40, 0.10], "a_pers": [0.32, 0.20, 0.40, 0.16],
        "d_sem": [0.02, 0.05, 0.0, 0.06], "lpips": [0.1, 0.3, 0.0, 0.5],
        "f_base": [1.0, 0.75, float("nan"), float("nan")], "f_pers": [0.5, 1.0, float("nan"), float("nan")],
        "reused": [True, True, True, False],
    })  # fmt: skip
    prompts = pd.DataFrame({"id": ["p1", "p2"], "category": ["people", "animals"], "text": ["x", "y"]})
    floor = {"tau_sem": 0.03, "tau_per": 0.2, "tau_struct": 0.25}
    cells = merge_cells(seeds, prompts, {"s": {"category": "face"}}, floor).set_index("prompt_id")
    # p1: |.02|, |-.05| -> .035, signed -.015, LPIPS .2 ; p2: 0, .06 -> .03, signed .03, LPIPS .25
    assert cells.loc["p1", ["e_sem", "e_sem_signed", "e_per"]].tolist() == pytest.approx([0.035, -0.015, 0.2])
    assert cells.loc["p2", ["e_sem", "e_sem_signed", "e_per"]].tolist() == pytest.approx([0.03, 0.03, 0.25])
    assert cells["above_tau_sem"].tolist() == [True, False] and cells["above_tau_per"].tolist() == [False, True]
    assert set(cells["subject_category"]) == {"face"} and cells["n_seeds"].tolist() == [2, 2]
    # p1: f shifts -.5, +.25 -> E_struct .375, signed -.125; p2 is not scored structurally
    assert cells.loc["p1", ["e_struct", "e_struct_signed"]].tolist() == pytest.approx([0.375, -0.125])
    assert cells.loc["p2", ["e_struct", "e_struct_signed"]].isna().all()
    assert cells["above_tau_struct"].tolist() == [True, False]  # .375 > .25; p2 unscored
    assert cells["reused"].tolist() == [True, False]  # a cell is reused when every seed's image was
    unscored = merge_cells(seeds, prompts, {"s": {"category": "face"}}, {**floor, "tau_struct": None})
    assert not unscored["above_tau_struct"].any()
