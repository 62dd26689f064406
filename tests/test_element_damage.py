"""E_struct element by element: the element_damage table and its words in the report."""

import numpy as np
import pandas as pd
import pytest

from entmap.analysis.element_damage import element_damage
from entmap.core.parquet_schemas import STRUCT_ELEMENTS
from entmap.present.report import element_damage_in_words

NAN = float("nan")


def _rows(model: str, prompt_id: str, hits: dict[str, list[tuple[float, float]]]) -> list[dict]:
    """Per-seed disruption rows: hits[element] = [(base, pers) per seed]; unlisted elements are NaN."""
    seeds = len(next(iter(hits.values())))
    rows = []
    for seed in range(seeds):
        row = {"prompt_id": prompt_id, "seed": seed, "model": model}
        for element in STRUCT_ELEMENTS:
            base, pers = hits[element][seed] if element in hits else (NAN, NAN)
            row[f"f_base_{element}"], row[f"f_pers_{element}"] = base, pers
        rows.append(row)
    return rows


@pytest.fixture
def tables():
    # model s/lora (subject category face, own prompt category people):
    #   p1 (objects): position 1 -> 0 at both seeds, colour kept; p2 (objects): position 1 -> 0 at
    #   seed 0, kept at seed 1, colour 1 -> 1; p3 (people): position lost too, but it is the own category
    #   p4 (objects): a background-only prompt, background 0 -> 1 at seed 0
    rows = (
        _rows("s/lora", "p1", {"position": [(1, 0), (1, 0)], "colour": [(1, 1), (1, 1)]})
        + _rows("s/lora", "p2", {"position": [(1, 0), (1, 1)], "colour": [(1, 1), (1, 1)]})
        + _rows("s/lora", "p3", {"position": [(1, 0), (1, 0)], "colour": [(1, 0), (1, 0)]})
        + _rows("s/lora", "p4", {"background": [(0, 1), (1, 1)]})
    )
    disruption = pd.DataFrame(rows)
    cells = pd.DataFrame(
        {
            "prompt_id": ["p1", "p2", "p3", "p4"],
            "model": "s/lora",
            "category": ["objects", "objects", "people", "objects"],
            "subject_category": "face",
        }
    )
    return disruption, cells


def test_each_element_is_compared_on_non_target_prompts_that_require_it(tables):
    disruption, cells = tables
    table = element_damage(disruption, cells, {"face": "people"}, n_boot=200, seed=0).set_index("element")
    assert list(table.index) == ["colour", "position", "background"]  # shape is required by no prompt
    # position over p1, p2 (p3 is the own category): base 4/4, model 1/4
    assert table.loc["position", ["n_prompts", "n_pairs"]].tolist() == [2, 4]
    assert table.loc["position", ["base_accuracy", "model_accuracy", "change"]].tolist() == pytest.approx(
        [1.0, 0.25, -0.75]
    )
    # resampling the two prompts: p1 alone -1, p2 alone -0.5, both -0.75: every replicate is below 0
    assert table.loc["position", "ci_high"] <= -0.5 and table.loc["position", "ci_low"] >= -1.0
    assert table.loc["position", "damaged"]
    assert table.loc["colour", ["change", "ci_low", "ci_high"]].tolist() == [0.0, 0.0, 0.0]
    assert not table.loc["colour", "damaged"]  # p3 lost its colour, but p3 is the subject's own category
    assert table.loc["background", "change"] == pytest.approx(0.5) and not table.loc["background", "damaged"]


def test_the_interval_is_a_bootstrap_over_prompts(tables):
    """The interval equals a percentile bootstrap computed independently, prompt by prompt."""
    disruption, cells = tables
    table = element_damage(disruption, cells, {"face": "people"}, n_boot=500, seed=3).set_index("element")
    rng = np.random.default_rng(3)
    per_prompt = {}  # element order: colour first, then position, each draws from the same generator
    for element, prompts in (("colour", ["p1", "p2"]), ("position", ["p1", "p2"])):
        sums = []
        for pid in prompts:
            mine = disruption[disruption["prompt_id"] == pid]
            sums.append((mine[f"f_pers_{element}"] - mine[f"f_base_{element}"]).sum())
        sums, counts = np.array(sums), np.array([2.0, 2.0])
        draws = rng.integers(0, 2, size=(500, 2))
        replicates = np.array([sums[d].sum() / counts[d].sum() for d in draws])
        per_prompt[element] = np.percentile(replicates, [2.5, 97.5])
    assert table.loc["position", ["ci_low", "ci_high"]].tolist() == pytest.approx(list(per_prompt["position"]))


def test_the_report_names_the_damaged_elements(tables):
    disruption, cells = tables
    table = element_damage(disruption, cells, {"face": "people"}, n_boot=200, seed=0)
    (line,) = element_damage_in_words(table)
    assert line.startswith("s/lora damaged position (1.00 → 0.25, change -0.75")
    assert line.endswith("no damage detected in colour, background.")
    unharmed = table[table["element"] != "position"]
    assert element_damage_in_words(unharmed) == ["s/lora damaged no element (checked: colour, background)."]


def test_without_structured_faithfulness_the_table_is_empty(tables):
    disruption, cells = tables
    for column in disruption.columns:
        if column.startswith("f_"):
            disruption[column] = NAN
    table = element_damage(disruption, cells, {"face": "people"})
    assert table.empty and element_damage_in_words(table) == []
