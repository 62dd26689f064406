"""Shared fixtures: tiny models built once per session, and a workflow run in a temp folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = (
    "Snakefile",
    "rules",
    "workflow_scripts",
    "schemas",
    "resources",
    "profiles",
    "envs",
    "src",
    "configs",
    "config.yaml",
)
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """A tiny base pipeline and tiny scorer, built once (random weights from seed 0)."""
    from entmap.models.tiny import build_tiny_base, build_tiny_scorer

    root = tmp_path_factory.mktemp("tiny")
    build_tiny_base(root / "tiny-sd", seed=0)
    build_tiny_scorer(root / "tiny-clip", seed=0)
    return root


@pytest.fixture(scope="session")
def tiny_family_dir(tmp_path_factory) -> Path:
    """Tiny SDXL, SD3 and Flux pipelines (random weights from seed 0) in root/<family>, built once."""
    from entmap.models.tiny import build_tiny_base

    root = tmp_path_factory.mktemp("families")
    for family in ("sdxl", "sd3", "flux"):
        build_tiny_base(root / family, seed=0, family=family)
    return root


@pytest.fixture(scope="session")
def tiny_config() -> dict:
    return yaml.safe_load((REPO / "configs/tiny.yaml").read_text())


def small_config() -> dict:
    """configs/tiny.yaml (random-weight models) cut down: 6 prompts in one shard, 2 seeds, every method once.

    Models: face1/ti, face1/lora (with prior preservation), face1/lora+sage (the same with SAGE's
    geometry regularizer: a variant), bands1/cd, someone_lora/external and the planted-effect
    controls kv0, kv0p2, kv0p5 (perturb); TEA sweeps of the first five (alpha
    0 and 0.8 at beta 1.5, two context prompts, one seed) and face1's collapse diagnostics; the
    attention shift of every model on its most and least disrupted prompt at one seed; block
    attribution of every model with blocks on its 2 most disrupted prompts at one seed.
    """
    config = yaml.safe_load((REPO / "configs/tiny.yaml").read_text())
    config["prompts"].update(per_category=1, shard_size=6)
    config["generation"].update(seeds=2, steps=4, batch_size=4)
    config["noise_floor"]["pairs"] = 1
    config["methods"]["ti"].update(steps=4, save_every=2)
    config["methods"]["lora"].update(steps=4, learning_rate=1e-2, num_class_images=2)
    config["methods"]["cd"].update(steps=4, learning_rate=5e-3)
    config["subjects"] = {k: config["subjects"][k] for k in ("face1", "bands1")}
    config["subjects"]["face1"]["methods"] = ["ti", "lora", "lora+sage"]
    config["subjects"]["bands1"]["methods"] = ["cd"]
    config["perturb"]["scales"] = [0, 0.2, 0.5]
    config["analysis"]["bootstrap"] = 200
    config["attention"].update(prompts={"most_disrupted": 1, "least_disrupted": 1}, seeds=1)
    config["block_attribution"].update(prompts=2, seeds=1, isolated=False)
    config["tea"].update(prompts=2, seeds=1, alphas=[0, 0.8], betas=[1.5], collapse_prompts=4)
    return config


def kill_config() -> dict:
    """A lighter config for the crash test: face1 with ti and lora only, no attention or block stage."""
    config = small_config()
    config["subjects"] = {"face1": dict(config["subjects"]["face1"], methods=["ti", "lora"])}
    config.pop("external")
    config.pop("perturb")
    config.pop("tea")
    config["attention"]["enabled"] = False
    config["block_attribution"]["enabled"] = False
    return config


def make_workdir(path: Path, config: dict) -> Path:
    """Copy the workflow into ``path`` (as a fresh clone would have it) with ``config``."""
    path.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
            shutil.copytree(src, path / name, dirs_exist_ok=True, ignore=ignore)
        else:
            shutil.copy2(src, path / name)
    (path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake(workdir: Path, *args: str, timeout: int = 1800, check: bool = True) -> subprocess.CompletedProcess:
    """Run the real snakemake CLI in ``workdir``."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    result = subprocess.run(
        [SNAKEMAKE, *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> Path:
    """The small config run to the end with the real snakemake, once per session."""
    workdir = make_workdir(tmp_path_factory.mktemp("run"), small_config())
    snakemake(workdir, "--profile", "profiles/local", "--cores", "2", timeout=2400)  # shares 2 cores with a worker
    return workdir
