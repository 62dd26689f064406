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
from entmap.core.parquet_schemas import DISRUPTION, IMAGES, SCORES, STRUCT_ELEMENTS, read_table, write_table
from entmap.core.runtime import configure_torch, resolve_device
from entmap.inputs.prompt_suites import load_prompts
from entmap.measure.metrics import Lpips, semantic_shift
from entmap.measure.questions import suite_questions
from entmap.measure.structure import read_faithfulness, required_elements
from entmap.measure.vqa import VqaModel, VqaSettings, answerable_questions, vqa_faithfulness

KEY = ["prompt_id", "seed", "settings_hash"]
#: (f, hits) of each image of a stack (N, H, W, 3) given its prompt id: f (N,), NaN where the prompt is
#: not scored; hits (N, len(STRUCT_ELEMENTS)), 1/0 per element the prompt requires (NaN otherwise),
#: or None where the reader does not check elements one by one (VQA questions)
FaithfulnessReader = Callable[[np.ndarray, Sequence[str]], tuple[np.ndarray, np.ndarray | None]]
STRUCTURE_READERS = ("toyworld", "vqa")


class MismatchError(ValueError):
    """Two shards are not seed-matched; the message names both files and the difference."""


def _keys_sorted(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` sorted by (prompt_id, seed, settings_hash), index reset: equal key sets align row for row."""
    return frame.sort_values(KEY, ignore_index=True)


def _key_columns(frame: pd.DataFrame) -> list[np.ndarray]:
    return [frame[column].to_numpy() for column in KEY]


def _first_duplicate(frame: pd.DataFrame) -> int | None:
    """Row of the first repeat of a (prompt_id, seed, settings_hash) key, in any row order, or None."""
    repeats = np.flatnonzero(frame.duplicated(KEY).to_numpy())
    return int(repeats[0]) if len(repeats) else None


def _same_sorted_keys(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Whether two tables hold the same key in every row, in the same order (one vectorized
    comparison per column; for key-sorted tables: the same keys)."""
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(_key_columns(a), _key_columns(b), strict=True))


def _check_sorted(base: pd.DataFrame, pers: pd.DataFrame, base_name: str, pers_name: str) -> None:
    """:func:`check_matched` on tables already sorted by :func:`_keys_sorted` (no re-sorting)."""
    for name, frame in ((base_name, base), (pers_name, pers)):
        row = _first_duplicate(frame)
        if row is not None:
            key = frame.iloc[row]
            raise MismatchError(f"{name}: duplicate row prompt_id={key.prompt_id} seed={key.seed}")
    if _same_sorted_keys(base, pers):
        return
    base_keys = set(map(tuple, base[KEY].itertuples(index=False)))
    pers_keys = set(map(tuple, pers[KEY].itertuples(index=False)))
    only_base = sorted(base_keys - pers_keys)[:3]
    only_pers = sorted(pers_keys - base_keys)[:3]
    raise MismatchError(
        f"{base_name} and {pers_name} are not seed-matched: "
        f"{len(base_keys - pers_keys)} (prompt_id, seed, settings_hash) rows only in the base "
        f"(e.g. {only_base}), {len(pers_keys - base_keys)} only in the personalized model "
        f"(e.g. {only_pers}); regenerate both with the same generation settings"
    )


def _aligned(frames: list[pd.DataFrame], pairs: list[tuple[int, int]], names: Sequence[str]) -> list[pd.DataFrame]:
    """``frames`` aligned row for row by key, after checking each pair (i, j) holds the same unique keys.

    Tables written by the same shard's jobs usually hold their keys in one order already: then one
    duplicate check and a column comparison per pair prove the alignment and nothing is sorted.
    Otherwise each table is sorted by key once, and :func:`_check_sorted` checks every pair.
    """
    first = frames[0]
    if all(_same_sorted_keys(frames[i], frames[j]) for i, j in pairs) and _first_duplicate(first) is None:
        return list(frames)  # callers read columns by position (to_numpy), never by index label
    ordered = [_keys_sorted(frame) for frame in frames]
    for i, j in pairs:
        _check_sorted(ordered[i], ordered[j], names[i], names[j])
    return ordered


def check_matched(base: pd.DataFrame, pers: pd.DataFrame, base_name: str, pers_name: str) -> None:
    """Raise MismatchError unless both tables hold the same (prompt_id, seed, settings_hash) rows,
    each once."""
    _check_sorted(_keys_sorted(base), _keys_sorted(pers), base_name, pers_name)


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
    """One row per (prompt_id, seed): a_base, a_pers, d_sem, lpips, f_base, f_pers, the per-element
    hits f_base_<element> and f_pers_<element>, and reused.

    ``reused`` is the personalized image's flag (its bytes copied from the base). ``read_f`` reads f
    and the element hits of each image (:func:`structure_reader`); None: they are NaN throughout.
    """
    bi, pi, bs, ps = _aligned([base_images, pers_images, base_scores, pers_scores], [(0, 1), (0, 2), (1, 3)], names)
    a_base, a_pers = bs["clip_cos"].to_numpy(dtype=float), ps["clip_cos"].to_numpy(dtype=float)
    stack_b = np.stack([decode_png(b) for b in bi["png"]]) if len(bi) else np.zeros((0, 1, 1, 3))
    stack_p = np.stack([decode_png(b) for b in pi["png"]]) if len(pi) else np.zeros((0, 1, 1, 3))
    columns: dict[str, object] = {
        "prompt_id": bi["prompt_id"].to_numpy(),
        "seed": bi["seed"].to_numpy(),
        "model": model,
        "a_base": a_base,
        "a_pers": a_pers,
        "d_sem": np.asarray(semantic_shift(a_pers, a_base), dtype=float),
        "lpips": lpips.distance(stack_b, stack_p),
    }
    prompt_ids = bi["prompt_id"].tolist()
    for image, stack in (("base", stack_b), ("pers", stack_p)):
        f, hits = (None, None) if read_f is None else read_f(stack, prompt_ids)
        columns[f"f_{image}"] = np.nan if f is None else np.asarray(f, dtype=float)
        for column, element in enumerate(STRUCT_ELEMENTS):
            columns[f"f_{image}_{element}"] = np.nan if hits is None else np.asarray(hits, dtype=float)[:, column]
    columns["reused"] = pi["reused"].to_numpy(dtype=bool)
    return pd.DataFrame(columns, index=pd.RangeIndex(len(bi)))


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

        def pixel_checks(images: np.ndarray, prompt_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
            return read_faithfulness(images, [required.get(pid) for pid in prompt_ids])

        return pixel_checks
    if not vqa:
        raise ValueError("prompts.structure is vqa but there is no prompts.vqa block naming the model")
    model = VqaModel(VqaSettings.from_config(vqa), torch.device(device))
    questions = answerable_questions(model, suite_questions(suite))

    def answers(images: np.ndarray, prompt_ids: Sequence[str]) -> tuple[np.ndarray, None]:
        return vqa_faithfulness(model, images, [questions.get(pid, ()) for pid in prompt_ids]), None

    return answers
