"""The ``disrupt`` stage: per-seed shifts between the base and one personalized model.

For every (prompt, seed) of a shard: a_base, a_pers, d_sem = |a_pers - a_base|,
LPIPS(x_base, x_pers), and, where the prompt's elements can be checked, the
structured faithfulness f of both images (NaN otherwise): exactly by pixel checks
in the toy world (:mod:`entmap.measure.structure`), or by a VQA model answering
questions read from the suite's structured columns (:mod:`entmap.measure.vqa`).
The two models' shards must hold exactly the same (prompt_id, seed, settings_hash)
rows; anything else is not seed-matched and is refused.

Explained in docs/map.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from entmap.core.image_codec import decode_png
from entmap.core.parquet_schemas import DISRUPTION, IMAGES, SCORES, read_table, write_table
from entmap.core.runtime import configure_torch, resolve_device
from entmap.inputs.prompt_suites import load_prompts
from entmap.measure.metrics import Lpips, semantic_shift
from entmap.measure.questions import suite_questions
from entmap.measure.structure import faithfulness, required_elements
from entmap.measure.vqa import VqaModel, VqaSettings, answerable_questions, vqa_faithfulness

KEY = ["prompt_id", "seed", "settings_hash"]
#: f of each image of a stack (N, H, W, 3) given its prompt id; NaN where the prompt is not scored
FaithfulnessReader = Callable[[np.ndarray, Sequence[str]], np.ndarray]
STRUCTURE_READERS = ("toyworld", "vqa")


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
    read_f: FaithfulnessReader | None = None,
) -> pd.DataFrame:
    """One row per (prompt_id, seed): a_base, a_pers, d_sem, lpips, f_base, f_pers, reused.

    ``reused`` is the personalized image's flag (its bytes copied from the base). ``read_f`` reads f
    of each image (:func:`structure_reader`); None: f is NaN throughout.
    """
    check_matched(base_images, pers_images, names[0], names[1])
    check_matched(base_images, base_scores, names[0], names[2])
    check_matched(pers_images, pers_scores, names[1], names[3])
    # the four tables hold the same unique keys (checked above): sorting aligns them row for row

    def aligned(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.sort_values(KEY, ignore_index=True)

    bi, pi = aligned(base_images), aligned(pers_images)
    order = bi[KEY]
    bs, ps = aligned(base_scores), aligned(pers_scores)
    out = order[["prompt_id", "seed"]].copy()
    out["model"] = model
    out["a_base"] = bs["clip_cos"].to_numpy(dtype=float)
    out["a_pers"] = ps["clip_cos"].to_numpy(dtype=float)
    out["d_sem"] = semantic_shift(out["a_pers"], out["a_base"])
    stack_b = np.stack([decode_png(b) for b in bi["png"]]) if len(bi) else np.zeros((0, 1, 1, 3))
    stack_p = np.stack([decode_png(b) for b in pi["png"]]) if len(pi) else np.zeros((0, 1, 1, 3))
    out["lpips"] = lpips.distance(stack_b, stack_p)
    prompt_ids = out["prompt_id"].tolist()
    for column, stack in (("f_base", stack_b), ("f_pers", stack_p)):
        out[column] = np.nan if read_f is None else np.asarray(read_f(stack, prompt_ids), dtype=float)
    out["reused"] = pi["reused"].to_numpy(dtype=bool)
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
    vqa: Mapping | None = None,
) -> None:
    """Read the four tables of a shard, compute the per-seed disruption, write it.

    ``structure``: how f is read (:func:`structure_reader`: ``toyworld``, or ``vqa`` with the
    ``prompts.vqa`` block ``vqa``), or None for no E_struct.
    """
    configure_torch(threads)
    base_frame, pers_frame = read_table(base_images, IMAGES), read_table(pers_images, IMAGES)
    check_matched(base_frame, pers_frame, str(base_images), str(pers_images))  # fail before loading models
    torch_device = resolve_device(device)
    frame = compute_disruption(
        base_frame,
        pers_frame,
        read_table(base_scores, SCORES),
        read_table(pers_scores, SCORES),
        Lpips.from_settings(lpips_settings, torch_device),
        model,
        names=(str(base_images), str(pers_images), str(base_scores), str(pers_scores)),
        read_f=structure_reader(structure, suite, vqa, torch_device),
    )
    write_table(frame, out_path, DISRUPTION)


def structure_reader(
    structure: str | None,
    suite: str | os.PathLike[str] | None,
    vqa: Mapping | None = None,
    device: str | torch.device = "cpu",
) -> FaithfulnessReader | None:
    """How f is read under ``prompts.structure`` (None: not at all).

    ``toyworld``: each prompt's elements from the words of the ``suite``'s texts
    (:func:`entmap.measure.structure.required_elements`), checked in the pixels. ``vqa``: each
    prompt's questions from the suite's structured columns (:mod:`entmap.measure.questions`),
    answered by the VQA model of the ``prompts.vqa`` block ``vqa`` (:mod:`entmap.measure.vqa`).
    """
    if structure is None:
        return None
    if structure not in STRUCTURE_READERS or suite is None:
        raise ValueError(f"prompts.structure: unknown reader {structure!r} (toyworld, vqa or null)")
    if structure == "toyworld":
        required = {row.id: required_elements(row.text) for row in load_prompts(suite).itertuples()}

        def pixel_checks(images: np.ndarray, prompt_ids: Sequence[str]) -> np.ndarray:
            elements = [required.get(pid) for pid in prompt_ids]
            scored = zip(images, elements, strict=True)
            return np.array([faithfulness(img, req) if req else np.nan for img, req in scored])

        return pixel_checks
    if not vqa:
        raise ValueError("prompts.structure is vqa but there is no prompts.vqa block naming the model")
    model = VqaModel(VqaSettings.from_config(vqa), torch.device(device))
    questions = answerable_questions(model, suite_questions(suite))

    def answers(images: np.ndarray, prompt_ids: Sequence[str]) -> np.ndarray:
        return vqa_faithfulness(model, images, [questions.get(pid, ()) for pid in prompt_ids])

    return answers
