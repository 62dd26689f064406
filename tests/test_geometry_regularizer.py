"""SAGE's geometry regularizer in training: off at lambda = 0 to the byte, preserving the anchors'
geometry when on, refusing what it cannot regularize, and refused when its anchors are evaluated."""

from __future__ import annotations

import copy

import pytest
import torch
import yaml
from conftest import REPO
from test_geometry import PROMPTS

from entmap.config.plan import load_plan
from entmap.config.validation import ConfigError
from entmap.geometry.features import kv_features
from entmap.geometry.measures import geometry_change
from entmap.inputs.references import draw_synthetic
from entmap.models.adapter_formats import text_kv_parameters
from entmap.models.embeddings import clip_encoders
from entmap.models.families import family_of_pipeline
from entmap.models.loading import load_pipeline
from entmap.personalize.custom_diffusion import train_custom_diffusion
from entmap.personalize.geometry_regularizer import GeometryRegularizer
from entmap.personalize.lora import add_lora_adapters, train_lora
from entmap.personalize.training_loop import freeze

CPU = torch.device("cpu")
SETTINGS = {"steps": 4, "learning_rate": 5e-2, "batch_size": 2, "resolution": 64, "seed": 0}
ANCHORS = [*PROMPTS, "a city street in the rain", "a mountain lake at sunrise"]


@pytest.fixture(scope="module")
def anchor_suite(tmp_path_factory):
    path = tmp_path_factory.mktemp("anchors") / "anchors.tsv"
    rows = ["id\tcategory\ttext", *(f"a{i}\tanchors\t{text}" for i, text in enumerate(ANCHORS))]
    path.write_text("\n".join(rows) + "\n")
    return str(path)


@pytest.fixture(params=["sd1", "sd3", "flux"])
def base_folder(request) -> str:
    """The tiny base of each family whose Custom Diffusion trains where text meets image."""
    if request.param == "sd1":
        return str(request.getfixturevalue("tiny_dir") / "tiny-sd")
    return str(request.getfixturevalue("tiny_family_dir") / request.param)


def trained_cd(folder: str, regularizer: dict | None):
    pipe = load_pipeline(folder, CPU, torch.float32)
    images = [draw_synthetic("object", i, size=64) for i in range(2)]
    settings = dict(SETTINGS, geometry_regularizer=regularizer) if regularizer else dict(SETTINGS)
    train_custom_diffusion(pipe, images, None, "<new1>", "teapot", settings, CPU)
    return pipe


def trained_lora(folder: str, regularizer: dict):
    """DreamBooth-LoRA with the family's default targets (the denoiser's to_q/k/v/out), 4 steps."""
    pipe = load_pipeline(folder, CPU, torch.float32)
    images = [draw_synthetic("object", i, size=64) for i in range(2)]
    train_lora(pipe, images, None, "sks", "teapot", dict(SETTINGS, geometry_regularizer=regularizer), CPU)
    return pipe


def kv_change(folder: str, pipe) -> tuple[float, float]:
    """(mean distortion, mean |1 - spread ratio|) of the anchors' keys and values against the base."""
    base = kv_features(load_pipeline(folder, CPU, torch.float32), ANCHORS)
    model = kv_features(pipe, ANCHORS)
    changes = [geometry_change(model[name], base[name], k=3) for name in base]
    return (
        sum(c.distortion for c in changes) / len(changes),
        sum(abs(1 - c.spread_ratio) for c in changes) / len(changes),
    )


def test_lambda_zero_trains_byte_identically_to_no_regularizer(base_folder, anchor_suite):
    plain = trained_cd(base_folder, None)
    zero = trained_cd(base_folder, {"anchor_suite": anchor_suite, "lambda_spread": 0.0, "lambda_structure": 0.0})
    denoiser = family_of_pipeline(plain).denoiser
    plain_state, zero_state = getattr(plain, denoiser).state_dict(), getattr(zero, denoiser).state_dict()
    for (name, a), (_, b) in zip(plain_state.items(), zero_state.items(), strict=True):
        assert torch.equal(a, b), name
    for (_, _, a), (_, _, b) in zip(clip_encoders(plain), clip_encoders(zero), strict=True):
        assert torch.equal(a.get_input_embeddings().weight, b.get_input_embeddings().weight)


def test_the_regularizer_keeps_the_anchor_geometry_closer_to_the_base(base_folder, anchor_suite):
    spec = {"anchor_suite": anchor_suite, "neighbours": 3}
    free = kv_change(base_folder, trained_cd(base_folder, dict(spec, lambda_spread=0.0, lambda_structure=0.0)))
    kept = kv_change(base_folder, trained_cd(base_folder, dict(spec, lambda_spread=2.0, lambda_structure=2.0)))
    assert free[0] > 0  # unregularized training does move the anchors' neighbourhoods
    assert kept[0] < free[0]


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_the_regularizer_keeps_the_joint_kv_geometry_closer_under_lora(tiny_family_dir, anchor_suite, family):
    """LoRA leaves add_k_proj/add_v_proj alone; it moves the joint keys and values through the image
    stream (SD3, Flux's double-stream blocks) and the shared single-stream projections (Flux)."""
    folder, spec = str(tiny_family_dir / family), {"anchor_suite": anchor_suite, "neighbours": 3}
    free = kv_change(folder, trained_lora(folder, dict(spec, lambda_spread=0.0, lambda_structure=0.0)))
    kept = kv_change(folder, trained_lora(folder, dict(spec, lambda_spread=2.0, lambda_structure=2.0)))
    assert free[0] > 0 and kept[0] < free[0] and kept[1] < free[1]


def test_the_base_features_are_taken_without_gradients_and_the_step_features_with(base_folder, anchor_suite):
    pipe = load_pipeline(base_folder, CPU, torch.float32)
    freeze(pipe)
    _, kv = text_kv_parameters(pipe)
    for param in kv.values():
        param.requires_grad_(True)
    grad_enabled: list[bool] = []  # whether autograd was on in each forward pass of the (first) text encoder
    handle = pipe.text_encoder.register_forward_hook(lambda *_: grad_enabled.append(torch.is_grad_enabled()))
    try:
        regularizer = GeometryRegularizer.build(pipe, {"geometry_regularizer": {"anchor_suite": anchor_suite}})
        built = list(grad_enabled)
        penalty = regularizer.penalty()
    finally:
        handle.remove()
    assert built and not any(built)  # the frozen base's features: no graph
    assert grad_enabled[len(built) :] == [True] * (len(grad_enabled) - len(built))  # each step's: with one
    assert not regularizer.text_level and regularizer.kv_level
    assert all(v.dtype == torch.float32 and not v.requires_grad for v in regularizer.base.values())
    assert penalty.item() == pytest.approx(0.0, abs=1e-6)  # nothing trained yet: the base itself
    penalty.backward()
    assert all(p.grad is not None for p in kv.values())  # differentiable in the k/v weights


def test_a_method_that_moves_no_prompt_geometry_is_refused(tiny_dir, anchor_suite):
    pipe = load_pipeline(str(tiny_dir / "tiny-sd"), CPU, torch.float32)
    freeze(pipe)
    add_lora_adapters(pipe, {"rank": 2, "target_modules": ["to_q"], "seed": 0})  # no k/v, no text encoder
    with pytest.raises(ValueError, match="trains neither a text encoder nor a cross-attention key/value"):
        GeometryRegularizer.build(pipe, {"geometry_regularizer": {"anchor_suite": anchor_suite}})


def test_anchors_that_are_evaluated_are_refused(monkeypatch):
    monkeypatch.chdir(REPO)
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    subject = next(iter(config["subjects"]))
    method = config["subjects"][subject]["methods"][0]
    config["subjects"][subject].setdefault("train", {})[method] = {
        "geometry_regularizer": {"anchor_suite": config["prompts"]["suite"]}
    }
    with pytest.raises(
        ConfigError, match=rf"subjects.{subject}: {method}.geometry_regularizer.anchor_suite: \d+ anchor"
    ):
        load_plan(copy.deepcopy(config), REPO / "schemas/config.schema.yaml")
