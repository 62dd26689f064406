"""Model families: SD 1.x, SDXL, SD3 and Flux built tiny offline, read by their model_index.json,
sampled from per-seed latents in each family's layout, and perturbed where text meets image."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from entmap.models.adapter_formats import apply_adapter, text_kv_parameters
from entmap.models.families import FAMILIES, FamilyError, family_of, family_of_pipeline
from entmap.models.loading import load_pipeline
from entmap.models.sampling import initial_latents, pack_latents, pipeline_latents, render_jobs
from entmap.models.tiny import build_t5_tokenizer
from entmap.personalize.perturb import save_perturbation

SETTINGS = {"resolution": 64, "steps": 3, "guidance_scale": 5.0, "batch_size": 2, "negative_prompt": ""}
JOBS = [("a red circle", 0), ("a blue square on the left", 1)]
OTHER = ["sdxl", "sd3", "flux"]


def pixels(pipe, jobs=JOBS) -> list[np.ndarray]:
    return [np.asarray(image, dtype=np.int16) for _, image in render_jobs(pipe, jobs, SETTINGS, "test")]


@pytest.mark.parametrize("family", OTHER)
def test_each_family_is_read_from_its_model_index_and_loads_with_its_scheduler(tiny_family_dir, family):
    folder = tiny_family_dir / family
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == FAMILIES[family].pipeline_class
    assert family_of(folder) is FAMILIES[family]
    pipe = load_pipeline(str(folder), torch.device("cpu"), torch.float32)
    assert family_of_pipeline(pipe) is FAMILIES[family]
    assert type(pipe.scheduler).__name__ == FAMILIES[family].scheduler
    denoiser = getattr(pipe, FAMILIES[family].denoiser)
    assert denoiser.config.in_channels == FAMILIES[family].latent_channels * (4 if family == "flux" else 1)


def test_a_folder_without_model_index_or_with_an_unknown_pipeline_is_refused(tmp_path):
    with pytest.raises(FamilyError, match="no model_index.json"):
        family_of(tmp_path)
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "KandinskyPipeline"}))
    with pytest.raises(FamilyError, match="KandinskyPipeline.*not a family"):
        family_of(tmp_path)


def test_packed_latents_are_fluxs_own_packing():
    from diffusers import FluxPipeline

    latents = torch.randn(3, 16, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(pack_latents(latents), FluxPipeline._pack_latents(latents, 3, 16, 8, 8))


def test_initial_latents_depend_on_the_seed_only_in_every_layout():
    for channels, packed in ((4, False), (16, False), (16, True)):
        a = initial_latents([3, 1, 7], 64, torch.float32, torch.device("cpu"), 8, channels, packed)
        b = initial_latents([7, 3], 64, torch.float32, torch.device("cpu"), 8, channels, packed)
        assert torch.equal(a[0], b[1]) and torch.equal(a[2], b[0])
        expected = torch.randn((channels, 8, 8), generator=torch.Generator().manual_seed(1))
        assert torch.equal(a[1], pack_latents(expected[None])[0] if packed else expected)


@pytest.mark.parametrize("family", OTHER)
def test_generation_repeats_byte_for_byte_and_seeds_matter(tiny_family_dir, family):
    pipe = load_pipeline(str(tiny_family_dir / family), torch.device("cpu"), torch.float32)
    first, again = pixels(pipe), pixels(pipe)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert first[0].std() > 1 and not np.array_equal(first[0], first[1])
    latents = pipeline_latents(pipe, [0, 1], 64)
    assert latents.shape[0] == 2 and latents.dtype == torch.float32


@pytest.mark.parametrize("family", OTHER)
def test_the_planted_control_is_exactly_zero_at_scale_zero_and_grows(tiny_family_dir, family, tmp_path):
    folder = str(tiny_family_dir / family)
    base = load_pipeline(folder, torch.device("cpu"), torch.float32)
    denoiser, parameters = text_kv_parameters(base)
    assert denoiser == FAMILIES[family].denoiser and parameters
    if family in ("sd3", "flux"):
        assert all(".add_k_proj." in n or ".add_v_proj." in n for n in parameters)
    reference = pixels(base)
    change = []
    for scale in (0.0, 0.2, 0.5):
        path = tmp_path / f"kv{scale}.safetensors"
        save_perturbation(base, scale, 0, path)
        pipe = load_pipeline(folder, torch.device("cpu"), torch.float32)
        apply_adapter(pipe, "cd", path, None)
        change.append(np.mean([np.abs(a - b).mean() for a, b in zip(pixels(pipe), reference, strict=True)]))
    assert change[0] == 0 and 0 < change[1] < change[2]


def test_the_t5_tokenizer_is_a_real_trained_vocabulary(tmp_path):
    from transformers import T5TokenizerFast

    tokenizer = build_t5_tokenizer()
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    ids = tokenizer("a portrait of a young woman smiling").input_ids
    assert ids[-1] == 1 and 2 not in ids and len(ids) < 20  # words of the corpus: no unknown pieces
    assert tokenizer.decode(ids, skip_special_tokens=True) == "a portrait of a young woman smiling"
    tokenizer.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
    assert T5TokenizerFast.from_pretrained(tmp_path)("a red circle").input_ids == tokenizer("a red circle").input_ids


def reference_images(count: int = 2) -> list:
    from PIL import Image

    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) for _ in range(count)]


TRAIN = {"steps": 3, "learning_rate": 5e-2, "batch_size": 1, "resolution": 64, "adam_weight_decay": 0.5, "seed": 0}


@pytest.mark.parametrize("family", OTHER)
def test_textual_inversion_trains_one_row_per_clip_encoder_and_its_file_renders_the_same(
    tiny_family_dir, family, tmp_path
):
    from entmap.personalize.textual_inversion import save_textual_inversion, train_textual_inversion

    folder = str(tiny_family_dir / family)
    cpu = torch.device("cpu")
    pipe = load_pipeline(folder, cpu, torch.float32)
    encoders = FAMILIES[family].clip_encoders
    before = {enc: getattr(pipe, enc).state_dict() for _, _, enc in encoders}
    before = {enc: {k: v.clone() for k, v in sd.items()} for enc, sd in before.items()}
    result = train_textual_inversion(pipe, reference_images(), "<s1>", "painting", ("a painting of {}",), TRAIN, cpu)
    assert set(result.embeddings) == {key for key, _, _ in encoders}
    for _, tok, enc in encoders:
        state = getattr(pipe, enc).state_dict()
        for name, old in before[enc].items():
            new = state[name]
            if name.endswith("token_embedding.weight"):
                assert new.shape[0] == old.shape[0] + 1 and torch.equal(new[:-1], old)  # other rows restored
                token_id = getattr(pipe, tok).convert_tokens_to_ids("<s1>")
                assert not torch.equal(new[token_id], old[getattr(pipe, tok).encode("painting")[1]])  # it trained
            else:
                assert torch.equal(new, old), name
    save_textual_inversion(result, tmp_path)
    from safetensors.torch import load_file

    keys = set(load_file(str(tmp_path / "adapter.safetensors")))
    assert keys == ({"<s1>"} if len(encoders) == 1 else {"clip_l", "clip_g"})
    fresh = load_pipeline(folder, cpu, torch.float32)
    apply_adapter(fresh, "ti", tmp_path / "adapter.safetensors", "<s1>")
    jobs = [("a painting of <s1>", 0), ("a blue square on the left", 1)]
    assert all(np.array_equal(a, b) for a, b in zip(pixels(pipe, jobs), pixels(fresh, jobs), strict=True))
    base = load_pipeline(folder, cpu, torch.float32)
    assert np.array_equal(pixels(fresh, jobs)[1], pixels(base, jobs)[1])  # a prompt without the token: base bytes


@pytest.mark.parametrize("family", OTHER)
def test_custom_diffusion_trains_the_text_kv_and_the_token_only_and_its_file_renders_the_same(
    tiny_family_dir, family, tmp_path
):
    from entmap.personalize.custom_diffusion import save_custom_diffusion, train_custom_diffusion

    folder = str(tiny_family_dir / family)
    cpu = torch.device("cpu")
    pipe = load_pipeline(folder, cpu, torch.float32)
    denoiser = getattr(pipe, FAMILIES[family].denoiser)
    before = {k: v.clone() for k, v in denoiser.state_dict().items()}
    result = train_custom_diffusion(pipe, reference_images(), None, "<new1>", "painting", TRAIN, cpu)
    changed = {k for k, v in denoiser.state_dict().items() if not torch.equal(v, before[k])}
    kv = set(text_kv_parameters(pipe)[1])
    assert changed == kv and kv and all("add_k_proj" in k or "add_v_proj" in k or "attn2.to_" in k for k in kv)
    path = tmp_path / "adapter.safetensors"
    save_custom_diffusion(pipe, result.token_ids, path)
    fresh = load_pipeline(folder, cpu, torch.float32)
    apply_adapter(fresh, "cd", path, "<new1>")
    jobs = [("a photo of <new1> painting", 0)]
    assert np.array_equal(pixels(pipe, jobs)[0], pixels(fresh, jobs)[0])
