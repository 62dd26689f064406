"""The toy world's quality table: does the text-to-image model draw what it is told, and can the scorer tell?

Generated images (seen and held-out colour-shape pairs, one image per caption and seed):

* every attribute by the pixel checks of :mod:`entmap.toyworld.world` (:func:`read_scene`), the
  same checks that score E_struct, so the table says what E_struct can see;
* the shape also by the scorer, zero-shot: among the captions that differ from the prompt only
  in the shape, the one of highest cosine to the image. Its image tower binds shape to the
  colours it saw the shape in, so on held-out pairs this row measures the scorer as much as the
  generator (its row on real scenes says by how much).

The instruments alone, on real rendered scenes of held-out pairs: the pixel checks after the
pipeline's own VAE encodes and decodes each scene (what every generated image is made of), and
the scorer zero-shot on each of the four attributes. Chance is 1 / number of values of the
attribute.
"""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pandas as pd
from PIL import Image

from entmap.toyworld.world import (
    ATTRIBUTE_VALUES,
    SIZE,
    Scene,
    all_scenes,
    read_scene,
    render,
)

#: Defaults of the quality table (the command's flags and the model card's text use them).
PER_SPLIT, SEEDS, DDIM_STEPS, GUIDANCE = 24, 2, 25, 5.0


def zero_shot(scorer, images: list[Image.Image], scenes: list[Scene], attribute: str) -> list[str]:
    """The value of ``attribute`` whose caption (other attributes from ``scenes``) matches each image best."""
    import torch  # here, so that `entmap --help` and the CLI's defaults do not load torch

    values = ATTRIBUTE_VALUES[attribute]
    image_emb = torch.nn.functional.normalize(scorer.image_embeddings(images), dim=-1)
    captions = [replace(scene, **{attribute: value}).caption for scene in scenes for value in values]
    text_emb = torch.nn.functional.normalize(scorer.text_embeddings(captions), dim=-1).view(
        len(scenes), len(values), -1
    )
    best = torch.einsum("nd,nvd->nv", image_emb, text_emb).argmax(dim=1)
    return [values[i] for i in best.tolist()]


def evaluation_scenes(per_split: int, seed: int = 0) -> dict[str, list[Scene]]:
    """``per_split`` captions of seen and of held-out colour-shape pairs, drawn reproducibly."""
    rng = np.random.default_rng(seed)
    scenes = all_scenes()
    splits = {"held-out": [s for s in scenes if s.held_out], "seen": [s for s in scenes if not s.held_out]}
    most = min(len(group) for group in splits.values())
    if not 1 <= per_split <= most:
        raise ValueError(f"captions per split must be 1 to {most} (the held-out captions), not {per_split}")
    return {
        name: [group[i] for i in sorted(rng.choice(len(group), per_split, replace=False))]
        for name, group in splits.items()
    }


def generated_accuracy(pipe, scorer, scenes: list[Scene], seeds: list[int], generation: dict) -> pd.DataFrame:
    """One row per generated image: the prompt's attributes and whether each was drawn."""
    from entmap.models.sampling import pipeline_latents
    from entmap.models.sampling import render as render_images

    jobs = [(scene, seed) for scene in scenes for seed in seeds]
    rows = []
    for start in range(0, len(jobs), generation["batch_size"]):
        batch = jobs[start : start + generation["batch_size"]]
        latents = pipeline_latents(pipe, [s for _, s in batch], generation["resolution"])
        images = render_images(pipe, latents, generation, prompts=[scene.caption for scene, _ in batch])
        shapes = zero_shot(scorer, images, [scene for scene, _ in batch], "shape")
        for (scene, seed), image, shape in zip(batch, images, shapes, strict=True):
            read = read_scene(np.asarray(image.convert("RGB")))
            rows.append(
                {"caption": scene.caption, "seed": seed}
                | {attribute: read[attribute] == getattr(scene, attribute) for attribute in ATTRIBUTE_VALUES}
                | {"shape_by_scorer": shape == scene.shape}
            )
    return pd.DataFrame(rows)


def scorer_accuracy(scorer, scenes: list[Scene], seeds: list[int]) -> pd.DataFrame:
    """Zero-shot accuracy of the scorer on real rendered scenes, one row per image."""
    jobs = [(scene, seed) for scene in scenes for seed in seeds]
    images = [Image.fromarray(render(scene, 10_000 + seed)) for scene, seed in jobs]
    found = {a: zero_shot(scorer, images, [s for s, _ in jobs], a) for a in ATTRIBUTE_VALUES}
    return pd.DataFrame(
        {"caption": [s.caption for s, _ in jobs]}
        | {a: [v == getattr(s, a) for v, (s, _) in zip(found[a], jobs, strict=True)] for a in ATTRIBUTE_VALUES}
    )


def decoded_accuracy(vae, scenes: list[Scene], seeds: list[int]) -> pd.DataFrame:
    """The pixel checks on real rendered scenes after a VAE round trip (encode, mode, decode), one row per image."""
    import torch

    from entmap.toymodels.train import to_unit_range

    jobs = [(scene, 10_000 + seed) for scene in scenes for seed in seeds]  # the scorer row's scenes
    pixels = to_unit_range(np.stack([render(scene, seed) for scene, seed in jobs])).to(vae.device, vae.dtype)
    with torch.no_grad():
        decoded = vae.decode(vae.encode(pixels).latent_dist.mode()).sample
    images = ((decoded.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    reads = [read_scene(image) for image in images]
    return pd.DataFrame(
        {"caption": [s.caption for s, _ in jobs]}
        | {a: [r[a] == getattr(s, a) for r, (s, _) in zip(reads, jobs, strict=True)] for a in ATTRIBUTE_VALUES}
    )


def quality_table(generated: dict[str, pd.DataFrame], real: pd.DataFrame, decoded: pd.DataFrame) -> pd.DataFrame:
    """Accuracy against chance per what (generated, decoded real scenes, scorer), split and attribute."""
    rows = []
    for split, frame in generated.items():
        for attribute in ATTRIBUTE_VALUES:
            rows.append(_row("generated", split, attribute, "pixels", frame[attribute]))
        rows.append(_row("generated", split, "shape", "scorer", frame["shape_by_scorer"]))
    for attribute in ATTRIBUTE_VALUES:
        rows.append(_row("real scenes through the VAE", "held-out", attribute, "pixels", decoded[attribute]))
    for attribute in ATTRIBUTE_VALUES:
        rows.append(_row("scorer on real scenes", "held-out", attribute, "zero-shot", real[attribute]))
    return pd.DataFrame(rows)


def _row(what: str, split: str, attribute: str, how: str, hits: pd.Series) -> dict:
    return {
        "images": what,
        "prompts": split,
        "attribute": attribute,
        "read by": how,
        "accuracy": float(hits.mean()),
        "chance": 1 / len(ATTRIBUTE_VALUES[attribute]),
        "n": int(len(hits)),
    }


def evaluate(
    model_dir: str | os.PathLike[str],
    scorer_dir: str | os.PathLike[str],
    per_split: int = PER_SPLIT,
    seeds: int = SEEDS,
    steps: int = DDIM_STEPS,
    guidance_scale: float = GUIDANCE,
    threads: int = 2,
    device: str = "auto",
) -> pd.DataFrame:
    """Load the shipped (or freshly trained) toy models and measure the quality table."""
    from entmap.core.runtime import resolve_device
    from entmap.measure.score import ClipScorer
    from entmap.models.loading import open_model

    pipe = open_model(str(model_dir), None, device, "auto", threads)
    scorer = ClipScorer(f"local-dir:{scorer_dir}", None, resolve_device(device))
    generation = {
        "steps": steps,
        "guidance_scale": guidance_scale,
        "resolution": SIZE,
        "batch_size": 16,
        "negative_prompt": "",
    }
    splits = evaluation_scenes(per_split)
    seed_list = list(range(seeds))
    generated = {
        name: generated_accuracy(pipe, scorer, scenes, seed_list, generation) for name, scenes in splits.items()
    }
    real = scorer_accuracy(scorer, splits["held-out"], seed_list)
    decoded = decoded_accuracy(pipe.vae, splits["held-out"], seed_list)
    return quality_table(generated, real, decoded)
