"""Config validation stops a bad run with a message naming the key or file."""

import copy

import numpy as np
import pytest
from conftest import REPO
from PIL import Image

from entmap.config.plan import ConfigError, load_plan, method_settings
from entmap.core.checksums import settings_hash

SCHEMA = REPO / "schemas" / "config.schema.yaml"


@pytest.fixture
def config(tiny_config, monkeypatch):
    monkeypatch.chdir(REPO)
    return copy.deepcopy(tiny_config)


def test_default_config_is_valid_and_planned(config):
    plan = load_plan(config, SCHEMA)
    assert len(plan.prompts) == 12
    assert plan.shard_names == ["000"]
    assert plan.models == tuple(f"{s}/{m}" for s in ("face1", "teapot1", "bands1") for m in ("ti", "lora", "cd")) + (
        "someone_lora/external",
        "kv0/perturb",
        "kv0p05/perturb",
        "kv0p2/perturb",
        "kv0p5/perturb",
    )


def expect_error(config, *fragments):
    with pytest.raises(ConfigError) as info:
        load_plan(config, SCHEMA)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_unknown_key(config):
    config["generation"]["seedz"] = 3
    expect_error(config, "generation", "'seedz' was unexpected")


def test_wrong_type(config):
    config["generation"]["seeds"] = "four"
    expect_error(config, "generation.seeds", "'four' is not of type 'integer'")


def test_unknown_method(config):
    config["subjects"]["face1"]["methods"] = ["dreambooth-xl"]
    expect_error(config, "subjects.face1.methods.0", "dreambooth-xl")


def test_unknown_subject_category(config):
    config["subjects"]["face1"]["category"] = "vehicle"
    expect_error(config, "subjects.face1.category", "vehicle")


def test_unknown_prompt_category_in_mapping(config):
    config["subject_categories"]["face"] = "humans"
    expect_error(config, "subject_categories.face", "humans")


def test_missing_reference_folder(config, tmp_path):
    missing = tmp_path / "no-such-folder"
    config["subjects"]["face1"]["references"] = str(missing)
    expect_error(config, "subjects.face1.references", str(missing), "does not exist")


def test_bad_reference_image_is_named(config, tmp_path):
    folder = tmp_path / "refs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((80, 80, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
    (folder / "3.png").write_bytes(b"not a png")
    config["subjects"]["face1"]["references"] = str(folder)
    expect_error(config, str(folder / "3.png"), "not a decodable image")


def test_too_few_and_too_small_references(config, tmp_path):
    folder = tmp_path / "refs"
    folder.mkdir()
    Image.new("RGB", (80, 80)).save(folder / "a.png")
    Image.new("RGB", (80, 80)).save(folder / "b.png")
    config["subjects"]["face1"]["references"] = str(folder)
    expect_error(config, "2 images found, at least 3")
    Image.new("RGB", (80, 20)).save(folder / "c.png")
    expect_error(config, str(folder / "c.png"), "too small")


def test_subject_may_not_be_called_base(config):
    config["subjects"]["base"] = config["subjects"].pop("face1")
    expect_error(config, "subjects")


def test_noise_floor_needs_enough_seeds(config):
    config["noise_floor"]["pairs"] = 3
    expect_error(config, "noise_floor.pairs = 3 needs at least 6 seeds")


def test_per_subject_override_and_hash(config):
    config["subjects"]["face1"]["train"] = {"ti": {"steps": 7}}
    assert method_settings(config, "face1", "ti")["steps"] == 7
    assert method_settings(config, "teapot1", "ti")["steps"] == config["methods"]["ti"]["steps"]
    assert settings_hash({"a": 1, "b": 2}) == settings_hash({"b": 2, "a": 1})
    assert settings_hash({"a": 1}) != settings_hash({"a": 2})


def test_external_entries_are_checked_before_any_job(config, tmp_path):
    pickle = tmp_path / "lora.bin"
    pickle.write_bytes(b"\x80\x04")
    config["external"] = {"theirs": {"kind": "lora", "path": str(pickle), "category": "style"}}
    expect_error(config, str(pickle), "external.theirs.allow_pickle: true")
    config["external"]["theirs"]["path"] = str(tmp_path / "missing.safetensors")
    expect_error(config, "external.theirs.path", "does not exist")
    config["external"]["theirs"].update(path=str(pickle), allow_pickle=True, category="vehicle")
    expect_error(config, "external.theirs.category", "vehicle")
    config["external"] = {"face1": {"kind": "lora", "path": str(pickle), "category": "face", "allow_pickle": True}}
    expect_error(config, "external.face1", "also a subject")


def test_merged_per_subject_override_is_validated(config):
    config["subjects"]["face1"]["train"] = {"lora": {"rank": "four"}}
    expect_error(config, "subjects.face1.train.lora (merged).rank")


def test_a_variant_merges_its_settings_over_its_method_and_is_checked(config):
    config["subjects"]["face1"]["methods"] = ["ti", "lora", "lora+sage"]
    config["subjects"]["face1"]["train"] = {"lora": {"steps": 7}}
    plan = load_plan(config, SCHEMA)
    assert plan.models[:3] == ("face1/ti", "face1/lora", "face1/lora+sage")
    plain, variant = method_settings(config, "face1", "lora"), method_settings(config, "face1", "lora+sage")
    assert variant == {**plain, **config["variants"]["sage"]} and variant["steps"] == 7  # subject override kept
    assert "geometry_regularizer" not in plain
    # the variant names its block; its merged settings are validated against its method's schema
    config["subjects"]["face1"]["methods"] = ["lora+sharp"]
    expect_error(config, "subjects.face1.methods", "'lora+sharp'", "variants.sharp")
    config["subjects"]["face1"]["methods"] = ["lora+sage"]
    config["variants"]["sage"]["rank"] = "four"
    expect_error(config, "variants.sage over methods.lora (merged).rank")
    del config["variants"]["sage"]["rank"]
    config["subjects"]["face1"]["methods"] = ["lora+Sage"]
    expect_error(config, "subjects.face1.methods.0")
    # the variant's anchors are held out from evaluation like any method's
    config["subjects"]["face1"]["methods"] = ["lora+sage"]
    config["variants"]["sage"]["geometry_regularizer"]["anchor_suite"] = config["prompts"]["suite"]
    expect_error(config, "subjects.face1: lora+sage.geometry_regularizer.anchor_suite", "also evaluated")


def test_tea_applies_where_the_method_allows_it(config):
    from entmap.config.plan import collapse_subjects, tea_models

    config["subjects"]["face1"].setdefault("train", {})["lora"] = {"train_text_encoder": False}
    config["external"]["bare"] = {
        "kind": "lora",
        "path": config["external"]["someone_lora"]["path"],
        "category": "style",
    }
    load_plan(config, SCHEMA)
    models = tea_models(config)
    assert "face1/lora" not in models  # no text-encoder adapter: nothing to adjust at prompt level
    assert "bare/external" not in models  # no token and class word declared
    assert models["teapot1/lora"] == {
        "level": "prompt",
        "token": "sks",
        "class_word": "teapot",
        "references": "results/references/teapot1",
    }
    assert models["face1/ti"]["level"] == "token" and models["face1/ti"]["token"] == "<face1>"
    assert models["someone_lora/external"]["references"] is None
    assert set(collapse_subjects(config)) == {"face1", "teapot1", "bands1"}
    config["tea"]["enabled"] = False
    assert tea_models(config) == {} and collapse_subjects(config) == {}


def test_tea_suite_and_grid_are_checked(config):
    config["tea"]["suite"] = "resources/prompts/missing.tsv"
    expect_error(config, "tea.suite", "missing.tsv", "not found")
    config["tea"]["suite"] = "resources/prompts/context-24.tsv"
    config["tea"]["alphas"] = [1.5]
    expect_error(config, "tea.alphas")


def test_default_toy_world_config_is_valid(monkeypatch):
    import yaml

    from entmap.config.plan import tea_models
    from entmap.toyworld.suite import TOY_CATEGORIES

    monkeypatch.chdir(REPO)
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    plan = load_plan(config, SCHEMA)
    assert len(plan.prompts) == 18 and tuple(dict.fromkeys(plan.prompts["category"])) == TOY_CATEGORIES
    assert "smiley/ti" in plan.models and "zigzag/cd" in plan.models and "star/lora+sage" in plan.models
    assert tea_models(config)["star/lora"]["class_word"] == "diamond"
    config["subject_categories"]["face"] = "people"  # not a category of the toy suite
    expect_error(config, "subject_categories.face", "'people'", "toyworld-60.tsv")


def test_methods_a_family_does_not_support_yet_are_refused_by_name(tiny_config, monkeypatch):
    import yaml

    monkeypatch.chdir(REPO)
    sdxl = yaml.safe_load((REPO / "configs/tiny-sdxl.yaml").read_text())
    assert load_plan(copy.deepcopy(sdxl), SCHEMA).models == (
        "bands1/ti",
        "bands1/lora",
        "bands1/cd",
        "someone_lora/external",
        *(f"kv{s}/perturb" for s in ("0", "0p05", "0p2", "0p5")),
    )
    sdxl["tea"] = dict(copy.deepcopy(tiny_config["tea"]), enabled=True)
    sdxl["external"]["someone_lora"]["kind"] = "checkpoint"
    sdxl["generation"]["scheduler"] = "flow_euler"
    with pytest.raises(ConfigError) as info:
        load_plan(sdxl, SCHEMA)
    message = str(info.value)
    assert "tea.enabled: TEA sweeps run on SD 1.x models only so far, not sdxl" in message
    assert "external.someone_lora.kind: 'checkpoint' adapters cannot be audited on the sdxl family" in message
    assert "generation.scheduler: 'flow_euler' is not the sdxl family's sampler; set it to 'ddim'" in message


def test_structure_vqa_needs_a_model_and_annotated_prompts(config, tmp_path):
    from entmap.config.plan import vqa_spec

    assert vqa_spec(config) is None
    config["prompts"]["structure"] = "vqa"
    expect_error(config, "prompts.vqa: structure vqa needs this block naming the VQA model")
    config["prompts"]["vqa"] = {"model": "dandelin/vilt-b32-finetuned-vqa", "modle": "x"}
    expect_error(config, "prompts.vqa", "'modle' was unexpected")
    config["prompts"]["vqa"] = {"model": "dandelin/vilt-b32-finetuned-vqa", "batch_size": 8}
    load_plan(config, SCHEMA)
    assert vqa_spec(config) == {"model": "dandelin/vilt-b32-finetuned-vqa", "batch_size": 8, "dtype": "float32"}
    config["prompts"]["vqa"] = {"model": "no-such-folder"}
    expect_error(config, "prompts.vqa.model: 'no-such-folder' is neither a folder nor a hub id")
    config["prompts"]["vqa"] = {"model": str(tmp_path)}
    plain = tmp_path / "plain.tsv"
    plain.write_text(
        "id\tcategory\ttext\n"
        + "".join(f"p{i}\t{c}\ta {c} {i}\n" for i, c in enumerate(["people", "objects", "styles"]))
    )
    config["prompts"]["suite"] = str(plain)
    expect_error(config, "prompts.structure: vqa, but none of the 3 selected prompts", "annotate the suite")
    broken = tmp_path / "broken.tsv"
    broken.write_text(
        plain.read_text().replace("text\n", "text\tcounts\n").replace("a people 0\n", "a people 0\tpeople=two\n")
    )
    config["prompts"]["suite"] = str(broken)
    expect_error(
        config, f"prompts.suite: {broken}:2: prompt p0, column counts: count 'two' of 'people' is not a whole number"
    )


def test_generation_reuse_is_checked_and_defaults_to_on_with_one_verified_prompt(config):
    from entmap.config.plan import generation_settings, reuse_settings

    assert reuse_settings(config) == {"enabled": True, "verify": 1}
    without = copy.deepcopy(config)
    without["generation"].pop("reuse")
    assert reuse_settings(without) == {"enabled": True, "verify": 1}
    config["generation"]["reuse"] = {"enabled": False, "verify": 3}
    assert reuse_settings(config) == {"enabled": False, "verify": 3}
    assert generation_settings(config) == generation_settings(without)  # not part of the seed-matching hash
    config["generation"]["reuse"] = {"verify": -1}
    expect_error(copy.deepcopy(config), "generation.reuse.verify: -1 is less than the minimum of 0")
    config["generation"]["reuse"] = {"check": 1}
    expect_error(config, "generation.reuse", "'check' was unexpected")


def test_the_attention_block_is_checked_against_the_run(config):
    from entmap.config.plan import attention_seeds, attention_spec, own_prompt_category

    load_plan(config, SCHEMA)
    assert attention_spec(config) == {
        "prompts": {"most_disrupted": 2, "least_disrupted": 2},
        "steps": None,
        "layers": None,
    }
    assert attention_seeds(config) == [0, 1]
    assert own_prompt_category(config, "face1") == "people" and own_prompt_category(config, "kv0p2") is None
    bad = copy.deepcopy(config)
    bad["attention"].update(seeds=5, steps=[0, 10], prompts=["p000", "nope"])
    expect_error(bad, "attention.seeds = 5", "attention.steps: [10]", "attention.prompts: ['nope']")
    bad = copy.deepcopy(config)
    bad["attention"]["prompts"] = {"most_disrupted": 0}
    expect_error(bad, "most_disrupted and least_disrupted are both 0")
    bad["attention"]["prompts"] = {"most": 2}
    expect_error(bad, "attention.prompts")
    config["attention"]["enabled"] = False
    load_plan(config, SCHEMA)
    assert attention_spec(config) == {}
    del config["attention"]
    load_plan(config, SCHEMA)
    assert attention_spec(config) == {}
