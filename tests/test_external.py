"""Audit mode: foreign adapters are loaded and mapped; pickles and misfits are refused by name."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from entmap.models.adapter_formats import AdapterMismatchError, ExternalAdapterError, apply_adapter, check_source
from entmap.models.audit import audit_external
from entmap.models.loading import load_model, load_pipeline

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def diffusers_lora(tiny_dir, tmp_path_factory):
    """A LoRA made with peft and saved by diffusers' own save_lora_weights (no entmap code)."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipe = load_pipeline(str(tiny_dir / "tiny-sd"), CPU, torch.float32)
    pipe.unet.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=["to_k", "to_v"], init_lora_weights=False))
    folder = tmp_path_factory.mktemp("foreign")
    StableDiffusionPipeline.save_lora_weights(
        str(folder),
        unet_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet)),
        weight_name="pytorch_lora_weights.safetensors",
    )
    return folder / "pytorch_lora_weights.safetensors"


def test_foreign_lora_is_audited_and_applied(tiny_dir, diffusers_lora, tmp_path):
    spec = {"kind": "lora", "path": str(diffusers_lora), "category": "style"}
    meta = audit_external(str(tiny_dir / "tiny-sd"), "foreign", spec, tmp_path / "meta.json")
    assert json.loads((tmp_path / "meta.json").read_text()) == meta
    assert meta["method"] == "external" and len(meta["sha256"]) == 64
    pipe = load_model(str(tiny_dir / "tiny-sd"), tmp_path, CPU, torch.float32)
    assert any("lora_A" in k for k in pipe.unet.state_dict())


@pytest.mark.parametrize("suffix", [".bin", ".pt", ".ckpt"])
def test_pickle_files_are_refused_with_the_opt_in_named(tmp_path, suffix):
    path = tmp_path / f"adapter{suffix}"
    torch.save({"x": torch.zeros(1)}, path)
    with pytest.raises(ExternalAdapterError) as info:
        check_source("theirs", {"kind": "lora", "path": str(path), "category": "face"})
    assert str(path) in str(info.value) and "external.theirs.allow_pickle: true" in str(info.value)
    check_source("theirs", {"kind": "lora", "path": str(path), "category": "face", "allow_pickle": True})


def test_wrong_shape_lora_is_refused_with_keys(tiny_dir, diffusers_lora, tmp_path):
    tensors = load_file(str(diffusers_lora))
    key = next(k for k in tensors if "lora_A" in k or "lora.down" in k)
    tensors[key] = torch.zeros(2, 7)
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad))
    pipe = load_pipeline(str(tiny_dir / "tiny-sd"), CPU, torch.float32)
    with pytest.raises(AdapterMismatchError) as info:
        apply_adapter(pipe, "lora", bad, None)
    assert str(bad) in str(info.value) and "wrong shapes" in str(info.value)


def test_lora_for_another_architecture_is_refused(tiny_dir, tmp_path):
    bad = tmp_path / "sdxl.safetensors"
    save_file(
        {
            "unet.mid_block.attentions.9.transformer_blocks.0.attn1.to_q.lora.down.weight": torch.zeros(4, 32),
            "unet.mid_block.attentions.9.transformer_blocks.0.attn1.to_q.lora.up.weight": torch.zeros(32, 4),
        },
        str(bad),
    )
    pipe = load_pipeline(str(tiny_dir / "tiny-sd"), CPU, torch.float32)
    with pytest.raises(AdapterMismatchError, match="matching no layer"):
        apply_adapter(pipe, "lora", bad, None)


def test_ti_and_cd_misfits_are_refused(tiny_dir, tmp_path):
    pipe = load_pipeline(str(tiny_dir / "tiny-sd"), CPU, torch.float32)
    ti = tmp_path / "emb.safetensors"
    save_file({"<cat>": torch.zeros(1, 768)}, str(ti))  # an SD 1.5 embedding: width 768, not 32
    with pytest.raises(AdapterMismatchError, match="width 768"):
        apply_adapter(pipe, "ti", ti, None)
    cd = tmp_path / "cd.safetensors"
    save_file(
        {"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight": torch.zeros(32, 768)},
        str(cd),
    )
    with pytest.raises(AdapterMismatchError) as info:
        apply_adapter(pipe, "cd", cd, None)
    assert "wrong shapes" in str(info.value) and str(cd) in str(info.value)


def test_foreign_ti_embedding_is_applied(tiny_dir, tmp_path):
    ti = tmp_path / "learned_embeds.safetensors"
    save_file({"<cat-toy>": torch.randn(1, 32)}, str(ti))
    pipe = load_pipeline(str(tiny_dir / "tiny-sd"), CPU, torch.float32)
    apply_adapter(pipe, "ti", ti, None)  # token read from the file
    assert pipe.tokenizer.convert_tokens_to_ids("<cat-toy>") == 49408
