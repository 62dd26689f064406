"""The ``disrupt`` stage: per-seed shifts between the base and one personalized model.

For every (prompt, seed) of a shard: a_base, a_pers, d_sem = |a_pers - a_base|,
LPIPS(x_base, x_pers), and, where the prompt's elements can be checked (the toy
world), the structured faithfulness f of both images (:mod:`entmap.measure.structure`;
NaN otherwise). The two models' shards must hold exactly the same
(prompt_id, seed, settings_hash) rows; anything else is not seed-matched and
is refused.

Explained in docs/map.md.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from entmap.core.image_codec import decode_png
from entmap.core.parquet_schemas import DISRUPTION, IMAGES, SCORES, read_table, write_table
from entmap.inputs.prompt_suites import load_prompts
from entmap.measure.metrics import Lpips, semantic_shift
from entmap.measure.structure import faithfulness, required_elements

KEY = ["prompt_id", "seed", "settings_hash"]


class MismatchError(ValueError):
    """Two shards are not seed-matched; the message names both files and the difference."""


def check_matched(base: pd.DataFrame, pers: pd.DataFrame, base_name: str, pers_name: str) -> None:
    """Raise MismatchError unless both tables hold the same (prompt_id, seed, settings_hash) rows."""
    for name, frame in ((base_name, base), (pers_name, pers)):
        duplicated = frame.duplicated(KEY)
        if duplicated.any():
            row = frame[duplicated].iloc[0]
            raise MismatchError(f"{name}: duplicate row prompt_id={row.prompt_id} seed={row.seed}")
    base_keys = set(map(tuple, base[KEY].itertuples(index=False)))
    pers_keys = set(map(tuple, pers[KEY].itertuples(index=False)))
    if base_keys != pers_keys:
        only_base = sorted(base_keys - pers_keys)[:3]
        only_pers = sorted(pers_keys - base_keys)[:3]
        raise MismatchError(
            f"{base_name} and {pers_name} are not seed-matched: "
            f"{len(base_keys - pers_keys)} (prompt_id, seed, settings_hash) rows only in the base "
            f"(e.g. {only_base}), {len(pers_keys - base_keys)} only in the personalized model "
            f"(e.g. {only_pers}); regenerate both with the same generation settings"
        )


def compute_disruption(
    base_images: pd.DataFrame,
    pers_images: pd.DataFrame,
    base_scores: pd.DataFrame,
    pers_scores: pd.DataFrame,
    lpips: Lpips,
    model: str,
    names: tuple[str, str, str, str] = (
        "base images",
        "personalized images",
        "base scores",
        "personalized scores",
    ),
    required: dict[str, dict[str, str] | None] | None = None,
) -> pd.DataFrame:
    """One row per (prompt_id, seed): a_base, a_pers, d_sem, lpips, f_base, f_pers.

    ``required`` maps a prompt id to the elements its images must show (None or absent: f is NaN).
    """
    check_matched(base_images, pers_images, names[0], names[1])
    check_matched(base_images, base_scores, names[0], names[2])
    check_matched(pers_images, pers_scores, names[1], names[3])
    order = base_images[KEY].sort_values(KEY).reset_index(drop=True)

    def aligned(frame: pd.DataFrame) -> pd.DataFrame:
        return order.merge(frame, on=KEY, how="left", validate="one_to_one")

    bi, pi = aligned(base_images), aligned(pers_images)
    bs, ps = aligned(base_scores), aligned(pers_scores)
    out = order[["prompt_id", "seed"]].copy()
    out["model"] = model
    out["a_base"] = bs["clip_cos"].to_numpy(dtype=float)
    out["a_pers"] = ps["clip_cos"].to_numpy(dtype=float)
    out["d_sem"] = semantic_shift(out["a_pers"], out["a_base"])
    stack_b = np.stack([decode_png(b) for b in bi["png"]]) if len(bi) else np.zeros((0, 1, 1, 3))
    stack_p = np.stack([decode_png(b) for b in pi["png"]]) if len(pi) else np.zeros((0, 1, 1, 3))
    out["lpips"] = lpips.distance(stack_b, stack_p)
    elements = [(required or {}).get(pid) for pid in out["prompt_id"]]
    out["f_base"] = [faithfulness(img, req) if req else np.nan for img, req in zip(stack_b, elements, strict=True)]
    out["f_pers"] = [faithfulness(img, req) if req else np.nan for img, req in zip(stack_p, elements, strict=True)]
    return out


def disrupt_shard(
    base_images: str | os.PathLike[str],
    pers_images: str | os.PathLike[str],
    base_scores: str | os.PathLike[str],
    pers_scores: str | os.PathLike[str],
    model: str,
    lpips_settings: dict,
    out_path: str | os.PathLike[str],
    device: str = "auto",
    threads: int = 1,
    structure: str | None = None,
    suite: str | os.PathLike[str] | None = None,
) -> None:
    """Read the four tables of a shard, compute the per-seed disruption, write it.

    ``structure``: how the prompts' required elements are read (``toyworld``: from the words of the
    ``suite``'s texts, :func:`entmap.measure.structure.required_elements`), or None for no E_struct.
    """
    from entmap.core.runtime import configure_torch, resolve_device

    configure_torch(threads)
    base_frame, pers_frame = read_table(base_images, IMAGES), read_table(pers_images, IMAGES)
    check_matched(base_frame, pers_frame, str(base_images), str(pers_images))  # fail before loading models
    frame = compute_disruption(
        base_frame,
        pers_frame,
        read_table(base_scores, SCORES),
        read_table(pers_scores, SCORES),
        Lpips.from_settings(lpips_settings, resolve_device(device)),
        model,
        names=(str(base_images), str(pers_images), str(base_scores), str(pers_scores)),
        required=required_by_prompt(structure, suite),
    )
    write_table(frame, out_path, DISRUPTION)


def required_by_prompt(structure: str | None, suite: str | os.PathLike[str] | None) -> dict | None:
    """{prompt id: required elements} of a suite under ``structure`` (None: not scored)."""
    if structure is None:
        return None
    if structure != "toyworld" or suite is None:
        raise ValueError(f"prompts.structure: unknown reader {structure!r} (toyworld or null)")
    return {row.id: required_elements(row.text) for row in load_prompts(suite).itertuples()}
