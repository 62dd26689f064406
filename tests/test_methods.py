"""Each method trains what it should and nothing else, and round-trips through its loader."""

import pytest
import torch

from entmap.inputs.references import draw_synthetic
from entmap.models.adapter_formats import apply_adapter, text_kv_parameters
from entmap.models.loading import load_pipeline
from entmap.personalize.custom_diffusion import save_custom_diffusion, train_custom_diffusion
from entmap.personalize.lora import save_lora, train_lora

CPU = torch.device("cpu")
BASE = {"steps": 3, "learning_rate": 1e-2, "batch_size": 2, "resolution": 64, "seed": 0}


def render(pipe, prompt="a photo of sks teapot on a table"):
    latents = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(0))
    return pipe(prompt, num_inference_steps=3, height=64, width=64, latents=latents, output_type="np").images


@pytest.fixture(scope="module")
def images():
    return [draw_synthetic("object", i) for i in range(3)]


@pytest.fixture(scope="module")
def lora_trained(tiny_dir, images):
    pipe = load_pipeline(str(tiny_dir / "tiny-sd"), CPU, torch.float32)
    unet_before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    text_before = {k: v.clone() for k, v in pipe.text_encoder.state_dict().items()}
    class_images = [draw_synthetic("face", i, seed=3) for i in range(3)]
    settings = dict(BASE, rank=4, alpha=8, prior_preservation=True, num_class_images=3)
    result = train_lora(pipe, images, class_images, "sks", "teapot", settings, CPU)
    return pipe, result, unet_before, text_before


def test_lora_trains_only_adapters(lora_trained):
    pipe, result, unet_before, text_before = lora_trained
    state = pipe.unet.state_dict()
    lora_keys = [k for k in state if "lora_" in k]
    base_keys = [k for k in state if "lora_" not in k]
    assert len(lora_keys) == 2 * 4 * len([k for k in unet_before if k.endswith("to_q.weight")])
    assert all(torch.count_nonzero(state[k]) > 0 for k in lora_keys)  # B moved off its zero init
    for key in base_keys:  # peft renames wrapped layers to <name>.base_layer.<param>
        original = key.replace(".base_layer", "")
        assert torch.equal(state[key], unet_before[original]), key
    for key, value in pipe.text_encoder.state_dict().items():
        assert torch.equal(value, text_before[key]), key
    assert result.instance_prompt == "a photo of sks teapot"
    assert len(result.log.rows) == 3


def test_lora_training_repeats(tiny_dir, images):
    runs = []
    for _ in range(2):
        pipe = load_pipeline(str(tiny_dir / "tiny-sd"), CPU, torch.float32)
        torch.manual_seed(len(runs))  # the global RNG must not matter
        train_lora(pipe, images, None, "sks", "teapot", dict(BASE, steps=1), CPU)
        runs.append({k: v for k, v in pipe.unet.state_dict().items() if "lora_" in k})
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_lora_round_trip_with_alpha(lora_trained, tiny_dir, tmp_path):
    pipe, _, _, _ = lora_trained
    path = tmp_path / "adapter.safetensors"
    save_lora(pipe, path)
    fresh = load_pipeline(str(tiny_dir / "tiny-sd"), CPU, torch.float32)
    fresh.load_lora_weights(str(tmp_path), weight_name=path.name)  # the public diffusers loader
    assert fresh.unet.peft_config["default_0"].lora_alpha == 8  # alpha != r survives the reload
    assert (render(pipe) == render(fresh)).all()
    base = load_pipeline(str(tiny_dir / "tiny-sd"), CPU, torch.float32)
    assert not (render(base) == render(fresh)).all()  # and the adapter does something


def test_lora_with_text_encoder_round_trips_through_the_checked_loader(tiny_dir, images, tmp_path):
    pipe = load_pipeline(str(tiny_dir / "tiny-sd"), CPU, torch.float32)
    text_before = {k: v.clone() for k, v in pipe.text_encoder.state_dict().items()}
    train_lora(pipe, images, None, "sks", "teapot", dict(BASE, rank=4, alpha=4, train_text_encoder=True), CPU)
    state = pipe.text_encoder.state_dict()
    assert [k for k in state if "lora_" in k]
    for key, value in text_before.items():  # the base weights (wrapped as base_layer by peft) are untouched
        stem, _, leaf = key.rpartition(".")
        assert torch.equal(state[key] if key in state else state[f"{stem}.base_layer.{leaf}"], value), key
    path = tmp_path / "adapter.safetensors"
    save_lora(pipe, path)
    fresh = load_pipeline(str(tiny_dir / "tiny-sd"), CPU, torch.float32)
    apply_adapter(fresh, "lora", path, None)  # key and shape checks accept the text-encoder keys
    assert getattr(fresh.text_encoder, "peft_config", None)
    assert (render(pipe) == render(fresh)).all()


@pytest.fixture(scope="module")
def cd_trained(tiny_dir, images):
    pipe = load_pipeline(str(tiny_dir / "tiny-sd"), CPU, torch.float32)
    unet_before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    text_before = {k: v.clone() for k, v in pipe.text_encoder.state_dict().items()}
    settings = dict(BASE, learning_rate=5e-2, adam_weight_decay=0.5)  # strong decay: other rows must not move
    result = train_custom_diffusion(pipe, images, None, "<new1>", "teapot", settings, CPU)
    return pipe, result, unet_before, text_before


def test_custom_diffusion_trains_only_kv_and_the_modifier_token(cd_trained):
    pipe, result, unet_before, text_before = cd_trained
    changed = {k for k, v in pipe.unet.state_dict().items() if not torch.equal(v, unet_before[k])}
    kv = set(text_kv_parameters(pipe)[1])
    assert changed == kv and len(kv) > 0
    assert all(".attn2.to_k.weight" in k or ".attn2.to_v.weight" in k for k in changed)
    key = next(k for k in text_before if k.endswith("token_embedding.weight"))
    new, old = pipe.text_encoder.state_dict()[key], text_before[key]
    assert torch.equal(new[: old.shape[0]], old)  # weight decay did not move other rows
    assert new.shape[0] == old.shape[0] + 1
    for name, value in text_before.items():
        if name != key:
            assert torch.equal(pipe.text_encoder.state_dict()[name], value), name
    assert result.instance_prompt == "a photo of <new1> teapot"


def test_custom_diffusion_round_trip(cd_trained, tiny_dir, tmp_path):
    pipe, result, _, _ = cd_trained
    path = tmp_path / "adapter.safetensors"
    save_custom_diffusion(pipe, result.token_ids, path)
    fresh = load_pipeline(str(tiny_dir / "tiny-sd"), CPU, torch.float32)
    apply_adapter(fresh, "cd", path, "<new1>")
    prompt = "a photo of <new1> teapot"
    assert (render(pipe, prompt) == render(fresh, prompt)).all()
    assert (render(pipe, "a red fox") == render(fresh, "a red fox")).all()


def test_gradient_checkpointing_changes_memory_not_results(tiny_dir, images):
    losses = []
    for checkpointing in (False, True):
        pipe = load_pipeline(str(tiny_dir / "tiny-sd"), CPU, torch.float32)
        settings = dict(BASE, steps=2, gradient_checkpointing=checkpointing)
        losses.append([row["loss"] for row in train_lora(pipe, images, None, "sks", "teapot", settings, CPU).log.rows])
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def test_mixed_precision_is_cuda_only():
    from contextlib import nullcontext

    from entmap.personalize.training_loop import mixed_precision

    context, scaler = mixed_precision({"mixed_precision": "fp16"}, CPU)
    assert isinstance(context, nullcontext) and scaler is None
