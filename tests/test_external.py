"""Audit mode: foreign adapters are loaded and mapped; pickles and misfits are refused by name."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from entmap.models.adapter_formats import AdapterMismatchError, ExternalAdapterError, apply_adapter, check_source
from entmap.models.audit import audit_external
from entmap.models.loading import load_model, load_pipeline

CPU = torch.device("cpu")
GENERATION = {
    "resolution": 64,
    "steps": 3,
    "guidance_scale": 5.0,
    "batch_size": 1,
    "negative_prompt": "",
    "first_seed": 0,
}


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
    meta = audit_external(str(tiny_dir / "tiny-sd"), "foreign", spec, tmp_path / "meta.json", GENERATION)
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


def images(pipe, prompt="a photo of a dog on a beach"):
    import numpy as np

    from entmap.models.sampling import render_jobs

    settings = {"resolution": 64, "steps": 3, "guidance_scale": 5.0, "batch_size": 2, "negative_prompt": ""}
    return [np.asarray(image) for _, image in render_jobs(pipe, [(prompt, 0), (prompt, 1)], settings, "test")]


def test_a_kohya_export_of_a_diffusers_lora_renders_the_same_images(tiny_dir, tmp_path):
    """diffusers' save_lora_weights file and the same weights in kohya key names (convert_state_dict_to_kohya,
    alpha = rank) load through the checked loader to identical images, and change the base's."""
    import numpy as np
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers, convert_state_dict_to_kohya
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(0)
    pipe = load_pipeline(str(tiny_dir / "tiny-sd"), CPU, torch.float32)
    config = LoraConfig(
        r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights="gaussian"
    )
    pipe.unet.add_adapter(config)
    with torch.no_grad():  # gaussian init leaves B = 0: give the adapter an effect
        for name, param in pipe.unet.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.2)
    peft_state = get_peft_model_state_dict(pipe.unet)
    StableDiffusionPipeline.save_lora_weights(
        str(tmp_path), unet_lora_layers=convert_state_dict_to_diffusers(peft_state), weight_name="diffusers.safetensors"
    )
    kohya = convert_state_dict_to_kohya({f"unet.{k}": v for k, v in peft_state.items()})
    assert all(k.startswith("lora_unet_") for k in kohya)
    save_file(kohya, str(tmp_path / "kohya.safetensors"))
    base = images(load_pipeline(str(tiny_dir / "tiny-sd"), CPU, torch.float32))
    rendered = {}
    for name in ("diffusers", "kohya"):
        target = load_pipeline(str(tiny_dir / "tiny-sd"), CPU, torch.float32)
        apply_adapter(target, "lora", tmp_path / f"{name}.safetensors", None)
        rendered[name] = images(target)
    assert all(np.array_equal(a, b) for a, b in zip(rendered["diffusers"], rendered["kohya"], strict=True))
    assert not np.array_equal(rendered["kohya"][0], base[0])


def test_an_a1111_and_a_diffusers_textual_inversion_of_one_vector_render_the_same_images(tiny_dir, tmp_path):
    import numpy as np

    vector = torch.randn(1, 32, generator=torch.Generator().manual_seed(3))
    save_file({"<v>": vector}, str(tmp_path / "diffusers.safetensors"))
    save_file({"emb_params": vector}, str(tmp_path / "a1111.safetensors"))
    rendered = {}
    for name in ("diffusers", "a1111"):
        pipe = load_pipeline(str(tiny_dir / "tiny-sd"), CPU, torch.float32)
        apply_adapter(pipe, "ti", tmp_path / f"{name}.safetensors", "<v>")
        rendered[name] = images(pipe, "a photo of <v> on a beach")
    assert all(np.array_equal(a, b) for a, b in zip(rendered["diffusers"], rendered["a1111"], strict=True))


@pytest.fixture
def lora_file_of(tiny_dir, tmp_path):
    """Write a LoRA for the tiny SD 1.5 base (two attn2 layers), with chosen values and metadata."""

    def write(name: str, up: float, metadata: dict[str, str] | None = None):
        prefix = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2"
        tensors = {}
        for module, fan_in in (("to_k", 32), ("to_v", 32)):
            tensors[f"{prefix}.{module}.lora.down.weight"] = torch.ones(2, fan_in) * 0.1
            tensors[f"{prefix}.{module}.lora.up.weight"] = torch.ones(32, 2) * up
        path = tmp_path / f"{name}.safetensors"
        save_file(tensors, str(path), metadata=metadata)
        return path

    return write


def test_an_sdxl_lora_on_the_sd15_base_is_refused_by_its_metadata(tiny_dir, lora_file_of):
    path = lora_file_of("sdxl_lora", 0.5, {"ss_base_model_version": "sdxl_base_v1-0", "ss_network_dim": "2"})
    pipe = load_pipeline(str(tiny_dir / "tiny-sd"), CPU, torch.float32)
    with pytest.raises(AdapterMismatchError) as info:
        apply_adapter(pipe, "lora", path, None)
    message = str(info.value)
    assert str(path) in message and "sdxl family" in message and "base model is sd1" in message
    assert "ss_base_model_version='sdxl_base_v1-0'" in message
    # the same keys without the metadata, or declaring SD 1.5, load
    apply_adapter(pipe, "lora", lora_file_of("plain", 0.5), None)
    other = load_pipeline(str(tiny_dir / "tiny-sd"), CPU, torch.float32)
    apply_adapter(
        other, "lora", lora_file_of("sd15", 0.5, {"modelspec.architecture": "stable-diffusion-v1/lora"}), None
    )


def test_a_lora_of_all_zeros_is_refused_as_changing_nothing(tiny_dir, lora_file_of):
    path = lora_file_of("zeros", 0.0)
    pipe = load_pipeline(str(tiny_dir / "tiny-sd"), CPU, torch.float32)
    with pytest.raises(AdapterMismatchError) as info:
        apply_adapter(pipe, "lora", path, None)
    assert str(path) in str(info.value) and "changes nothing" in str(info.value) and "2 LoRA layers" in str(info.value)


def test_the_trigger_phrase_comes_from_the_files_metadata_and_is_the_probe(tiny_dir, diffusers_lora, tmp_path):
    tensors = load_file(str(diffusers_lora))
    path = tmp_path / "triggered.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt", "modelspec.trigger_phrase": "zwx style"})
    spec = {"kind": "lora", "path": str(path), "category": "style"}
    meta = audit_external(str(tiny_dir / "tiny-sd"), "triggered", spec, tmp_path / "meta.json", GENERATION)
    assert meta["token"] == "zwx style" and meta["probe_prompt"] == "a photo of zwx style"


def test_an_adapter_that_loads_but_changes_no_image_is_refused(tiny_dir, tmp_path):
    """Custom Diffusion weights saved before training (the base's own k/v) load without error and change
    nothing: refused by the probe, naming the file and the likely causes."""
    from entmap.models.adapter_formats import text_kv_parameters

    pipe = load_pipeline(str(tiny_dir / "tiny-sd"), CPU, torch.float32)
    denoiser, kv = text_kv_parameters(pipe)
    save_file({f"{denoiser}.{k}": v.detach().clone() for k, v in kv.items()}, str(tmp_path / "untrained.safetensors"))
    spec = {"kind": "cd", "path": str(tmp_path / "untrained.safetensors"), "category": "style"}
    with pytest.raises(AdapterMismatchError, match=r"untrained\.safetensors: the cd adapter .*byte-identical.*zero"):
        audit_external(str(tiny_dir / "tiny-sd"), "untrained", spec, tmp_path / "meta.json", GENERATION)
    assert not (tmp_path / "meta.json").exists()


def test_a_textual_inversion_files_own_token_is_probed(tiny_dir, tmp_path):
    save_file({"<their-token>": torch.randn(1, 32)}, str(tmp_path / "emb.safetensors"))
    spec = {"kind": "ti", "path": str(tmp_path / "emb.safetensors"), "category": "style"}
    meta = audit_external(str(tiny_dir / "tiny-sd"), "emb", spec, tmp_path / "meta.json", GENERATION)
    assert meta["token"] == "<their-token>" and meta["probe_prompt"] == "a photo of <their-token>"


def test_a_single_file_checkpoint_is_refused_with_the_conversion_named(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"x": torch.zeros(1)}, str(path))
    with pytest.raises(ExternalAdapterError, match=r"model\.safetensors is a single-file checkpoint.*from_single_file"):
        check_source("merged", {"kind": "checkpoint", "path": str(path), "category": "style"})


def test_a_hub_id_is_downloaded_only_when_the_hub_is_online(monkeypatch, tmp_path):
    from entmap.models.adapter_formats import is_hub_id

    assert is_hub_id("someone/their-lora") and is_hub_id("someone/their-lora/pytorch_lora_weights.safetensors")
    assert not is_hub_id("data/adapters/mine.safetensors") and not is_hub_id("results/examples/x.safetensors")
    assert not is_hub_id("/abs/path.safetensors") and not is_hub_id("mine.safetensors")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = {"kind": "lora", "path": "someone/their-lora", "category": "style"}
    with pytest.raises(
        ExternalAdapterError, match=r"someone/their-lora does not exist; as a Hub id .*HF_HUB_OFFLINE=0"
    ):
        check_source("theirs", spec)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    check_source("theirs", spec)  # left to the audit job, which downloads it
