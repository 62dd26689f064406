"""The toy world: captioned 32x32 synthetic scenes, and pixel checks that read a scene back.

A scene is one shape of one colour at one position on one grey textured background::

    "a {colour} {shape} {position} on a {background} background"
    e.g. "a red circle on the left on a striped background"

6 colours x 6 shapes x 5 positions x 4 backgrounds = 720 captions. The shape's size (9 to 12
pixels) and its centre (+-1 pixel around the position's anchor) vary with the scene's seed, so a
scene is a deterministic function of (caption attributes, seed). Six colour-shape pairs
(:data:`HELD_OUT_PAIRS`, one per colour and per shape) are never used for training, to test
composition.

Pixel checks (:func:`read_scene`): after a 3x3 median filter, saturated pixels (max - min
channel > 60; the backgrounds are grey) near a palette colour vote for it; the winner is the
object's colour and its voters the object (:func:`object_mask`, robust to the speckle a small
diffusion model leaves); the position is the anchor nearest to the centre of the object's
bounding box. The shape is the template, sharp or blurred like a decoded image, that correlates
best with the object's soft chroma map (:func:`read_shape`); the background the texture of least
mean absolute error outside the saturated pixels. On real scenes every attribute reads back
exactly (tested); after the toy VAE's round trip colour, position and background still do and
most shapes (the model card's quality table has the figures).

Explained in docs/toyworld.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np

SIZE = 32
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 230),
    "yellow": (235, 215, 30),
    "purple": (150, 50, 200),
    "orange": (245, 135, 20),
}
SHAPES = ("circle", "square", "triangle", "diamond", "cross", "ring")
POSITIONS: dict[str, tuple[float, float]] = {  # phrase -> (x, y) anchor of the shape's centre
    "on the left": (8.5, 15.5),
    "on the right": (22.5, 15.5),
    "at the top": (15.5, 8.5),
    "at the bottom": (15.5, 22.5),
    "in the center": (15.5, 15.5),
}
BACKGROUNDS = ("plain", "striped", "dotted", "checkered")
HELD_OUT_PAIRS = frozenset(
    {
        ("red", "circle"),
        ("green", "square"),
        ("blue", "triangle"),
        ("yellow", "diamond"),
        ("purple", "cross"),
        ("orange", "ring"),
    }
)
SATURATION = 60
PALETTE_DISTANCE = 110.0
STRONG_SHARE = 0.6  # an object pixel's chroma is at least this share of the image's highest


@dataclass(frozen=True)
class Scene:
    colour: str
    shape: str
    position: str
    background: str

    @property
    def caption(self) -> str:
        return f"a {self.colour} {self.shape} {self.position} on a {self.background} background"

    def partial_caption(self, named: frozenset[str] | set[str]) -> str:
        """The caption naming only the attributes in ``named`` (the others left unsaid).

        An unnamed colour is dropped, an unnamed shape becomes "shape", an unnamed position or
        background is dropped with its words: {"shape"} -> "a circle", {"colour"} -> "a red
        shape", {"colour", "background"} -> "a red shape on a striped background".
        """
        words = ["a"]
        if "colour" in named:
            words.append(self.colour)
        words.append(self.shape if "shape" in named else "shape")
        if "position" in named:
            words.append(self.position)
        if "background" in named:
            words.append(f"on a {self.background} background")
        return " ".join(words)

    @property
    def held_out(self) -> bool:
        return (self.colour, self.shape) in HELD_OUT_PAIRS


ATTRIBUTES = ("colour", "shape", "position", "background")
ATTRIBUTE_VALUES: dict[str, tuple[str, ...]] = {
    "colour": tuple(COLOURS),
    "shape": SHAPES,
    "position": tuple(POSITIONS),
    "background": BACKGROUNDS,
}


def all_scenes() -> list[Scene]:
    """Every caption of the world, in a fixed order."""
    return [Scene(*attrs) for attrs in product(COLOURS, SHAPES, POSITIONS, BACKGROUNDS)]


def background(name: str, size: int = SIZE) -> np.ndarray:
    """A grey texture (size, size, 3) uint8: plain, horizontal stripes, dots or a checkerboard."""
    y, x = np.mgrid[0:size, 0:size]
    if name == "plain":
        grey = np.full((size, size), 128)
    elif name == "striped":
        grey = np.where((y // 2) % 2 == 0, 95, 165)
    elif name == "dotted":
        grey = np.where((x % 4 == 1) & (y % 4 == 1), 40, 150)
    elif name == "checkered":
        grey = np.where(((x // 4) + (y // 4)) % 2 == 0, 105, 175)
    else:
        raise ValueError(f"unknown background {name!r}; use one of {BACKGROUNDS}")
    return np.repeat(grey[..., None], 3, axis=2).astype(np.uint8)


def shape_mask(shape: str, cx: float, cy: float, half: float, size: int = SIZE) -> np.ndarray:
    """Boolean mask of ``shape`` centred at (cx, cy) with half-extent ``half`` pixels.

    Arrays of equal shape S for ``cx``, ``cy`` and ``half`` give masks of shape S + (size, size).
    """
    y, x = np.mgrid[0:size, 0:size].astype(float)
    cx, cy, half = (np.asarray(v, dtype=float)[..., None, None] for v in (cx, cy, half))
    dx, dy = x - cx, y - cy
    if shape == "circle":
        return np.hypot(dx, dy) <= half
    if shape == "ring":
        r = np.hypot(dx, dy)
        return (r <= half) & (r >= half * 0.5)
    if shape == "square":
        return (np.abs(dx) <= half * 0.85) & (np.abs(dy) <= half * 0.85)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= half
    if shape == "cross":
        arm = half * 0.35
        return ((np.abs(dx) <= arm) & (np.abs(dy) <= half)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= half))
    if shape == "triangle":  # apex up: y from cy - half to cy + half, width grows downward
        t = (dy + half) / (2 * half)
        return (t >= 0) & (t <= 1) & (np.abs(dx) <= t * half)
    raise ValueError(f"unknown shape {shape!r}; use one of {SHAPES}")


def render(scene: Scene, seed: int, size: int = SIZE) -> np.ndarray:
    """The (size, size, 3) uint8 image of ``scene``; size and jitter drawn from ``seed``.

    The draw is seeded by (seed, shape, background) only: scenes that differ in colour or
    position alone share the object's size and jitter for a seed.
    """
    rng = np.random.default_rng([seed, SHAPES.index(scene.shape), BACKGROUNDS.index(scene.background)])
    half = rng.uniform(4.5, 6.0)
    ax, ay = POSITIONS[scene.position]
    cx, cy = ax + rng.integers(-1, 2), ay + rng.integers(-1, 2)
    image = background(scene.background, size)
    image[shape_mask(scene.shape, cx, cy, half, size)] = COLOURS[scene.colour]
    return image


def saturated(image: np.ndarray) -> np.ndarray:
    pixels = image.astype(int)
    return pixels.max(axis=2) - pixels.min(axis=2) > SATURATION


def object_mask(image: np.ndarray) -> tuple[np.ndarray, str | None]:
    """The pixels of the drawn object and its palette colour, robust to speckle noise.

    A 3x3 median filter removes isolated noisy pixels; every strongly saturated pixel (chroma
    at least :data:`STRONG_SHARE` of the image's highest, so a colour-tinted background does not
    count) within distance :data:`PALETTE_DISTANCE` of a palette colour votes for its nearest
    one; the colour with most
    votes is the object's (None: fewer than 3 votes), and its voters are the object's pixels.
    """
    from scipy.ndimage import median_filter

    smooth = median_filter(image.astype(float), size=(3, 3, 1))
    palette = np.array(list(COLOURS.values()), dtype=float)
    distance = np.linalg.norm(smooth[:, :, None, :] - palette[None, None], axis=-1)
    nearest = distance.argmin(axis=-1)
    chroma = smooth.max(axis=2) - smooth.min(axis=2)
    strong = saturated(smooth) & (chroma >= STRONG_SHARE * chroma.max())  # not a tinted background
    votes = strong & (distance.min(axis=-1) < PALETTE_DISTANCE)
    counts = np.bincount(nearest[votes], minlength=len(palette))
    if counts.max() < 3:
        return np.zeros(image.shape[:2], dtype=bool), None
    winner = int(counts.argmax())
    return votes & (nearest == winner), list(COLOURS)[winner]


def read_colour(image: np.ndarray) -> str | None:
    """The palette colour of the drawn object (:func:`object_mask`; None: nothing drawn)."""
    return object_mask(image)[1]


def _box(mask: np.ndarray) -> tuple[float, float, float]:
    ys, xs = np.nonzero(mask)
    cx, cy = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2
    half = max(xs.max() - xs.min(), ys.max() - ys.min()) / 2
    return cx, cy, half


def read_position(image: np.ndarray) -> str | None:
    """The position whose anchor is nearest to the centre of the object's bounding box."""
    mask, colour = object_mask(image)
    if colour is None:
        return None
    cx, cy, _ = _box(mask)
    return min(POSITIONS, key=lambda p: (POSITIONS[p][0] - cx) ** 2 + (POSITIONS[p][1] - cy) ** 2)


SHAPE_BLURS = (0.0, 0.7)  # template blurs (pixels): sharp for clean scenes, soft for decoded ones
CHROMA_FLOOR = 40  # chroma below this counts as background in the object's soft map


def object_map(image: np.ndarray) -> np.ndarray:
    """The object's soft map in [0, 1]: (chroma - 40) / (highest chroma - 40), clipped.

    Chroma is max - min channel, 0 on the grey backgrounds; a blurred or speckled object keeps
    its graded edge instead of being cut at a threshold.
    """
    pixels = image.astype(float)
    chroma = pixels.max(axis=2) - pixels.min(axis=2)
    return np.clip((chroma - CHROMA_FLOOR) / max(chroma.max() - CHROMA_FLOOR, 1.0), 0.0, 1.0)


def shape_templates(shape: str, centres: np.ndarray, halves: np.ndarray, size: int = SIZE) -> np.ndarray:
    """(len(centres) * len(halves) * len(SHAPE_BLURS), size, size) float templates of ``shape``:
    every centre (x, y) with every half-extent, sharp and Gaussian-blurred by :data:`SHAPE_BLURS`."""
    from scipy.ndimage import gaussian_filter

    cx, h = np.meshgrid(centres[:, 0], halves, indexing="ij")
    cy, _ = np.meshgrid(centres[:, 1], halves, indexing="ij")
    masks = shape_mask(shape, cx.ravel(), cy.ravel(), h.ravel(), size).astype(np.float32)
    return np.concatenate([gaussian_filter(masks, sigma=(0, s, s)) if s else masks for s in SHAPE_BLURS])


def read_shape(image: np.ndarray) -> str | None:
    """The shape whose best-placed template correlates most with the object's soft map.

    score(shape) = max over placements t of corr(m, t), corr the Pearson correlation over all
    pixels of the soft map m (:func:`object_map`) and a template t (:func:`shape_templates`);
    placements: centres within 1 pixel (half-pixel steps) of the centre of the pixels with
    m > 0.5, half-extents from 1.5 below to 2.5 above half their bounding box (quarter-pixel
    steps). Exact on rendered scenes; on decoded (generated) images the blurred templates follow
    the soft edges the VAE leaves. None: fewer than 3 object pixels.
    """
    m = object_map(image)
    core = m > 0.5
    if core.sum() < 3:
        return None
    cx, cy, half = _box(core)
    offsets = np.arange(-1.0, 1.01, 0.5)
    centres = np.array([(cx + dx, cy + dy) for dx in offsets for dy in offsets])
    halves = np.arange(max(half - 1.5, 2.0), half + 2.51, 0.25)
    flat = (m - m.mean()).ravel()
    flat = flat / (np.linalg.norm(flat) + 1e-12)

    def score(shape: str) -> float:
        t = shape_templates(shape, centres, halves, image.shape[0]).reshape(-1, m.size)
        t = t - t.mean(axis=1, keepdims=True)
        return float((t @ flat / (np.linalg.norm(t, axis=1) + 1e-12)).max())

    return max(SHAPES, key=score)


def read_background(image: np.ndarray) -> str:
    """The texture of least mean absolute error outside the saturated pixels."""
    keep = ~saturated(image)
    grey = image.astype(float).mean(axis=2)
    return min(BACKGROUNDS, key=lambda b: float(np.abs(grey - background(b, image.shape[0])[..., 0])[keep].mean()))


def read_scene(image: np.ndarray) -> dict[str, str | None]:
    """Every attribute the pixel checks read from ``image``."""
    return {
        "colour": read_colour(image),
        "shape": read_shape(image),
        "position": read_position(image),
        "background": read_background(image),
    }


def training_scenes() -> list[Scene]:
    """The captions the text-to-image model and the scorer are trained on (held-out pairs excluded)."""
    return [scene for scene in all_scenes() if not scene.held_out]


def colour_texture(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """A random colourful texture (stripes, checks, dots or a gradient in random colours).

    The VAE also trains on these, so it can reconstruct colours and patterns the scenes never
    show (a new style learned by personalization).
    """
    y, x = np.mgrid[0:size, 0:size]
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    kind = rng.integers(0, 5)
    period = int(rng.integers(2, 9))
    if kind == 0:
        pattern = ((x + y * int(rng.integers(-1, 2))) // period) % 2
    elif kind == 1:
        pattern = ((x // period) + (y // period)) % 2
    elif kind == 2:
        pattern = ((x % period == 0) & (y % period == 0)).astype(int)
    elif kind == 3:
        pattern = (y // period) % 2
    else:
        t = (x if rng.integers(0, 2) else y) / (size - 1)
        return (a[None, None] * (1 - t[..., None]) + b[None, None] * t[..., None]).astype(np.uint8)
    return np.where(pattern[..., None] == 1, a[None, None], b[None, None]).astype(np.uint8)
