"""entmap audit: what files say about themselves, checkpoints of one training, the strength sweep
(scale 0 is the base byte for byte), leakage, the checkpoint comparison and the verdict, each against a
hand-computed case."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from entmap.audit.checkpoints import disruption_numbers, mark_recommended, recommend
from entmap.audit.describe import AdapterInputError, describe, group_checkpoints, trigger_of_metadata
from entmap.audit.leakage import leakage, reference_vector, triggered_leakage
from entmap.audit.strength import bootstrap_mean, strength_table, sweep_jobs, target_fidelity
from entmap.audit.verdict import verdict
from entmap.config.plan import VERDICT_DEFAULTS, audit_adapters, audit_problems

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


def kohya_lora(path: Path, metadata: dict[str, str] | None = None, up: float = 0.2, seed: int = 0) -> Path:
    """A kohya LoRA (lora_unet_..., alpha = r) for the tiny SD 1.5 base's first cross-attention k/v."""
    generator = torch.Generator().manual_seed(seed)
    layer = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2"
    tensors = {}
    for module in ("to_k", "to_v"):
        tensors[f"{layer}_{module}.lora_down.weight"] = torch.randn(2, 32, generator=generator) * 0.5
        tensors[f"{layer}_{module}.lora_up.weight"] = torch.randn(32, 2, generator=generator) * up
        tensors[f"{layer}_{module}.alpha"] = torch.tensor(2.0)
    save_file(tensors, str(path), metadata=metadata)
    return path


# --- what a file says, and checkpoints of one training ---------------------------------------------


def test_kohya_epochs_and_the_final_save_are_one_adapter(tmp_path):
    meta = {"ss_output_name": "mylora", "ss_dataset_dirs": json.dumps({"train/10_zwx style": {"n_repeats": 10}})}
    files = [
        kohya_lora(tmp_path / "mylora-000002.safetensors", {**meta, "ss_epoch": "2"}),
        kohya_lora(tmp_path / "mylora.safetensors", {**meta, "ss_epoch": "6"}),
        kohya_lora(tmp_path / "mylora-000004.safetensors", {**meta, "ss_epoch": "4"}),
        kohya_lora(tmp_path / "other.safetensors"),
    ]
    described = [describe(str(f)) for f in files]
    assert {d.kind for d in described} == {"lora"}
    assert described[0].trigger == "zwx style" and described[0].trigger_source == "ss_dataset_dirs"
    assert [d.epoch for d in described] == [2, 6, 4, None]
    adapters = {a.name: a for a in group_checkpoints(described)}
    assert sorted(adapters) == ["mylora", "other"]
    assert [c.entry for c in adapters["mylora"].checkpoints] == ["mylora-e2", "mylora-e4", "mylora"]
    assert adapters["mylora"].final.entry == "mylora" and adapters["mylora"].final.model == "mylora/external"
    assert [c.entry for c in adapters["other"].checkpoints] == ["other"]


def test_files_of_one_session_group_and_a_numbered_set_keeps_its_names(tmp_path):
    """Renamed files that share ss_session_id are one training; without an un-numbered file the latest
    epoch is the final one, and adding a checkpoint renames none of the others."""
    a = kohya_lora(tmp_path / "run-000001.safetensors", {"ss_session_id": "77"})
    b = kohya_lora(tmp_path / "renamed-000003.safetensors", {"ss_session_id": "77"})
    adapters = group_checkpoints([describe(str(a)), describe(str(b))])
    assert len(adapters) == 1
    assert [c.entry for c in adapters[0].checkpoints] == ["renamed-e1", "renamed-e3"]
    assert adapters[0].final.entry == "renamed-e3"


def test_the_trigger_comes_from_modelspec_then_dataset_folders_then_tags():
    assert trigger_of_metadata({"modelspec.trigger_phrase": "ohwx"}) == ("ohwx", "modelspec.trigger_phrase")
    tags = {"ss_tag_frequency": json.dumps({"img": {"zwx": 12, "red": 3}})}
    assert trigger_of_metadata(tags) == ("zwx", "ss_tag_frequency")
    assert trigger_of_metadata({}) == (None, None)


def test_a_textual_inversion_file_names_its_token_and_lycoris_is_refused(tmp_path):
    save_file({"<their-token>": torch.zeros(1, 32)}, str(tmp_path / "emb.safetensors"))
    ti = describe(str(tmp_path / "emb.safetensors"))
    assert (ti.kind, ti.trigger, ti.trigger_source) == ("ti", "<their-token>", "the file's token")
    save_file({"lora_unet_x.hada_w1_a": torch.zeros(2, 2)}, str(tmp_path / "loha.safetensors"))
    with pytest.raises(AdapterInputError, match=r"loha\.safetensors: a LyCORIS LoHa file"):
        describe(str(tmp_path / "loha.safetensors"))


def test_a_hub_id_offline_and_a_pickle_are_refused_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(AdapterInputError, match=r"someone/their-lora does not exist locally.*HF_HUB_OFFLINE=0"):
        describe("someone/their-lora")
    torch.save({"x": torch.zeros(1)}, tmp_path / "old.pt")
    with pytest.raises(AdapterInputError, match=r"old\.pt: pickle-based.*--allow-pickle"):
        describe(str(tmp_path / "old.pt"))


def test_two_checkpoints_at_one_epoch_are_refused_naming_both(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = kohya_lora(tmp_path / "a" / "x-000002.safetensors")
    b = kohya_lora(tmp_path / "b" / "x-000002.safetensors")
    with pytest.raises(AdapterInputError, match="same epoch") as info:
        group_checkpoints([describe(str(a)), describe(str(b))])
    assert str(a) in str(info.value) and str(b) in str(info.value)


# --- the config -----------------------------------------------------------------------------------


def test_the_study_config_names_checkpoints_by_epoch_and_passes_the_plan(tmp_path):
    from entmap.audit.study_config import choose_base, study_config
    from entmap.config.plan import load_plan

    files = [
        kohya_lora(tmp_path / "mylora-000002.safetensors", {"modelspec.trigger_phrase": "zwx"}),
        kohya_lora(tmp_path / "mylora.safetensors", {"modelspec.trigger_phrase": "zwx"}),
    ]
    adapters = group_checkpoints([describe(str(f)) for f in files])
    base, template, _ = choose_base(adapters, None, online=False)
    assert (base, template) == ("resources/models/toyworld/sd", "toyworld")
    config = study_config(adapters, base, template, seeds=2)
    assert config["subjects"] == {} and config["noise_floor"]["pairs"] == 1
    assert config["external"]["mylora-e2"] == {
        "kind": "lora",
        "path": str(files[0].resolve()),
        "category": "style",
        "token": "zwx",
        "adapter": "mylora",
        "epoch": 2,
    }
    assert config["audit"]["verdict"] == VERDICT_DEFAULTS
    assert audit_adapters(config) == {"mylora": ["mylora-e2", "mylora"]}
    plan = load_plan(config, REPO / "schemas" / "config.schema.yaml")
    assert set(plan.models) == {"mylora-e2/external", "mylora/external"}


def test_an_sdxl_file_offline_without_base_is_refused_naming_the_flag(tmp_path):
    from entmap.audit.study_config import choose_base

    path = kohya_lora(tmp_path / "xl.safetensors", {"ss_base_model_version": "sdxl_base_v1-0"})
    with pytest.raises(AdapterInputError, match=r"xl\.safetensors: made for the sdxl family.*pass --base"):
        choose_base(group_checkpoints([describe(str(path))]), None, online=False)


def test_audit_block_problems_name_the_key():
    config = {"analysis": {"bootstrap": 10}, "external": {"x": {}}}
    config["audit"] = {"scales": [0, 0.5], "verdict": {"warn_leakage": 0.2, "fail_leakage": 0.1}}
    problems = "\n".join(audit_problems(config))
    assert "audit.scales: [0, 0.5] must hold 0 (the base) and 1" in problems
    assert "warn_leakage = 0.2 is above fail_leakage = 0.1" in problems


# --- the strength sweep ---------------------------------------------------------------------------


def test_scale_zero_renders_the_base_images_byte_for_byte(tiny_dir, tmp_path):
    from entmap.models.adapter_formats import apply_adapter, set_lora_scale
    from entmap.models.loading import load_pipeline
    from entmap.models.sampling import render_jobs

    settings = {"resolution": 64, "steps": 3, "guidance_scale": 5.0, "batch_size": 2, "negative_prompt": ""}
    jobs = [("a red circle on the left", 0), ("a photo of zwx", 1)]
    base = [
        np.asarray(i)
        for _, i in render_jobs(load_pipeline(str(tiny_dir / "tiny-sd"), CPU, torch.float32), jobs, settings, "t")
    ]
    pipe = load_pipeline(str(tiny_dir / "tiny-sd"), CPU, torch.float32)
    apply_adapter(pipe, "lora", kohya_lora(tmp_path / "k.safetensors", up=2.0), None)
    rendered = {}
    for scale in (1.0, 0.0, 0.5):
        set_lora_scale(pipe, scale)
        rendered[scale] = [np.asarray(i) for _, i in render_jobs(pipe, jobs, settings, "t")]
    assert all(np.array_equal(a, b) for a, b in zip(rendered[0.0], base, strict=True))
    assert not np.array_equal(rendered[1.0][0], base[0]) and not np.array_equal(rendered[0.5][0], rendered[1.0][0])


def test_the_sweep_renders_triggered_prompts_only_at_the_ends():
    prompts = [("p1", "a dog")]
    assert sweep_jobs(prompts, "zwx", [0], 0.5) == [
        ("unrelated", "p1", "a dog", 0),
        ("trigger", "trigger", "a photo of zwx", 0),
    ]
    assert ("triggered", "p1+trigger", "zwx, a dog", 0) in sweep_jobs(prompts, "zwx", [0], 1.0)


def sweep_frame(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["part", "prompt_id", "seed", "scale", "clip_cos", "lpips", "image_embedding"])


def test_strength_numbers_by_hand():
    """Two unrelated prompts, two seeds, scales 0 and 1.

    p1: a_0 = (0.30, 0.20), a_1 = (0.25, 0.30) -> |shift| (0.05, 0.10), mean 0.075; LPIPS (0.2, 0.4) -> 0.3
    p2: a_0 = (0.40, 0.40), a_1 = (0.40, 0.10) -> |shift| (0.00, 0.30), mean 0.150; LPIPS (0.0, 0.2) -> 0.1
    e_sem(1) = (0.075 + 0.150) / 2 = 0.1125; e_per(1) = 0.2; trigger CLIP score at 1: (0.5 + 0.7) / 2 = 0.6
    """
    e = [1.0, 0.0]
    rows = [
        ("unrelated", "p1", 0, 0.0, 0.30, 0.0, e),
        ("unrelated", "p1", 1, 0.0, 0.20, 0.0, e),
        ("unrelated", "p2", 0, 0.0, 0.40, 0.0, e),
        ("unrelated", "p2", 1, 0.0, 0.40, 0.0, e),
        ("unrelated", "p1", 0, 1.0, 0.25, 0.2, e),
        ("unrelated", "p1", 1, 1.0, 0.30, 0.4, e),
        ("unrelated", "p2", 0, 1.0, 0.40, 0.0, e),
        ("unrelated", "p2", 1, 1.0, 0.10, 0.2, e),
        ("trigger", "trigger", 0, 0.0, 0.2, 0.0, [0.0, 1.0]),
        ("trigger", "trigger", 1, 0.0, 0.2, 0.0, [0.0, 1.0]),
        ("trigger", "trigger", 0, 1.0, 0.5, 0.3, [0.6, 0.8]),
        ("trigger", "trigger", 1, 1.0, 0.7, 0.3, [0.8, 0.6]),
    ]
    table = strength_table(sweep_frame(rows), None, replicates=200).set_index("scale")
    assert table.loc[0.0, "e_sem"] == 0 and table.loc[0.0, "e_per"] == 0
    assert table.loc[1.0, "e_sem"] == pytest.approx(0.1125)
    assert table.loc[1.0, "e_per"] == pytest.approx(0.2)
    assert table.loc[1.0, "target_fidelity"] == pytest.approx(0.6)
    assert table.loc[0.0, "target_fidelity"] == pytest.approx(0.2)
    assert table.loc[1.0, "e_sem_low"] >= 0.075 - 1e-12 and table.loc[1.0, "e_sem_high"] <= 0.150 + 1e-12
    assert (table["n_prompts"] == 2).all() and (table["n_seeds"] == 2).all()
    # with references r = (1, 0): CLIP-I of the trigger images at scale 1 = mean(0.6, 0.8) = 0.7
    assert target_fidelity(sweep_frame(rows), 1.0, np.array([1.0, 0.0])) == pytest.approx(0.7)


def test_bootstrap_mean_matches_the_mean_and_brackets_it():
    mean, low, high = bootstrap_mean(np.array([0.0, 1.0, 2.0, 3.0]), 2000, 0)
    assert mean == 1.5 and 0.0 <= low < 1.5 < high <= 3.0
    assert bootstrap_mean(np.array([0.4]), 10, 0) == (0.4, 0.4, 0.4)


# --- leakage --------------------------------------------------------------------------------------


def test_leakage_by_hand_and_a_null_that_leaks_nothing():
    """Look r = mean of the trigger images at scale 1: ((0.6, 0.8) + (0.8, 0.6)) / 2 = (0.7, 0.7).

    p1 seed 0: pers (1, 0) -> 0.7, base (0, 1) -> 0.7: shift 0
    p1 seed 1: pers (0.6, 0.8) -> 0.98, base (1, 0) -> 0.7: shift 0.28  -> p1 mean 0.14
    p2 seed 0: pers (0.8, 0.6) -> 0.98, base (0, 1) -> 0.7: shift 0.28  -> p2 mean 0.28
    L = (0.14 + 0.28) / 2 = 0.21
    """
    sweep = sweep_frame(
        [
            ("trigger", "trigger", 0, 1.0, 0.5, 0.3, [0.6, 0.8]),
            ("trigger", "trigger", 1, 1.0, 0.7, 0.3, [0.8, 0.6]),
            ("trigger", "trigger", 0, 0.0, 0.5, 0.0, [0.0, 1.0]),
        ]
    )
    look, source = reference_vector(sweep)
    assert np.allclose(look, [0.7, 0.7]) and source == "the adapter's own images of its trigger prompt"
    frame = lambda rows: pd.DataFrame(rows, columns=["prompt_id", "seed", "image_embedding"])  # noqa: E731
    pers = frame([("p1", 0, [1.0, 0.0]), ("p1", 1, [0.6, 0.8]), ("p2", 0, [0.8, 0.6])])
    base = frame([("p1", 0, [0.0, 1.0]), ("p1", 1, [1.0, 0.0]), ("p2", 0, [0.0, 1.0])])
    result = leakage(pers, base, look, replicates=500)
    assert result["leakage"] == pytest.approx(0.21) and result["n_prompts"] == 2
    assert result["leakage_low"] == pytest.approx(0.14) and result["leakage_high"] == pytest.approx(0.28)
    null = leakage(base, base, look, replicates=100)
    assert null["leakage"] == 0 and null["leakage_low"] == 0 and null["leakage_high"] == 0
    # references, when given, are the look
    with_refs = pd.concat([sweep, sweep_frame([("reference", "r.png", -1, np.nan, np.nan, np.nan, [1.0, 0.0])])])
    assert np.allclose(reference_vector(with_refs)[0], [1.0, 0.0])


def test_leakage_with_the_trigger_compares_scale_one_with_zero():
    sweep = sweep_frame(
        [
            ("trigger", "trigger", 0, 1.0, 0.5, 0.3, [1.0, 0.0]),
            ("triggered", "p1+trigger", 0, 1.0, 0.1, 0.1, [1.0, 0.0]),
            ("triggered", "p1+trigger", 0, 0.0, 0.1, 0.0, [0.0, 1.0]),
        ]
    )
    look, _ = reference_vector(sweep)
    assert triggered_leakage(sweep, look, 50)["leakage"] == pytest.approx(1.0)


# --- checkpoints ----------------------------------------------------------------------------------


def test_disruption_numbers_by_hand():
    cells = pd.DataFrame(
        {"model": ["m"] * 3, "prompt_id": ["a", "b", "own"], "e_sem": [0.1, 0.3, 9.0], "e_per": [0.2, 0.4, 9.0]}
    )
    significance = pd.DataFrame(
        {"model": ["m"] * 3, "prompt_id": ["a", "b", "own"], "q_sem": [0.01, 0.5, 0.0], "q_per": [0.2, 0.6, 0.0]}
    )
    assert disruption_numbers(cells, significance, "m", {"a", "b"}, 0.05) == pytest.approx((0.2, 0.3, 0.5))


def test_the_recommended_checkpoint_keeps_fidelity_for_the_least_disruption():
    """Fidelity best 0.30, tolerance 0.02: e2 (0.29) and e3 (0.30) are eligible, e1 (0.20) is not although it
    disrupts least; of the two, e2 disrupts less (0.02 < 0.05). With tolerance 0.2 e1 wins."""
    table = pd.DataFrame(
        {
            "adapter": ["a"] * 3,
            "checkpoint": ["a-e1/external", "a-e2/external", "a/external"],
            "epoch": [1, 2, 3],
            "mean_e_sem": [0.01, 0.02, 0.05],
            "frac_disrupted": [0.0, 0.1, 0.3],
            "target_fidelity": [0.20, 0.29, 0.30],
        }
    )
    assert recommend(table, 0.02) == "a-e2/external"
    assert recommend(table, 0.2) == "a-e1/external"
    tie = table.assign(mean_e_sem=[0.02, 0.02, 0.02], frac_disrupted=[0.1, 0.1, 0.0], target_fidelity=[0.3] * 3)
    assert recommend(tie, 0.0) == "a/external"  # equal E_sem: fewer disrupted prompts
    tie = tie.assign(frac_disrupted=[0.1] * 3)
    assert recommend(tie, 0.0) == "a-e1/external"  # then the earlier epoch
    assert recommend(table.assign(target_fidelity=np.nan), 0.0) == "a-e1/external"  # no fidelity: all eligible
    marked = mark_recommended(pd.concat([table, table.assign(adapter="b", checkpoint=["x", "y", "z"])]), 0.02)
    assert list(marked["recommended"]) == [False, True, False, False, True, False]


# --- the verdict ----------------------------------------------------------------------------------


def metrics(**changes):
    base = {"frac_disrupted": 0.0, "n_unrelated": 20, "leakage": 0.0, "leakage_low": -0.01, "leakage_high": 0.01}
    return {**base, "fidelity_gain": 0.1, "target_fidelity": 0.3, **changes}


def test_verdicts_by_hand():
    t = dict(VERDICT_DEFAULTS)  # warn > 0 disrupted, fail > 25%; leakage bound warn > 0.02, fail > 0.05
    assert verdict(metrics(), t)[0] == "pass"
    outcome, reasons = verdict(metrics(frac_disrupted=0.05), t)
    assert outcome == "warn" and reasons == [
        "1 of 20 unrelated prompts (5%) are disrupted beyond the base's seed noise, more than the warning threshold 0%"
    ]
    outcome, reasons = verdict(metrics(frac_disrupted=0.30), t)
    assert (
        outcome == "fail" and "6 of 20 unrelated prompts (30%)" in reasons[0] and "failure threshold 25%" in reasons[0]
    )
    assert verdict(metrics(frac_disrupted=0.25), t)[0] == "warn"  # exactly at the failure threshold: not above
    outcome, reasons = verdict(metrics(leakage=0.06, leakage_low=0.03, leakage_high=0.09), t)
    assert outcome == "warn" and "lower bound above the warning threshold 0.02" in reasons[0]
    outcome, reasons = verdict(metrics(leakage=0.1, leakage_low=0.06, leakage_high=0.14, fidelity_gain=-0.01), t)
    assert outcome == "fail" and "failure threshold 0.05" in reasons[0] and "does not add its concept" in reasons[1]
    outcome, reasons = verdict(metrics(leakage_low=float("nan")), t)
    assert outcome == "warn" and reasons == ["the leakage without the trigger could not be measured"]


# --- the command's refusals -----------------------------------------------------------------------


def test_the_command_refuses_bad_input_before_writing_anything(tmp_path, monkeypatch, capsys):
    from entmap.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "out"
    assert main(["audit", "someone/their-lora", "--out", str(out)]) == 2
    assert "someone/their-lora does not exist locally" in capsys.readouterr().err
    path = kohya_lora(tmp_path / "mine.safetensors")
    assert main(["audit", str(path), "--out", str(out), "--seeds", "1"]) == 2
    assert "--seeds 1: the noise floor needs at least 2 seeds" in capsys.readouterr().err
    assert main(["audit", str(path), "--out", str(out), "--scales", "0", "0.5"]) == 2
    assert "audit.scales: [0.0, 0.5] must hold 0 (the base) and 1" in capsys.readouterr().err
    assert main(["audit", str(path), "--out", str(out), "--set", "audit.verdict.fail_leakage=lots"]) == 2
    assert "fail_leakage" in capsys.readouterr().err
    assert not out.exists()
