"""`entmap audit` end to end, offline: kohya LoRA checkpoints of one training on the toy world's base,
the audit's files and the report written; one more checkpoint schedules only its own jobs and the merges."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from entmap.audit.checkpoints import CHECKPOINT_COLUMNS
from entmap.audit.strength import STRENGTH_COLUMNS

pytestmark = pytest.mark.workflow
REPO = Path(__file__).resolve().parents[1]
TOY_BASE = REPO / "resources/models/toyworld/sd"
#: rules with one job per model of the map (the rest are merges over all models)
PER_MODEL_RULES = {"audit_external", "generate_personalized", "score", "disrupt", "geometry", "figure_grid"}
PER_MODEL_RULES |= {"audit_sweep"}
SUITE = "id\tcategory\ttext\ns1\tstyles\ta red circle in a striped style\no1\tobjects\ta green square\n"
SUITE += "o2\tobjects\ta blue circle\nc1\tcolours\ta yellow diamond on the left\n"


def kohya_checkpoint(path: Path, epoch: int, size: float) -> Path:
    """A kohya LoRA of the toy base's attention k/v, saved as kohya's train_network.py names an epoch."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from entmap.models.loading import load_pipeline

    pipe = load_pipeline(str(TOY_BASE), torch.device("cpu"), torch.float32)
    torch.manual_seed(0)
    pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_k", "to_v"], init_lora_weights="gaussian"))
    state = get_peft_model_state_dict(pipe.unet)
    generator = torch.Generator().manual_seed(1)  # every epoch the same directions, a larger update
    tensors = {}
    for module in sorted({key.rsplit(".lora_", 1)[0] for key in state}):
        flat = "lora_unet_" + module.replace(".", "_")
        up = state[f"{module}.lora_B.weight"]
        tensors[f"{flat}.lora_down.weight"] = state[f"{module}.lora_A.weight"].contiguous()
        tensors[f"{flat}.lora_up.weight"] = (torch.randn(up.shape, generator=generator) * size).contiguous()
        tensors[f"{flat}.alpha"] = torch.tensor(4.0)
    metadata = {"ss_output_name": "toy", "ss_epoch": str(epoch), "ss_network_dim": "4"}
    metadata["ss_dataset_dirs"] = json.dumps({"train/10_zwx style": {"n_repeats": 10, "img_count": 4}})
    save_file(tensors, str(path), metadata=metadata)
    return path


def entmap_audit(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONHASHSEED="0", HF_HUB_OFFLINE="1")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    result = subprocess.run(
        [sys.executable, "-m", "entmap", "audit", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=1200
    )
    assert result.returncode == 0, f"entmap audit failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def test_audit_a_kohya_lora_then_one_more_checkpoint_runs_only_its_jobs(tmp_path):
    (tmp_path / "suite.tsv").write_text(SUITE)
    kohya_checkpoint(tmp_path / "toy-000001.safetensors", 1, 0.05)
    kohya_checkpoint(tmp_path / "toy.safetensors", 3, 0.2)
    options = ["--prompts", "suite.tsv", "--seeds", "2", "--out", "out", "--set", "generation.steps=4"]
    run = entmap_audit(tmp_path, "toy-000001.safetensors", "toy.safetensors", *options, "--cores", "2")
    assert "trigger 'zwx style' (ss_dataset_dirs)" in run.stdout
    results = tmp_path / "out" / "results"
    config = (tmp_path / "out" / "config.yaml").read_text()
    assert "subjects: {}" in config and "adapter: toy" in config and "epoch: 1" in config

    document = json.loads((results / "audit/audit.json").read_text())
    assert set(document["thresholds"]) >= {"warn_frac_disrupted", "fail_frac_disrupted", "warn_leakage"}
    [adapter] = document["adapters"]
    page = (results / "report.html").read_text()  # the verdict comes first in the report, then the map
    assert page.index('<h2 id="audit">Audit verdicts</h2>') < page.index('<h2 id="explorer">')
    assert f'<span class="verdict {adapter["verdict"]}">' in page and 'id="model-card"' in page
    assert adapter["name"] == "toy" and adapter["family"] == "sd1" and adapter["trigger"] == "zwx style"
    assert adapter["file"] == str((tmp_path / "toy.safetensors").resolve())
    assert adapter["verdict"] in ("pass", "warn", "fail") and adapter["reasons"]
    assert adapter["recommended_checkpoint"] in ("toy-e1/external", "toy/external")
    card = (results / "audit/model_card.md").read_text()
    assert f"### toy: **{adapter['verdict'].upper()}**" in card and "| trigger | zwx style |" in card

    strength = pd.read_csv(results / "audit/strength.csv")
    assert list(strength.columns[:4]) == ["adapter", "checkpoint", "epoch", "final"]
    assert set(STRENGTH_COLUMNS) <= set(strength.columns)
    final = strength[strength["final"]].set_index("scale")
    assert list(final.index) == [0, 0.25, 0.5, 0.75, 1]
    assert final.loc[0, "e_sem"] == 0 and final.loc[0, "e_per"] == 0 and final.loc[1, "e_per"] > 0
    # the two checkpoints share their random directions, the final one's update 4 times the first's:
    # the first checkpoint at scale 1 is the final one at scale 0.25, image for image
    first = strength[~strength["final"]].set_index("scale")
    assert first.loc[1, "e_sem"] == pytest.approx(final.loc[0.25, "e_sem"], abs=1e-9)
    checkpoints = pd.read_csv(results / "audit/checkpoints.csv")
    assert list(checkpoints.columns) == CHECKPOINT_COLUMNS
    assert list(checkpoints["checkpoint"]) == ["toy-e1/external", "toy/external"]
    assert checkpoints["recommended"].sum() == 1

    # one more checkpoint of the same training: only its jobs, plus the merges over every model
    kohya_checkpoint(tmp_path / "toy-000002.safetensors", 2, 0.1)
    files = ["toy-000001.safetensors", "toy-000002.safetensors", "toy.safetensors"]
    dry = entmap_audit(tmp_path, *files, *options, "--dry-run").stdout
    jobs = re.findall(r"^(?:local)?rule (\w+):\n((?:    .*\n)+)", dry, re.MULTILINE)
    per_model = [(rule, body) for rule, body in jobs if rule in PER_MODEL_RULES]
    assert {rule for rule, _ in per_model} == PER_MODEL_RULES
    assert all("toy-e2" in body for _, body in per_model), per_model
    assert len(per_model) == len(PER_MODEL_RULES)
    assert "generate_base" not in {rule for rule, _ in jobs} and "noise_floor" not in {rule for rule, _ in jobs}
