"""The adapter files people publish, in every family: one LoRA's weights in diffusers and kohya key
names render the same images; Textual Inversion files of one vector in their formats render the
same images; files that match nothing, change nothing or are LyCORIS are refused, naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from entmap.models.adapter_formats import AdapterMismatchError, ExternalAdapterError, apply_adapter
from entmap.models.families import FAMILIES
from entmap.models.kohya import power_of_two_split
from entmap.models.loading import load_pipeline
from entmap.models.sampling import render_jobs
from entmap.personalize.lora import save_lora

CPU = torch.device("cpu")
FAMILY_NAMES = ["sd1", "sdxl", "sd3", "flux"]
SETTINGS = {"resolution": 64, "steps": 3, "guidance_scale": 5.0, "batch_size": 2, "negative_prompt": ""}
JOBS = [("a red circle on the left", 0), ("a photo of <v> on a beach", 1)]
RANK = 4


def base_dir(tiny_dir: Path, tiny_family_dir: Path, family: str) -> str:
    return str(tiny_dir / "tiny-sd" if family == "sd1" else tiny_family_dir / family)


def pixels(pipe, jobs=JOBS) -> list[np.ndarray]:
    return [np.asarray(image) for _, image in render_jobs(pipe, jobs, SETTINGS, "test")]


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def trained_lora(folder: str, family: str):
    """A pipeline with a peft LoRA (alpha = 2 r) on the denoiser, its B factors random (an effect)."""
    from peft import LoraConfig

    pipe = load_pipeline(folder, CPU, torch.float32)
    denoiser = getattr(pipe, FAMILIES[family].denoiser)
    torch.manual_seed(0)
    denoiser.add_adapter(
        LoraConfig(
            r=RANK,
            lora_alpha=2 * RANK,
            target_modules=list(FAMILIES[family].lora_targets),
            init_lora_weights="gaussian",
        )
    )
    with torch.no_grad():
        for name, param in denoiser.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.1, generator=torch.Generator().manual_seed(len(name)))
    return pipe


def ldm_name(module: str, layers_per_block: int) -> str:
    """A diffusers UNet module path in the original (LDM/SGM) block names kohya files of SD 1.x/SDXL use."""
    parts = module.split(".")
    if parts[0] == "down_blocks":
        i, j = int(parts[1]), int(parts[3])
        return ".".join(["input_blocks", str(1 + i * (layers_per_block + 1) + j), "1", *parts[4:]])
    if parts[0] == "mid_block":
        return ".".join(["middle_block", "1", *parts[3:]])
    i, j = int(parts[1]), int(parts[3])
    return ".".join(["output_blocks", str(i * (layers_per_block + 1) + j), "1", *parts[4:]])


def kohya_file(pipe, family: str, path: Path, original_names: bool = False) -> None:
    """The pipeline's LoRA written the way kohya does: ``lora_{unet|transformer}_<module path with _>``,
    lora_down / lora_up / alpha, every other layer with alpha = r and its up factor doubled (the same
    update (alpha / r) B A, exactly), so alphas differ from layer to layer."""
    from peft.utils import get_peft_model_state_dict

    denoiser_name = FAMILIES[family].denoiser
    denoiser = getattr(pipe, denoiser_name)
    state = get_peft_model_state_dict(denoiser)
    prefix = "lora_transformer" if denoiser_name == "transformer" else "lora_unet"
    tensors = {}
    for index, module in enumerate(sorted({k.rsplit(".lora_", 1)[0] for k in state})):
        down, up = state[f"{module}.lora_A.weight"], state[f"{module}.lora_B.weight"]
        alpha = 2.0 * RANK
        if index % 2:
            alpha, up = float(RANK), up * 2
        name = ldm_name(module, denoiser.config.layers_per_block) if original_names else module
        flat = f"{prefix}_{name.replace('.', '_')}"
        tensors[f"{flat}.lora_down.weight"] = down.contiguous()
        tensors[f"{flat}.lora_up.weight"] = up.contiguous()
        tensors[f"{flat}.alpha"] = torch.tensor(alpha)
    save_file(tensors, str(path))


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_a_lora_in_diffusers_and_kohya_key_names_renders_the_same_images(tiny_dir, tiny_family_dir, family, tmp_path):
    folder = base_dir(tiny_dir, tiny_family_dir, family)
    pipe = trained_lora(folder, family)
    save_lora(pipe, tmp_path / "diffusers.safetensors")
    kohya_file(pipe, family, tmp_path / "kohya.safetensors")
    files = ["diffusers", "kohya"]
    if family in ("sd1", "sdxl"):
        kohya_file(pipe, family, tmp_path / "kohya_ldm.safetensors", original_names=True)
        assert any("input_blocks" in k for k in load_file(str(tmp_path / "kohya_ldm.safetensors")))
        files.append("kohya_ldm")
    rendered = {}
    for name in files:
        target = load_pipeline(folder, CPU, torch.float32)
        apply_adapter(target, "lora", tmp_path / f"{name}.safetensors", None)
        rendered[name] = pixels(target)
    assert same(rendered["diffusers"], pixels(pipe))  # the file renders what the trained pipeline does
    for name in files[1:]:
        assert same(rendered[name], rendered["diffusers"]), name
    assert not np.array_equal(rendered["kohya"][0], pixels(load_pipeline(folder, CPU, torch.float32))[0])


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_loras_that_match_nothing_or_change_nothing_are_refused_naming_the_file(
    tiny_dir, tiny_family_dir, family, tmp_path
):
    folder = base_dir(tiny_dir, tiny_family_dir, family)
    pipe = trained_lora(folder, family)
    save_lora(pipe, tmp_path / "good.safetensors")
    tensors = load_file(str(tmp_path / "good.safetensors"))
    save_file({k.replace(".to_k.", ".to_kk."): v for k, v in tensors.items()}, str(tmp_path / "nothing.safetensors"))
    save_file(
        {k: v * 0 if "lora_B" in k or ".up." in k else v for k, v in tensors.items()},
        str(tmp_path / "zero.safetensors"),
    )
    kohya_file(pipe, family, tmp_path / "kohya.safetensors")
    kohya = load_file(str(tmp_path / "kohya.safetensors"))
    save_file(
        {k.replace("_to_k.", "_to_kk."): v for k, v in kohya.items()}, str(tmp_path / "kohya_nothing.safetensors")
    )
    for name, message in (
        ("nothing", "matching no layer"),
        ("zero", "are zero"),
        ("kohya_nothing", "no layer|cannot read"),
    ):
        target = load_pipeline(folder, CPU, torch.float32)
        with pytest.raises(AdapterMismatchError, match=rf"{name}\.safetensors.*({message})"):
            apply_adapter(target, "lora", tmp_path / f"{name}.safetensors", None)


def test_lycoris_files_are_refused_with_their_algorithm_named(tiny_dir, tmp_path):
    flat = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_k"
    loha = {f"{flat}.hada_w{i}_{ab}": torch.ones(2, 32) for i in (1, 2) for ab in "ab"} | {
        f"{flat}.alpha": torch.tensor(2.0)
    }
    save_file(loha, str(tmp_path / "loha.safetensors"))
    pipe = load_pipeline(str(tiny_dir / "tiny-sd"), CPU, torch.float32)
    with pytest.raises(ExternalAdapterError, match=r"loha\.safetensors: a LyCORIS LoHa file"):
        apply_adapter(pipe, "lora", tmp_path / "loha.safetensors", None)


def test_the_alpha_split_is_exact_and_keeps_the_product():
    for scale in (1.0, 2.0, 0.5, 0.125, 3.0, 0.3):
        down, up = power_of_two_split(scale)
        assert down * up == pytest.approx(scale, rel=1e-15)
        assert up in (1.0, 0.5, 0.25, 0.125, 0.0625, 2.0**-5, 2.0**-6) or up == 1.0


@pytest.mark.parametrize("family", ["sdxl", "sd3", "flux"])
def test_textual_inversion_files_of_one_vector_render_the_same_images(tiny_family_dir, family, tmp_path):
    folder = str(tiny_family_dir / family)
    keys = [key for key, _, _ in FAMILIES[family].clip_encoders]
    base = load_pipeline(folder, CPU, torch.float32)
    widths = {
        key: getattr(base, enc).get_input_embeddings().weight.shape[1] for key, _, enc in FAMILIES[family].clip_encoders
    }
    vectors = {
        key: torch.randn(1, widths[key], generator=torch.Generator().manual_seed(i)) for i, key in enumerate(keys)
    }
    rendered = {}
    if len(keys) == 1:  # Flux: diffusers {token: v} and A1111 emb_params
        save_file({"<v>": vectors["clip_l"]}, str(tmp_path / "diffusers.safetensors"))
        save_file({"emb_params": vectors["clip_l"]}, str(tmp_path / "a1111.safetensors"))
        for name in ("diffusers", "a1111"):
            pipe = load_pipeline(folder, CPU, torch.float32)
            apply_adapter(pipe, "ti", tmp_path / f"{name}.safetensors", "<v>")
            rendered[name] = pixels(pipe)
        assert same(rendered["diffusers"], rendered["a1111"])
    else:  # SDXL and SD3: the clip_l/clip_g file
        save_file(vectors, str(tmp_path / "sdxl_style.safetensors"))
        pipe = load_pipeline(folder, CPU, torch.float32)
        apply_adapter(pipe, "ti", tmp_path / "sdxl_style.safetensors", "<v>")
        rendered["file"] = pixels(pipe)
        for key, tok, enc in FAMILIES[family].clip_encoders:  # each vector sits in its encoder's new row
            row = getattr(pipe, enc).get_input_embeddings().weight[getattr(pipe, tok).convert_tokens_to_ids("<v>")]
            assert torch.equal(row, vectors[key][0])
        if family == "sdxl":  # diffusers' documented SDXL recipe: one load_textual_inversion per encoder
            by_hand = load_pipeline(folder, CPU, torch.float32)
            for key, tok, enc in FAMILIES[family].clip_encoders:
                by_hand.load_textual_inversion(
                    vectors[key], token="<v>", tokenizer=getattr(by_hand, tok), text_encoder=getattr(by_hand, enc)
                )
            assert same(rendered["file"], pixels(by_hand))
        save_file({"emb_params": vectors["clip_l"]}, str(tmp_path / "one.safetensors"))
        with pytest.raises(AdapterMismatchError, match=r"one\.safetensors: one embedding.*clip_l, clip_g"):
            apply_adapter(load_pipeline(folder, CPU, torch.float32), "ti", tmp_path / "one.safetensors", "<v>")
    some = next(iter(rendered.values()))
    assert np.array_equal(some[0], pixels(base)[0])  # a prompt without the token: the base bytes
    assert not np.array_equal(some[1], pixels(base)[1])  # with it: changed


@pytest.mark.parametrize("family", ["sdxl", "sd3", "flux"])
def test_lora_on_the_clip_encoders_trains_saves_and_reloads_to_the_same_images(tiny_family_dir, family, tmp_path):
    from PIL import Image

    from entmap.personalize.lora import train_lora

    folder = str(tiny_family_dir / family)
    pipe = load_pipeline(folder, CPU, torch.float32)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) for _ in range(2)]
    settings = {"steps": 2, "learning_rate": 5e-2, "batch_size": 1, "resolution": 64, "rank": 2, "alpha": 4}
    train_lora(pipe, images, None, "sks", "painting", dict(settings, train_text_encoder=True, seed=0), CPU)
    save_lora(pipe, tmp_path / "lora.safetensors")
    keys = load_file(str(tmp_path / "lora.safetensors"))
    encoders = [enc for _, _, enc in FAMILIES[family].clip_encoders]
    assert {k.split(".")[0] for k in keys} == {FAMILIES[family].denoiser, *encoders}
    fresh = load_pipeline(folder, CPU, torch.float32)
    apply_adapter(fresh, "lora", tmp_path / "lora.safetensors", None)
    jobs = [("a photo of sks painting", 0)]
    assert same(pixels(fresh, jobs), pixels(pipe, jobs))
    assert not same(pixels(fresh, jobs), pixels(load_pipeline(folder, CPU, torch.float32), jobs))
