"""Prompt suites: loading, validation, selection and sharding.

A suite is a UTF-8 TSV file with the header ``id  category  text``, optionally followed by
structured columns (:data:`STRUCTURE_COLUMNS`, any of them, in any order) that state what each
prompt asks for; their cell syntax is read by :mod:`entmap.inputs.prompt_structure`. Ids are
unique, categories are lowercase names, texts are non-empty and unique.
"""

from __future__ import annotations

import csv
import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

PROMPT_CATEGORIES: tuple[str, ...] = ("people", "animals", "objects", "scenes", "styles", "abstract")
COLUMNS = ["id", "category", "text"]
#: Optional columns after ``text``: the elements a prompt states (syntax: entmap.inputs.prompt_structure).
STRUCTURE_COLUMNS: tuple[str, ...] = ("objects", "counts", "colours", "attributes", "relations")
CATEGORY_NAME = re.compile(r"[a-z][a-z0-9_-]*")


class PromptSuiteError(ValueError):
    """The prompt suite file is malformed; the message names the file, line and fix."""


@dataclass(frozen=True)
class Shard:
    """A fixed-size chunk of prompt ids, named by its zero-padded index."""

    name: str
    prompt_ids: tuple[str, ...]


def load_prompts(path: str | os.PathLike[str], categories: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Load and validate a prompt suite; returns a frame with columns id, category, text.

    A suite defines its own categories (the paper's six: :data:`PROMPT_CATEGORIES`; the toy
    world's are others): any lowercase name is accepted unless ``categories`` restricts them.
    The config check makes sure every ``subject_categories`` target occurs in the suite.
    Structured columns, if the suite has any, are left out (:func:`read_suite` keeps them).
    """
    return read_suite(path, categories)[COLUMNS]


def read_suite(path: str | os.PathLike[str], categories: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Load and validate a prompt suite with every column it has, and ``line``, each row's line number.

    A row may leave out trailing empty structured cells (editors that trim trailing whitespace
    drop their tabs); it may not have fewer than 3 fields nor more than the header.
    """
    path = Path(path)
    if not path.is_file():
        raise PromptSuiteError(f"{path}: prompt suite not found; set prompts.suite to a TSV file")
    try:
        raw = path.read_bytes().decode("utf-8-sig")  # Excel's "CSV UTF-8" starts with a byte-order mark
    except UnicodeDecodeError as exc:
        raise PromptSuiteError(f"{path}: not UTF-8 (byte {exc.start}); re-save the file as UTF-8") from exc
    rows = list(csv.reader(raw.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE))
    header = check_header(path, rows[0] if rows else [])
    seen_ids: dict[str, int] = {}
    seen_texts: dict[str, int] = {}
    records = []
    for lineno, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if not len(COLUMNS) <= len(row) <= len(header):
            expected = str(len(COLUMNS)) if len(header) == len(COLUMNS) else f"{len(COLUMNS)} to {len(header)}"
            raise PromptSuiteError(f"{path}:{lineno}: expected {expected} tab-separated fields, found {len(row)}")
        cells = [cell.strip() for cell in row] + [""] * (len(header) - len(row))
        pid, category, text = cells[:3]
        if not pid:
            raise PromptSuiteError(f"{path}:{lineno}: empty id")
        if pid in seen_ids:
            raise PromptSuiteError(f"{path}:{lineno}: id {pid!r} already used on line {seen_ids[pid]}")
        if categories is not None and category not in categories:
            raise PromptSuiteError(f"{path}:{lineno}: unknown category {category!r}; use one of {list(categories)}")
        if not CATEGORY_NAME.fullmatch(category):
            raise PromptSuiteError(f"{path}:{lineno}: category {category!r} is not a lowercase name like 'objects'")
        if not text:
            raise PromptSuiteError(f"{path}:{lineno}: empty prompt text for id {pid!r}")
        key = text.casefold()
        if key in seen_texts:
            raise PromptSuiteError(f"{path}:{lineno}: prompt {text!r} duplicates line {seen_texts[key]}")
        seen_ids[pid] = lineno
        seen_texts[key] = lineno
        records.append((*cells, lineno))
    if not records:
        raise PromptSuiteError(f"{path}: no prompts")
    frame = pd.DataFrame(records, columns=[*header, "line"])
    check_category_spelling(frame, path, seen_ids)
    return frame


def check_header(path: Path, header: list[str]) -> list[str]:
    """The suite's column names: ``id category text`` and then structured columns, each at most once."""
    names = [cell.strip() for cell in header]
    if names[:3] != COLUMNS:
        raise PromptSuiteError(
            f"{path}: the first line must be the header 'id<TAB>category<TAB>text', optionally followed by "
            f"structured columns ({', '.join(STRUCTURE_COLUMNS)})"
        )
    for name in names[3:]:
        if name not in STRUCTURE_COLUMNS:
            close = difflib.get_close_matches(name, STRUCTURE_COLUMNS, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise PromptSuiteError(
                f"{path}:1: column {name!r} is not a structured column; {hint}use {', '.join(STRUCTURE_COLUMNS)}"
            )
        if names.count(name) > 1:
            raise PromptSuiteError(f"{path}:1: column {name!r} is given twice")
    return names


def check_category_spelling(frame: pd.DataFrame, path: Path, lines: dict[str, int]) -> None:
    """Refuse a category that is a near-miss of a more frequent one ('objetcs' beside 'objects').

    A suite defines its own categories, so a typo would otherwise silently become a category of its
    own; a name of about the same length (one character more or less) within similarity 0.8
    (difflib's ratio) of a category with more prompts is taken for one.
    """
    counts = frame["category"].value_counts()
    for category, count in counts.items():
        bigger = [c for c, n in counts.items() if n > count and abs(len(c) - len(category)) <= 1]
        close = difflib.get_close_matches(category, bigger, n=1, cutoff=0.8)
        if close:
            first = lines[frame.loc[frame["category"] == category, "id"].iloc[0]]
            raise PromptSuiteError(
                f"{path}:{first}: category {category!r} ({count} prompts) looks like a misspelling of "
                f"{close[0]!r} ({counts[close[0]]} prompts); correct it, or rename it if it is meant to differ"
            )


def anchor_prompts(path: str | os.PathLike[str], count: int | None = None) -> list[str]:
    """The anchor prompts of the geometry regularizer: the first ``count`` texts of a suite (all when None)."""
    texts = load_prompts(path)["text"].tolist()
    return texts if count is None else texts[:count]


def select_prompts(prompts: pd.DataFrame, per_category: int | None) -> pd.DataFrame:
    """Keep the first ``per_category`` prompts of each category (all when None), in file order."""
    if per_category is None:
        return prompts.reset_index(drop=True)
    return prompts.groupby("category", sort=False).head(per_category).reset_index(drop=True)


def make_shards(prompt_ids: list[str], shard_size: int) -> list[Shard]:
    """Split prompt ids in order into chunks of ``shard_size``, named 000, 001, ..."""
    if shard_size < 1:
        raise ValueError("shard_size must be >= 1")
    chunks = [prompt_ids[i : i + shard_size] for i in range(0, len(prompt_ids), shard_size)]
    width = max(3, len(str(len(chunks) - 1)))
    return [Shard(str(i).zfill(width), tuple(chunk)) for i, chunk in enumerate(chunks)]


def prompts_by_id(path: str | os.PathLike[str], prompt_ids: list[str]) -> pd.DataFrame:
    """Load a suite and keep ``prompt_ids`` in the given order (an unknown id is an error)."""
    prompts = load_prompts(path).set_index("id", drop=False)
    unknown = [pid for pid in prompt_ids if pid not in prompts.index]
    if unknown:
        raise PromptSuiteError(f"{path}: prompt ids {unknown[:5]} are not in the suite; rerun from scratch")
    return prompts.loc[list(prompt_ids)].reset_index(drop=True)


CONTEXT_COLUMNS = ["id", "prompt", "concept", "context"]


def load_context_prompts(path: str | os.PathLike[str], count: int | None = None) -> pd.DataFrame:
    """Load a context prompt suite (TEA and collapse diagnostics): the first ``count`` rows (all when None).

    Columns: ``prompt`` has one ``{}`` slot for the subject ("{} in the grand canyon"); ``concept``
    is the subject part alone, with the same slot ("{}"); ``context`` is the rest of the scene
    ("the grand canyon"). Keeping the parts apart lets CLIP-T score each on its own.
    """
    path = Path(path)
    if not path.is_file():
        raise PromptSuiteError(f"{path}: context prompt suite not found; set tea.suite to a TSV file")
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE)
    if list(frame.columns) != CONTEXT_COLUMNS:
        raise PromptSuiteError(f"{path}: the first line must be the header '{'<TAB>'.join(CONTEXT_COLUMNS)}'")
    for lineno, row in enumerate(frame.itertuples(index=False), start=2):
        for column in ("prompt", "concept"):
            if getattr(row, column).count("{}") != 1:
                raise PromptSuiteError(f"{path}:{lineno}: {column} must hold exactly one '{{}}' slot for the subject")
        if not row.id.strip() or not row.context.strip():
            raise PromptSuiteError(f"{path}:{lineno}: empty id or context")
    duplicated = frame["id"][frame["id"].duplicated()].tolist()
    if duplicated:
        raise PromptSuiteError(f"{path}: ids used twice: {duplicated}")
    if frame.empty:
        raise PromptSuiteError(f"{path}: no prompts")
    return frame if count is None else frame.head(count).reset_index(drop=True)
