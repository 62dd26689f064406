"""The toy world's prompt suite: six categories that play the roles of the paper's.

=============  ==========================================================  =====================
category       prompts                                                     own category of
=============  ==========================================================  =====================
objects        one shape, colour and shape only ("a red square")           face and object subjects
colours        full captions on a plain background, the colours in turn    -
positions      colour, shape and position ("a blue ring at the top")       -
backgrounds    full captions on every grey texture                         -
compositions   two shapes ("a red circle on the left and a blue ring ...")  -
styles         textures alone ("a striped background")                     style subjects
=============  ==========================================================  =====================

Ten prompts per category, drawn once with a fixed seed; :func:`suite_rows` regenerates the
shipped ``resources/prompts/toyworld-60.tsv`` exactly (tested). Every prompt fits the toy
scorer's 16-token context (tested): compositions name no background, which would not fit. Held-out colour-shape pairs
appear too: the map covers what the model composes as well as what it saw.

:func:`anchor_rows` draws the geometry regularizer's anchor prompts (docs/geometry.md): single-object
captions of the same kinds as the suite's, none of them in the suite, so the map never evaluates
what the regularizer was trained to keep (``resources/prompts/toyworld-anchors.tsv``, tested).
"""

from __future__ import annotations

import numpy as np

from entmap.toyworld.world import BACKGROUNDS, COLOURS, POSITIONS, SHAPES

TOY_CATEGORIES = ("objects", "colours", "positions", "backgrounds", "compositions", "styles")
PER_CATEGORY = 10


def suite_rows(seed: int = 0) -> list[tuple[str, str, str]]:
    """(id, category, text) of the toy suite, in category order."""
    rng = np.random.default_rng(seed)
    colours, positions = list(COLOURS), list(POSITIONS)

    def pick(values):
        return values[rng.integers(len(values))]

    prompts: dict[str, list[str]] = {c: [] for c in TOY_CATEGORIES}

    def add(category: str, make) -> None:
        while len(prompts[category]) < PER_CATEGORY:
            text = make()
            if text not in prompts[category]:
                prompts[category].append(text)

    add("objects", lambda: f"a {pick(colours)} {pick(SHAPES)}")
    cycle = iter(colours * PER_CATEGORY)
    add("colours", lambda: f"a {next(cycle)} {pick(SHAPES)} {pick(positions)} on a plain background")
    add("positions", lambda: f"a {pick(colours)} {pick(SHAPES)} {pick(positions)}")
    add(
        "backgrounds", lambda: f"a {pick(colours)} {pick(SHAPES)} {pick(positions)} on a {pick(BACKGROUNDS)} background"
    )

    def composition() -> str:
        first, second = rng.choice(len(positions), 2, replace=False)
        one, other = (f"a {pick(colours)} {pick(SHAPES)} {positions[i]}" for i in (first, second))
        return f"{one} and {other}"

    add("compositions", composition)
    patterns = [b for b in BACKGROUNDS if b != "plain"]
    styles = [f"a {b} background" for b in BACKGROUNDS] + [f"a {c} {b} pattern" for c in colours for b in patterns]
    add("styles", lambda: pick(styles))
    rows = []
    for c_index, category in enumerate(TOY_CATEGORIES):
        rows += [(f"t{c_index}{i:02d}", category, text) for i, text in enumerate(prompts[category])]
    return rows


def suite_tsv(seed: int = 0) -> str:
    """The suite as the TSV text the workflow reads (header id, category, text)."""
    return "id\tcategory\ttext\n" + "".join(f"{i}\t{c}\t{t}\n" for i, c, t in suite_rows(seed))


ANCHORS = 24


def anchor_rows(seed: int = 1, count: int = ANCHORS) -> list[tuple[str, str, str]]:
    """(id, category ``anchors``, text) of ``count`` toy captions held out from :func:`suite_rows`.

    Captions with colour, shape and position, half of them on a background, drawn with ``seed``.
    """
    rng = np.random.default_rng(seed)
    evaluated = {text for _, _, text in suite_rows()}
    colours, positions = list(COLOURS), list(POSITIONS)
    texts: list[str] = []
    while len(texts) < count:
        colour, shape, position = (values[rng.integers(len(values))] for values in (colours, SHAPES, positions))
        text = f"a {colour} {shape} {position}"
        if len(texts) % 2:
            text += f" on a {BACKGROUNDS[rng.integers(len(BACKGROUNDS))]} background"
        if text not in evaluated and text not in texts:
            texts.append(text)
    return [(f"a{i:02d}", "anchors", text) for i, text in enumerate(texts)]


def anchors_tsv(seed: int = 1) -> str:
    """The anchor suite as TSV text (header id, category, text)."""
    return "id\tcategory\ttext\n" + "".join(f"{i}\t{c}\t{t}\n" for i, c, t in anchor_rows(seed))
