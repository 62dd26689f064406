"""The position diagnosis (entmap.toymodels.diagnose): each measurement on a hand-checked case."""

from dataclasses import replace

import numpy as np
import pytest

from entmap.toymodels.diagnose import (
    agreement,
    attention_centroid,
    noisy_decodability,
    pool_position_agreement,
    position_overlap,
    seed_or_prompt,
    variant_separation,
)
from entmap.toyworld.world import ATTRIBUTE_VALUES, POSITIONS, Scene, render

POSITION_NAMES = list(POSITIONS)


def pool(count_per_position: int = 6):
    scenes = [
        Scene(colour, "circle", position, "striped")
        for position in POSITION_NAMES
        for colour in ("red", "blue", "green")[: count_per_position // 2]
        for _ in range(2)
    ]
    images = np.stack([render(scene, seed) for seed, scene in enumerate(scenes)])
    return images, [scene.position for scene in scenes]


def test_a_clean_pool_agrees_with_its_labels():
    images, labels = pool()
    table = pool_position_agreement(images, labels)
    assert agreement(table) == 1.0 and table["none"].sum() == 0
    assert table.to_numpy().sum() == len(labels)


def test_a_planted_horizontal_flip_swaps_left_and_right():
    images, labels = pool()
    table = pool_position_agreement(images[:, :, ::-1], labels)
    per = labels.count("on the left")
    assert table.loc["on the left", "on the right"] == per and table.loc["on the right", "on the left"] == per
    assert agreement(table) == pytest.approx(3 / 5)  # top, bottom and center survive a flip


def test_a_planted_label_shuffle_is_found():
    images, labels = pool()
    shifted = labels[6:] + labels[:6]  # every label moved to the next position's images
    assert agreement(pool_position_agreement(images, shifted)) == 0.0


def test_positions_overlap_only_through_the_center():
    table = position_overlap()
    opposite = table[(table.a + "|" + table.b).isin(["on the left|on the right", "at the top|at the bottom"])]
    assert len(opposite) == 4 and (opposite.iou == 0).all()
    centre = table[table.b == "in the center"]
    assert (centre.iou > 0).all() and (centre.iou < 0.2).all()
    # a 12 px wide square at anchors 7 px apart: width 2 * 0.85 * 6 = 10.2 -> columns 3..13 and 10..20
    assert table.iou.max() < 0.5


def test_variant_separation_of_an_encoder_that_ignores_position():
    colours = ATTRIBUTE_VALUES["colour"]

    def encode(captions):
        hidden = np.ones((len(captions), 16, len(colours)))
        for k, caption in enumerate(captions):
            hidden[k, 2:, :] = 0  # from the colour word on, a one-hot of the colour (causal)
            hidden[k, 2:, colours.index(caption.split()[1])] = 1
        return hidden

    base = Scene("red", "circle", "on the left", "plain")
    position = variant_separation(encode, base, "position")
    assert position["whole"] == pytest.approx(0, abs=1e-12) and position["pads"] == 0 and not position["token"].any()
    colour = variant_separation(encode, base, "colour")
    # flattened: 2 * 6 ones shared, 14 one-hot ones differ: cos = 2 * 6 / (2 * 6 + 14) = 12 / 26
    assert colour["whole"] == pytest.approx(1 - 12 / 26)
    assert colour["token"][2] == pytest.approx(np.sqrt(2)) and colour["token"][1] == 0
    assert colour["pads"] == pytest.approx(np.sqrt(2))


def test_seed_or_prompt_tells_noise_from_prompt():
    by_seed = np.array([[2] * 5, [0] * 5, [4] * 5])
    assert seed_or_prompt(by_seed) == {"accuracy": 0.2, "seed_decides": 1.0, "prompt_decides": 0.0}
    by_prompt = np.tile(np.arange(5), (3, 1))
    assert seed_or_prompt(by_prompt) == {"accuracy": 1.0, "seed_decides": 0.0, "prompt_decides": 1.0}
    mixed = np.array([[0, 1, 2, 3, 4], [1, 1, 1, 1, 1]])
    assert seed_or_prompt(mixed) == {"accuracy": 0.6, "seed_decides": 0.5, "prompt_decides": 0.5}


def test_attention_centroid_in_image_pixels():
    maps = np.zeros((3, 8, 8))
    maps[0, 3, 1] = 1  # row 3, column 1 of 8: pixels x 4..7 (centre 5.5), y 12..15 (centre 13.5)
    maps[1] = 1
    maps[2, :, 7] = 1
    centre = attention_centroid(maps)
    assert centre[0] == pytest.approx([5.5, 13.5])
    assert centre[1] == pytest.approx([15.5, 15.5])
    assert centre[2] == pytest.approx([29.5, 15.5])


def test_noisy_decodability_finds_a_planted_class_and_not_a_null():
    rng = np.random.default_rng(1)
    classes = np.tile(np.arange(4), 300)
    means = rng.standard_normal((4, 64)) * 3
    latents = means[classes] + rng.standard_normal((len(classes), 64))
    alphas = np.array([1.0, 0.5, 1e-6])
    found = noisy_decodability(latents, classes, alphas, [0, 1, 2])
    assert found[0] > 0.99 and found[1] > 0.9
    assert abs(found[2] - 0.25) < 0.07  # all noise: chance
    null = noisy_decodability(rng.standard_normal(latents.shape), classes, alphas, [0])
    assert abs(null[0] - 0.25) < 0.07


def test_variant_captions_differ_only_in_the_attribute():
    base = Scene("red", "circle", "on the left", "plain")
    words = [replace(base, position=p).caption.split() for p in POSITION_NAMES]
    assert all(len(w) == len(words[0]) for w in words)  # one token per word in every variant
