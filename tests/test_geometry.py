"""Embedding geometry (SAGE): spread and local-structure distortion against direct numpy computations,
the identities they must satisfy, and where each personalization method does and does not move them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from entmap.geometry.features import cross_attention_features, text_encoder_features
from entmap.geometry.measures import geometry_change, geometry_penalty, normalized_rows, spread
from entmap.models.adapter_formats import apply_adapter
from entmap.models.loading import load_pipeline
from entmap.personalize.perturb import save_perturbation

CPU = torch.device("cpu")
PROMPTS = [
    "a red circle on the left",
    "a blue square",
    "a dog in a park",
    "a bowl of fruit on a table",
    "a lighthouse at dusk",
    "a portrait of an old man",
]


def numpy_geometry(model: np.ndarray, base: np.ndarray, k: int) -> tuple[float, float]:
    """(spread ratio, distortion) written out directly from SAGE's definitions."""

    def unit(x):
        x = x.reshape(len(x), -1)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def spread_of(z):
        return float(((z - z.mean(axis=0)) ** 2).sum() / (len(z) - 1))

    zm, zb = unit(model), unit(base)
    sm, sb = zm @ zm.T, zb @ zb.T
    pairs = []
    for i in range(len(zb)):
        order = [j for j in np.argsort(-sb[i], kind="stable") if j != i][:k]
        pairs += [(i, j) for j in order]
    a = np.array([sm[i, j] for i, j in pairs])
    b = np.array([sb[i, j] for i, j in pairs])
    return spread_of(zm) / spread_of(zb), 1.0 - float(np.corrcoef(a, b)[0, 1])


@pytest.mark.parametrize("k", [1, 3, 15])
def test_spread_ratio_and_distortion_equal_a_direct_numpy_computation(k):
    rng = np.random.default_rng(0)
    base = rng.normal(size=(9, 4, 5))
    model = base + rng.normal(scale=0.5, size=base.shape)
    expected_ratio, expected_distortion = numpy_geometry(model, base, k)
    change = geometry_change(torch.from_numpy(model), torch.from_numpy(base), k)
    assert change.spread_ratio == pytest.approx(expected_ratio, rel=1e-12)
    assert change.distortion == pytest.approx(expected_distortion, rel=1e-10, abs=1e-12)
    assert 0 < change.distortion < 2


def test_a_model_against_itself_has_spread_ratio_one_and_no_distortion():
    features = torch.randn(7, 3, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    change = geometry_change(features, features.clone())
    assert change.spread_ratio == 1.0 and change.distortion == 0.0
    nearly = geometry_change(features * (1 + 1e-9), features)  # not bitwise equal: computed, and tiny
    assert abs(nearly.spread_ratio - 1) < 1e-12 and abs(nearly.distortion) < 1e-12


def test_spread_of_unit_rows_is_bounded_and_contracts_when_prompts_collapse():
    rng = np.random.default_rng(2)
    apart = normalized_rows(torch.from_numpy(rng.normal(size=(6, 10))))
    together = normalized_rows(torch.from_numpy(rng.normal(size=(6, 10)) * 0.05 + 1.0))
    assert spread(together) < spread(apart) <= 6 / 5  # sum ||z - mean||^2 <= B for unit rows


def test_the_penalty_is_zero_for_the_base_itself_and_pulls_a_contracted_model_back():
    rng = np.random.default_rng(3)
    base = torch.from_numpy(rng.normal(size=(8, 12)))
    assert geometry_penalty(base.clone(), base, 2.0, 0.1).item() == pytest.approx(0.0, abs=1e-12)
    model = (base * 0.1 + 1.0).requires_grad_(True)  # every prompt pulled towards one point
    loss = geometry_penalty(model, base, 2.0, 0.1)
    assert loss.item() > 0
    loss.backward()
    step = model - 1e-2 * model.grad
    assert geometry_penalty(step.detach(), base, 2.0, 0.1).item() < loss.item()


def test_textual_inversion_leaves_the_text_geometry_of_prompts_without_its_token_exactly(tiny_dir, tmp_path):
    from safetensors.torch import save_file

    folder = str(tiny_dir / "tiny-sd")
    base = load_pipeline(folder, CPU, torch.float32)
    model = load_pipeline(folder, CPU, torch.float32)
    save_file({"<v>": torch.randn(1, 32, generator=torch.Generator().manual_seed(4))}, str(tmp_path / "ti.safetensors"))
    apply_adapter(model, "ti", tmp_path / "ti.safetensors", "<v>")
    before, after = text_encoder_features(base, PROMPTS), text_encoder_features(model, PROMPTS)
    assert before.keys() == after.keys() == {"text_encoder"}
    assert torch.equal(before["text_encoder"], after["text_encoder"])
    change = geometry_change(after["text_encoder"], before["text_encoder"])
    assert change.spread_ratio == 1.0 and change.distortion == pytest.approx(0.0, abs=1e-14)
    with_token = text_encoder_features(model, [f"{p} with <v>" for p in PROMPTS])["text_encoder"]
    without = text_encoder_features(base, [f"{p} with <v>" for p in PROMPTS])["text_encoder"]
    assert not torch.equal(with_token, without)  # the token itself does move them


def test_weights_where_text_meets_image_change_the_key_value_geometry_and_not_the_text_encoders(tiny_dir, tmp_path):
    folder = str(tiny_dir / "tiny-sd")
    base = load_pipeline(folder, CPU, torch.float32)
    save_perturbation(base, 0.5, 0, tmp_path / "kv.safetensors")  # Custom Diffusion's weights, perturbed
    model = load_pipeline(folder, CPU, torch.float32)
    apply_adapter(model, "cd", tmp_path / "kv.safetensors", None)
    kv_base, kv_model = cross_attention_features(base, PROMPTS), cross_attention_features(model, PROMPTS)
    assert kv_base.keys() == kv_model.keys() and any(".attn2.to_k" in name for name in kv_base)
    changes = [geometry_change(kv_model[name], kv_base[name]) for name in kv_base]
    assert all(c.distortion > 1e-6 or abs(c.spread_ratio - 1) > 1e-6 for c in changes)
    text_before, text_after = text_encoder_features(base, PROMPTS), text_encoder_features(model, PROMPTS)
    assert torch.equal(text_before["text_encoder"], text_after["text_encoder"])
