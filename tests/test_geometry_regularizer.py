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
from entmap.geometry.features import cross_attention_features
from entmap.geometry.measures import geometry_change
from entmap.inputs.references import draw_synthetic
from entmap.models.loading import load_pipeline
from entmap.personalize.custom_diffusion import train_custom_diffusion
from entmap.personalize.geometry_regularizer import GeometryRegularizer
from entmap.personalize.lora import add_lora_adapters
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


def trained_cd(tiny_dir, regularizer: dict | None):
    pipe = load_pipeline(str(tiny_dir / "tiny-sd"), CPU, torch.float32)
    images = [draw_synthetic("object", i, size=64) for i in range(2)]
    settings = dict(SETTINGS, geometry_regularizer=regularizer) if regularizer else dict(SETTINGS)
    train_custom_diffusion(pipe, images, None, "<new1>", "teapot", settings, CPU)
    return pipe


def kv_change(tiny_dir, pipe) -> tuple[float, float]:
    """(mean distortion, mean |1 - spread ratio|) of the anchors' keys and values against the base."""
    base = cross_attention_features(load_pipeline(str(tiny_dir / "tiny-sd"), CPU, torch.float32), ANCHORS)
    model = cross_attention_features(pipe, ANCHORS)
    changes = [geometry_change(model[name], base[name], k=3) for name in base]
    return (
        sum(c.distortion for c in changes) / len(changes),
        sum(abs(1 - c.spread_ratio) for c in changes) / len(changes),
    )


def test_lambda_zero_trains_byte_identically_to_no_regularizer(tiny_dir, anchor_suite):
    plain = trained_cd(tiny_dir, None)
    zero = trained_cd(tiny_dir, {"anchor_suite": anchor_suite, "lambda_spread": 0.0, "lambda_structure": 0.0})
    for (name, a), (_, b) in zip(plain.unet.state_dict().items(), zero.unet.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert torch.equal(
        plain.text_encoder.get_input_embeddings().weight, zero.text_encoder.get_input_embeddings().weight
    )


def test_the_regularizer_keeps_the_anchor_geometry_closer_to_the_base(tiny_dir, anchor_suite):
    spec = {"anchor_suite": anchor_suite, "neighbours": 3}
    free = kv_change(tiny_dir, trained_cd(tiny_dir, dict(spec, lambda_spread=0.0, lambda_structure=0.0)))
    kept = kv_change(tiny_dir, trained_cd(tiny_dir, dict(spec, lambda_spread=2.0, lambda_structure=2.0)))
    assert free[0] > 0  # unregularized training does move the anchors' neighbourhoods
    assert kept[0] < free[0]


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
