"""Structured faithfulness and E_struct: hand-made attribute results, and the toy world's exact reading."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import REPO

from entmap.inputs.prompt_suites import load_prompts
from entmap.measure.structure import e_struct, faithfulness, required_elements
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
