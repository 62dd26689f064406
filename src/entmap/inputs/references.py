"""Reference images of a subject: synthetic drawings or a checked folder of real images.

Synthetic subjects are drawn with PIL from a seed, so they are identical on
every machine: ``face`` (a stylized face with varying pose and colours),
``object`` (a distinctive striped teapot-like shape) and ``style`` (a
texture style: bold diagonal bands in a fixed palette with dotted fills).
A real subject is a folder of at least :data:`MIN_IMAGES` decodable images
whose shorter side is at least :data:`MIN_SIDE` pixels.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

from entmap.core.atomic import atomic_dir
from entmap.toyworld.subjects import draw_subject

MIN_IMAGES = 3
MIN_SIDE = 64
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
SYNTHETIC_KINDS = ("face", "object", "style", "toy-face", "toy-object", "toy-style")


class ReferenceError(ValueError):
    """A reference folder or image is unusable; the message names it and the fix."""


def reference_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The image files of a reference folder, sorted by name (hidden files skipped)."""
    folder = Path(folder)
    return sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def check_reference_folder(folder: str | os.PathLike[str]) -> list[Path]:
    """Check every image of a reference folder; return the files or raise ReferenceError."""
    folder = Path(folder)
    if folder.is_file():
        raise ReferenceError(
            f"references: {folder} is a file; point it at a folder holding at least {MIN_IMAGES} images of the "
            "subject (or use `references: {synthetic: face|object|style}`)"
        )
    if not folder.is_dir():
        raise ReferenceError(
            f"reference folder {folder} does not exist; create it with at least {MIN_IMAGES} "
            "images or use `references: {synthetic: face|object|style}`"
        )
    files = reference_files(folder)
    others = [
        p.name
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() not in IMAGE_SUFFIXES
    ]
    if others:
        raise ReferenceError(f"{folder}: files {others} are not images ({sorted(IMAGE_SUFFIXES)}); remove them")
    if len(files) < MIN_IMAGES:
        raise ReferenceError(f"{folder}: {len(files)} images found, at least {MIN_IMAGES} are needed")
    for path in files:
        try:
            with Image.open(path) as image:
                image.load()
                width, height = image.size
        except Image.DecompressionBombError as exc:
            raise ReferenceError(
                f"{path}: {exc}; this is larger than any reference image needs: downscale it (e.g. to 1024 px)"
            ) from None
        except (UnidentifiedImageError, OSError) as exc:
            raise ReferenceError(f"{path}: not a decodable image ({exc}); replace or remove it") from exc
        if min(width, height) < MIN_SIDE:
            raise ReferenceError(
                f"{path}: {width}x{height} pixels is too small; the shorter side must be >= {MIN_SIDE}"
            )
    return files


def load_reference_images(folder: str | os.PathLike[str]) -> list[Image.Image]:
    """Load a checked reference folder as RGB images."""
    return load_images(check_reference_folder(folder))


def load_images(paths: list[Path] | str | os.PathLike[str]) -> list[Image.Image]:
    """Decode image files (or every image of a folder) as RGB images."""
    if not isinstance(paths, list):
        paths = reference_files(paths)
    images = []
    for path in paths:
        with Image.open(path) as image:
            images.append(image.convert("RGB"))
    return images


def draw_synthetic(kind: str, index: int, seed: int = 0, size: int = 128) -> Image.Image:
    """Draw reference image ``index`` of a synthetic subject ``kind`` (deterministic)."""
    if kind not in SYNTHETIC_KINDS:
        raise ValueError(f"unknown synthetic subject kind {kind!r}; use one of {SYNTHETIC_KINDS}")
    rng = np.random.default_rng([seed, SYNTHETIC_KINDS.index(kind), index])
    if kind.startswith("toy-"):  # the toy world's subjects (entmap.toyworld.subjects)
        return draw_subject(kind, rng, size)
    return {"face": _draw_face, "object": _draw_object, "style": _draw_style}[kind](rng, size)


def make_synthetic_references(
    out_dir: str | os.PathLike[str], kind: str, count: int = 4, seed: int = 0, size: int = 128
) -> list[Path]:
    """Write ``count`` synthetic reference PNGs to ``out_dir`` atomically; return their paths."""
    with atomic_dir(out_dir) as tmp:
        for i in range(count):
            draw_synthetic(kind, i, seed, size).save(tmp / f"{i:02d}.png", optimize=False)
    return reference_files(out_dir)


def _colour(rng: np.random.Generator, low: int = 0, high: int = 256) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(low, high, size=3))


def _draw_face(rng: np.random.Generator, size: int) -> Image.Image:
    image = Image.new("RGB", (size, size), _colour(rng, 150, 256))
    draw = ImageDraw.Draw(image)
    cx = size / 2 + rng.uniform(-0.08, 0.08) * size
    cy = size / 2 + rng.uniform(-0.08, 0.08) * size
    r = size * rng.uniform(0.30, 0.36)
    skin = (int(rng.integers(200, 240)), int(rng.integers(160, 200)), int(rng.integers(120, 160)))
    draw.ellipse([cx - r, cy - r * 1.15, cx + r, cy + r * 1.15], fill=skin, outline=(60, 40, 30), width=2)
    hair = (70, 35, 20)
    draw.chord([cx - r, cy - r * 1.2, cx + r, cy + r * 0.2], 180, 360, fill=hair)
    eye_dy = -r * 0.15
    for side in (-1, 1):
        ex = cx + side * r * 0.4
        draw.ellipse([ex - r * 0.14, cy + eye_dy - r * 0.1, ex + r * 0.14, cy + eye_dy + r * 0.1], fill="white")
        draw.ellipse([ex - r * 0.06, cy + eye_dy - r * 0.06, ex + r * 0.06, cy + eye_dy + r * 0.06], fill=(30, 90, 160))
    draw.line(
        [cx, cy - r * 0.05, cx - r * 0.08, cy + r * 0.25, cx + r * 0.05, cy + r * 0.25],
        fill=(120, 70, 50),
        width=2,
    )
    smile = rng.uniform(0.1, 0.3) * r
    draw.arc(
        [cx - r * 0.4, cy + r * 0.25 - smile, cx + r * 0.4, cy + r * 0.55 + smile],
        20,
        160,
        fill=(150, 30, 40),
        width=3,
    )
    return image


def _draw_object(rng: np.random.Generator, size: int) -> Image.Image:
    image = Image.new("RGB", (size, size), _colour(rng, 170, 256))
    draw = ImageDraw.Draw(image)
    s = size * rng.uniform(0.8, 1.0)
    ox = size / 2 + rng.uniform(-0.1, 0.1) * size
    oy = size / 2 + rng.uniform(-0.05, 0.1) * size
    body = [ox - 0.3 * s, oy - 0.2 * s, ox + 0.3 * s, oy + 0.25 * s]
    draw.ellipse(body, fill=(200, 40, 40), outline=(40, 20, 20), width=2)
    for k in range(-2, 3):  # yellow stripes: the subject's signature
        y = oy + k * 0.08 * s
        draw.line([ox - 0.26 * s, y, ox + 0.26 * s, y], fill=(250, 210, 40), width=max(2, size // 40))
    draw.polygon(
        [
            (ox + 0.28 * s, oy),
            (ox + 0.48 * s, oy - 0.2 * s),
            (ox + 0.44 * s, oy - 0.24 * s),
            (ox + 0.26 * s, oy - 0.08 * s),
        ],
        fill=(200, 40, 40),
        outline=(40, 20, 20),
    )
    draw.arc([ox - 0.42 * s, oy - 0.12 * s, ox - 0.2 * s, oy + 0.16 * s], 90, 270, fill=(40, 20, 20), width=3)
    draw.ellipse([ox - 0.06 * s, oy - 0.3 * s, ox + 0.06 * s, oy - 0.2 * s], fill=(40, 120, 60))
    return image


def _draw_style(rng: np.random.Generator, size: int) -> Image.Image:
    palette = np.array([(20, 30, 90), (240, 120, 30), (250, 230, 200), (30, 140, 130)], dtype=np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    angle = rng.uniform(0.5, 1.1)
    period = size / rng.uniform(3.5, 5.5)
    phase = rng.uniform(0, period)
    band = ((xx * np.cos(angle) + yy * np.sin(angle) + phase) // period).astype(int) % len(palette)
    pixels = palette[band]
    dots = ((xx % 8) < 3) & ((yy % 8) < 3) & (band % 2 == 0)
    pixels[dots] = (pixels[dots] * 0.55).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def make_references(spec: dict, out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write the synthetic references a subject's ``references: {synthetic: kind, ...}`` asks for."""
    if not isinstance(spec, dict) or "synthetic" not in spec:
        raise ReferenceError(f"{out_dir}: only synthetic references are generated; got {spec!r}")
    return make_synthetic_references(out_dir, spec["synthetic"], spec.get("count", 4), spec.get("seed", 0))
