"""Structured faithfulness and E_struct: does the image get each required element of its prompt right?

A coarse score such as the CLIP text-image score can stay put while an image loses a prompt's
colour or position; SAGE's point. A structured score checks the prompt's elements one by one:

    f(image, p)   = (elements of p the image gets right) / (elements p requires)
    E_struct(p,s) = mean over seeds k of | f(x_pers(p, z_k)) - f(x_base(p, z_k)) |
    signed        = mean over seeds k of   f(x_pers(p, z_k)) - f(x_base(p, z_k))    (< 0: damage)

on the same seed-matched images as E_sem and E_per. In the toy world f is exact: a prompt's
colour, shape, position and background are read from its words (:func:`required_elements`) and
from the image by the world's pixel checks (:func:`entmap.toyworld.world.read_scene`), which read
every rendered scene back correctly (tested over all 720 captions). Prompts with two objects (the
toy suite's compositions) are not scored: the pixel checks read one object.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from entmap.core.parquet_schemas import STRUCT_ELEMENTS
from entmap.toyworld.world import ATTRIBUTES, BACKGROUNDS, COLOURS, POSITIONS, SHAPES, read_scene

#: the elements a toy-world prompt can require, in the order of the disruption table's per-element columns
ELEMENTS: tuple[str, ...] = ATTRIBUTES
assert ELEMENTS == STRUCT_ELEMENTS, "the disruption table's element columns must follow the world's attributes"


def required_elements(text: str) -> dict[str, str] | None:
    """{attribute: value} a toy-world prompt asks for; None for a prompt with two objects or none.

    "a blue ring at the top" -> {colour: blue, shape: ring, position: at the top}; "a striped
    background" -> {background: striped}.
    """
    words = text.lower()
    if " and " in words:
        return None
    tokens = words.split()
    required: dict[str, str] = {}
    colour = next((c for c in COLOURS if c in tokens), None)
    shape = next((s for s in SHAPES if s in tokens), None)
    position = next((p for p in POSITIONS if p in words), None)
    texture = next((b for b in BACKGROUNDS if f"{b} background" in words), None)
    for attribute, value in (("colour", colour), ("shape", shape), ("position", position), ("background", texture)):
        if value is not None:
            required[attribute] = value
    return required or None


def element_hits(image: np.ndarray, required: dict[str, str]) -> np.ndarray:
    """Per element of :data:`ELEMENTS`: 1 if the pixel checks read the ``required`` value from
    ``image`` (H, W, 3 uint8), 0 if they read another, NaN if the prompt does not require it."""
    read = read_scene(image)
    return np.array([float(read[a] == required[a]) if a in required else np.nan for a in ELEMENTS])


def faithfulness(image: np.ndarray, required: dict[str, str]) -> float:
    """f: the share of ``required`` elements the pixel checks read from ``image`` (H, W, 3 uint8),
    i.e. the mean of its :func:`element_hits` over the required elements."""
    f, _ = read_faithfulness([image], [required])
    return float(f[0])


def read_faithfulness(
    images: Sequence[np.ndarray], required: Sequence[dict[str, str] | None]
) -> tuple[np.ndarray, np.ndarray]:
    """(f, hits) of each image: hits (N, len(ELEMENTS)) from :func:`element_hits`, all NaN where
    ``required`` is None (the prompt is not scored); f (N,) the mean of a row's hits over the
    required elements, NaN for an unscored prompt."""
    hits = np.full((len(images), len(ELEMENTS)), np.nan)
    for row, (image, elements) in enumerate(zip(images, required, strict=True)):
        if elements:
            hits[row] = element_hits(image, elements)
    scored = ~np.isnan(hits).all(axis=1)
    f = np.full(len(images), np.nan)
    f[scored] = np.nanmean(hits[scored], axis=1)
    return f, hits


def e_struct(f_model: Sequence[float], f_base: Sequence[float]) -> tuple[float, float]:
    """(E_struct, signed shift): mean |f_model - f_base| and mean (f_model - f_base) over seed-matched pairs."""
    model, base = np.asarray(f_model, dtype=float), np.asarray(f_base, dtype=float)
    if model.shape != base.shape or model.size == 0:
        raise ValueError(f"E_struct needs seed-matched pairs; got {model.shape} and {base.shape}")
    difference = model - base
    return float(np.abs(difference).mean()), float(difference.mean())
