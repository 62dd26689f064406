"""Figures of the cross-attention shift: layers x steps per model, and heat maps of the most shifted prompt."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from entmap.core.parquet_schemas import ATTENTION_MAPS, read_table
from entmap.present.figures import _panel_grid, plt, save_figure


def short_layer_name(name: str) -> str:
    """``down_blocks.1.attentions.0.transformer_blocks.0.attn2`` -> ``down1.0.t0``; ``single_transformer_blocks.3.attn``
    -> ``single3``; ``transformer_blocks.3.attn`` -> ``block3``."""
    name = name.removesuffix(".attn2").removesuffix(".attn")
    for long, short in (
        ("single_transformer_blocks.", "single"),
        (".transformer_blocks.", ".t"),
        ("transformer_blocks.", "block"),
        ("_blocks.", ""),
        ("mid_block", "mid"),
        (".attentions.", "."),
    ):
        name = name.replace(long, short)
    return name


def plot_attention_shift(table: pd.DataFrame, stem: str | os.PathLike[str]) -> list[Path]:
    """One panel per model: mean |Delta A| (over its prompts and all text positions) by layer (rows,
    in the order data flows) and denoising step (columns); one colour scale for every panel."""
    models = list(dict.fromkeys(table["model"]))
    fig, axes = _panel_grid(len(models), ncols=4, size=(3.4, 2.8))
    vmax = float(table["shift"].max()) if len(table) and table["shift"].max() > 0 else 1.0
    image = None
    columns = min(4, max(1, len(models)))
    for index, (ax, model) in enumerate(zip(axes, models, strict=False)):
        rows = table[table["model"] == model]
        matrix = rows.pivot_table(index="layer_index", columns="step", values="shift", aggfunc="mean")
        names = rows.drop_duplicates("layer_index").set_index("layer_index")["layer"]
        image = ax.imshow(
            matrix.to_numpy(float), aspect="auto", cmap="magma", vmin=0, vmax=vmax, interpolation="nearest"
        )
        ax.set_title(model, fontsize=9)
        ax.set_xticks(range(matrix.shape[1]), [str(s) for s in matrix.columns], fontsize=6)
        ax.set_xlabel("denoising step", fontsize=7)
        if index % columns == 0:  # layer names on the first panel of each row only
            labels = [short_layer_name(names[i]) if len(matrix) <= 30 else str(i) for i in matrix.index]
            ax.set_yticks(range(matrix.shape[0]), labels, fontsize=5 if len(matrix) > 12 else 6)
            ax.set_ylabel("layer (input to output)", fontsize=7)
        else:
            ax.set_yticks([])
    if image is not None:
        fig.colorbar(image, ax=axes[: len(models)], fraction=0.02, pad=0.02).set_label("mean |Δ A|")
    fig.suptitle("Cross-attention shift of each model against the base, by layer and step", fontsize=10, y=1.02)
    return save_figure(fig, stem, dpi=110)


def plot_attention_maps(maps: pd.DataFrame, title: str, stem: str | os.PathLike[str]) -> list[Path]:
    """Rows: the base's, the model's attention map of each word over the image, and their difference
    (model - base); one column per word of the prompt (every non-padding position without words)."""
    chosen = maps[maps["token_class"] == "word"]
    chosen = chosen if len(chosen) else maps
    tokens = list(dict.fromkeys(zip(chosen["token"], chosen["token_text"], chosen["encoder"], strict=True)))
    grids = {
        (row.token, row.kind): np.asarray(row.values, float).reshape(row.side, row.side) for row in chosen.itertuples()
    }
    fig, axes = plt.subplots(3, max(1, len(tokens)), figsize=(1.6 * max(1, len(tokens)) + 1.2, 5.2), squeeze=False)
    vmax = max((g.max() for g in grids.values()), default=1.0) or 1.0
    differences = [grids[(t, "model")] - grids[(t, "base")] for t, _, _ in tokens]
    dmax = max((float(np.abs(d).max()) for d in differences), default=0.0) or 1.0
    encoders = {encoder for _, _, encoder in tokens}
    for column, ((token, text, encoder), difference) in enumerate(zip(tokens, differences, strict=True)):
        label = text if len(encoders) == 1 else f"{text} ({encoder})"
        panels = (
            (grids[(token, "base")], "viridis", 0, vmax),
            (grids[(token, "model")], "viridis", 0, vmax),
            (difference, "RdBu_r", -dmax, dmax),
        )
        for row, (grid, cmap, low, high) in enumerate(panels):
            ax = axes[row][column]
            shown = ax.imshow(grid, cmap=cmap, vmin=low, vmax=high, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(label, fontsize=8)
            if column == 0:
                ax.set_ylabel(("base", "personalized", "difference")[row], fontsize=8)
            if column == len(tokens) - 1:
                fig.colorbar(shown, ax=axes[row][column], fraction=0.05, pad=0.04)
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, stem, dpi=110)


def attention_shift_figure(table_path: str | os.PathLike[str], stem: str | os.PathLike[str]) -> list[Path]:
    """The layers x steps figure from ``tables/attention_layer_step.csv``."""
    return plot_attention_shift(pd.read_csv(table_path), stem)


def attention_maps_figure(
    maps_path: str | os.PathLike[str], texts: dict[str, str], stem: str | os.PathLike[str]
) -> list[Path]:
    """A model's heat-map figure from its ``attention/<model>/maps.parquet``."""
    maps = read_table(maps_path, ATTENTION_MAPS)
    if maps.empty:
        raise ValueError(f"{maps_path}: no heat maps")
    model, prompt_id, seed = maps[["model", "prompt_id", "seed"]].iloc[0]
    text = texts.get(prompt_id, "")
    title = f"{model}: attention over the image, most shifted prompt {prompt_id} ({text!r}), seed {seed}"
    return plot_attention_maps(maps, title, stem)


def attention_figures(
    layer_step_path: str | os.PathLike[str],
    maps_paths: list[str],
    texts: dict[str, str],
    shift_png: str | os.PathLike[str],
    maps_pngs: list[str],
) -> None:
    """Every attention figure of a run: the layers x steps figure and each model's heat maps (PNG and PDF)."""
    attention_shift_figure(layer_step_path, str(shift_png).removesuffix(".png"))
    for maps_path, png in zip(maps_paths, maps_pngs, strict=True):
        attention_maps_figure(maps_path, texts, str(png).removesuffix(".png"))
