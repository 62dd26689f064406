"""The toy world's personalization subjects, one of each kind, none of them in the training data.

* ``toy-face``: a face-like glyph, a yellow disc with two eyes and a smile (anchor word
  "circle"), at a random position on a random background;
* ``toy-object``: a new shape, a cyan five-pointed star (anchor word "diamond");
* ``toy-style``: a new style, magenta and teal diagonal stripes behind a random scene object
  (anchor word "striped").

Drawn at 32 pixels and scaled up without interpolation to ``size`` (reference folders need
64 pixels or more; training scales them back to 32).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from entmap.toyworld.world import BACKGROUNDS, COLOURS, POSITIONS, SHAPES, SIZE, background, shape_mask

TOY_KINDS = ("toy-face", "toy-object", "toy-style")


def _place(rng: np.random.Generator) -> tuple[float, float, float]:
    ax, ay = POSITIONS[list(POSITIONS)[rng.integers(len(POSITIONS))]]
    return ax + rng.integers(-1, 2), ay + rng.integers(-1, 2), rng.uniform(5.0, 6.0)


def draw_face(rng: np.random.Generator) -> np.ndarray:
    image = background(BACKGROUNDS[rng.integers(len(BACKGROUNDS))])
    cx, cy, half = _place(rng)
    image[shape_mask("circle", cx, cy, half)] = (240, 210, 40)
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    eyes = ((np.abs(x - (cx - 2)) <= 0.6) | (np.abs(x - (cx + 2)) <= 0.6)) & (np.abs(y - (cy - 1.5)) <= 0.8)
    r = np.hypot(x - cx, y - cy)
    smile = (np.abs(r - half * 0.6) <= 0.6) & (y > cy + 0.5)
    image[eyes | smile] = (40, 30, 20)
    return image


def star_mask(cx: float, cy: float, half: float) -> np.ndarray:
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(float)
    angle = np.arctan2(y - cy, x - cx) + np.pi / 2
    r = np.hypot(x - cx, y - cy)
    # radius of a five-pointed star as a function of angle: between 0.45 and 1 of ``half``
    spike = np.abs(((angle * 5 / (2 * np.pi)) % 1) - 0.5) * 2
    return r <= half * (0.45 + 0.55 * spike)


def draw_star(rng: np.random.Generator) -> np.ndarray:
    image = background(BACKGROUNDS[rng.integers(len(BACKGROUNDS))])
    cx, cy, half = _place(rng)
    image[star_mask(cx, cy, half + 0.5)] = (30, 210, 210)
    return image


def draw_style(rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    stripes = ((x + y) // 3) % 2 == 0
    image = np.where(stripes[..., None], np.array([220, 60, 200]), np.array([30, 150, 140])).astype(np.uint8)
    cx, cy, half = _place(rng)
    colour = COLOURS[list(COLOURS)[rng.integers(len(COLOURS))]]
    image[shape_mask(SHAPES[rng.integers(len(SHAPES))], cx, cy, half)] = colour
    return image


def draw_subject(kind: str, rng: np.random.Generator, size: int = 128) -> Image.Image:
    """Reference image of a toy subject ``kind``, scaled up to ``size`` pixels."""
    drawers = {"toy-face": draw_face, "toy-object": draw_star, "toy-style": draw_style}
    if kind not in drawers:
        raise ValueError(f"unknown toy subject {kind!r}; use one of {TOY_KINDS}")
    return Image.fromarray(drawers[kind](rng)).resize((size, size), Image.NEAREST)
