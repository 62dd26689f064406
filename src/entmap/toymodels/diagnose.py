"""Why the toy text-to-image model draws position at chance: one measurement per candidate cause.

The shipped model draws the asked colour and texture every time but places objects at chance
(resources/models/toyworld/MODEL_CARD.md). Each function here measures one candidate cause from
the shipped models or the training pool; :func:`diagnose` runs them all on the shipped models
and returns their tables (about a minute on one CPU thread):

* :func:`pool_position_agreement`: do the training pool's position labels match the position
  read from its pixels (a flip or shift augmentation would break them)?
* :func:`position_overlap`: how much the shapes drawn at two positions overlap.
* :func:`variant_separation`: does the text encoder separate captions that differ in one
  attribute?
* :func:`seed_or_prompt`: does the prompt's position word or the initial noise decide where
  the object is drawn (and does the guidance scale change it)?
* :func:`token_attention`: where the UNet's cross-attention puts a prompt's token.
* :func:`noisy_decodability`: how well each attribute can be read from the noised training
  latents x_t, i.e. how much the text must supply at each timestep.

Explained in docs/toyworld.md; the findings are in the model card's "Why position is at chance".
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pandas as pd

from entmap.toyworld.world import (
    ATTRIBUTE_VALUES,
    ATTRIBUTES,
    POSITIONS,
    SHAPES,
    Scene,
    read_position,
    shape_mask,
    training_scenes,
)

#: The scene whose caption variants the text and generation measurements vary.
BASE_SCENE = Scene("blue", "square", "on the left", "dotted")


def pool_position_agreement(images: np.ndarray, labels: list[str]) -> pd.DataFrame:
    """Confusion of the pool's position labels against the position read from its pixels.

    ``images`` (N, 32, 32, 3) uint8 training scenes (after any transform training applies),
    ``labels`` the position phrase of each caption. Returns the (5 x 5) count table, rows the
    label, columns :func:`entmap.toyworld.world.read_position` ("none": no object found).
    agreement = trace / N; a horizontal flip moves every "on the left" to the "on the right"
    column and back (tested), a shift spreads rows over neighbouring anchors.
    """
    positions = list(POSITIONS)
    columns = positions + ["none"]
    table = pd.DataFrame(0, index=pd.Index(positions, name="label"), columns=columns)
    for image, label in zip(images, labels, strict=True):
        table.loc[label, read_position(image) or "none"] += 1
    return table


def agreement(table: pd.DataFrame) -> float:
    """Share of a confusion table (rows: truth, columns: read) on its diagonal."""
    return float(sum(table.loc[p, p] for p in table.index) / table.to_numpy().sum())


def position_overlap(halves: tuple[float, ...] = (4.5, 6.0)) -> pd.DataFrame:
    """IoU of the same shape drawn at the anchors of two positions, mean over shapes.

    IoU(p, q) = |M(p) & M(q)| / |M(p) | M(q)| with M the :func:`shape_mask` at the anchor
    (no jitter) for each half-extent in ``halves`` (the world draws 4.5 to 6.0). One row per
    pair of positions and half-extent. 0: the positions never share a pixel.
    """
    rows = []
    positions = list(POSITIONS)
    for half in halves:
        for i, p in enumerate(positions):
            for q in positions[i + 1 :]:
                ious = []
                for shape in SHAPES:
                    a = shape_mask(shape, *POSITIONS[p], half)
                    b = shape_mask(shape, *POSITIONS[q], half)
                    ious.append((a & b).sum() / max((a | b).sum(), 1))
                rows.append({"half": half, "a": p, "b": q, "iou": float(np.mean(ious))})
    return pd.DataFrame(rows)


def variant_separation(encode: Callable[[list[str]], np.ndarray], base: Scene, attribute: str) -> dict:
    """How far apart a text encoder puts the captions of ``base`` that differ only in ``attribute``.

    ``encode`` maps captions to hidden states (N, L, D). Over all pairs i != j of the variants:

        whole = mean (1 - cos(flatten(h_i), flatten(h_j)))
        token[l] = mean ||h_i[l] - h_j[l]|| / ||h_i[l]||      (relative change at token l)

    Returns ``whole``, ``token`` (per position l) and ``pads`` (the token mean from ``first_pad``,
    the first position after every variant's last word, inclusive of the end token).
    """
    captions = [replace(base, **{attribute: value}).caption for value in ATTRIBUTE_VALUES[attribute]]
    hidden = np.asarray(encode(captions), dtype=np.float64)
    n = len(captions)
    flat = hidden.reshape(n, -1)
    unit = flat / np.linalg.norm(flat, axis=1, keepdims=True)
    off = ~np.eye(n, dtype=bool)
    whole = float((1 - unit @ unit.T)[off].mean())
    diff = np.linalg.norm(hidden[:, None] - hidden[None], axis=-1)  # (n, n, L)
    relative = diff / np.maximum(np.linalg.norm(hidden, axis=-1)[:, None], 1e-12)
    token = relative[off].mean(axis=0)
    first_pad = max(len(c.split()) for c in captions) + 1  # + the start token
    return {"whole": whole, "token": token, "pads": float(token[first_pad:].mean())}


def seed_or_prompt(read: np.ndarray) -> dict:
    """Whether the prompt or the initial noise decides the drawn position.

    ``read`` (seeds, 5): the position index read from the image of seed s prompted with position
    p (-1: no object). accuracy = share of read[s, p] == p; seed_decides = share of seeds whose
    five prompts all give one position (1/5^4 = 0.0016 if position followed the prompt at chance
    independently per image, 1.0 if only the noise decides); prompt_decides = share of seeds
    whose five prompts give five different positions.
    """
    read = np.asarray(read)
    target = np.arange(read.shape[1])[None]
    return {
        "accuracy": float((read == target).mean()),
        "seed_decides": float(np.mean([len(set(row)) == 1 for row in read.tolist()])),
        "prompt_decides": float(np.mean([len(set(row)) == read.shape[1] for row in read.tolist()])),
    }


def generated_positions(pipe, base: Scene, seeds: list[int], guidance_scale: float, steps: int = 25) -> np.ndarray:
    """(seeds, 5) position index read from the image of each seed and position prompt (-1: none)."""
    from entmap.models.sampling import pipeline_latents, render

    positions = list(POSITIONS)
    captions = [replace(base, position=p).caption for p in positions]
    settings = {"steps": steps, "guidance_scale": guidance_scale, "resolution": 32, "negative_prompt": ""}
    read = np.full((len(seeds), len(positions)), -1)
    for row, seed in enumerate(seeds):
        latents = pipeline_latents(pipe, [seed] * len(positions), 32)
        for col, image in enumerate(render(pipe, latents, settings, prompts=captions)):
            found = read_position(np.asarray(image.convert("RGB")))
            read[row, col] = positions.index(found) if found else -1
    return read


def attention_centroid(maps: np.ndarray, size: int = 32) -> np.ndarray:
    """(N, 2) image-pixel (x, y) centre of mass of attention maps (N, side, side).

    A map cell (r, c) covers pixels [c * size/side, (c + 1) * size/side); its centre is
    (c + 0.5) * size / side - 0.5 in pixel coordinates (pixel centres at 0 .. size - 1).
    """
    maps = np.asarray(maps, dtype=np.float64)
    side = maps.shape[-1]
    centres = (np.arange(side) + 0.5) * size / side - 0.5
    weights = maps / maps.sum(axis=(1, 2), keepdims=True)
    return np.stack([(weights.sum(axis=1) * centres).sum(axis=1), (weights.sum(axis=2) * centres).sum(axis=1)], axis=1)


def token_attention(pipe, base: Scene, seeds: list[int], guidance_scale: float = 5.0, steps: int = 25) -> pd.DataFrame:
    """Where each cross-attention layer puts the colour word and the position word.

    For every seed and position prompt of ``base``, the attention probabilities A[i, j]
    (:mod:`entmap.attention.capture`) are averaged over the denoising steps. One row per layer,
    seed and prompt: the attention mass (mean over image positions i) of the colour word, the
    position word and the padding after the caption, and the centre of mass
    (:func:`attention_centroid`) of the position word's map, in image pixels.
    """
    import torch

    from entmap.attention.capture import capture_attention, text_attention_layers
    from entmap.models.sampling import pipeline_latents, render

    positions = list(POSITIONS)
    captions = [replace(base, position=p).caption for p in positions]
    ids = pipe.tokenizer(captions[0]).input_ids
    words = ["<start>"] + captions[0].split()
    colour_at, position_at = words.index(base.colour), words.index(base.position.split()[-1])
    pad_from = len(ids)  # start, words, end
    names = list(text_attention_layers(pipe))
    settings = {"steps": steps, "guidance_scale": guidance_scale, "resolution": 32, "negative_prompt": ""}
    rows = []
    for seed in seeds:
        sums: dict[int, torch.Tensor] = {}

        def sink(layer: int, step: int, probabilities: torch.Tensor, sums=sums) -> None:
            sums[layer] = sums.get(layer, 0) + probabilities / steps

        with capture_attention(pipe, sink, len(captions), pipe.tokenizer.model_max_length):
            render(pipe, pipeline_latents(pipe, [seed] * len(captions), 32), settings, prompts=captions)
        for layer, mean in sums.items():
            side = int(round(mean.shape[1] ** 0.5))
            centre = attention_centroid(mean[:, :, position_at].reshape(-1, side, side).numpy())
            for k, prompt in enumerate(positions):
                rows.append(
                    {
                        "layer": names[layer],
                        "side": side,
                        "seed": seed,
                        "prompt": prompt,
                        "colour_mass": float(mean[k, :, colour_at].mean()),
                        "position_mass": float(mean[k, :, position_at].mean()),
                        "pad_mass": float(mean[k, :, pad_from:].sum(-1).mean()),
                        "position_x": float(centre[k, 0]),
                        "position_y": float(centre[k, 1]),
                    }
                )
    return pd.DataFrame(rows)


def noisy_decodability(
    latents: np.ndarray,
    classes: np.ndarray,
    alphas_cumprod: np.ndarray,
    timesteps: list[int],
    seed: int = 0,
) -> dict[int, float]:
    """Accuracy of reading a class from the noised latent x_t = sqrt(a_t) z + sqrt(1 - a_t) e.

    The class means mu_c are taken on the first half of ``latents`` (N, ...), the second half is
    noised (e ~ N(0, I), seeded) and each x_t is given the class of the nearest sqrt(a_t) mu_c
    (Euclidean; near the Bayes rule when the noise dominates the within-class spread, a lower
    bound otherwise). Chance is 1 / number of classes. What the model can read from x_t at a
    timestep it need not take from the caption.
    """
    flat = np.asarray(latents, dtype=np.float64).reshape(len(latents), -1)
    classes = np.asarray(classes)
    half = len(flat) // 2
    labels = np.unique(classes)
    means = np.stack([flat[:half][classes[:half] == c].mean(axis=0) for c in labels])
    rng = np.random.default_rng(seed)
    test, truth = flat[half:], classes[half:]
    out = {}
    for t in timesteps:
        a = float(alphas_cumprod[t])
        noisy = np.sqrt(a) * test + np.sqrt(1 - a) * rng.standard_normal(test.shape)
        distance = ((noisy[:, None, :] - np.sqrt(a) * means[None]) ** 2).sum(-1)
        out[t] = float((labels[distance.argmin(axis=1)] == truth).mean())
    return out


def pool_latents(vae, images: np.ndarray, batch: int = 500) -> np.ndarray:
    """The scaled posterior means of ``images`` (what the UNet is trained to denoise, less the sampling)."""
    import torch

    from entmap.toymodels.train import to_unit_range

    with torch.no_grad():
        means = [
            vae.encode(to_unit_range(images[i : i + batch])).latent_dist.mean for i in range(0, len(images), batch)
        ]
    return (torch.cat(means) * vae.config.scaling_factor).numpy()


def diagnose(
    model_dir: str | os.PathLike[str] = "resources/models/toyworld/sd",
    pool: int = 20000,
    seed: int = 0,
    seeds: int = 12,
    guidance: tuple[float, ...] = (1.0, 5.0, 15.0),
    timesteps: tuple[int, ...] = (999, 950, 900, 800, 600),
    threads: int = 1,
) -> dict[str, pd.DataFrame]:
    """Every measurement on the shipped (or a given) pipeline and the training pool it was trained on.

    ``pool`` and ``seed`` are the text-to-image block's (configs/toyworld-train.yaml), so the
    pool is the one training rendered. Returns tables named pool, overlap, text, generation,
    attention and decodability.
    """
    import torch

    from entmap.models.loading import open_model
    from entmap.toymodels.train import scene_pool

    torch.set_num_threads(threads)
    scenes = training_scenes()
    images, index = scene_pool(scenes, pool, seed)
    labels = [scenes[i].position for i in index]
    tables: dict[str, pd.DataFrame] = {"pool": pool_position_agreement(images, labels).reset_index()}
    tables["overlap"] = position_overlap()
    pipe = open_model(str(model_dir), None, "cpu", "auto", threads)

    def encode(captions: list[str]) -> np.ndarray:
        ids = pipe.tokenizer(captions, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
        with torch.no_grad():
            return pipe.text_encoder(ids.input_ids)[0].numpy()

    text_rows = []
    for attribute in ATTRIBUTES:
        found = variant_separation(encode, BASE_SCENE, attribute)
        word = 1 + BASE_SCENE.caption.split().index(getattr(BASE_SCENE, attribute).split()[-1])
        text_rows.append(
            {"attribute": attribute, "whole": found["whole"], "at_word": found["token"][word], "pads": found["pads"]}
        )
    tables["text"] = pd.DataFrame(text_rows)
    seed_list = list(range(100, 100 + seeds))
    tables["generation"] = pd.DataFrame(
        [{"guidance": g} | seed_or_prompt(generated_positions(pipe, BASE_SCENE, seed_list, g)) for g in guidance]
    )
    tables["attention"] = token_attention(pipe, BASE_SCENE, seed_list[:2])
    n = min(len(images), 4000)
    latents = pool_latents(pipe.vae, images[:n])
    alphas_cumprod = pipe.scheduler.alphas_cumprod.double().numpy()  # the model's own training schedule
    rows = []
    for attribute in ATTRIBUTES:
        classes = np.array([ATTRIBUTE_VALUES[attribute].index(getattr(scenes[i], attribute)) for i in index[:n]])
        found = noisy_decodability(latents, classes, alphas_cumprod, list(timesteps), seed)
        rows += [
            {"attribute": attribute, "t": t, "accuracy": acc, "chance": 1 / len(ATTRIBUTE_VALUES[attribute])}
            for t, acc in found.items()
        ]
    tables["decodability"] = pd.DataFrame(rows)
    return tables
