"""Every model family end to end through the real snakemake: SDXL, SD3 and Flux on their tiny
configs, with every method, an audited LoRA and the planted controls (a file of its own, so that
pytest-xdist runs it beside tests/test_workflow.py)."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import REPO, make_workdir, snakemake

from entmap.core.parquet_schemas import CELLS, IMAGES, read_table
from entmap.models.families import FAMILIES

pytestmark = pytest.mark.workflow


def family_config(family: str) -> dict:
    """configs/tiny-{family}.yaml cut down: 6 prompts in one shard, 2 seeds, controls at scales 0 and 0.5,
    the attention shift on 2 prompts and block attribution on 1 prompt, at one seed."""
    config = yaml.safe_load((REPO / f"configs/tiny-{family}.yaml").read_text())
    config["prompts"].update(per_category=1, shard_size=6)
    config["generation"].update(seeds=2, steps=4, batch_size=4)
    config["noise_floor"]["pairs"] = 1
    config["perturb"]["scales"] = [0, 0.5]
    config["analysis"]["bootstrap"] = 100
    config["attention"].update(prompts={"most_disrupted": 1, "least_disrupted": 1}, seeds=1)
    config["block_attribution"].update(prompts=1, seeds=1, transformer_groups=2)
    for method in ("ti", "lora", "cd"):
        config["methods"][method].update(steps=4)
    config["methods"]["lora"]["learning_rate"] = 1e-2
    return config


@pytest.mark.parametrize("family", ["sdxl", "sd3", "flux"])
def test_each_family_runs_end_to_end_with_every_method_an_audited_lora_and_exact_controls(tmp_path, family):
    workdir = make_workdir(tmp_path / family, family_config(family))
    snakemake(workdir, "--profile", "profiles/local", "--cores", "2")
    results = workdir / "results"
    cells = read_table(results / "maps/cells.parquet", CELLS)
    by_model = cells.groupby("model")[["e_sem", "e_per"]].mean()
    weights = ["bands1/lora", "bands1/cd", "someone_lora/external"]
    assert set(by_model.index) == {"bands1/ti", *weights, "kv0/perturb", "kv0p5/perturb"}
    assert (by_model.loc[weights, "e_per"] > 0).all()
    # Textual Inversion adds a token and changes no weight: prompts without it render the base bytes
    assert (cells.loc[cells["model"] == "bands1/ti", ["e_sem", "e_per"]] == 0).all().all()
    assert (cells.loc[cells["model"] == "kv0/perturb", ["e_sem", "e_per"]] == 0).all().all()  # exactly zero
    assert by_model.loc["kv0p5/perturb", "e_sem"] > 0 and by_model.loc["kv0p5/perturb", "e_per"] > 0
    index = json.loads((results / f"models/tiny-{family}/model_index.json").read_text())
    assert index["_class_name"] == FAMILIES[family].pipeline_class
    for figure in ("entanglement_map", "drift_scatter", "category_matrix"):
        assert (results / f"figures/{figure}.png").stat().st_size > 10_000
    assert "kv0p5/perturb" in (results / "report.html").read_text()
    # a shard regenerated alone is byte-identical
    shard = results / "images/kv0p5/perturb/000.parquet"
    before = list(read_table(shard, IMAGES)["png"])
    shard.unlink()
    snakemake(workdir, "--cores", "1", str(shard.relative_to(workdir)))
    assert list(read_table(shard, IMAGES)["png"]) == before
