"""The report's interactive map: a Vega-Lite heat map of E_sem whose cells, clicked, show the base
and personalized image of every seed side by side with their scores.

The chart is declarative (Altair writes the Vega-Lite spec: a point selection on (prompt, model)
filters an image panel), its images are ``data:image/png;base64`` URLs, and the Vega, Vega-Lite
and vega-embed JavaScript comes inlined from ``vl-convert-python``'s bundle, so the page needs
no server and no network.

Only some cells carry images (the report would grow with prompts x models x seeds): per model the
``most_disrupted`` cells by E_sem and a seeded random ``sample`` of the others. Exported PNGs are
copies of the stored ones with A1111 generation parameters added (:mod:`entmap.core.png_parameters`).
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable, Mapping
from typing import Any

import altair as alt
import markupsafe
import numpy as np
import pandas as pd

from entmap.core.png_parameters import parameters_text, with_parameters

DEFAULT_IMAGE_CELLS = {"most_disrupted": 3, "sample": 2, "seed": 0}
THUMBNAIL_PX = 128  # on screen; the PNG keeps its own size
BASE = "base"


def choose_image_cells(cells: pd.DataFrame, most_disrupted: int = 3, sample: int = 2, seed: int = 0) -> pd.DataFrame:
    """The cells whose images the report carries, with ``why``: per model its ``most_disrupted``
    cells by E_sem ("most disrupted"), then ``sample`` of its other cells drawn at random with
    ``seed`` ("sample"). Ties in E_sem break by prompt id, so the choice is deterministic."""
    rng = np.random.default_rng(seed)
    chosen = []
    for _, rows in cells.groupby("model", sort=True):
        ranked = rows.sort_values(["e_sem", "prompt_id"], ascending=[False, True], kind="stable")
        top = ranked.head(most_disrupted)
        rest = ranked.iloc[len(top) :].sort_values("prompt_id")
        picked = rng.choice(len(rest), size=min(sample, len(rest)), replace=False) if len(rest) else []
        drawn = rest.iloc[sorted(picked)]
        chosen.append(top[["prompt_id", "model"]].assign(why="most disrupted"))
        chosen.append(drawn[["prompt_id", "model"]].assign(why="sample"))
    if not chosen:
        return pd.DataFrame(columns=["prompt_id", "model", "why"])
    return pd.concat(chosen, ignore_index=True)


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def exported_png(
    png: bytes, prompt: str, seed: int, width: int, height: int, generation: Mapping[str, Any], model: Mapping[str, Any]
) -> bytes:
    """A stored PNG with its A1111 ``parameters`` (``model``: name, lora_hashes, ti_hashes, extra)."""
    text = parameters_text(
        prompt,
        negative_prompt=generation.get("negative_prompt", ""),
        steps=generation["steps"],
        sampler=generation.get("scheduler", "ddim"),
        cfg_scale=generation["guidance_scale"],
        seed=int(seed),
        width=int(width),
        height=int(height),
        model=model.get("name"),
        lora_hashes=model.get("lora_hashes"),
        ti_hashes=model.get("ti_hashes"),
        extra=model.get("extra"),
    )
    return with_parameters(png, text)


def explorer_data(
    cells: pd.DataFrame,
    chosen: pd.DataFrame,
    images: pd.DataFrame,
    disruption: pd.DataFrame,
    generation: Mapping[str, Any],
    model_info: Callable[[str], Mapping[str, Any]],
) -> dict[str, pd.DataFrame]:
    """The chart's tables: ``cells`` (every cell, ``images`` yes/no), ``panel`` (one row per chosen
    cell, seed and side, with the ``key`` of its PNG), ``pngs`` (key -> data URL, each PNG once: a
    prompt's base image is shared by every model) and ``scores`` (per chosen cell and seed).

    ``images``: IMAGES rows of the base (model "base") and of the models; ``disruption``: DISRUPTION
    rows; ``model_info(model)``: what :func:`exported_png` writes about the model.
    """
    with_images = set(zip(chosen["prompt_id"], chosen["model"], strict=True))
    why = {(p, m): w for p, m, w in zip(chosen["prompt_id"], chosen["model"], chosen["why"], strict=True)}
    table = cells.assign(
        images=[
            ("yes" if (p, m) in with_images else "no") for p, m in zip(cells["prompt_id"], cells["model"], strict=True)
        ],
        why=[why.get((p, m), "") for p, m in zip(cells["prompt_id"], cells["model"], strict=True)],
    )
    text = dict(zip(cells["prompt_id"], cells["text"], strict=False))
    prompts = set(chosen["prompt_id"])
    wanted = images[images["prompt_id"].isin(prompts)]
    wanted = wanted[(wanted["model"] == BASE) | wanted.apply(lambda r: (r.prompt_id, r.model) in with_images, axis=1)]
    pngs = {}
    for row in wanted.itertuples():
        info = {"name": generation.get("model_name")} if row.model == BASE else model_info(row.model)
        png = exported_png(row.png, text[row.prompt_id], row.seed, row.width, row.height, generation, info)
        pngs[f"{row.model}|{row.prompt_id}|{row.seed}"] = _data_url(png)
    panel, scores = [], []
    chosen_scores = disruption.merge(chosen[["prompt_id", "model"]], on=["prompt_id", "model"])
    for row in chosen_scores.sort_values(["model", "prompt_id", "seed"]).itertuples():
        for side, source in (("base", BASE), ("personalized", row.model)):
            panel.append(
                {
                    "prompt_id": row.prompt_id,
                    "model": row.model,
                    "seed": int(row.seed),
                    "side": side,
                    "key": f"{source}|{row.prompt_id}|{row.seed}",
                }
            )
        scores.append(
            {
                "prompt_id": row.prompt_id,
                "model": row.model,
                "seed": int(row.seed),
                "label": f"seed {int(row.seed)}: d_sem {row.d_sem:.4g}, LPIPS {row.lpips:.4g}"
                + (" (reused: the base's image)" if row.reused else ""),
            }
        )
    panel = pd.DataFrame(panel, columns=["prompt_id", "model", "seed", "side", "key"])
    missing = sorted(set(panel["key"]) - set(pngs))
    if missing:
        raise ValueError(f"report: images missing for {missing[:5]} (the image shards and the map disagree)")
    return {
        "cells": table,
        "panel": panel,
        "pngs": pd.DataFrame({"key": list(pngs), "url": list(pngs.values())}),
        "scores": pd.DataFrame(scores, columns=["prompt_id", "model", "seed", "label"]),
    }


def explorer_spec(data: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """The Vega-Lite spec of the map and its image panel (a dict; embed with :func:`vega_bundle`)."""
    cells = data["cells"][
        ["prompt_id", "text", "category", "model", "e_sem", "e_per", "n_seeds", "above_tau_sem", "images", "why"]
    ].copy()
    cells["prompt"] = cells["prompt_id"] + ": " + cells["text"]
    cell = alt.selection_point(name="cell", fields=["prompt_id", "model"], on="click", empty=False, clear="dblclick")
    order = sorted(cells["prompt"].unique())
    heat = (
        alt.Chart(cells, title="E_sem per (prompt, model): click a framed cell to see its images")
        .mark_rect()
        .encode(
            x=alt.X("model:N", title="model", axis=alt.Axis(labelAngle=-40)),
            y=alt.Y("prompt:N", sort=order, title=None, axis=alt.Axis(labelLimit=260)),
            color=alt.Color("e_sem:Q", title="E_sem", scale=alt.Scale(scheme="viridis")),
            stroke=alt.condition(
                cell,
                alt.value("#e31a1c"),
                alt.Stroke(
                    "images:N",
                    scale=alt.Scale(domain=["yes", "no"], range=["#111111", "transparent"]),
                    legend=alt.Legend(title="images", symbolType="square", symbolFillColor="white"),
                ),
            ),
            strokeWidth=alt.condition(cell, alt.value(3), alt.value(1.5)),
            tooltip=[
                alt.Tooltip("prompt_id:N", title="prompt"),
                alt.Tooltip("text:N", title="text"),
                alt.Tooltip("model:N"),
                alt.Tooltip("e_sem:Q", format=".4g", title="E_sem"),
                alt.Tooltip("e_per:Q", format=".4g", title="E_per"),
                alt.Tooltip("n_seeds:Q", title="seeds"),
                alt.Tooltip("images:N"),
            ],
        )
        .add_params(cell)
        .properties(width=alt.Step(28), height=alt.Step(14))
    )
    heading = (
        alt.Chart(cells)
        .transform_filter(cell)
        .transform_calculate(
            heading="datum.model + ' on ' + datum.prompt + ': E_sem ' + format(datum.e_sem, '.4g') + "
            "', E_per ' + format(datum.e_per, '.4g') + ' (' + datum.why + ')'"
        )
        .mark_text(align="left", baseline="top", fontSize=13, fontWeight="bold")
        .encode(text="heading:N", x=alt.value(0), y=alt.value(0))
        .properties(width=600, height=20)
    )
    # a fixed size and fixed domains: the panel's layout does not change when a cell is clicked
    seeds = sorted(int(seed) for seed in data["panel"]["seed"].unique())
    side = THUMBNAIL_PX + 8
    height = side * max(len(seeds), 1)
    pictures = (
        alt.Chart(data["panel"])
        .transform_filter(cell)
        .transform_lookup(lookup="key", from_=alt.LookupData(data=data["pngs"], key="key", fields=["url"]))
        .mark_image(width=THUMBNAIL_PX, height=THUMBNAIL_PX, smooth=False)
        .encode(
            x=alt.X(
                "side:N",
                scale=alt.Scale(domain=["base", "personalized"]),
                title=None,
                axis=alt.Axis(orient="top", labelAngle=0),
            ),
            y=alt.Y("seed:O", title="seed", scale=alt.Scale(domain=seeds)),
            url="url:N",
            tooltip=[alt.Tooltip("side:N"), alt.Tooltip("seed:O"), alt.Tooltip("model:N")],
        )
        .properties(width=2 * side, height=height)
    )
    scores = (
        alt.Chart(data["scores"])
        .transform_filter(cell)
        .mark_text(align="left", fontSize=12)
        .encode(y=alt.Y("seed:O", axis=None, scale=alt.Scale(domain=seeds)), text="label:N", x=alt.value(4))
        .properties(width=320, height=height)
    )
    chart = alt.vconcat(heat, heading, alt.hconcat(pictures, scores, spacing=4)).configure_view(stroke=None)
    return chart.to_dict()


@functools.cache
def vega_bundle() -> str:
    """vega, vega-lite and vega-embed as one script that defines ``window.vegaEmbed`` (no network)."""
    import vl_convert

    return vl_convert.javascript_bundle()


def script_json(value: Any) -> markupsafe.Markup:
    """JSON to put as is inside a <script> element: no "<" (escaped as \\u003c), so nothing ends it early."""
    return markupsafe.Markup(json.dumps(value, separators=(",", ":")).replace("<", "\\u003c"))
