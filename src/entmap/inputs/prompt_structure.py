"""The structured columns of a prompt suite: what each prompt states, cell by cell.

A suite may add any of five columns after ``id category text`` (:data:`STRUCTURE_COLUMNS`). A
cell holds items separated by ``;``; an empty cell states nothing. Every name and value is a
phrase of lowercase words (letters, digits, inner hyphens and apostrophes, single spaces):

==============  ==================================  =========================================
column          item                                example
==============  ==================================  =========================================
``objects``     a thing, as it reads after          ``a dog; an owl; smoke``
                "Is there ...": with its article,
                or bare for a mass noun
``counts``      plural noun = whole number          ``friends=2``
``colours``     singular noun = colour              ``raincoat=red; sky=blue``
``attributes``  singular noun = adjective or        ``man=old; cat=sleeping``
                participle (a noun may repeat)
``relations``   subject / relation / object         ``surfer / riding / wave``
==============  ==================================  =========================================

An item names the thing as the prompt does ("a golden retriever", not "a dog"): the columns
record what the text states, never what an annotator infers. The question each item becomes is
:mod:`entmap.measure.questions`' job. A malformed cell raises :class:`PromptStructureError`
naming the file, line, prompt id and column.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from entmap.inputs.prompt_suites import STRUCTURE_COLUMNS, PromptSuiteError, read_suite

#: lowercase words: letters and digits, joined by single spaces, inner hyphens or apostrophes
PHRASE = re.compile(r"[a-z0-9]+(?:(?: |-|')[a-z0-9]+)*")
COUNT = re.compile(r"[0-9]+")
SYNTAX = {
    "objects": "items like 'a dog; an owl; smoke'",
    "counts": "items like 'friends=2' (plural noun = whole number)",
    "colours": "items like 'raincoat=red' (singular noun = colour)",
    "attributes": "items like 'man=old' (singular noun = adjective)",
    "relations": "items like 'surfer / riding / wave' (subject / relation / object)",
}


class PromptStructureError(PromptSuiteError):
    """A structured cell is malformed; the message names the file, line, prompt id and column."""


@dataclass(frozen=True)
class Relation:
    """``subject`` stands in ``relation`` to ``object`` ("surfer", "riding", "wave")."""

    subject: str
    relation: str
    object: str


@dataclass(frozen=True)
class PromptElements:
    """What one prompt states, column by column, in the order the cells list it."""

    objects: tuple[str, ...] = ()
    counts: tuple[tuple[str, int], ...] = ()
    colours: tuple[tuple[str, str], ...] = ()
    attributes: tuple[tuple[str, str], ...] = ()
    relations: tuple[Relation, ...] = ()

    def __bool__(self) -> bool:
        return any((self.objects, self.counts, self.colours, self.attributes, self.relations))


def _phrase(text: str, what: str) -> str:
    if not PHRASE.fullmatch(text):
        raise ValueError(f"{what} {text!r} is not a phrase of lowercase words")
    return text


def _pair(item: str) -> tuple[str, str]:
    """``name=value`` split at the first '=', both sides stripped; the name must be a phrase."""
    name, equals, value = item.partition("=")
    if not equals:
        raise ValueError(f"item {item!r} has no '='")
    return _phrase(name.strip(), "name"), value.strip()


def parse_cell(column: str, cell: str) -> tuple:
    """The items of one structured cell, in order (raises ValueError naming the bad item).

    ``objects``: phrases; ``counts``: (noun, int) pairs; ``colours`` and ``attributes``:
    (noun, value) pairs; ``relations``: :class:`Relation` triples. Repeated items are refused, and
    so are two counts or two colours of one noun.
    """
    if column not in STRUCTURE_COLUMNS:
        raise ValueError(f"unknown structured column {column!r}")
    if not cell.strip():
        return ()
    items = [item.strip() for item in cell.split(";")]
    if "" in items:
        raise ValueError("empty item (two ';' in a row, or one at an end)")
    parsed: list = []
    for item in items:
        if column == "objects":
            if item.startswith("the "):
                raise ValueError(f"object {item!r} starts with 'the'; write it as it reads after 'Is there'")
            parsed.append(_phrase(item, "object"))
        elif column == "counts":
            noun, number = _pair(item)
            if not COUNT.fullmatch(number):
                raise ValueError(f"count {number!r} of {noun!r} is not a whole number written in digits")
            parsed.append((noun, int(number)))
        elif column in ("colours", "attributes"):
            noun, value = _pair(item)
            parsed.append((noun, _phrase(value, "colour" if column == "colours" else "attribute")))
        else:
            parts = [part.strip() for part in item.split("/")]
            if len(parts) != 3:
                raise ValueError(f"relation {item!r} needs three parts: subject / relation / object")
            roles = ("subject", "relation", "object")
            parsed.append(Relation(*(_phrase(part, role) for part, role in zip(parts, roles, strict=True))))
    if len(set(parsed)) != len(parsed):
        repeated = next(item for item in parsed if parsed.count(item) > 1)
        raise ValueError(f"item {repeated!r} is given twice")
    if column in ("counts", "colours"):
        nouns = [noun for noun, _ in parsed]
        if len(set(nouns)) != len(nouns):
            raise ValueError(f"{next(n for n in nouns if nouns.count(n) > 1)!r} has two {column}")
    return tuple(parsed)


def parse_elements(cells: dict[str, str], where: str) -> PromptElements:
    """A prompt's elements from its structured cells (absent columns are empty).

    ``where`` starts every error message ("suite.tsv:5: prompt p003"), which adds the column.
    """
    parsed = {}
    for column in STRUCTURE_COLUMNS:
        try:
            parsed[column] = parse_cell(column, cells.get(column, ""))
        except ValueError as exc:
            raise PromptStructureError(f"{where}, column {column}: {exc}; use {SYNTAX[column]}") from None
    return PromptElements(**parsed)


def load_structure(path: str | os.PathLike[str]) -> dict[str, PromptElements]:
    """{prompt id: its elements} of every prompt of a suite (empty elements where it states none)."""
    frame = read_suite(path)
    columns = [c for c in STRUCTURE_COLUMNS if c in frame.columns]
    return {
        row["id"]: parse_elements({c: row[c] for c in columns}, f"{path}:{row['line']}: prompt {row['id']}")
        for row in frame.to_dict("records")
    }
