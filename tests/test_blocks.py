"""Block attribution: the block partition of each family, switching an adapter off by block (exactly the
base model with every block off, exactly the adapter's model with none off, weights restored bitwise),
a planted one-block perturbation attributed to its block alone, the contribution arithmetic by hand,
and Textual Inversion reported as having no blocks."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO
from PIL import Image
from safetensors.torch import save_file

from entmap.analysis.block_attribution import NO_DISRUPTION, NO_MODULES, attribution_table, model_attribution
from entmap.config.plan import ConfigError, block_attribution_models, block_attribution_settings, load_plan
from entmap.core.image_codec import png_bytes
from entmap.measure.block_attribution import attribution_frame, configurations, most_disrupted
from entmap.measure.metrics import Lpips
from entmap.measure.score import ClipScorer
from entmap.models.adapter_meta import ADAPTER_FILE, write_meta
from entmap.models.block_switch import NoBlocksError, open_switchable
from entmap.models.blocks import NO_BLOCKS, OTHER, block_of, block_partition, group_ranges
from entmap.models.families import FAMILIES
from entmap.models.loading import load_model, load_pipeline
from entmap.models.sampling import render_jobs
from entmap.personalize.lora import add_lora_adapters, save_lora
from entmap.personalize.perturb import perturbed_kv
from entmap.present.figures import block_attribution_figure
from entmap.present.report import blocks_in_words

CPU = torch.device("cpu")
SETTINGS = {"resolution": 64, "steps": 3, "guidance_scale": 5.0, "batch_size": 4, "negative_prompt": ""}
PROMPTS = pd.DataFrame({"id": ["p1", "p2"], "text": ["a red circle on the left", "a portrait of a woman"]})
SEEDS = [0, 1]
JOBS = [(text, seed) for text in PROMPTS["text"] for seed in SEEDS]
FAMILY_NAMES = ["sd1", "sdxl", "sd3", "flux"]
#: the block a planted perturbation is put in, per family: one with cross-attention (or joint attention)
PLANTED = {"sd1": "up_blocks.1", "sdxl": "up_blocks.0", "sd3": "transformer_blocks.0", "flux": "transformer_blocks.0"}


@pytest.fixture(scope="module")
def bases(tiny_dir, tiny_family_dir) -> dict[str, str]:
    return {"sd1": str(tiny_dir / "tiny-sd"), **{f: str(tiny_family_dir / f) for f in ("sdxl", "sd3", "flux")}}


@pytest.fixture(scope="module")
def measures(tiny_dir):
    return ClipScorer(f"local-dir:{tiny_dir / 'tiny-clip'}", None, CPU), Lpips("alex", "random", 0, CPU)


def pngs(pipe) -> list[bytes]:
    return [png_bytes(image) for _, image in render_jobs(pipe, JOBS, SETTINGS, "test")]


def lora_adapter(base: str, family: str, folder) -> str:
    """A LoRA on the denoiser's attention (and on the text encoder for SD 1.x) with random nonzero factors."""
    pipe = load_pipeline(base, CPU, torch.float32)
    add_lora_adapters(pipe, {"rank": 2, "alpha": 2, "train_text_encoder": family == "sd1", "seed": 0})
    generator = torch.Generator().manual_seed(1)
    parameters = [*pipe.text_encoder.named_parameters(), *getattr(pipe, FAMILIES[family].denoiser).named_parameters()]
    with torch.no_grad():
        for name, parameter in parameters:
            if "lora_B" in name:
                parameter.copy_(0.5 * torch.randn(parameter.shape, generator=generator))
    save_lora(pipe, folder / ADAPTER_FILE)
    write_meta(folder / "meta.json", {"method": "lora", "format": "lora", "token": "sks"})
    return str(folder)


def kv_adapter(base: str, family: str, folder, only: str | None = None, token: bool = True) -> str:
    """A Custom Diffusion file: noise (relative scale 0.5) on the text k/v weights (only those under block
    ``only``, when given) and, with ``token``, a modifier token's embedding in every CLIP encoder."""
    pipe = load_pipeline(base, CPU, torch.float32)
    denoiser = FAMILIES[family].denoiser
    weights = perturbed_kv(pipe, 0.5, seed=3)
    if only is not None:
        weights = {name: w for name, w in weights.items() if name.startswith(only + ".")}
    tensors = {f"{denoiser}.{name}": w.contiguous() for name, w in weights.items()}
    if token:
        encoders = FAMILIES[family].clip_encoders
        generator = torch.Generator().manual_seed(5)
        for key, _, encoder in encoders:
            width = getattr(pipe, encoder).get_input_embeddings().weight.shape[1]
            name = "token_embedding" if len(encoders) == 1 else f"token_embedding.{key}"
            tensors[name] = torch.randn(1, width, generator=generator)
    save_file(tensors, str(folder / ADAPTER_FILE))
    write_meta(folder / "meta.json", {"method": "cd", "format": "cd", "token": "<cd1>" if token else None})
    return str(folder)


def state(pipe, family: str) -> dict[str, torch.Tensor]:
    out = {}
    for component in (FAMILIES[family].denoiser, *FAMILIES[family].text_encoders):
        out |= {f"{component}.{k}": v.clone() for k, v in getattr(pipe, component).state_dict().items()}
    return out


def flags(pipe, family: str) -> dict[str, bool]:
    """Each parameter's requires_grad and each peft layer's disabled flag."""
    out = {}
    for component in (FAMILIES[family].denoiser, *FAMILIES[family].text_encoders):
        for name, module in getattr(pipe, component).named_modules():
            if hasattr(module, "disable_adapters") and not callable(module.disable_adapters):
                out[f"{component}.{name}:disabled"] = module.disable_adapters
        out |= {f"{component}.{k}": p.requires_grad for k, p in getattr(pipe, component).named_parameters()}
    return out


def test_group_ranges_cut_a_stack_into_contiguous_groups_larger_first():
    assert [len(r) for r in group_ranges(24, 4)] == [6, 6, 6, 6]  # SD3.5 Medium
    assert [len(r) for r in group_ranges(19, 4)] == [5, 5, 5, 4]  # Flux double-stream
    assert [len(r) for r in group_ranges(38, 4)] == [10, 10, 9, 9]  # Flux single-stream
    assert group_ranges(2, 4) == [range(0, 1), range(1, 2)]
    assert group_ranges(7, 3) == [range(0, 3), range(3, 5), range(5, 7)]
    with pytest.raises(ValueError):
        group_ranges(5, 0)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_every_module_lies_in_exactly_one_block(bases, family):
    pipe = load_pipeline(bases[family], CPU, torch.float32)
    blocks = block_partition(pipe)
    fam = FAMILIES[family]
    denoiser = getattr(pipe, fam.denoiser)
    expected = {
        "sd1": ["down_blocks.0", "down_blocks.1", "mid_block", "up_blocks.0", "up_blocks.1"],
        "sdxl": ["down_blocks.0", "down_blocks.1", "mid_block", "up_blocks.0", "up_blocks.1"],
        "sd3": ["transformer_blocks.0", "transformer_blocks.1"],
        "flux": ["transformer_blocks.0", "single_transformer_blocks.0"],
    }[family]
    assert [b.name for b in blocks] == [*expected, OTHER, *fam.text_encoders]
    for name, _ in denoiser.named_modules():
        if not name:
            continue
        holders = [b.name for b in blocks if b.component == fam.denoiser and b.holds(name)]
        assert len(holders) <= 1, (name, holders)
        assert block_of(blocks, fam.denoiser, name).name == (holders[0] if holders else OTHER)
    assert block_of(blocks, fam.denoiser, "conv_in" if family in ("sd1", "sdxl") else "proj_out").name == OTHER
    assert block_of(blocks, fam.text_encoders[-1], "encoder.layers.0").name == fam.text_encoders[-1]
    assert block_of(blocks, "vae", "decoder") is None
    lookalike = "down_blocks.10" if family in ("sd1", "sdxl") else "transformer_blocks.00"
    assert not blocks[0].holds(lookalike)


def test_transformer_stacks_are_grouped():
    class Stub:  # a transformer of 7 double-stream and 5 single-stream blocks, seen by the partition
        def __init__(self):
            self.transformer = type("T", (), {"transformer_blocks": [0] * 7, "single_transformer_blocks": [0] * 5})()
            self.text_encoder = self.text_encoder_2 = object()

    Stub.__name__ = "FluxPipeline"
    names = [b.name for b in block_partition(Stub(), groups=3)]
    assert names == [
        "transformer_blocks.0-2",
        "transformer_blocks.3-4",
        "transformer_blocks.5-6",
        "single_transformer_blocks.0-1",
        "single_transformer_blocks.2-3",
        "single_transformer_blocks.4",
        OTHER,
        "text_encoder",
        "text_encoder_2",
    ]
    blocks = block_partition(Stub(), groups=3)
    assert block_of(blocks, "transformer", "transformer_blocks.4.attn.to_q").name == "transformer_blocks.3-4"


@pytest.mark.parametrize("kind", ["lora", "cd"])
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_every_block_off_is_the_base_model_and_none_off_the_adapters(bases, family, kind, tmp_path):
    base = bases[family]
    folder = (lora_adapter if kind == "lora" else kv_adapter)(base, family, tmp_path)
    base_images = pngs(load_model(base, None, CPU, torch.float32))
    adapter_images = pngs(load_model(base, folder, CPU, torch.float32))
    assert base_images != adapter_images  # the adapter does something, so the comparisons below can fail
    pipe, switch = open_switchable(base, folder, "cpu", "float32", 1)
    before, before_flags = state(pipe, family), flags(pipe, family)
    adapted = [name for name, modules in switch.modules.items() if modules]
    if kind == "lora" and family == "sd1":
        assert "text_encoder" in adapted  # the text encoder's LoRA is a block of its own
    assert pngs(pipe) == adapter_images
    with switch.off(switch.names):
        assert pngs(pipe) == base_images
    with switch.off([]):
        assert pngs(pipe) == adapter_images
    with switch.off(adapted[:1]):
        assert pngs(pipe) != adapter_images
    after = state(pipe, family)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert flags(pipe, family) == before_flags
    assert pngs(pipe) == adapter_images


def test_switching_back_survives_an_exception(bases, tmp_path):
    pipe, switch = open_switchable(bases["sd1"], kv_adapter(bases["sd1"], "sd1", tmp_path), "cpu", "float32", 1)
    before = state(pipe, "sd1")
    with pytest.raises(RuntimeError, match="inside"), switch.off(switch.names):
        assert not all(torch.equal(before[k], v) for k, v in state(pipe, "sd1").items())
        raise RuntimeError("inside")
    assert all(torch.equal(before[k], v) for k, v in state(pipe, "sd1").items())
    with pytest.raises(KeyError, match="unknown blocks"), switch.off(["up_blocks.9"]):
        pass


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_a_planted_one_block_perturbation_is_attributed_to_that_block_alone(bases, measures, family, tmp_path):
    target = PLANTED[family]
    folder = kv_adapter(bases[family], family, tmp_path, only=target, token=False)
    pipe, switch = open_switchable(bases[family], folder, "cpu", "float32", 1)
    assert [name for name, modules in switch.modules.items() if modules] == [target]
    scorer, lpips = measures
    rows = attribution_frame(pipe, switch, PROMPTS, SEEDS, SETTINGS, scorer, lpips, "x/perturb", isolated=True)
    assert len(rows) == len(configurations(switch.names, True)) * len(JOBS)
    base = rows[rows["config"] == "base"]
    assert (base["d_sem"] == 0).all() and (base["lpips"] == 0).all()
    table = model_attribution(rows, n_boot=200)
    assert list(table["block"]) == switch.names
    planted = table[table["block"] == target].iloc[0]
    assert planted["e_full_per"] > 0 and planted["e_full_sem"] > 0
    for q in ("sem", "per"):
        assert planted[f"contribution_{q}"] == planted[f"e_full_{q}"] and planted[f"share_{q}"] == 1.0
        assert planted[f"e_only_{q}"] == planted[f"e_full_{q}"]  # the block alone is the whole adapter
        others = table[table["block"] != target]
        assert (others[f"contribution_{q}"] == 0).all() and (others[f"share_{q}"] == 0).all()
        assert (others[f"contribution_ci_low_{q}"] == 0).all() and (others[f"contribution_ci_high_{q}"] == 0).all()
        assert (others[f"e_only_{q}"] == 0).all()
    assert (table.loc[table["block"] != target, "note"] == NO_MODULES).all()
    off = rows[rows["config"] == "off"]  # switching a block without adapter weights draws the adapter's images
    full = rows[rows["config"] == "full"].set_index(["prompt_id", "seed"])["png_sha256"]
    for block, group in off.groupby("block"):
        same = (group.set_index(["prompt_id", "seed"])["png_sha256"] == full).all()
        assert same == (block != target), block


def rows_for(values: dict[tuple[str, str], list[list[float]]], lpips_scale: float = 2.0) -> pd.DataFrame:
    """Per-seed rows of one model from {(config, block): d_sem [[p1 k0, p1 k1], [p2 k0, p2 k1]]}."""
    out = []
    for (config, block), grid in values.items():
        for p, prompt in enumerate(["p1", "p2"]):
            for k, seed in enumerate([0, 1]):
                out.append(
                    {
                        "model": "m/lora",
                        "config": config,
                        "block": block,
                        "adapted_modules": 3 if block else 6,
                        "prompt_id": prompt,
                        "seed": seed,
                        "clip_cos": 0.0,
                        "d_sem": grid[p][k],
                        "lpips": lpips_scale * grid[p][k],
                        "png_sha256": "",
                    }
                )
    return pd.DataFrame(out)


def test_contribution_and_share_arithmetic_by_hand():
    rows = rows_for(
        {
            ("base", ""): [[0, 0], [0, 0]],
            ("full", ""): [[0.4, 0.2], [0.1, 0.3]],  # E(full) = 1.0 / 4 = 0.25
            ("off", "a"): [[0.1, 0.1], [0.1, 0.1]],  # E = 0.1: contribution 0.15, share 0.6
            ("off", "b"): [[0.4, 0.2], [0.0, 0.2]],  # E = 0.2: contribution 0.05, share 0.2
            ("only", "a"): [[0.2, 0.2], [0.2, 0.2]],
            ("only", "b"): [[0.0, 0.0], [0.0, 0.4]],
        }
    )
    table = model_attribution(rows, n_boot=0).set_index("block")
    assert list(table.index) == ["a", "b"]
    assert table.loc["a", "e_full_sem"] == pytest.approx(0.25, abs=1e-15)
    assert table.loc["a", "contribution_sem"] == pytest.approx(0.15, abs=1e-15)
    assert table.loc["a", "share_sem"] == pytest.approx(0.6, abs=1e-12)
    assert table.loc["b", "contribution_sem"] == pytest.approx(0.05, abs=1e-15)
    assert table.loc["b", "share_sem"] == pytest.approx(0.2, abs=1e-12)
    assert table.loc["a", "e_only_sem"] == pytest.approx(0.2) and table.loc["b", "e_only_sem"] == pytest.approx(0.1)
    assert table.loc["a", "contribution_per"] == pytest.approx(0.3, abs=1e-15)  # LPIPS = 2 d_sem here
    assert table.loc["b", "share_per"] == pytest.approx(0.2, abs=1e-12)
    assert np.isnan(table.loc["a", "contribution_ci_low_sem"])  # no bootstrap asked
    assert (table["n_prompts"] == 2).all() and (table["n_seeds"] == 2).all() and (table["adapted_modules"] == 3).all()
    boot = model_attribution(rows, n_boot=500).set_index("block")
    for block in ("a", "b"):
        assert boot.loc[block, "contribution_ci_low_sem"] <= boot.loc[block, "contribution_sem"]
        assert boot.loc[block, "contribution_sem"] <= boot.loc[block, "contribution_ci_high_sem"]
    # every replicate of block b's contribution is a mean of per-(p, k) differences in {0, 0, 0.1, 0.1}
    assert boot.loc["b", "contribution_ci_low_sem"] >= 0
    assert boot.loc["b", "contribution_ci_high_sem"] <= 0.1 + 1e-12


def test_the_figure_and_the_reports_words(tmp_path):
    rows = rows_for(
        {
            ("base", ""): [[0, 0], [0, 0]],
            ("full", ""): [[0.4, 0.2], [0.1, 0.3]],
            ("off", "a"): [[0.1, 0.1], [0.1, 0.1]],
            ("off", "b"): [[0.4, 0.2], [0.0, 0.2]],
        }
    )
    path = tmp_path / "block_attribution.csv"
    attribution_table(rows, {"face1/ti": NO_BLOCKS["ti"]}, n_boot=50).to_csv(path, index=False)
    block_attribution_figure(path, tmp_path / "block_attribution")
    image = np.asarray(Image.open(tmp_path / "block_attribution.png").convert("L"), dtype=float)
    assert image.std() > 10 and (tmp_path / "block_attribution.pdf").read_bytes()[:5] == b"%PDF-"
    lines = blocks_in_words([str(path)], {"enabled": True, "prompts": 2, "rank_by": "e_per"})
    assert "on its 2 most disrupted prompts (e_per) and 2 seeds" in lines[0]
    assert "on the 2 configured prompts" in blocks_in_words([str(path)], {"prompts": ["p1", "p2"]})[0]
    assert lines[1] == (
        "m/lora: E_sem 0.25, most in a (60%; shares sum to 0.80), E_per 0.5, most in a (60%; shares sum to 0.80)."
    )
    assert lines[2] == f"Not measured (face1/ti): {NO_BLOCKS['ti']}."


def test_no_disruption_gives_no_shares_and_says_so():
    zero = [[0.0, 0.0], [0.0, 0.0]]
    table = model_attribution(rows_for({("base", ""): zero, ("full", ""): zero, ("off", "a"): zero}), n_boot=10)
    assert table.loc[0, "contribution_sem"] == 0 and np.isnan(table.loc[0, "share_sem"])
    assert NO_DISRUPTION in table.loc[0, "note"]


def test_textual_inversion_has_no_blocks_and_the_table_says_why(bases, tmp_path):
    save_file({"<v>": torch.randn(1, 32, generator=torch.Generator().manual_seed(0))}, str(tmp_path / ADAPTER_FILE))
    write_meta(tmp_path / "meta.json", {"method": "ti", "format": "ti", "token": "<v>"})
    with pytest.raises(NoBlocksError, match="Textual Inversion"):
        open_switchable(bases["sd1"], tmp_path, "cpu", "float32", 1)
    rows = rows_for({("base", ""): [[0, 0], [0, 0]], ("full", ""): [[1, 1], [1, 1]], ("off", "a"): [[0, 0], [0, 0]]})
    table = attribution_table(rows, {"face1/ti": NO_BLOCKS["ti"]}, n_boot=0)
    ti = table[table["model"] == "face1/ti"].iloc[0]
    assert ti["block"] == "" and ti["note"] == NO_BLOCKS["ti"] and ti["method"] == "ti"
    assert np.isnan(ti["share_sem"]) and np.isnan(ti["e_full_per"])
    assert list(table["model"]) == ["m/lora", "face1/ti"] and table.loc[0, "method"] == "lora"


def test_the_plan_measures_every_model_but_textual_inversion_and_checkpoints(tiny_config):
    config = copy.deepcopy(tiny_config)
    config["external"]["old_ti"] = {"kind": "ti", "path": "results/x.safetensors", "category": "face"}
    config["external"]["merged"] = {"kind": "checkpoint", "path": "results/merged", "category": "face"}
    models = ("face1/ti", "face1/lora", "face1/lora+sage", "bands1/cd", "someone_lora/external")
    models += ("old_ti/external", "merged/external", "kv0/perturb")
    measured, skipped = block_attribution_models(config, models)
    assert measured == ["face1/lora", "face1/lora+sage", "bands1/cd", "someone_lora/external", "kv0/perturb"]
    assert skipped == {
        "face1/ti": NO_BLOCKS["ti"],
        "old_ti/external": NO_BLOCKS["ti"],
        "merged/external": NO_BLOCKS["checkpoint"],
    }
    settings = block_attribution_settings(config)
    assert settings["seeds"] == [0, 1] and settings["prompts"] == 3 and settings["isolated"] is True
    config["block_attribution"]["enabled"] = False
    assert block_attribution_models(config, models) == ([], {}) and block_attribution_settings(config) == {}


def test_the_config_block_is_checked(tiny_config, monkeypatch):
    monkeypatch.chdir(REPO)
    schema = REPO / "schemas" / "config.schema.yaml"
    config = copy.deepcopy(tiny_config)
    config["block_attribution"].update(prompts=["p000", "no-such-prompt"])
    with pytest.raises(ConfigError, match=r"block_attribution.prompts: \['no-such-prompt'\]"):
        load_plan(config, schema)
    config["block_attribution"]["prompts"] = 0
    with pytest.raises(ConfigError, match="block_attribution.prompts"):
        load_plan(config, schema)
    config["block_attribution"] = {"enabled": True, "rank_by": "e_struct"}
    with pytest.raises(ConfigError, match="block_attribution.rank_by"):
        load_plan(config, schema)
    config["block_attribution"] = {"enabled": True}  # every other key has a default
    load_plan(config, schema)
    assert block_attribution_settings(config)["transformer_groups"] == 4


def test_most_disrupted_prompts_rank_by_the_map_quantity_ties_to_the_smaller_id():
    disruption = pd.DataFrame(
        {
            "prompt_id": ["b", "b", "a", "a", "c", "c"],
            "d_sem": [0.25, 0.25, 0.5, 0.0, 0.125, 0.0],  # means: b 0.25, a 0.25 (exactly), c 0.0625
            "lpips": [0.0, 0.0, 0.1, 0.1, 0.9, 0.9],
        }
    )
    assert most_disrupted(disruption, 2) == ["a", "b"]
    assert most_disrupted(disruption, 5, "e_per") == ["c", "a", "b"]
    with pytest.raises(ValueError, match="rank_by"):
        most_disrupted(disruption, 1, "e_struct")
