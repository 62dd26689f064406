"""Prompt geometry at SD3's and Flux's joint attention: the text tokens' keys and values taken at the
reference latent and timestep repeat bit for bit and leave the model as it was, equal the block's
projection of its modulated context computed by hand, stay exactly as the base has them under a
Textual Inversion (for prompts without its token), move under Custom Diffusion, and reach the
``geometry`` stage's rows."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from test_geometry import PROMPTS

from entmap.geometry.features import kv_features, text_encoder_features
from entmap.geometry.joint_attention import REFERENCE_SIGMA, joint_kv_modules, reference_inputs
from entmap.geometry.measures import geometry_change, local_structure_correlation, normalized_rows
from entmap.geometry.stage import _cached_base_features, model_geometry, model_stamp
from entmap.models.families import FAMILIES
from entmap.models.loading import load_model, load_pipeline

CPU = torch.device("cpu")
JOINT = ["sd3", "flux"]
#: (text tokens L, projection width d) of the tiny models: SD3 77 CLIP + 256 T5 tokens, Flux 512 T5 tokens
SHAPES = {"sd3": (333, 32), "flux": (512, 32)}
RUNTIME = {"device": "cpu", "dtype": "float32", "threads": 1}


def load(tiny_family_dir, family: str):
    return load_pipeline(str(tiny_family_dir / family), CPU, torch.float32)


def denoiser_output(pipe) -> torch.Tensor:
    """The transformer's prediction at the reference input: what a normal forward pass gives."""
    with torch.no_grad():
        return pipe.transformer(**reference_inputs(pipe, PROMPTS), return_dict=False)[0]


def encoded(pipe, family: str, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(prompt embeddings, pooled vector) as the pipeline encodes them."""
    with torch.no_grad():
        if family == "sd3":
            embeds, _, pooled, _ = pipe.encode_prompt(
                prompts, prompts, prompts, device=CPU, do_classifier_free_guidance=False
            )
        else:
            embeds, pooled, _ = pipe.encode_prompt(prompts, prompts, device=CPU)
    return embeds, pooled


def block0_kv_by_hand(pipe, family: str, prompts: list[str]) -> dict[str, torch.Tensor]:
    """Block 0's text keys and values written out: W LN(c)(1 + scale) + shift) + b, with c the
    context embedder's output and (shift, scale) the first two of the six adaLN chunks of
    Linear(SiLU(temb)), temb the time-text embedding at the reference noise level."""
    transformer = pipe.transformer
    embeds, pooled = encoded(pipe, family, prompts)
    timestep = torch.full((len(prompts),), REFERENCE_SIGMA * 1000)  # both take it on the 0..1000 scale here
    block = transformer.transformer_blocks[0]
    with torch.no_grad():
        context = transformer.context_embedder(embeds)
        temb = transformer.time_text_embed(timestep, pooled)
        shift, scale = block.norm1_context.linear(F.silu(temb)).chunk(6, dim=1)[:2]
        modulated = F.layer_norm(context, (context.shape[-1],), eps=1e-6) * (1 + scale[:, None]) + shift[:, None]
        return {
            name: F.linear(modulated, projection.weight, projection.bias)
            for name, projection in (("add_k_proj", block.attn.add_k_proj), ("add_v_proj", block.attn.add_v_proj))
        }


@pytest.mark.parametrize("family", JOINT)
def test_joint_features_repeat_bit_for_bit_and_leave_the_model_as_it_was(tiny_family_dir, family):
    pipe = load(tiny_family_dir, family)
    state = {k: v.clone() for k, v in pipe.transformer.state_dict().items()}
    before = denoiser_output(pipe)
    first, again = kv_features(pipe, PROMPTS), kv_features(pipe, PROMPTS)
    assert list(first) == list(joint_kv_modules(pipe)) == list(again)
    assert len(first) == 4 and all(".add_k_proj" in n or ".add_v_proj" in n or "single_" in n for n in first)
    for name, value in first.items():
        assert value.shape == (len(PROMPTS), *SHAPES[family]) and value.dtype == torch.float64, name
        assert torch.equal(value, again[name]), name
    assert not any(module._forward_hooks for module in pipe.transformer.modules())  # every hook removed
    assert torch.equal(denoiser_output(pipe), before)  # a normal forward pass is as it was
    assert all(torch.equal(v, state[k]) for k, v in pipe.transformer.state_dict().items())


@pytest.mark.parametrize("family", JOINT)
def test_a_model_against_itself_has_spread_ratio_one_and_no_distortion(tiny_family_dir, family):
    base, same = (
        kv_features(load(tiny_family_dir, family), PROMPTS),
        kv_features(load(tiny_family_dir, family), PROMPTS),
    )
    for name, value in base.items():
        change = geometry_change(same[name], value)
        assert change.spread_ratio == 1.0 and change.distortion == 0.0, name
        z = normalized_rows(value)
        assert local_structure_correlation(z, z.clone(), 3).item() == pytest.approx(1.0, abs=1e-12)  # computed


@pytest.mark.parametrize("family", JOINT)
def test_block_0_keys_and_values_are_its_text_projections_of_the_modulated_context(tiny_family_dir, family):
    pipe = load(tiny_family_dir, family)
    captured = kv_features(pipe, PROMPTS)
    by_hand = block0_kv_by_hand(pipe, family, PROMPTS)
    for projection, expected in by_hand.items():
        got = captured[f"transformer_blocks.0.attn.{projection}"]
        assert torch.equal(got, expected.double()), (got - expected.double()).abs().max()
        assert got.abs().max() > 0.1  # not a trivially small comparison


def save_textual_inversion_file(family: str, out_dir) -> None:
    """An adapter folder with a random Textual Inversion token ``<v>`` in every CLIP encoder of the family."""
    generator = torch.Generator().manual_seed(4)
    keys = [key for key, _, _ in FAMILIES[family].clip_encoders]
    tensors = {key: torch.randn(1, 32, generator=generator) for key in keys}
    out_dir.mkdir(parents=True)
    save_file(tensors if len(keys) > 1 else {"<v>": tensors[keys[0]]}, str(out_dir / "adapter.safetensors"))
    (out_dir / "meta.json").write_text(json.dumps({"method": "ti", "token": "<v>"}))


def save_trained_custom_diffusion(folder: str, out_dir) -> None:
    """An adapter folder of Custom Diffusion trained for 2 steps (add_k_proj/add_v_proj and token ``<new1>``)."""
    from test_families import TRAIN, reference_images

    from entmap.personalize.custom_diffusion import save_custom_diffusion, train_custom_diffusion

    pipe = load_pipeline(folder, CPU, torch.float32)
    result = train_custom_diffusion(pipe, reference_images(), None, "<new1>", "painting", dict(TRAIN, steps=2), CPU)
    out_dir.mkdir(parents=True)
    save_custom_diffusion(pipe, result.token_ids, out_dir / "adapter.safetensors")
    (out_dir / "meta.json").write_text(json.dumps({"method": "cd", "token": "<new1>"}))


@pytest.fixture(scope="module")
def adapters(tiny_family_dir, tmp_path_factory):
    """family -> its folder with ``ti/`` and ``cd/`` adapter folders, made once per family."""
    made = {}

    def of(family: str):
        if family not in made:
            root = tmp_path_factory.mktemp(f"adapters-{family}")
            save_textual_inversion_file(family, root / "ti")
            save_trained_custom_diffusion(str(tiny_family_dir / family), root / "cd")
            made[family] = root
        return made[family]

    return of


def personalized(tiny_family_dir, adapters, family: str, method: str):
    return load_model(str(tiny_family_dir / family), adapters(family) / method, CPU, torch.float32)


@pytest.mark.parametrize("family", JOINT)
def test_textual_inversion_leaves_joint_kv_of_prompts_without_its_token_exactly(tiny_family_dir, adapters, family):
    base, model = load(tiny_family_dir, family), personalized(tiny_family_dir, adapters, family, "ti")
    before, after = kv_features(base, PROMPTS), kv_features(model, PROMPTS)
    for name in before:  # same token ids, hence same pooled vector, modulation and image: every block
        assert torch.equal(before[name], after[name]), name
    with_token = [f"{p} with <v>" for p in PROMPTS]
    embeds_base, pooled_base = encoded(base, family, with_token)
    embeds_model, pooled_model = encoded(model, family, with_token)
    t5 = slice(77, None) if family == "sd3" else slice(None)  # the T5 tokens of the text sequence
    assert torch.equal(embeds_base[:, t5], embeds_model[:, t5]) and not torch.equal(pooled_base, pooled_model)
    kv_base, kv_model = kv_features(base, with_token), kv_features(model, with_token)
    block0 = "transformer_blocks.0.attn.add_k_proj"
    # the token moves the T5 tokens' keys, which T5 left alone, through the pooled vector's adaLN modulation
    assert (kv_base[block0][:, t5] - kv_model[block0][:, t5]).abs().amax(dim=-1).gt(0).all()


@pytest.mark.parametrize("family", JOINT)
def test_custom_diffusion_moves_the_joint_kv_geometry_and_not_the_text_encoders(tiny_family_dir, adapters, family):
    base, model = load(tiny_family_dir, family), personalized(tiny_family_dir, adapters, family, "cd")
    kv_base, kv_model = kv_features(base, PROMPTS), kv_features(model, PROMPTS)
    changes = {name: geometry_change(kv_model[name], kv_base[name]) for name in kv_base}
    assert all(c.distortion > 1e-6 and abs(c.spread_ratio - 1) > 1e-6 for c in changes.values()), changes
    text_base, text_model = text_encoder_features(base, PROMPTS), text_encoder_features(model, PROMPTS)
    assert all(torch.equal(text_base[name], text_model[name]) for name in text_base)


@pytest.mark.parametrize("family", JOINT)
def test_the_stage_measures_joint_kv_and_loads_the_base_once_per_process(tiny_family_dir, adapters, family):
    folder, root = str(tiny_family_dir / family), adapters(family)
    _cached_base_features.cache_clear()
    ti = model_geometry(folder, root / "ti", "s/ti", PROMPTS, RUNTIME, 3).set_index(["level", "layer"])
    cd = model_geometry(folder, root / "cd", "s/cd", PROMPTS, RUNTIME, 3).set_index(["level", "layer"])
    info = _cached_base_features.cache_info()
    assert (info.misses, info.hits) == (1, 1)
    kv = [name for level, name in ti.index if level == "kv"]
    assert kv == list(joint_kv_modules(load(tiny_family_dir, family)))
    assert (ti.loc["kv", "spread_ratio"] == 1.0).all() and (ti.loc["kv", "distortion"] == 0.0).all()
    assert (cd.loc["kv", "distortion"] > 1e-6).all() and (cd.loc["text", "distortion"] == 0.0).all()


def test_the_model_stamp_changes_when_a_file_of_the_folder_is_rewritten(tmp_path):
    (tmp_path / "unet").mkdir()
    weights = tmp_path / "unet" / "weights.bin"
    weights.write_bytes(b"0" * 8)
    stamp = model_stamp(tmp_path)
    assert stamp == model_stamp(tmp_path) and stamp[0][:2] == ("unet/weights.bin", 8)
    weights.write_bytes(b"1" * 9)
    assert model_stamp(tmp_path) != stamp
    assert model_stamp("org/some-hub-id") == ()  # a hub id: keyed on the id alone
