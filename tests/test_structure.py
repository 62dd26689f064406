"""Structured faithfulness and E_struct: hand-made attribute results, and the toy world's exact reading."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import REPO

from entmap.inputs.prompt_suites import load_prompts
from entmap.measure.structure import ELEMENTS, e_struct, faithfulness, read_faithfulness, required_elements
from entmap.toyworld.world import Scene, render


def test_e_struct_on_hand_made_faithfulness_values():
    # seed by seed: unchanged, lost half the elements, gained a quarter
    assert e_struct([1.0, 0.5, 0.75], [1.0, 1.0, 0.5]) == pytest.approx((0.25, -0.25 / 3))
    assert e_struct([0.5, 0.5], [0.5, 0.5]) == (0.0, 0.0)
    with pytest.raises(ValueError, match="seed-matched"):
        e_struct([1.0], [1.0, 0.5])


def test_required_elements_are_read_from_the_prompts_words():
    assert required_elements("a blue ring at the top") == {"colour": "blue", "shape": "ring", "position": "at the top"}
    assert required_elements("a red circle on the left on a dotted background") == {
        "colour": "red",
        "shape": "circle",
        "position": "on the left",
        "background": "dotted",
    }
    assert required_elements("a striped background") == {"background": "striped"}
    assert required_elements("a red diamond at the top and a blue ring on the right") is None


def test_every_single_object_prompt_of_the_toy_suite_names_something_to_check():
    suite = load_prompts(REPO / "resources/prompts/toyworld-60.tsv")
    for row in suite.itertuples():
        required = required_elements(row.text)
        assert (required is None) == (row.category == "compositions"), row.text


def test_a_rendered_scene_is_fully_faithful_to_its_caption_and_each_wrong_element_costs_a_share():
    scene = Scene("green", "cross", "at the bottom", "checkered")
    required = required_elements(scene.caption)
    for seed in range(3):
        assert faithfulness(render(scene, seed), required) == 1.0
    wrong_colour = render(Scene("purple", "cross", "at the bottom", "checkered"), 0)
    assert faithfulness(wrong_colour, required) == 0.75
    wrong_two = render(Scene("purple", "cross", "on the left", "checkered"), 0)
    assert faithfulness(wrong_two, required) == 0.5
    base = [faithfulness(render(scene, s), required) for s in range(2)]
    damaged = [faithfulness(wrong_colour, required), faithfulness(wrong_two, required)]
    assert e_struct(damaged, base) == pytest.approx((0.375, -0.375))
    assert np.isfinite(e_struct(damaged, base)).all()


def test_read_faithfulness_gives_each_image_its_element_hits_and_their_share():
    scene = Scene("green", "cross", "at the bottom", "checkered")
    required = required_elements(scene.caption)
    images = [
        render(scene, 0),
        render(Scene("purple", "cross", "on the left", "checkered"), 0),  # colour and position wrong
        render(scene, 1),
    ]
    f, hits = read_faithfulness(images, [required, required, None])
    assert hits.shape == (3, 4) and list(ELEMENTS) == ["colour", "shape", "position", "background"]
    assert hits[0].tolist() == [1, 1, 1, 1] and hits[1].tolist() == [0, 1, 0, 1]
    assert np.isnan(hits[2]).all() and np.isnan(f[2])
    assert f[:2].tolist() == [1.0, 0.5]
    only_colour = {"colour": "purple"}  # a prompt requiring one element: the others are NaN, f its hit
    f, hits = read_faithfulness(images[1:2], [only_colour])
    assert f.tolist() == [1.0] and np.isnan(hits[0, 1:]).all()


def test_the_disrupt_stage_scores_each_seed_matched_image_pair(tmp_path):
    """Image shards of rendered toy scenes: the personalized model draws the wrong colour for one
    prompt; disrupt_shard gives f = 1 for the base, 0.75 for that image, NaN for the composition."""
    import pandas as pd
    from PIL import Image

    from entmap.core.image_codec import png_bytes
    from entmap.core.parquet_schemas import DISRUPTION, IMAGES, SCORES, read_table, write_table
    from entmap.measure.disrupt import disrupt_shard

    suite = tmp_path / "suite.tsv"
    prompts = {
        "p1": "a green cross at the bottom on a checkered background",
        "p2": "a red diamond at the top and a blue ring on the right",
    }
    suite.write_text("id\tcategory\ttext\n" + "".join(f"{k}\tobjects\t{v}\n" for k, v in prompts.items()))
    right = Scene("green", "cross", "at the bottom", "checkered")
    wrong = Scene("purple", "cross", "at the bottom", "checkered")
    drawn = {"base": {"p1": [right, right], "p2": [right, right]}, "pers": {"p1": [right, wrong], "p2": [wrong, wrong]}}
    paths = {}
    for model, scenes in drawn.items():
        rows = [
            {"prompt_id": pid, "seed": seed, "model": model, "settings_hash": "h", "width": 32, "height": 32,
             "png": png_bytes(Image.fromarray(render(scene, seed))), "reused": False}
            for pid, by_seed in scenes.items() for seed, scene in enumerate(by_seed)
        ]  # fmt: skip
        images = pd.DataFrame(rows)
        scores = images[["prompt_id", "seed", "model", "settings_hash"]].assign(
            clip_cos=0.3, image_embedding=[[0.0, 1.0]] * len(images)
        )
        paths[model] = (tmp_path / f"{model}_images.parquet", tmp_path / f"{model}_scores.parquet")
        write_table(images, paths[model][0], IMAGES)
        write_table(scores, paths[model][1], SCORES)
    out = tmp_path / "disruption.parquet"
    lpips = {"net": "alex", "backbone": "random", "seed": 0}
    disrupt_shard(*paths["base"][:1], paths["pers"][0], paths["base"][1], paths["pers"][1], "s/cd", lpips, out,
                  device="cpu", structure="toyworld", suite=suite)  # fmt: skip
    rows = read_table(out, DISRUPTION).set_index(["prompt_id", "seed"])
    assert rows.loc[("p1", 0), ["f_base", "f_pers"]].tolist() == [1.0, 1.0]
    assert rows.loc[("p1", 1), ["f_base", "f_pers"]].tolist() == [1.0, 0.75]
    # element by element: only the colour of p1's seed-1 personalized image is wrong
    elements = ["colour", "shape", "position", "background"]
    assert rows.loc[("p1", 1), [f"f_pers_{e}" for e in elements]].tolist() == [0.0, 1.0, 1.0, 1.0]
    assert rows.loc[("p1", 1), [f"f_base_{e}" for e in elements]].tolist() == [1.0] * 4
    assert rows.loc["p2", ["f_base", "f_pers"]].isna().all().all()  # two objects: not scored
    assert not rows["reused"].any()  # carried from the personalized images


def test_the_noise_floor_measures_how_far_apart_two_base_seeds_are_in_f(tmp_path):
    """Base seed pairs of rendered toy scenes: f = 1 at seed 0 and .5 at seed 1 (two wrong elements)
    gives d_struct = .5; the composition is not scored; tau_struct is numpy's percentile of d_struct."""
    import pandas as pd
    from PIL import Image

    from entmap.core.image_codec import png_bytes
    from entmap.measure.disrupt import structure_reader
    from entmap.measure.metrics import Lpips
    from entmap.measure.noise_floor import noise_pairs, thresholds

    suite = tmp_path / "suite.tsv"
    prompts = {
        "p1": "a green cross at the bottom on a checkered background",
        "p2": "a red square on the left",
        "p3": "a red diamond at the top and a blue ring on the right",
    }
    suite.write_text("id\tcategory\ttext\n" + "".join(f"{k}\tobjects\t{v}\n" for k, v in prompts.items()))
    drawn = {
        "p1": [
            Scene("green", "cross", "at the bottom", "checkered"),
            Scene("purple", "cross", "on the left", "checkered"),  # colour and position wrong: f = .5
        ],
        "p2": [Scene("red", "square", "on the left", "plain"), Scene("red", "square", "on the left", "plain")],
        "p3": [Scene("red", "diamond", "at the top", "plain"), Scene("blue", "ring", "on the right", "plain")],
    }
    images = pd.DataFrame(
        [{"prompt_id": pid, "seed": seed, "png": png_bytes(Image.fromarray(render(scene, seed)))}
         for pid, scenes in drawn.items() for seed, scene in enumerate(scenes)]
    )  # fmt: skip
    scores = images[["prompt_id", "seed"]].assign(clip_cos=[0.3, 0.2, 0.25, 0.25, 0.1, 0.4])
    lpips = Lpips("alex", "random", seed=0)
    frame = noise_pairs(images, scores, [(0, 1)], lpips, structure_reader("toyworld", suite)).set_index("prompt_id")
    assert frame.loc["p1", "d_struct"] == 0.5 and frame.loc["p2", "d_struct"] == 0.0
    assert np.isnan(frame.loc["p3", "d_struct"])
    assert frame["d_sem"].tolist() == pytest.approx([0.1, 0.0, 0.3])
    floor = thresholds(frame.reset_index(), 95)
    assert floor["tau_struct"] == pytest.approx(np.percentile([0.5, 0.0], 95)) and floor["struct_measurements"] == 2
    unscored = noise_pairs(images, scores, [(0, 1)], lpips)
    assert unscored["d_struct"].isna().all() and thresholds(unscored, 95)["tau_struct"] is None
