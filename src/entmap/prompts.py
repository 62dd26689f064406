"""Prompt suites: loading, validation, selection and sharding.

A suite is a UTF-8 TSV file with the header ``id  category  text``. Ids are
unique, categories come from a fixed list, texts are non-empty and unique.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

PROMPT_CATEGORIES: tuple[str, ...] = ("people", "animals", "objects", "scenes", "styles", "abstract")
COLUMNS = ["id", "category", "text"]


class PromptSuiteError(ValueError):
    """The prompt suite file is malformed; the message names the file, line and fix."""


@dataclass(frozen=True)
class Shard:
    """A fixed-size chunk of prompt ids, named by its zero-padded index."""

    name: str
    prompt_ids: tuple[str, ...]


def load_prompts(path: str | os.PathLike[str], categories: tuple[str, ...] = PROMPT_CATEGORIES) -> pd.DataFrame:
    """Load and validate a prompt suite; returns a frame with columns id, category, text."""
    path = Path(path)
    if not path.is_file():
        raise PromptSuiteError(f"{path}: prompt suite not found; set prompts.suite to a TSV file")
    try:
        raw = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PromptSuiteError(f"{path}: not UTF-8 (byte {exc.start}); re-save the file as UTF-8") from exc
    rows = list(csv.reader(raw.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows or [c.strip() for c in rows[0]] != COLUMNS:
        raise PromptSuiteError(f"{path}: the first line must be the header 'id<TAB>category<TAB>text'")
    seen_ids: dict[str, int] = {}
    seen_texts: dict[str, int] = {}
    records = []
    for lineno, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != 3:
            raise PromptSuiteError(f"{path}:{lineno}: expected 3 tab-separated fields, found {len(row)}")
        pid, category, text = (cell.strip() for cell in row)
        if not pid:
            raise PromptSuiteError(f"{path}:{lineno}: empty id")
        if pid in seen_ids:
            raise PromptSuiteError(f"{path}:{lineno}: id {pid!r} already used on line {seen_ids[pid]}")
        if category not in categories:
            raise PromptSuiteError(f"{path}:{lineno}: unknown category {category!r}; use one of {list(categories)}")
        if not text:
            raise PromptSuiteError(f"{path}:{lineno}: empty prompt text for id {pid!r}")
        key = text.casefold()
        if key in seen_texts:
            raise PromptSuiteError(f"{path}:{lineno}: prompt {text!r} duplicates line {seen_texts[key]}")
        seen_ids[pid] = lineno
        seen_texts[key] = lineno
        records.append((pid, category, text))
    if not records:
        raise PromptSuiteError(f"{path}: no prompts")
    return pd.DataFrame(records, columns=COLUMNS)


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
