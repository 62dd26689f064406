"""Image grids: for one model, its highest-shift prompts as base/personalized image pairs.

What a person inspects before releasing a personalized model. Computed from the model's own
per-seed tables only, so adding another model never redraws this grid.
"""

from __future__ import annotations

import os
from typing import Any

import pandas as pd

from entmap.core.image_codec import decode_png
from entmap.core.parquet_schemas import DISRUPTION, IMAGES, read_tables


def grid_rows(
    disruption: pd.DataFrame,
    prompts: pd.DataFrame,
    base_images: pd.DataFrame,
    pers_images: pd.DataFrame,
    n_prompts: int,
) -> list[dict[str, Any]]:
    """The ``n_prompts`` prompts of highest E_sem in one model's per-seed ``disruption``.

    Each prompt is shown at the seed with the largest shift. Computed from the model's own
    tables only, so adding another model never redraws this grid.
    """

    text = dict(zip(prompts["id"], prompts["text"], strict=True))
    cells = disruption.groupby("prompt_id").agg(e_sem=("d_sem", "mean"), e_per=("lpips", "mean"))
    top = cells.sort_values(["e_sem", "e_per"], ascending=False).head(n_prompts)
    base = base_images.set_index(["prompt_id", "seed"])["png"]
    pers = pers_images.set_index(["prompt_id", "seed"])["png"]
    rows = []
    for prompt_id, cell in top.iterrows():
        seeds = disruption[disruption["prompt_id"] == prompt_id]
        worst = seeds.sort_values(["d_sem", "lpips"], ascending=False).iloc[0]
        key = (prompt_id, int(worst["seed"]))
        rows.append(
            {
                "text": text[prompt_id],
                "base": decode_png(base[key]),
                "pers": decode_png(pers[key]),
                "a_base": float(worst["a_base"]),
                "a_pers": float(worst["a_pers"]),
                "lpips": float(worst["lpips"]),
                "e_sem": float(cell["e_sem"]),
            }
        )
    return rows


def image_grid(
    model: str,
    disruption_paths: list[str],
    prompts: pd.DataFrame,
    base_image_paths: list[str],
    pers_image_paths: list[str],
    n_prompts: int,
    stem: str | os.PathLike[str],
) -> None:
    """Read one model's tables and draw its image grid (what a person inspects before release)."""
    from entmap.present.figures import plot_image_grid

    rows = grid_rows(
        read_tables(disruption_paths, DISRUPTION),
        prompts,
        read_tables(base_image_paths, IMAGES),
        read_tables(pers_image_paths, IMAGES),
        n_prompts,
    )
    plot_image_grid(rows, model, stem)
