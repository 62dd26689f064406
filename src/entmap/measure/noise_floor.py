"""The noise floor: how much two seeds of the unperturbed base model differ.

For each prompt and each seed pair (z_1, z_2), (z_3, z_4), ... of the base
model: |a_k - a_k'| and LPIPS(x_k, x_k'). tau_sem and tau_per are the
``percentile``-th percentiles over all prompts and pairs (paper: 3 pairs,
95th percentile; SD v1.5 gives tau_sem = 0.044, tau_per = 0.780).

Where prompts are scored structurally (``prompts.structure``), also
d_struct = |f(x_k) - f(x_k')|, the structured faithfulness two seeds of the base
model get apart, and tau_struct, its ``percentile``-th percentile over the scored
prompts and pairs: the floor E_struct must clear to count as moved, as E_sem must
clear tau_sem.

Explained in docs/map.md.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

from entmap.core.atomic import write_text
from entmap.core.image_codec import decode_png
from entmap.core.parquet_schemas import IMAGES, NOISE_PAIRS, SCORES, read_table, read_tables, write_table
from entmap.measure.disrupt import FaithfulnessReader, structure_reader
from entmap.measure.metrics import Lpips, percentile_threshold


def seed_pairs(seeds: list[int], pairs: int) -> list[tuple[int, int]]:
    """Disjoint consecutive pairs (s_1, s_2), (s_3, s_4), ... of the first 2 x ``pairs`` seeds."""
    if 2 * pairs > len(seeds):
        raise ValueError(f"{pairs} seed pairs need {2 * pairs} seeds, only {len(seeds)} given")
    return [(seeds[2 * i], seeds[2 * i + 1]) for i in range(pairs)]


def noise_pairs(
    images: pd.DataFrame,
    scores: pd.DataFrame,
    pairs: list[tuple[int, int]],
    lpips: Lpips,
    read_f: FaithfulnessReader | None = None,
) -> pd.DataFrame:
    """One row per (prompt, seed pair) of the base model: d_sem, lpips and d_struct between the two
    seeds (d_struct NaN without ``read_f`` or where the prompt is not scored)."""
    png = {(r.prompt_id, r.seed): r.png for r in images.itertuples()}
    cos = {(r.prompt_id, r.seed): r.clip_cos for r in scores.itertuples()}
    rows, left, right = [], [], []
    for prompt_id in sorted(images["prompt_id"].unique()):
        for seed_a, seed_b in pairs:
            for key in ((prompt_id, seed_a), (prompt_id, seed_b)):
                if key not in png or key not in cos:
                    raise ValueError(f"base shard lacks prompt {key[0]} seed {key[1]} for the noise floor")
            rows.append(
                {
                    "prompt_id": prompt_id,
                    "seed_a": seed_a,
                    "seed_b": seed_b,
                    "d_sem": abs(cos[(prompt_id, seed_a)] - cos[(prompt_id, seed_b)]),
                }
            )
            left.append(decode_png(png[(prompt_id, seed_a)]))
            right.append(decode_png(png[(prompt_id, seed_b)]))
    frame = pd.DataFrame(rows, columns=["prompt_id", "seed_a", "seed_b", "d_sem"])
    frame["lpips"] = lpips.distance(np.stack(left), np.stack(right)) if left else []
    frame["d_struct"] = np.nan
    if read_f is not None and left:
        prompt_ids = list(frame["prompt_id"])
        f_a, f_b = (np.asarray(read_f(np.stack(side), prompt_ids)[0], dtype=float) for side in (left, right))
        frame["d_struct"] = np.abs(f_a - f_b)
    return frame


def thresholds(frame: pd.DataFrame, percentile: float) -> dict[str, float | int]:
    """tau_sem, tau_per and tau_struct: the ``percentile``-th percentiles of the pair shifts
    (tau_struct over the structurally scored pairs; None when there are none)."""
    scored = frame["d_struct"].dropna() if "d_struct" in frame else pd.Series(dtype=float)
    return {
        "tau_sem": percentile_threshold(frame["d_sem"], percentile),
        "tau_per": percentile_threshold(frame["lpips"], percentile),
        "tau_struct": percentile_threshold(scored, percentile) if len(scored) else None,
        "struct_measurements": int(len(scored)),
        "percentile": percentile,
        "measurements": int(len(frame)),
        "prompts": int(frame["prompt_id"].nunique()),
        "pairs_per_prompt": int(len(frame) // max(1, frame["prompt_id"].nunique())),
        "mean_sem": float(np.mean(frame["d_sem"])),
        "mean_per": float(np.mean(frame["lpips"])),
    }


def noise_floor_shard(
    images_path: str | os.PathLike[str],
    scores_path: str | os.PathLike[str],
    seeds: list[int],
    pairs: int,
    lpips_settings: dict,
    out_path: str | os.PathLike[str],
    device: str = "auto",
    threads: int = 1,
    structure: str | None = None,
    suite: str | os.PathLike[str] | None = None,
    vqa: dict | None = None,
) -> None:
    """Measure the seed-pair shifts of one base shard and write them (``structure``, ``suite`` and
    ``vqa`` as the disrupt stage reads f: :func:`entmap.measure.disrupt.structure_reader`)."""
    from entmap.core.runtime import configure_torch, resolve_device

    configure_torch(threads)
    torch_device = resolve_device(device)
    lpips = Lpips.from_settings(lpips_settings, torch_device)
    frame = noise_pairs(
        read_table(images_path, IMAGES),
        read_table(scores_path, SCORES),
        seed_pairs(seeds, pairs),
        lpips,
        structure_reader(structure, suite, vqa, torch_device),
    )
    write_table(frame, out_path, NOISE_PAIRS)


def merge_noise_floor(
    shard_paths: list[str], percentile: float, out_json: str | os.PathLike[str]
) -> dict[str, float | int]:
    """Combine the shard measurements into noise_floor.json."""
    result = thresholds(read_tables(shard_paths, NOISE_PAIRS), percentile)
    write_text(out_json, json.dumps(result, indent=2) + "\n")
    return result
