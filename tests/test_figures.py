"""Figures are rendered and looked at: non-blank, the expected size, PDF alongside."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_stats import OWN, synthetic

from entmap.analysis.summaries import summarize
from entmap.present.figures import (
    plot_category_matrix,
    plot_drift_scatter,
    plot_entanglement_map,
    plot_image_grid,
    point_labels,
)


def looks_like_a_figure(stem, min_size):
    png = Image.open(f"{stem}.png").convert("L")
    array = np.asarray(png, dtype=float)
    assert png.size[0] >= min_size[0] and png.size[1] >= min_size[1], png.size
    assert array.std() > 15  # not blank
    assert (array < 128).mean() > 0.01  # there is ink
    assert Path(f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"


@pytest.fixture(scope="module")
def data():
    seeds, cells = synthetic(np.random.default_rng(0), style_shift=0.01, n_subjects=2, n_prompts=2, n_seeds=2)
    return cells, summarize(cells, seeds, OWN, n_boot=20)


def test_map_heatmap(tmp_path, data):
    cells, _ = data
    plot_entanglement_map(cells.assign(reused=False), tmp_path / "map", "e_sem", tau=0.03)
    looks_like_a_figure(tmp_path / "map", (800, 600))


def test_map_hatches_the_cells_reused_from_the_base(tmp_path, data):
    """Reused cells (0 by proof) are hatched in light grey over the colour map's black, with a legend entry."""
    cells, _ = data
    ti = cells["method"] == "ti"
    plain = cells.assign(e_sem=cells["e_sem"].where(~ti, 0.0), reused=False)
    plot_entanglement_map(plain, tmp_path / "plain", "e_sem", tau=0.03)
    plot_entanglement_map(plain.assign(reused=ti), tmp_path / "hatched", "e_sem", tau=0.03)
    looks_like_a_figure(tmp_path / "hatched", (800, 600))

    def grey_pixels(stem) -> int:  # neutral light grey: the hatch, never a colour of the magma map
        rgb = np.asarray(Image.open(tmp_path / f"{stem}.png").convert("RGB"), dtype=int)
        return int(
            ((rgb.max(axis=2) - rgb.min(axis=2) < 8) & (rgb.mean(axis=2) > 150) & (rgb.mean(axis=2) < 230)).sum()
        )

    hatched_share = ti.mean() * 0.5  # the TI columns' share of the cells, halved for the heatmap's share of the figure
    size = np.prod(Image.open(tmp_path / "hatched.png").size)
    assert grey_pixels("hatched") - grey_pixels("plain") > 0.05 * hatched_share * size


def test_the_report_counts_reused_cells():
    from entmap.present.report import reuse_in_words

    cells = pd.DataFrame({"model": ["a/ti", "a/ti", "b/lora", "kv0/perturb"], "reused": [True, False, False, True]})
    assert reuse_in_words(cells).startswith("2 of 4 cells reused from the base (a/ti 1, kv0/perturb 1)")
    assert reuse_in_words(cells.assign(reused=False)).startswith("0 of 4 cells reused from the base (")


def test_scatter_with_regions(tmp_path, data):
    _, out = data
    plot_drift_scatter(out.per_model, 0.04, 0.5, tmp_path / "scatter")
    looks_like_a_figure(tmp_path / "scatter", (1000, 800))


def test_coincident_models_share_one_label():
    per_model = pd.DataFrame(
        {
            "model": ["a/ti", "b/ti", "a/lora", "kv0/perturb"],
            "mean_e_per": [0.0, 0.0, 0.03, 0.0],
            "mean_e_sem": [0.0, 0.0, 0.1, 0.0],
        }
    )
    assert point_labels(per_model) == {(0.0, 0.0): "a/ti, b/ti, kv0/perturb", (0.03, 0.1): "a/lora"}


def test_category_matrix(tmp_path, data):
    _, out = data
    plot_category_matrix(out.category_matrix, tmp_path / "matrix")
    looks_like_a_figure(tmp_path / "matrix", (400, 400))


def test_image_grid(tmp_path):
    rng = np.random.default_rng(1)
    rows = [
        {
            "text": f"prompt {i}",
            "base": rng.integers(0, 255, (64, 64, 3), dtype=np.uint8),
            "pers": rng.integers(0, 255, (64, 64, 3), dtype=np.uint8),
            "a_base": 0.3,
            "a_pers": 0.25,
            "lpips": 0.4,
            "e_sem": 0.05,
        }
        for i in range(3)
    ]
    plot_image_grid(rows, "x/lora", tmp_path / "grid")
    looks_like_a_figure(tmp_path / "grid", (400, 600))
