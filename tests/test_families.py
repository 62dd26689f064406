"""Model families: SD 1.x, SDXL, SD3 and Flux built tiny offline, read by their model_index.json,
sampled from per-seed latents in each family's layout, and perturbed where text meets image."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

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
CPU = torch.device("cpu")


def pixels(pipe, jobs=JOBS) -> list[np.ndarray]:
    return [np.asarray(image, dtype=np.int16) for _, image in render_jobs(pipe, jobs, SETTINGS, "test")]


@dataclass(frozen=True)
class TinyFamily:
    """One family's tiny base on disk, loaded fresh (float32, CPU) as often as a test needs it."""

    name: str
    folder: Path

    def load(self):
        return load_pipeline(str(self.folder), CPU, torch.float32)

    def with_adapter(self, kind: str, path, token: str | None):
        """A fresh base with the adapter file applied by the loader every stage uses."""
        pipe = self.load()
        apply_adapter(pipe, kind, path, token)
        return pipe


@pytest.fixture(params=OTHER, ids=OTHER)
def tiny(request, tiny_family_dir) -> TinyFamily:
    return TinyFamily(request.param, tiny_family_dir / request.param)


def test_each_family_is_read_from_its_model_index_and_loads_with_its_scheduler(tiny):
    family = FAMILIES[tiny.name]
    index = json.loads((tiny.folder / "model_index.json").read_text())
    assert index["_class_name"] == family.pipeline_class
    assert family_of(tiny.folder) is family
    pipe = tiny.load()
    assert family_of_pipeline(pipe) is family
    assert type(pipe.scheduler).__name__ == family.scheduler
    denoiser = getattr(pipe, family.denoiser)
    assert denoiser.config.in_channels == family.latent_channels * (4 if tiny.name == "flux" else 1)


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
        a = initial_latents([3, 1, 7], 64, torch.float32, CPU, 8, channels, packed)
        b = initial_latents([7, 3], 64, torch.float32, CPU, 8, channels, packed)
        assert torch.equal(a[0], b[1]) and torch.equal(a[2], b[0])
        expected = torch.randn((channels, 8, 8), generator=torch.Generator().manual_seed(1))
        assert torch.equal(a[1], pack_latents(expected[None])[0] if packed else expected)


def test_generation_repeats_byte_for_byte_and_seeds_matter(tiny):
    pipe = tiny.load()
    first, again = pixels(pipe), pixels(pipe)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert first[0].std() > 1 and not np.array_equal(first[0], first[1])
    latents = pipeline_latents(pipe, [0, 1], 64)
    assert latents.shape[0] == 2 and latents.dtype == torch.float32


def test_the_planted_control_is_exactly_zero_at_scale_zero_and_grows(tiny, tmp_path):
    base = tiny.load()
    denoiser, parameters = text_kv_parameters(base)
    assert denoiser == FAMILIES[tiny.name].denoiser and parameters
    if tiny.name in ("sd3", "flux"):
        assert all(".add_k_proj." in n or ".add_v_proj." in n for n in parameters)
    reference = pixels(base)
    change = []
    for scale in (0.0, 0.2, 0.5):
        path = tmp_path / f"kv{scale}.safetensors"
        save_perturbation(base, scale, 0, path)
        pipe = tiny.with_adapter("cd", path, None)
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


def test_textual_inversion_trains_one_row_per_clip_encoder_and_its_file_renders_the_same(tiny, tmp_path):
    from entmap.personalize.textual_inversion import save_textual_inversion, train_textual_inversion

    pipe = tiny.load()
    encoders = FAMILIES[tiny.name].clip_encoders
    before = {enc: getattr(pipe, enc).state_dict() for _, _, enc in encoders}
    before = {enc: {k: v.clone() for k, v in sd.items()} for enc, sd in before.items()}
    result = train_textual_inversion(pipe, reference_images(), "<s1>", "painting", ("a painting of {}",), TRAIN, CPU)
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
    fresh = tiny.with_adapter("ti", tmp_path / "adapter.safetensors", "<s1>")
    jobs = [("a painting of <s1>", 0), ("a blue square on the left", 1)]
    assert all(np.array_equal(a, b) for a, b in zip(pixels(pipe, jobs), pixels(fresh, jobs), strict=True))
    assert np.array_equal(
        pixels(fresh, jobs)[1], pixels(tiny.load(), jobs)[1]
    )  # a prompt without the token: base bytes


def test_custom_diffusion_trains_the_text_kv_and_the_token_only_and_its_file_renders_the_same(tiny, tmp_path):
    from entmap.personalize.custom_diffusion import save_custom_diffusion, train_custom_diffusion

    pipe = tiny.load()
    denoiser = getattr(pipe, FAMILIES[tiny.name].denoiser)
    before = {k: v.clone() for k, v in denoiser.state_dict().items()}
    result = train_custom_diffusion(pipe, reference_images(), None, "<new1>", "painting", TRAIN, CPU)
    changed = {k for k, v in denoiser.state_dict().items() if not torch.equal(v, before[k])}
    kv = set(text_kv_parameters(pipe)[1])
    assert changed == kv and kv and all("add_k_proj" in k or "add_v_proj" in k or "attn2.to_" in k for k in kv)
    path = tmp_path / "adapter.safetensors"
    save_custom_diffusion(pipe, result.token_ids, path)
    fresh = tiny.with_adapter("cd", path, "<new1>")
    jobs = [("a photo of <new1> painting", 0)]
    assert np.array_equal(pixels(pipe, jobs)[0], pixels(fresh, jobs)[0])
