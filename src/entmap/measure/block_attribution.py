"""The ``block_attribution`` stage: one personalized model's images with its adapter switched off by block.

Over a subset of prompts P and seeds K, each configuration c of the adapter
(:mod:`entmap.models.block_switch`) draws the image x(p, k, c) from the same initial latent z_k, in
the same batches:

* ``base``: every block off (the base model);
* ``full``: no block off (the personalized model);
* ``off`` of block b: b off, every other block on;
* ``only`` of block b (``isolated``): b on, every other block off.

Each image is scored as the map scores it (the run's CLIP scorer and LPIPS):

    a(p, k, c)     = cos(f_T(p), f_I(x(p, k, c)))
    d_sem(p, k, c) = |a(p, k, c) - a(p, k, base)|
    d_per(p, k, c) = LPIPS(x(p, k, base), x(p, k, c))

so that mean_{p,k} d_sem(p, k, full) is the model's E_sem over the subset, and likewise E_per.
The contributions of the blocks are computed from these rows by
:mod:`entmap.analysis.block_attribution`. The subset is by default the model's most disrupted
prompts of this run's map (:func:`most_disrupted`).

Explained in docs/blocks.md.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np
import pandas as pd

from entmap.core.image_codec import decode_png, png_bytes
from entmap.core.parquet_schemas import BLOCK_ATTRIBUTION, write_table
from entmap.core.runtime import resolve_device
from entmap.measure.metrics import Lpips, semantic_shift
from entmap.measure.score import ClipScorer, score_frame
from entmap.models.block_switch import BlockSwitch, open_switchable
from entmap.models.sampling import render_jobs

#: how the prompts are ranked: the map's quantity -> its per-seed column in the disruption tables
RANK_COLUMNS = {"e_sem": "d_sem", "e_per": "lpips"}


def most_disrupted(disruption: pd.DataFrame, count: int, rank_by: str = "e_sem") -> list[str]:
    """The ``count`` prompt ids with the largest E (``rank_by``: e_sem or e_per) in one model's disruption rows.

    E_sem(p) = mean_k d_sem(p, k) and E_per(p) = mean_k LPIPS(p, k): the map's cells. Ties go to the
    smaller prompt id, so the choice is repeatable.
    """
    if rank_by not in RANK_COLUMNS:
        raise ValueError(f"rank_by must be one of {sorted(RANK_COLUMNS)}, not {rank_by!r}")
    means = disruption.groupby("prompt_id")[RANK_COLUMNS[rank_by]].mean()
    ranked = sorted(means.items(), key=lambda item: (-item[1], item[0]))
    return [prompt_id for prompt_id, _ in ranked[:count]]


def configurations(blocks: list[str], isolated: bool) -> list[tuple[str, str, list[str]]]:
    """(config, block, blocks switched off) of every configuration, ``base`` first."""
    configs = [("base", "", list(blocks)), ("full", "", [])]
    configs += [("off", block, [block]) for block in blocks]
    if isolated:
        configs += [("only", block, [other for other in blocks if other != block]) for block in blocks]
    return configs


def attribution_frame(
    pipe,
    switch: BlockSwitch,
    prompts: pd.DataFrame,
    seeds: list[int],
    settings: dict[str, Any],
    scorer: ClipScorer,
    lpips: Lpips,
    model: str,
    isolated: bool = False,
) -> pd.DataFrame:
    """One row per (configuration, prompt, seed) of ``prompts`` (columns id, text) x ``seeds``.

    Every configuration renders the same job list in the same batches and is scored as its own
    table, so identical images get identical scores.
    """
    keys = [(row.id, seed) for row in prompts.itertuples() for seed in seeds]
    jobs = [(row.text, seed) for row in prompts.itertuples() for seed in seeds]
    texts = dict(zip(prompts["id"], prompts["text"], strict=True))
    total = sum(len(modules) for modules in switch.modules.values())
    rows, base_scores, base_pixels = [], None, None
    for config, block, off in configurations(switch.names, isolated):
        with switch.off(off):
            pngs = [png_bytes(image) for _, image in render_jobs(pipe, jobs, settings, f"{model} {config} {block}")]
        images = pd.DataFrame(
            {
                "prompt_id": [pid for pid, _ in keys],
                "seed": [seed for _, seed in keys],
                "model": model,
                "settings_hash": "",
                "png": pngs,
            }
        )
        scores = score_frame(scorer, images, texts)["clip_cos"].to_numpy(dtype=float)
        pixels = np.stack([decode_png(data) for data in pngs])
        if config == "base":
            base_scores, base_pixels = scores, pixels
        frame = images[["prompt_id", "seed", "model"]].copy()
        frame["config"] = config
        frame["block"] = block
        frame["adapted_modules"] = len(switch.modules[block]) if block else total
        frame["clip_cos"] = scores
        frame["d_sem"] = semantic_shift(scores, base_scores)
        frame["lpips"] = lpips.distance(base_pixels, pixels)
        frame["png_sha256"] = [hashlib.sha256(data).hexdigest() for data in pngs]
        rows.append(frame)
    return pd.concat(rows, ignore_index=True)[BLOCK_ATTRIBUTION.names]


def write_block_attribution(
    base_model: str,
    adapter_dir: str | os.PathLike[str],
    model: str,
    prompts: pd.DataFrame,
    seeds: list[int],
    settings: dict[str, Any],
    scorer_spec: dict[str, str | None],
    lpips_settings: dict[str, Any],
    runtime: dict[str, Any],
    groups: int,
    isolated: bool,
    out_path: str | os.PathLike[str],
) -> None:
    """Load the model switchable by block (:func:`entmap.models.block_switch.open_switchable`), the
    run's scorer and LPIPS, and write :func:`attribution_frame` as Parquet."""
    pipe, switch = open_switchable(
        base_model, adapter_dir, runtime["device"], runtime["dtype"], runtime["threads"], groups
    )
    device = resolve_device(runtime["device"])
    scorer = ClipScorer(scorer_spec["model"], scorer_spec["pretrained"], device)
    lpips = Lpips.from_settings(lpips_settings, device)
    frame = attribution_frame(pipe, switch, prompts, seeds, settings, scorer, lpips, model, isolated)
    write_table(frame, out_path, BLOCK_ATTRIBUTION)
