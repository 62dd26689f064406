"""The toy world's quality table (entmap.toymodels.evaluate) and its command."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from entmap.cli import main
from entmap.toymodels.evaluate import evaluate, evaluation_scenes, quality_table

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "resources/models/toyworld"


def test_quality_table_by_hand():
    generated = {
        "held-out": pd.DataFrame(
            {
                "colour": [True, True, False, True],
                "position": [False] * 4,
                "shape": [True, False, False, False],
                "background": [True] * 4,
                "shape_by_scorer": [True, True, True, False],
            }
        )
    }
    real = pd.DataFrame(
        {"colour": [True, False], "shape": [True, True], "position": [False, False], "background": [True, True]}
    )
    decoded = pd.DataFrame(
        {"colour": [True] * 3, "shape": [True, False, True], "position": [True] * 3, "background": [False] * 3}
    )
    table = quality_table(generated, real, decoded).set_index(["images", "attribute", "read by"])
    assert table.loc[("generated", "colour", "pixels"), "accuracy"] == 0.75
    assert table.loc[("generated", "shape", "pixels"), "accuracy"] == 0.25
    assert table.loc[("generated", "shape", "scorer"), "accuracy"] == 0.75
    assert table.loc[("generated", "background", "pixels"), "accuracy"] == 1.0
    assert table.loc[("generated", "position", "pixels"), "chance"] == pytest.approx(1 / 5)
    assert table.loc[("generated", "background", "pixels"), "chance"] == pytest.approx(1 / 4)
    assert table.loc[("real scenes through the VAE", "shape", "pixels"), "accuracy"] == pytest.approx(2 / 3)
    assert table.loc[("real scenes through the VAE", "background", "pixels"), "accuracy"] == 0.0
    assert table.loc[("scorer on real scenes", "colour", "zero-shot"), "accuracy"] == 0.5
    assert table.loc[("scorer on real scenes", "colour", "zero-shot"), "chance"] == pytest.approx(1 / 6)
    assert list(table["n"]) == [4] * 5 + [3] * 4 + [2] * 4


def test_evaluation_scenes_repeat_and_keep_their_splits():
    first, again = evaluation_scenes(24), evaluation_scenes(24)
    assert first == again and evaluation_scenes(24, seed=1) != first
    assert all(s.held_out for s in first["held-out"]) and not any(s.held_out for s in first["seen"])
    assert len(set(first["held-out"])) == 24 and len(set(first["seen"])) == 24
    assert len(evaluation_scenes(120)["held-out"]) == 120  # all of them: 6 pairs x 5 positions x 4 backgrounds
    for bad in (0, 121):
        with pytest.raises(ValueError, match="1 to 120"):
            evaluation_scenes(bad)


def test_command_names_the_bad_flag(tmp_path, capsys):
    assert main(["toyworld-eval", "--model", str(tmp_path)]) == 2
    assert f"--model {tmp_path}" in capsys.readouterr().err
    assert main(["toyworld-eval", "--prompts", "500"]) == 2
    assert "--prompts: captions per split must be 1 to 120" in capsys.readouterr().err


def test_evaluate_on_the_shipped_models_fills_every_row():
    table = evaluate(SHIPPED / "sd", SHIPPED / "clip", per_split=1, seeds=1, steps=2, threads=1, device="cpu")
    assert len(table) == 18 and table["accuracy"].between(0, 1).all()
    assert list(table["n"]) == [1] * 18
    assert set(table["prompts"]) == {"held-out", "seen"}
    real = table[table["images"] == "scorer on real scenes"].set_index("attribute")["accuracy"]
    assert real["colour"] == 1.0 and real["background"] == 1.0  # the scorer reads these of real scenes
    decoded = table[table["images"] == "real scenes through the VAE"].set_index("attribute")["accuracy"]
    assert decoded["colour"] == 1.0 and decoded["position"] == 1.0  # the pixel checks survive the VAE
