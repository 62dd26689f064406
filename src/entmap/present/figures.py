"""Figures of the map. Every figure is written as PNG and PDF, atomically."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import json

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from entmap.core.atomic import atomic_path  # noqa: E402
from entmap.core.vocabulary import CONTROL_CATEGORY, MODEL_METHODS, split_method  # noqa: E402
from entmap.inputs.prompt_suites import PROMPT_CATEGORIES  # noqa: E402


def save_figure(fig: plt.Figure, stem: str | os.PathLike[str], dpi: int = 200) -> list[Path]:
    """Save ``fig`` as ``stem.png`` (``dpi``) and ``stem.pdf``; return the paths."""
    paths = []
    for suffix in (".png", ".pdf"):
        path = Path(f"{stem}{suffix}")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=suffix[1:], dpi=dpi, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def _column_order(cells: pd.DataFrame) -> list[str]:
    models = cells.drop_duplicates("model")[["model", "method", "subject_category", "subject"]]
    rank = {m: i for i, m in enumerate(MODEL_METHODS)}

    def method_rank(method: str) -> tuple[int, str]:  # a variant (lora+sage) right after its method
        base, variant = split_method(method)
        return rank.get(base, len(rank)), variant or ""

    models = models.assign(_m=models["method"].map(method_rank))
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

    Cells above the noise floor ``tau`` are marked with a dot; cells whose images were all reused
    from the base (``reused``: 0 by proof, not measured) are hatched.
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
        label = f"> noise floor ({tau:.3g})" if len(xs) else None
        ax.scatter(xs, ys, s=14, c="cyan", marker="o", linewidths=0, label=label)
    reused = (
        cells.pivot(index="prompt_id", columns="model", values="reused")
        .loc[rows["prompt_id"], columns]
        .to_numpy(dtype=bool)
    )
    hatch_cells(ax, reused, "reused from the base (identical by proof)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False, borderaxespad=0.2)
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
    ax.set_xticks(range(n_cols), [f"{m} ({category[m]})" for m in columns], rotation=60, ha="right", fontsize=8)
    ax.set_xlabel("personalized model (subject/method)")
    ax.set_title(f"Concept Entanglement Map ({value})", loc="left")
    return save_figure(fig, stem)


def hatch_cells(ax: plt.Axes, mask: np.ndarray, label: str) -> int:
    """Hatch the heatmap cells where ``mask`` (rows x columns) is true, with one legend entry; returns their count."""
    from matplotlib.patches import Rectangle

    ys, xs = np.nonzero(mask)
    for number, (y, x) in enumerate(zip(ys, xs, strict=True)):
        ax.add_patch(
            Rectangle(
                (x - 0.5, y - 0.5),
                1,
                1,
                fill=False,
                hatch="////",
                edgecolor="0.75",
                linewidth=0,
                label=label if number == 0 else None,
            )
        )
    return len(ys)


def entanglement_map_figure(
    cells_path: str | os.PathLike[str], noise_floor_path: str | os.PathLike[str], stem: str | os.PathLike[str]
) -> list[Path]:
    """Read cells.parquet and noise_floor.json; draw the E_sem map with tau_sem marks."""

    from entmap.core.parquet_schemas import CELLS, read_table

    cells = read_table(cells_path, CELLS)
    tau = json.loads(Path(noise_floor_path).read_text(encoding="utf-8"))["tau_sem"]
    return plot_entanglement_map(cells, stem, "e_sem", tau)


REGIONS = (
    ("safe", 0.02, 0.02, "left", "bottom"),
    ("semantic drift", 0.02, 0.98, "left", "top"),
    ("visual drift", 0.98, 0.02, "right", "bottom"),
    ("full entanglement", 0.98, 0.98, "right", "top"),
)
METHOD_COLOURS = {
    "ti": "#1b9e77",
    "lora": "#d95f02",
    "cd": "#7570b3",
    "external": "#e7298a",
    "perturb": "#666666",
}
CATEGORY_MARKERS = {"face": "o", "object": "s", "style": "^", CONTROL_CATEGORY: "x"}


def point_labels(per_model: pd.DataFrame) -> dict[tuple[float, float], str]:
    """One label per distinct (mean E_per, mean E_sem) point: models drawn at the same place
    (Textual Inversion's exact zeros, the scale-0 control) share one comma-joined label instead
    of printing over each other."""
    labels: dict[tuple[float, float], list[str]] = {}
    for _, row in per_model.iterrows():
        labels.setdefault((float(row["mean_e_per"]), float(row["mean_e_sem"])), []).append(str(row["model"]))
    return {point: ", ".join(names) for point, names in labels.items()}


def plot_drift_scatter(per_model: pd.DataFrame, tau_sem: float, tau_per: float, stem: str | os.PathLike[str]):
    """Per-model mean E_sem (y) vs mean E_per (x), split by the noise floors into four regions.

    Regions: safe (both below), semantic drift (E_sem above only), visual drift (E_per above
    only), full entanglement (both above).
    """
    fig, ax = plt.subplots(figsize=(7.5, 6))
    for _, row in per_model.iterrows():
        ax.errorbar(
            row["mean_e_per"],
            row["mean_e_sem"],
            xerr=[
                [row["mean_e_per"] - row["mean_e_per_ci_low"]],
                [row["mean_e_per_ci_high"] - row["mean_e_per"]],
            ],
            yerr=[
                [row["mean_e_sem"] - row["mean_e_sem_ci_low"]],
                [row["mean_e_sem_ci_high"] - row["mean_e_sem"]],
            ],
            fmt=CATEGORY_MARKERS.get(row["subject_category"], "D"),
            color=METHOD_COLOURS.get(split_method(row["method"])[0], "black"),
            markerfacecolor="white" if split_method(row["method"])[1] else None,  # variants hollow
            markersize=7,
            elinewidth=0.8,
            capsize=2,
        )
    if len(per_model) <= 20:
        for (x, y), label in point_labels(per_model).items():
            ax.annotate(label, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    x_max = max(tau_per, per_model["mean_e_per_ci_high"].max()) * 1.6 or 1.0
    y_max = max(tau_sem, per_model["mean_e_sem_ci_high"].max()) * 1.6 or 1.0
    # symlog: models often sit orders of magnitude below the noise floor, and exact zeros exist
    for axis, values, tau in (
        ("x", per_model["mean_e_per"], tau_per),
        ("y", per_model["mean_e_sem"], tau_sem),
    ):
        positive = [v for v in [*values, tau] if v > 0]
        linthresh = 0.5 * min(positive) if positive else 1e-6
        (ax.set_xscale if axis == "x" else ax.set_yscale)("symlog", linthresh=linthresh, linscale=0.3)
    ax.set_xlim(0, x_max)
    ax.set_ylim(0, y_max)
    ax.axvline(tau_per, color="grey", linestyle="--", linewidth=1)
    ax.axhline(tau_sem, color="grey", linestyle="--", linewidth=1)
    ax.annotate(
        f"τ_per = {tau_per:.3g}",
        (tau_per, 0),
        xytext=(3, 40),
        textcoords="offset points",
        rotation=90,
        fontsize=8,
        color="grey",
    )
    ax.annotate(
        f"τ_sem = {tau_sem:.3g}",
        (0, tau_sem),
        xytext=(40, 3),
        textcoords="offset points",
        fontsize=8,
        color="grey",
    )
    for name, fx, fy, ha, va in REGIONS:
        ax.text(fx, fy, name, transform=ax.transAxes, ha=ha, va=va, fontsize=10, color="#444444", style="italic")
    handles = [
        plt.Line2D([], [], color=c, marker="o", linestyle="", label=m)
        for m, c in METHOD_COLOURS.items()
        if m in set(per_model["method"])
    ]
    handles += [
        plt.Line2D([], [], color=METHOD_COLOURS.get(split_method(m)[0], "black"), marker="o", mfc="w", ls="", label=m)
        for m in sorted(set(per_model["method"]))
        if split_method(m)[1]
    ]
    handles += [
        plt.Line2D([], [], color="black", marker=mk, linestyle="", label=c)
        for c, mk in CATEGORY_MARKERS.items()
        if c in set(per_model["subject_category"])
    ]
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_xlabel("mean E_per (LPIPS to the seed-matched base image; symlog)")
    ax.set_ylabel("mean E_sem (|Δ CLIP cosine|; symlog)")
    ax.set_title("Semantic vs perceptual disruption per model (95% bootstrap intervals)")
    return save_figure(fig, stem)


def plot_category_matrix(matrix: pd.DataFrame, stem: str | os.PathLike[str]):
    """Subject category (columns) x prompt category (rows): mean E_sem, values written in cells."""
    table = matrix.pivot(index="prompt_category", columns="subject_category", values="mean_e_sem")
    rows = [c for c in PROMPT_CATEGORIES if c in table.index] + [c for c in table.index if c not in PROMPT_CATEGORIES]
    table = table.loc[rows]
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * table.shape[1], 1.2 + 0.55 * table.shape[0]))
    values = table.to_numpy(dtype=float)
    vmax = np.nanmax(values) if np.isfinite(values).any() and np.nanmax(values) > 0 else 1.0
    image = ax.imshow(values, cmap="magma", vmin=0, vmax=vmax, aspect="auto")
    for (i, j), value in np.ndenumerate(values):
        ax.text(
            j,
            i,
            f"{value:.3g}",
            ha="center",
            va="center",
            fontsize=9,
            color="white" if value < 0.6 * vmax else "black",
        )
    ax.set_xticks(range(table.shape[1]), table.columns)
    ax.set_yticks(range(table.shape[0]), table.index)
    ax.set_xlabel("subject category of the personalization")
    ax.set_ylabel("prompt category")
    fig.colorbar(image, ax=ax, fraction=0.05).set_label("mean E_sem")
    ax.set_title("Category x category disruption")
    return save_figure(fig, stem)


def plot_image_grid(rows: list[dict], model: str, stem: str | os.PathLike[str]):
    """Base and personalized image side by side for each listed prompt, with their scores.

    Each row dict: text, base (uint8 HxWx3), pers, a_base, a_pers, lpips, e_sem.
    """
    n = max(1, len(rows))
    fig, axes = plt.subplots(n, 2, figsize=(5.2, 2.5 * n), squeeze=False)
    for i, row in enumerate(rows):
        for j, (key, title) in enumerate((("base", "base"), ("pers", model))):
            ax = axes[i, j]
            ax.imshow(row[key], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            score = row["a_base"] if key == "base" else row["a_pers"]
            ax.set_title(f"{title}: CLIP {score:.3f}", fontsize=8)
        text = row["text"] if len(row["text"]) <= 48 else row["text"][:47] + "…"
        axes[i, 0].set_ylabel(f"{text}\nE_sem {row['e_sem']:.3f}, LPIPS {row['lpips']:.3f}", fontsize=7)
    fig.suptitle(f"{model}: highest-shift prompts (seed with the largest shift)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, stem, dpi=110)


def drift_scatter_figure(
    per_model_path: str | os.PathLike[str],
    noise_floor_path: str | os.PathLike[str],
    stem: str | os.PathLike[str],
) -> list[Path]:
    """Read tables/per_model.csv and noise_floor.json; draw the four-region scatter."""

    floor = json.loads(Path(noise_floor_path).read_text(encoding="utf-8"))
    return plot_drift_scatter(pd.read_csv(per_model_path), floor["tau_sem"], floor["tau_per"], stem)


def category_matrix_figure(matrix_path: str | os.PathLike[str], stem: str | os.PathLike[str]) -> list[Path]:
    """Read tables/category_matrix.csv; draw subject category x prompt category."""
    return plot_category_matrix(pd.read_csv(matrix_path), stem)


def _panel_grid(n: int, ncols: int = 4, size: tuple[float, float] = (3.2, 2.6)):
    ncols = max(1, min(ncols, n))
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat)


def plot_tea_tradeoff(table: pd.DataFrame, stem: str | os.PathLike[str]) -> list[Path]:
    """One panel per model: change of context alignment (S_T^p) and identity (CLIP-I) against alpha.

    Changes are against the unadjusted model (the zero line); one line style per beta.
    """
    adjusted = table[table["setting"] != "none"]
    models = list(dict.fromkeys(adjusted["model"]))
    fig, axes = _panel_grid(len(models))
    styles = ["-", "--", ":", "-."]
    for ax, model in zip(axes, models, strict=False):
        rows = adjusted[adjusted["model"] == model]
        for i, (beta, group) in enumerate(rows.groupby("beta", sort=True, dropna=False)):
            group = group.sort_values("alpha")
            style = styles[i % len(styles)]
            beta_label = "norm mixing" if pd.isna(beta) else f"beta {beta:g}"
            ax.plot(
                group["alpha"],
                group["delta_clip_context"],
                style,
                marker="o",
                color="tab:blue",
                label=f"context S_T^p, {beta_label}",
            )
            if group["delta_clip_image"].notna().any():
                ax.plot(
                    group["alpha"],
                    group["delta_clip_image"],
                    style,
                    marker="s",
                    color="tab:orange",
                    label=f"identity CLIP-I, {beta_label}",
                )
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_title(f"{model} ({rows['level'].iloc[0]})", fontsize=9)
        ax.set_xlabel("alpha")
        ax.set_ylabel("change vs unadjusted")
        ax.tick_params(labelsize=7)
    if models:
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(
            handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8, bbox_to_anchor=(0.5, -0.02)
        )
    fig.suptitle("TEA trade-off: context alignment up, identity down as alpha grows", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    return save_figure(fig, stem, dpi=110)


COLLAPSE_PANELS = {
    "norm_percentile": "||V*|| percentile in vocabulary",
    "norm_ratio": "||V*|| / ||c||",
    "cos_anchor": "cos(V*, c)",
    "mean_pairwise": "mean pairwise P_V* vs P_c",
    "hausdorff": "Hausdorff P_V* vs P_c",
    "mahalanobis": "Mahalanobis",
    "kl": "KL of similarity rows",
    "intra_v": "intra-set spread (P_V* solid, P_c dashed)",
}


def plot_collapse(table: pd.DataFrame, stem: str | os.PathLike[str]) -> list[Path]:
    """Each collapse diagnostic over training steps, one line per Textual Inversion subject."""
    fig, axes = _panel_grid(len(COLLAPSE_PANELS))
    definition = ", ".join(sorted(set(table["distances"]))) if "distances" in table else ""
    for ax, (column, title) in zip(axes, COLLAPSE_PANELS.items(), strict=True):
        if column in ("mahalanobis", "kl") and definition:
            title = f"{title} ({definition} definition)"
        for i, (subject, rows) in enumerate(table.groupby("subject", sort=True)):
            color = f"C{i}"
            ax.plot(rows["step"], rows[column], marker=".", color=color, label=subject)
            if column == "intra_v":
                ax.plot(rows["step"], rows["intra_c"], "--", color=color)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("training step")
        ax.tick_params(labelsize=7)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(
            handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=8, bbox_to_anchor=(0.5, -0.02)
        )
    fig.suptitle("Semantic collapse over Textual Inversion training", fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    return save_figure(fig, stem, dpi=110)


def tea_tradeoff_figure(table_path: str | os.PathLike[str], stem: str | os.PathLike[str]) -> list[Path]:
    """Read tables/tea_tradeoff.csv; draw the trade-off panels."""
    return plot_tea_tradeoff(pd.read_csv(table_path), stem)


def collapse_figure(table_path: str | os.PathLike[str], stem: str | os.PathLike[str]) -> list[Path]:
    """Read tables/collapse.csv; draw the diagnostics over training steps."""
    return plot_collapse(pd.read_csv(table_path), stem)


def plot_geometry(summary: pd.DataFrame, stem: str | os.PathLike[str]) -> list[Path]:
    """Spread ratio and distortion of every model, one row of panels per level (text, kv)."""
    levels = [level for level in ("text", "kv") if level in set(summary["level"])]
    fig, axes = plt.subplots(len(levels), 2, figsize=(9, 0.35 * summary["model"].nunique() * len(levels) + 2.2),
                             squeeze=False)  # fmt: skip
    names = {"text": "text-encoder output", "kv": "keys and values where text meets image"}
    for row, level in zip(axes, levels, strict=True):
        part = summary[summary["level"] == level].sort_values("model", ascending=False)
        for ax, column, reference, label in (
            (row[0], "spread_ratio", 1.0, "spread ratio (< 1: prompts contract)"),
            (row[1], "distortion", 0.0, "local-structure distortion 1 - r"),
        ):
            ax.barh(part["model"], part[column], color="#4c72b0")
            ax.axvline(reference, color="0.3", lw=0.8, ls="--")
            ax.set_xlabel(label)
            ax.set_title(names[level], fontsize=9, loc="left")
            ax.tick_params(axis="y", labelsize=7)
    fig.suptitle("Prompt-embedding geometry of each model against the base", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, stem)


def geometry_figure(summary_path: str | os.PathLike[str], stem: str | os.PathLike[str]) -> list[Path]:
    """The geometry figure from ``tables/geometry.csv``."""
    return plot_geometry(pd.read_csv(summary_path), stem)


def plot_block_attribution(table: pd.DataFrame, stem: str | os.PathLike[str]) -> list[Path]:
    """One panel per measured model: each block's share of E_sem and of E_per (contribution / E(full)).

    Models without blocks (Textual Inversion, full checkpoints) are named under the panels with
    their reason; a model whose E(full) is 0 on the subset says so in its panel.
    """
    measured = table[table["block"].fillna("") != ""]
    skipped = table[table["block"].fillna("") == ""]
    models = list(dict.fromkeys(measured["model"]))
    height = 0.28 * measured.groupby("model").size().max() + 1.4 if models else 2.0
    fig, axes = _panel_grid(max(1, len(models)), ncols=4, size=(3.4, height))
    for ax, model in zip(axes, models, strict=False):
        rows = measured[measured["model"] == model].iloc[::-1]
        y = np.arange(len(rows))
        for offset, column, color, label in (
            (0.2, "share_sem", "#4c72b0", "share of E_sem"),
            (-0.2, "share_per", "#dd8452", "share of E_per"),
        ):
            ax.barh(y + offset, rows[column].fillna(0), height=0.38, color=color, label=label)
        ax.set_yticks(y, rows["block"], fontsize=7)
        ax.axvline(0, color="0.3", lw=0.8)
        ax.axvline(1, color="0.6", lw=0.8, ls="--")
        first = rows.iloc[0]
        ax.set_title(f"{model}\nE_sem {first['e_full_sem']:.3g}, E_per {first['e_full_per']:.3g}", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        if rows["share_sem"].isna().all() and rows["share_per"].isna().all():
            ax.text(0.5, 0.5, "E = 0: nothing to attribute", transform=ax.transAxes, ha="center", fontsize=8)
    if not models:
        axes[0].text(0.5, 0.5, "no model with blocks to switch off", ha="center", transform=axes[0].transAxes)
        axes[0].set_axis_off()
    else:
        axes[0].legend(fontsize=6, loc="best")
    fig.suptitle("Share of each model's disruption carried by each block (contribution / E(full))", fontsize=10)
    bottom = 0.0
    if len(skipped):
        names = ", ".join(skipped["model"])
        fig.text(0.01, 0.01, f"no blocks, not measured: {names}", fontsize=7, color="0.35", wrap=True)
        bottom = 0.5 / fig.get_figheight()
    fig.tight_layout(rect=(0, bottom, 1, 0.96))
    return save_figure(fig, stem, dpi=110)


def block_attribution_figure(table_path: str | os.PathLike[str], stem: str | os.PathLike[str]) -> list[Path]:
    """The block attribution figure from ``tables/block_attribution.csv``."""
    return plot_block_attribution(pd.read_csv(table_path, keep_default_na=True), stem)
