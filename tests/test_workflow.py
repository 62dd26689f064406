"""The real snakemake on the small tiny config: outputs, dry runs, incremental runs, crash recovery."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import SNAKEMAKE, kill_config, make_workdir, snakemake
from PIL import Image

from entmap.core.image_codec import decode_png
from entmap.core.parquet_schemas import CELLS, DISRUPTION, IMAGES, NOISE_PAIRS, SCORES, TEA_IMAGES, read_table
from entmap.core.vocabulary import STUDY, population
from entmap.present.report import external_references

pytestmark = pytest.mark.workflow
MODELS = [
    "face1/ti",
    "face1/lora",
    "face1/lora+sage",
    "bands1/cd",
    "someone_lora/external",
    "kv0/perturb",
    "kv0p2/perturb",
    "kv0p5/perturb",
]
FIGURES = ["entanglement_map", "drift_scatter", "category_matrix"] + [f"grids/{m}" for m in MODELS]

# a job of a dry run; a job inside a group job (profiles/slurm) is listed 4 spaces further in
JOB = re.compile(r"^( {0,4})(?:local)?rule (\w+):\n((?:\1    .*\n)+)", re.MULTILINE)


def dry_run_jobs(workdir, *args) -> list[tuple[str, str]]:
    """(rule, outputs) of every job a dry run schedules."""
    out = snakemake(workdir, "-n", *args).stdout
    jobs = []
    for _, rule, body in JOB.findall(out):
        match = re.search(r"^\s+output: (.*)$", body, re.MULTILINE)
        jobs.append((rule, match.group(1) if match else ""))
    return jobs


def test_default_run_writes_the_map(finished_run):
    results = finished_run / "results"
    for name in (
        "maps/cells.parquet",
        "maps/e_sem.csv",
        "maps/e_per.csv",
        "noise_floor.json",
        "figures/entanglement_map.png",
        "figures/entanglement_map.pdf",
    ):
        assert (results / name).is_file(), name
    cells = read_table(results / "maps/cells.parquet", CELLS)
    assert len(cells) == 6 * len(MODELS)  # 6 prompts x 8 personalized models
    assert set(cells["model"]) == set(MODELS)
    # cells are the seed means of the per-seed disruption tables
    seeds = pd.concat([read_table(p, DISRUPTION) for p in sorted(results.glob("disruption/*/*/*.parquet"))])
    manual = seeds.groupby(["prompt_id", "model"])["lpips"].mean()
    merged = cells.set_index(["prompt_id", "model"])["e_per"]
    np.testing.assert_allclose(merged.loc[manual.index].to_numpy(), manual.to_numpy())
    # Textual Inversion changes one new embedding row, which non-target prompts never use:
    # with seed matching its images must be identical to the base images, so its disruption is exactly 0.
    ti = cells[cells["method"] == "ti"]
    assert (ti["e_sem"] == 0).all() and (ti["e_per"] == 0).all()
    # the methods that change shared weights (and the audited LoRA) do move non-target images
    per_model = cells[cells["method"].isin(["lora", "cd", "external"])].groupby("model")["e_per"].mean()
    assert (per_model > 0).all(), per_model
    assert set(cells.loc[cells["model"] == "someone_lora/external", "subject_category"]) == {"style"}
    # noise floor = numpy's 95th percentile of the base seed-pair shifts
    pairs = pd.concat([read_table(p, NOISE_PAIRS) for p in sorted(results.glob("noise_floor/*.parquet"))])
    floor = json.loads((results / "noise_floor.json").read_text())
    assert len(pairs) == 6  # 6 prompts x 1 pair
    assert floor["tau_sem"] == pytest.approx(np.percentile(pairs["d_sem"], 95))
    assert floor["tau_per"] == pytest.approx(np.percentile(pairs["lpips"], 95))
    assert floor["tau_per"] > 0  # different seeds do differ
    wide = pd.read_csv(results / "maps/e_sem.csv", index_col=0)
    assert list(wide.columns) == ["category", "text", *MODELS]
    figure = np.asarray(Image.open(results / "figures/entanglement_map.png").convert("L"))
    assert figure.shape[0] > 300 and figure.std() > 10


def test_base_and_personalized_shards_are_seed_matched(finished_run):
    results = finished_run / "results"
    for shard in ("000",):
        base = read_table(results / f"images/base/{shard}.parquet", IMAGES)
        assert len(base) == 6 * 2
        for model in MODELS:
            pers = read_table(results / f"images/{model}/{shard}.parquet", IMAGES)
            key = ["prompt_id", "seed", "settings_hash"]
            assert pers[key].values.tolist() == base[key].values.tolist()
            scores = read_table(results / f"scores/{model}/{shard}.parquet", SCORES)
            assert scores[key].values.tolist() == base[key].values.tolist()


def test_every_rule_wrote_its_log(finished_run):
    logs = finished_run / "results" / "logs"
    rules = (
        "build_tiny_base",
        "make_references",
        "class_images",
        "train",
        "example_external_adapter",
        "audit_external",
        "generate",
        "score",
        "disrupt",
        "noise_floor",
        "noise_floor_thresholds",
        "merge_map",
        "figures",
        "analyze",
        "report",
        "perturb",
        "tea",
        "collapse",
    )
    for rule in rules:
        assert list(logs.glob(f"{rule}*")), rule
    assert "textual inversion <face1>" in (logs / "train/face1/ti.log").read_text()


def test_adding_a_subject_schedules_only_its_jobs(finished_run):
    assert dry_run_jobs(finished_run) == []  # nothing left to do
    config_path = finished_run / "config.yaml"
    original = config_path.read_text()
    config = yaml.safe_load(original)
    config["subjects"]["teapot1"] = {
        "category": "object",
        "class_word": "teapot",
        "references": {"synthetic": "object", "count": 4},
        "methods": ["ti"],
    }
    try:
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        jobs = dry_run_jobs(finished_run)
    finally:
        config_path.write_text(original)
    rules = sorted(rule for rule, _ in jobs)
    shared = list(SHARED)
    own = ["make_references", "train_ti", "generate_personalized", "score", "disrupt", "figure_grid", "geometry"]
    own += ["tea_sweep", "tea_score", "collapse_trajectory", "attention"]  # TI: no block attribution job
    assert rules == sorted(own + shared)
    for rule, outputs in jobs:
        if rule in shared:  # aggregates rerun over every model (their outputs may name every model)
            continue
        assert "teapot1" in outputs, (rule, outputs)
        for other in ("base", "face1", "bands1", "someone_lora", "kv0", "noise_floor", "class_images"):
            assert other not in outputs, (rule, outputs)


def test_dry_runs_show_the_whole_dag(tmp_path, tiny_config):
    workdir = make_workdir(tmp_path, tiny_config)
    for args in ((), ("--profile", "profiles/slurm")):
        jobs = dry_run_jobs(workdir, *args)
        counts = pd.Series([rule for rule, _ in jobs]).value_counts().to_dict()
        expected = {
            "build_tiny_base": 1,
            "make_references": 3,
            "class_images": 3,
            "train_ti": 3,
            "train": 6,
            "example_external_adapter": 1,
            "audit_external": 1,
            "generate_base": 1,
            "perturb": 4,
            "generate_personalized": 14,
            "score": 15,
            "disrupt": 14,
            "noise_floor": 1,
            "noise_floor_thresholds": 1,
            "merge_map": 1,
            "analyze": 1,
            "figure_map": 1,
            "figure_scatter": 1,
            "figure_category_matrix": 1,
            "figure_grid": 14,
            "geometry": 14,
            "sage_claims": 1,
            "attention": 14,
            "attention_summary": 1,
            "block_attribution": 11,  # Textual Inversion has no blocks: 14 models less 3
            "block_attribution_summary": 1,
            "tea_sweep": 10,
            "tea_score": 10,
            "tea_tradeoff": 1,
            "collapse_trajectory": 3,
            "collapse_summary": 1,
            "report": 1,
            "all": 1,
        }
        assert counts == expected, args
    assert not (workdir / "results").exists()


def test_toy_world_training_targets_are_outside_the_default_dag(tmp_path, tiny_config):
    """The toy-world targets: three training jobs, the quality table, the release;
    none of them in the default run's DAG (checked above), and a bad training config stops the
    dry run with the file and the key named."""
    workdir = make_workdir(tmp_path, tiny_config)
    jobs = dry_run_jobs(workdir, "toyworld_release")
    assert sorted(rule for rule, _ in jobs) == sorted(
        ["toyworld_scorer", "toyworld_vae", "toyworld_text_to_image", "toyworld_models", "toyworld_release"]
    )
    bad = (workdir / "configs/toyworld-train.yaml").read_text().replace("    ema: ", "    emma: ")
    (workdir / "bad.yaml").write_text(bad)
    result = snakemake(
        workdir,
        "-n",
        "toyworld_release",
        "--configfile",
        "config.yaml",
        "--config",
        "toyworld_training=bad.yaml",
        check=False,
    )
    assert result.returncode != 0
    assert "invalid toy-world training config bad.yaml" in result.stderr + result.stdout
    assert "'emma' was unexpected" in result.stderr + result.stdout


def test_another_configfile_replaces_the_default(tmp_path, tiny_config):
    workdir = make_workdir(tmp_path, tiny_config)
    other = dict(tiny_config, subjects={"solo": tiny_config["subjects"]["face1"]})
    (workdir / "other.yaml").write_text(yaml.safe_dump(other))
    subjects = {
        re.search(r"results/adapters/([^/]+)/", out).group(1)
        for rule, out in dry_run_jobs(workdir, "--configfile", "other.yaml")
        if rule == "train_ti"
    }
    assert subjects == {"solo"}  # not merged with config.yaml's subjects


def test_bad_config_stops_before_any_job(tmp_path, tiny_config):
    config = dict(tiny_config, generation=dict(tiny_config["generation"], seeds="ten"))
    workdir = make_workdir(tmp_path, config)
    result = snakemake(workdir, "--cores", "1", check=False)
    assert result.returncode != 0
    assert "generation.seeds" in result.stdout + result.stderr
    assert not (workdir / "results").exists()


def test_sigkill_midway_then_rerun_completes_with_whole_outputs(tmp_path, finished_run):
    workdir = make_workdir(tmp_path, kill_config())
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen(
            [SNAKEMAKE, "--profile", "profiles/local", "--cores", "2"],
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.time() + 600
    adapters = workdir / "results" / "adapters"
    while time.time() < deadline and not list(adapters.glob("*/ti/adapter.safetensors")):
        time.sleep(0.2)
    time.sleep(3)  # let the next jobs start, then kill everything mid-flight
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (workdir / "results/maps/cells.parquet").exists()
    for path in (workdir / "results").rglob("*.parquet"):
        pd.read_parquet(path)  # whatever is under a final name is whole

    snakemake(workdir, "--unlock")
    rerun = snakemake(workdir, "--profile", "profiles/local", "--cores", "2")
    assert "Finished" in rerun.stdout + rerun.stderr
    assert not list((workdir / "results").rglob("*.tmp"))
    # the recovered run equals the uninterrupted one (same settings for these models), byte for byte
    for shard in sorted((workdir / "results/images").rglob("*.parquet")):
        rel = shard.relative_to(workdir)
        assert list(read_table(workdir / rel, IMAGES)["png"]) == list(read_table(shard, IMAGES)["png"]), rel
        for png in read_table(workdir / rel, IMAGES)["png"]:
            assert decode_png(png).shape == (64, 64, 3)
    a = read_table(workdir / "results/maps/cells.parquet", CELLS)
    b = read_table(finished_run / "results/maps/cells.parquet", CELLS)
    b = b[b["model"].isin(a["model"])].reset_index(drop=True)
    flags = ["above_tau_sem", "above_tau_per", "above_tau_struct"]
    pd.testing.assert_frame_equal(a.drop(columns=flags), b.drop(columns=flags))
    assert (workdir / "results/report.html").is_file()


@pytest.mark.parametrize("study", ["paper", "sdxl", "sd3", "flux"])
def test_study_configs_schedule_all_45_models(tmp_path, tiny_config, study):
    """configs/{paper,sdxl,sd3,flux}.yaml (hub ids, nothing downloaded) with their reference folders
    filled (here by synthetic placeholder images): the whole DAG prints."""
    from entmap.inputs.references import make_synthetic_references

    workdir = make_workdir(tmp_path, tiny_config)
    paper = yaml.safe_load((workdir / f"configs/{study}.yaml").read_text())
    for subject in paper["subjects"].values():
        make_synthetic_references(workdir / subject["references"], subject["category"], count=3)
    jobs = dry_run_jobs(workdir, "--configfile", f"configs/{study}.yaml")
    trained = {
        re.search(r"results/adapters/([^/]+/[^/]+)/", out).group(1)
        for rule, out in jobs
        if rule in ("train", "train_ti")
    }
    generated = {
        re.search(r"results/images/([^/]+/[^/]+)/", out).group(1)
        for rule, out in jobs
        if rule == "generate_personalized"
    }
    assert len(trained) == 45 and generated == trained
    counts = pd.Series([rule for rule, _ in jobs]).value_counts()
    shards = -(-200 // paper["prompts"]["shard_size"])  # SD 1.5: one shard of 200; the others: 4 of 50
    assert shards == (1 if study == "paper" else 4)
    assert counts["generate_personalized"] == 45 * shards and counts["generate_base"] == shards
    assert counts["noise_floor"] == shards and "build_tiny_base" not in counts
    # submissions at paper scale: 657 measuring jobs and one geometry job per model
    assert sum(counts[r] for r in counts.index if r not in LOCAL_RULES) < 750


def test_audit_example_config_schedules_every_external_adapter(tmp_path, tiny_config):
    import torch
    from safetensors.torch import save_file

    workdir = make_workdir(tmp_path, tiny_config)
    audit = yaml.safe_load((workdir / "configs/audit-example.yaml").read_text())
    for entry in audit["external"].values():
        path = workdir / entry["path"]
        if entry["kind"] == "checkpoint":
            path.mkdir(parents=True)
            (path / "model_index.json").write_text("{}")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_file({"x": torch.zeros(1)}, str(path))
    jobs = dry_run_jobs(workdir, "--configfile", "configs/audit-example.yaml")
    audited = {
        re.search(r"results/adapters/([^/]+)/external", out).group(1) for rule, out in jobs if rule == "audit_external"
    }
    assert audited == set(audit["external"])
    assert not [rule for rule, _ in jobs if rule.startswith("train")]


def test_planted_effect_holds_end_to_end(finished_run):
    """Noise of relative scale 0 on k/v changes nothing; larger scales disrupt strictly more."""
    results = finished_run / "results"
    zero = read_table(results / "disruption/kv0/perturb/000.parquet", DISRUPTION)
    assert (zero["d_sem"] == 0).all() and (zero["lpips"] == 0).all()
    cells = read_table(results / "maps/cells.parquet", CELLS)
    e_per = [cells.loc[cells["model"] == f"{m}/perturb", "e_per"].mean() for m in ("kv0", "kv0p2", "kv0p5")]
    assert e_per[0] == 0 < e_per[1] < e_per[2]


REUSABLE = ("face1/ti", "kv0/perturb")  # weights the base's bit for bit: an embedding row; noise of scale 0
RENDERED = re.compile(r"generate (\S+): rendered (\d+) of (\d+) images")


def rendered_counts(results) -> dict[str, tuple[int, int]]:
    """model -> (images rendered, images in its shard), as each generation job logged them."""
    counts = {}
    for log in sorted(results.glob("logs/generate/**/*.log")):
        for model, rendered, total in RENDERED.findall(log.read_text()):
            counts[model] = (int(rendered), int(total))
    return counts


def test_textual_inversion_shards_reuse_the_base_images_exactly(finished_run):
    """face1/ti and kv0/perturb render every prompt of the map exactly as the base: their shards hold the
    base's bytes, rendered only in the batches of the verification sample (byte-identical), copied for the
    rest; LoRA, Custom Diffusion, the external LoRA and the non-zero controls render every image."""
    from entmap.measure.reuse import verification_sample
    from entmap.models.sampling import job_batches

    results = finished_run / "results"
    generation = yaml.safe_load((finished_run / "config.yaml").read_text())["generation"]
    base = read_table(results / "images/base/000.parquet", IMAGES)
    counts = rendered_counts(results)
    for model in MODELS:
        images = read_table(results / f"images/{model}/000.parquet", IMAGES)
        rendered = ~images["reused"].to_numpy()
        assert counts[model] == (rendered.sum(), len(images)), model  # what the job rendered, no more
        if model not in REUSABLE:
            assert rendered.all(), model
            continue
        assert (images["png"].to_numpy() == base["png"].to_numpy()).all(), model  # copies and sample alike
        sample = verification_sample(set(base["prompt_id"]), model, generation["reuse"]["verify"])
        in_sample = images["prompt_id"].isin(sample).to_numpy()
        batches = [b for b in job_batches(len(images), generation["batch_size"]) if in_sample[list(b)].any()]
        expected = np.zeros(len(images), dtype=bool)
        expected[[j for b in batches for j in b]] = True
        assert (rendered == expected).all() and 0 < rendered.sum() < len(images), model
    cells = read_table(results / "maps/cells.parquet", CELLS)
    reused = cells[cells["reused"]]
    assert set(reused["model"]) == set(REUSABLE)
    assert (reused["e_sem"] == 0).all() and (reused["e_per"] == 0).all()
    seeds = pd.concat([read_table(p, DISRUPTION) for p in sorted(results.glob("disruption/*/*/*.parquet"))])
    every_seed = seeds.groupby(["prompt_id", "model"])["reused"].all()
    assert (
        every_seed.loc[list(zip(cells["prompt_id"], cells["model"], strict=True))].tolist() == cells["reused"].tolist()
    )
    assert f"{len(reused)} of {len(cells)} cells reused from the base" in (results / "report.html").read_text()


def test_base_images_are_rendered_once_however_many_models_reuse_them(finished_run):
    """Across the run, the base's images are exactly prompts x seeds, rendered once by the base job;
    every reused image of a personalized shard is a copy of the base image of its (prompt, seed)."""
    results = finished_run / "results"
    base = pd.concat([read_table(p, IMAGES) for p in sorted(results.glob("images/base/*.parquet"))])
    assert len(base) == 6 * 2 and not base.duplicated(["prompt_id", "seed"]).any() and not base["reused"].any()
    assert rendered_counts(results)["base"] == (6 * 2, 6 * 2)
    shards = pd.concat([read_table(results / f"images/{model}/000.parquet", IMAGES) for model in MODELS])
    copies = shards[shards["reused"]].merge(base, on=["prompt_id", "seed"], suffixes=("", "_base"))
    assert len(copies) == shards["reused"].sum() > 0
    assert (copies["png"] == copies["png_base"]).all()
    assert len(set(base["png"]) | set(copies["png"])) == 6 * 2


def test_switching_reuse_off_regenerates_only_the_personalized_shards(finished_run):
    jobs = dry_run_with(finished_run, lambda c: c["generation"]["reuse"].update(enabled=False))
    generated = {out for rule, out in jobs if rule.startswith("generate_")}
    assert generated == {f"results/images/{m}/000.parquet" for m in MODELS}
    assert not {rule for rule, _ in jobs} & {"audit_external", "train", "train_ti", "perturb", "tea_sweep"}


def test_analysis_outputs_and_report(finished_run):
    results = finished_run / "results"
    hyp = json.loads((results / "stats/hypotheses.json").read_text())
    assert {"H1", "H2", "H3"} <= set(hyp) and hyp["H2"]["n_x"] > 0
    per_model = pd.read_csv(results / "tables/per_model.csv")
    assert set(per_model["model"]) == set(MODELS)
    table1 = pd.read_csv(results / "tables/table1.csv")
    assert {"mean_e_sem", "mean_E", "std_E", "mean_E_ci_low"} <= set(table1.columns)
    assert "| method" in (results / "tables/table1.md").read_text()
    bounds = json.loads((results / "stats/normalization.json").read_text())
    cells = read_table(results / "maps/cells.parquet", CELLS)
    # the bounds come from the study population only (variants, controls and external adapters excluded)
    study = cells[cells["model"].map(lambda m: population(m.rsplit("/", 1)[-1]) == STUDY)]
    assert bounds["e_per"]["max"] == pytest.approx(study["e_per"].max())
    for figure in FIGURES:
        image = np.asarray(Image.open(results / f"figures/{figure}.png").convert("L"), dtype=float)
        assert image.std() > 10, figure
        assert (results / f"figures/{figure}.pdf").read_bytes()[:5] == b"%PDF-"
    page = (results / "report.html").read_text()
    # every figure inlined (works offline): the map's, plus the TEA trade-off, collapse and geometry figures,
    # the attention shift, one attention heat map per model and the block attribution
    heat_maps = len(list((results / "figures/attention_maps").rglob("*.png")))
    assert heat_maps == len(MODELS)
    assert page.count('src="data:image/png;base64,') == len(FIGURES) + 3 + 1 + heat_maps + 1
    assert "http://" not in page.replace("http://www.w3.org", "") and 'src="http' not in page
    assert external_references(page) == []
    # the map explorer: per model its 3 most disrupted cells and 2 others carry images (the defaults)
    with_images = sum(min(5, n) for n in cells.groupby("model").size())
    assert 'id="map-explorer-spec"' in page
    assert f"Images are in the page for {with_images} of {len(cells)} cells" in page
    for words in ("H1", "H2", "H3", "tau_sem", "Table 1", "Mann-Whitney", "torch_threads"):
        assert words in page, words


def test_tea_sweeps_and_collapse_diagnostics(finished_run):
    results = finished_run / "results"
    table = pd.read_csv(results / "tables/tea_tradeoff.csv")
    levels = {"face1/ti": "token", "face1/lora": "prompt", "bands1/cd": "prompt", "someone_lora/external": "prompt"}
    levels["face1/lora+sage"] = "prompt"  # a variant is swept with its method
    assert dict(zip(table["model"], table["level"], strict=False)) == levels
    assert set(table["setting"]) == {"none", "a0_b1.5", "a0.8_b1.5"} and (table["n"] == 2).all()
    unadjusted = table[table["setting"] == "none"]
    assert (unadjusted["delta_clip_context"] == 0).all() and unadjusted["alpha"].isna().all()
    assert table.loc[table["model"] == "someone_lora/external", "clip_image"].isna().all()  # no references
    assert table.loc[table["model"] != "someone_lora/external", "clip_image"].between(-1, 1).all()
    # TI's unadjusted sweep images are the model's own images of those prompts: alpha 0.8 changes them
    images = read_table(results / "tea/face1/ti/images.parquet", TEA_IMAGES)
    by = {name: group.sort_values(["prompt_id", "seed"])["png"].tolist() for name, group in images.groupby("setting")}
    assert by["none"] != by["a0.8_b1.5"]
    collapse = pd.read_csv(results / "tables/collapse.csv")
    assert list(collapse["step"]) == [0, 2, 4] and set(collapse["subject"]) == {"face1"}
    first = collapse.iloc[0]
    assert first["cos_anchor"] == pytest.approx(1) and first["hausdorff"] == pytest.approx(0, abs=1e-9)
    assert (collapse["hausdorff"].iloc[1:] > 0).all()
    for figure in ("tea_tradeoff", "collapse"):
        image = np.asarray(Image.open(results / f"figures/{figure}.png").convert("L"), dtype=float)
        assert image.std() > 10, figure
    page = (results / "report.html").read_text()
    for words in ("Semantic collapse and TEA", "TEA trade-off", "Textual Inversion drift", "face1: ||V*||/||c||"):
        assert words in page, words


def dry_run_with(workdir, edit) -> list[tuple[str, str]]:
    """Jobs a dry run schedules after ``edit(config)`` changes config.yaml (restored afterwards)."""
    path = workdir / "config.yaml"
    original = path.read_text()
    config = yaml.safe_load(original)
    edit(config)
    try:
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return dry_run_jobs(workdir)
    finally:
        path.write_text(original)


LOCAL_RULES = {
    "build_tiny_base",
    "make_references",
    "noise_floor_thresholds",
    "merge_map",
    "analyze",
    "figure_map",
    "figure_scatter",
    "figure_category_matrix",
    "figure_grid",
    "tea_tradeoff",
    "collapse_summary",
    "sage_claims",
    "attention_summary",
    "block_attribution_summary",
    "report",
    "all",
}
SHARED = {
    "merge_map",
    "analyze",
    "figure_map",
    "figure_scatter",
    "figure_category_matrix",
    "tea_tradeoff",
    "collapse_summary",
    "sage_claims",
    "attention_summary",
    "block_attribution_summary",
    "report",
    "all",
}


def test_changing_one_subjects_training_reruns_only_that_subject(finished_run):
    jobs = dry_run_with(finished_run, lambda c: c["subjects"]["face1"].setdefault("train", {}).update(ti={"steps": 5}))
    own = [(rule, out) for rule, out in jobs if rule not in SHARED]
    assert sorted(rule for rule, _ in own) == sorted(
        ["train_ti", "generate_personalized", "score", "disrupt", "figure_grid", "geometry", "attention"]
        + ["tea_sweep", "tea_score", "collapse_trajectory"]
    )
    assert all("face1/ti" in out or out == "results/collapse/face1.csv" for _, out in own), own
    # the block attribution summary reads only the models with blocks, which TI is not
    assert {rule for rule, _ in jobs} - {rule for rule, _ in own} == SHARED - {"block_attribution_summary"}


def test_changing_the_seeds_regenerates_every_model(finished_run):
    path = finished_run / "config.yaml"
    original = path.read_text()
    config = yaml.safe_load(original)
    config["generation"]["seeds"] = 3
    try:
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        out = snakemake(finished_run, "-n").stdout
    finally:
        path.write_text(original)
    generated = set(re.findall(r"output: results/images/(\S+)/000\.parquet", out))
    assert generated == {"base", *MODELS}
    assert not re.search(r"^rule train", out, re.MULTILINE)  # adapters are kept
    reasons = re.findall(r"rule generate_\w+:\n(?:    .*\n)*?    reason: (.*)", out)
    # a personalized model reruns because its seeds changed or because the base images it may reuse did
    base_updated = "Input files updated by another job: results/images/base/000.parquet"
    assert reasons and [r for r in reasons if "Params have changed" not in r and r != base_updated] == []
    assert any("Params have changed" in r for r in reasons)


def dry_run_after_editing(workdir, module: str) -> list[tuple[str, str]]:
    """Jobs a dry run schedules after a comment is appended to ``src/entmap/{module}`` (restored)."""
    source = workdir / "src" / "entmap" / module
    original = source.read_text()
    try:
        source.write_text(original + "\n# an edit\n")
        return dry_run_jobs(workdir)
    finally:
        source.write_text(original)


def test_editing_analysis_code_reruns_analysis_only(finished_run):
    jobs = dry_run_after_editing(finished_run, "analysis/hypothesis_tests.py")
    assert sorted(rule for rule, _ in jobs) == sorted(
        ["analyze", "figure_scatter", "figure_category_matrix", "report", "all"]
    )


def test_editing_a_module_generation_imports_indirectly_reschedules_generation(finished_run):
    # core/runtime.py chooses the dtype; generate.py reaches it only through models/loading.py
    jobs = dry_run_after_editing(finished_run, "core/runtime.py")
    rules = {rule for rule, _ in jobs}
    assert {"generate_base", "generate_personalized", "score", "disrupt", "noise_floor", "tea_sweep"} <= rules
    generated = {out for rule, out in jobs if rule.startswith("generate_")}
    assert generated == {f"results/images/{m}/000.parquet" for m in ["base", *MODELS]}


def test_editing_a_figure_module_reschedules_figures_and_report_only(finished_run):
    jobs = dry_run_after_editing(finished_run, "present/figures.py")
    assert {rule for rule, _ in jobs} == {
        "figure_map",
        "figure_scatter",
        "figure_category_matrix",
        "figure_grid",
        "tea_tradeoff",
        "collapse_summary",
        "sage_claims",  # it draws the geometry figure
        "attention_summary",  # its figures share the panel layout
        "block_attribution_summary",
        "report",
        "all",
    }


def test_changing_the_methods_tea_covers_keeps_every_existing_sweep(finished_run):
    """The sweeps receive the TEA settings their images depend on, not the list of methods."""
    jobs = dry_run_with(finished_run, lambda c: c["tea"].update(methods=["ti", "lora", "external"]))
    # the variant's identity (CLIP-I) comes from the trade-off table, so the SAGE tables follow it
    assert {rule for rule, _ in jobs} == {"tea_tradeoff", "sage_claims", "report", "all"}, jobs
    jobs = dry_run_with(finished_run, lambda c: c["tea"].update(alphas=[0, 0.8, 1.0]))
    swept = sorted(out for rule, out in jobs if rule == "tea_sweep")
    assert swept == sorted(f"results/tea/{m}/images.parquet" for m in MODELS[:5])  # a grid change reruns them


def test_archive_round_trip_and_tamper_detection(finished_run, tmp_path):
    import subprocess
    import sys
    import tarfile

    from entmap.present.archive import verify_archive

    snakemake(finished_run, "archive", "--cores", "1")
    archive = finished_run / "results/archive/entmap-run.tar.gz"
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path, filter="data")
    folder = tmp_path / "entmap-run"
    assert verify_archive(folder) == []
    assert yaml.safe_load((folder / "config.yaml").read_text()) == yaml.safe_load(
        (finished_run / "config.yaml").read_text()
    )
    provenance = json.loads((folder / "PROVENANCE.json").read_text())
    assert set(provenance["adapters_sha256"]) == set(MODELS)
    assert {"git_commit", "packages"} <= set(provenance) and "torch" in provenance["packages"]
    assert (folder / "prompts/entanglement-200.tsv").is_file()
    assert (folder / "results/report.html").is_file() and (folder / "results/maps/cells.parquet").is_file()
    cli = [sys.executable, "-m", "entmap", "verify-archive", str(folder)]
    assert subprocess.run(cli, capture_output=True).returncode == 0

    table = folder / "results/tables/table1.csv"
    table.write_text(table.read_text().replace("0", "1", 1))
    (folder / "results/extra.txt").write_text("slipped in")
    problems = verify_archive(folder)
    assert any("table1.csv: checksum mismatch" in p for p in problems)
    assert any("extra.txt: not in the manifest" in p for p in problems)
    result = subprocess.run(cli, capture_output=True, text=True)
    assert result.returncode == 1 and "table1.csv" in result.stderr


def test_geometry_tables_follow_what_each_method_changes(finished_run):
    """TI and the scale-0 control change no feature of a prompt without the token: exactly the base's
    geometry; the planted control on the k/v weights moves the keys and values and not the text."""
    from entmap.core.parquet_schemas import GEOMETRY

    results = finished_run / "results"
    rows = pd.concat([read_table(results / f"geometry/{m}.parquet", GEOMETRY) for m in MODELS])
    assert set(rows["model"]) == set(MODELS) and set(rows["level"]) == {"text", "kv"}
    for model in ("face1/ti", "kv0/perturb"):
        mine = rows[rows["model"] == model]
        assert (mine["spread_ratio"] == 1).all() and (mine["distortion"].abs() < 1e-12).all(), model
    control = rows[rows["model"] == "kv0p5/perturb"]
    assert (control.loc[control["level"] == "kv", "distortion"] > 0).all()
    assert (control.loc[control["level"] == "text", "distortion"].abs() < 1e-12).all()
    summary = pd.read_csv(results / "tables/geometry.csv")
    assert len(summary) == 2 * len(MODELS)
    correlations = pd.read_csv(results / "tables/sage_correlations.csv")
    assert set(correlations["disruption"]) == {"e_sem", "e_per", "e_struct"}
    report = (results / "report.html").read_text()
    assert "Prompt geometry and structured faithfulness (SAGE)" in report and "Claim 2" in report
    assert (results / "figures/geometry.png").stat().st_size > 10_000


def test_a_method_runs_with_and_without_the_regularizer_side_by_side(finished_run):
    """face1/lora+sage is LoRA with SAGE's regularizer: its own population, compared with face1/lora."""
    results = finished_run / "results"
    meta = json.loads((results / "adapters/face1/lora+sage/meta.json").read_text())
    assert meta["format"] == "lora" and meta["settings"]["geometry_regularizer"]["lambda_spread"] == 2.0
    assert "geometry_regularizer" not in json.loads((results / "adapters/face1/lora/meta.json").read_text())["settings"]
    per_model = pd.read_csv(results / "tables/per_model.csv").set_index("model")
    assert per_model.loc["face1/lora+sage", "population"] == "variant"
    assert per_model.loc["face1/lora", "population"] == "study"
    assert "lora+sage" not in set(pd.read_csv(results / "tables/table1.csv")["method"])
    hyp = json.loads((results / "stats/hypotheses.json").read_text())
    assert "lora+sage" not in hyp["population"]
    table = pd.read_csv(results / "tables/sage_regularizer.csv").set_index("quantity")
    assert set(table["subject"]) == {"face1"} and set(table["variant"]) == {"sage"}
    # delta by hand: paired over face1's non-target prompts (face -> people is its own category)
    cells = read_table(results / "maps/cells.parquet", CELLS)
    cells = cells[cells["category"] != "people"].pivot(index="prompt_id", columns="model", values="e_sem")
    delta = (cells["face1/lora+sage"] - cells["face1/lora"]).mean()
    assert table.loc["e_sem", "delta"] == pytest.approx(delta)
    assert table.loc["e_sem", "ci_low"] <= table.loc["e_sem", "delta"] <= table.loc["e_sem", "ci_high"]
    geometry = pd.read_csv(results / "tables/geometry.csv").set_index(["model", "level"])
    assert table.loc["kv_distortion", "variant_value"] == pytest.approx(
        geometry.loc[("face1/lora+sage", "kv"), "distortion"]
    )
    tradeoff = pd.read_csv(results / "tables/tea_tradeoff.csv")
    kept = tradeoff[(tradeoff["setting"] == "none")].set_index("model")["clip_image"]
    assert table.loc["identity_clip_image", "method_value"] == pytest.approx(kept["face1/lora"])
    assert table.loc["identity_clip_image", "variant_value"] == pytest.approx(kept["face1/lora+sage"])
    page = (results / "report.html").read_text()
    assert "Claim 3" in page and "lora+sage against lora over 1 subject:" in page


def test_snakemake_report_on_the_finished_run(finished_run, tmp_path):
    snakemake(finished_run, "--report", str(tmp_path / "report.html"))
    page = (tmp_path / "report.html").read_text(errors="replace")
    assert "entanglement_map.png" in page and "drift_scatter.png" in page
