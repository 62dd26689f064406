"""Figures of the map. Every figure is written as PNG and PDF, atomically."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from entmap.atomic import atomic_path  # noqa: E402
from entmap.prompts import PROMPT_CATEGORIES  # noqa: E402

METHOD_ORDER = ("ti", "lora", "cd", "external")


def save_figure(fig: plt.Figure, stem: str | os.PathLike[str]) -> list[Path]:
    """Save ``fig`` as ``stem.png`` (200 dpi) and ``stem.pdf``; return the paths."""
    paths = []
    for suffix in (".png", ".pdf"):
        path = Path(f"{stem}{suffix}")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=suffix[1:], dpi=200, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def _column_order(cells: pd.DataFrame) -> list[str]:
    models = cells.drop_duplicates("model")[["model", "method", "subject_category", "subject"]]
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    models = models.assign(_m=models["method"].map(lambda m: rank.get(m, len(rank))))
    return list(models.sort_values(["_m", "subject_category", "subject"])["model"])


def _row_order(cells: pd.DataFrame) -> pd.DataFrame:
    rows = cells.drop_duplicates("prompt_id")[["prompt_id", "category", "text"]]
    rank = {c: i for i, c in enumerate(PROMPT_CATEGORIES)}
    rows = rows.assign(_c=rows["category"].map(lambda c: rank.get(c, len(rank))))
    return rows.sort_values("_c", kind="stable").reset_index(drop=True)


def plot_entanglement_map(
    cells: pd.DataFrame, stem: str | os.PathLike[str], value: str = "e_sem", tau: float | None = None
) -> list[Path]:
    """Heatmap of the map: rows = prompts grouped by category, columns = models by method.

    Cells above the noise floor ``tau`` are marked with a dot.
    """
    rows = _row_order(cells)
    columns = _column_order(cells)
    matrix = (
        cells.pivot(index="prompt_id", columns="model", values=value)
        .loc[rows["prompt_id"], columns]
        .to_numpy(dtype=float)
    )
    n_rows, n_cols = matrix.shape
    show_text = n_rows <= 60
    height = min(4 + 0.22 * n_rows, 30) if show_text else 10
    width = 4.5 + 0.55 * n_cols + (3.5 if show_text else 0)
    fig, ax = plt.subplots(figsize=(width, height))
    vmax = np.nanmax(matrix) if np.isfinite(matrix).any() and np.nanmax(matrix) > 0 else 1.0
    image = ax.imshow(matrix, aspect="auto", cmap="magma", vmin=0, vmax=vmax, interpolation="nearest")
    label = {"e_sem": "E_sem  (mean |Δ CLIP cosine|)", "e_per": "E_per  (mean LPIPS)"}.get(value, value)
    colorbar = fig.colorbar(image, ax=ax, fraction=0.035, pad=0.11)
    colorbar.set_label(label)
    if tau is not None:
        ys, xs = np.nonzero(matrix > tau)
        ax.scatter(xs, ys, s=14, c="cyan", marker="o", linewidths=0, label=f"> noise floor ({tau:.3g})")
        if len(xs):
            ax.legend(loc="upper right", bbox_to_anchor=(1.0, 1.08), fontsize=7, frameon=False)
    boundaries = np.flatnonzero(rows["category"].to_numpy()[1:] != rows["category"].to_numpy()[:-1]) + 1
    for b in boundaries:
        ax.axhline(b - 0.5, color="white", linewidth=1.5)
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [n_rows]])
    for start, end in zip(starts, ends, strict=True):
        ax.annotate(
            rows["category"].iloc[start],
            xy=(1.01, (start + end - 1) / 2),
            xycoords=("axes fraction", "data"),
            ha="left",
            va="center",
            fontsize=8,
            fontweight="bold",
        )
    if show_text:
        ax.set_yticks(range(n_rows), [t if len(t) <= 45 else t[:44] + "…" for t in rows["text"]], fontsize=7)
    else:
        ax.set_yticks([])
    category = cells.drop_duplicates("model").set_index("model")["subject_category"]
    ax.set_xticks(
        range(n_cols), [f"{m} ({category[m]})" for m in columns], rotation=60, ha="right", fontsize=8
    )
    ax.set_xlabel("personalized model (subject/method)")
    ax.set_title(f"Concept Entanglement Map ({value})")
    return save_figure(fig, stem)


def entanglement_map_figure(
    cells_path: str | os.PathLike[str], noise_floor_path: str | os.PathLike[str], stem: str | os.PathLike[str]
) -> list[Path]:
    """Read cells.parquet and noise_floor.json; draw the E_sem map with tau_sem marks."""
    import json

    from entmap.tables import CELLS, read_table

    cells = read_table(cells_path, CELLS)
    tau = json.loads(Path(noise_floor_path).read_text(encoding="utf-8"))["tau_sem"]
    return plot_entanglement_map(cells, stem, "e_sem", tau)
