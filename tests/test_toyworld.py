"""The toy world: deterministic scenes that the pixel checks read back, its suite, subjects and training code."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from entmap.config.validation import ConfigError
from entmap.toymodels.train import soft_infonce
from entmap.toymodels.training_config import load_training_config
from entmap.toyworld.subjects import TOY_KINDS, draw_subject
from entmap.toyworld.suite import TOY_CATEGORIES, suite_tsv
from entmap.toyworld.world import COLOURS, HELD_OUT_PAIRS, Scene, all_scenes, read_scene, render, training_scenes

REPO = Path(__file__).resolve().parents[1]
TRAIN_SCHEMA = REPO / "schemas/toyworld-train.schema.yaml"


def test_scenes_are_deterministic_and_vary_with_the_seed():
    scene = Scene("red", "circle", "on the left", "striped")
    assert np.array_equal(render(scene, 3), render(scene, 3))
    assert any(not np.array_equal(render(scene, 3), render(scene, s)) for s in range(4, 10))
    assert scene.caption == "a red circle on the left on a striped background" and scene.held_out


def test_every_caption_reads_back_from_its_image():
    scenes = all_scenes()
    assert len(scenes) == 6 * 6 * 5 * 4 and len({s.caption for s in scenes}) == len(scenes)
    for seed in (0, 1):
        for scene in scenes:
            found = read_scene(render(scene, seed))
            assert found == {a: getattr(scene, a) for a in found}, (scene.caption, seed, found)


def test_held_out_pairs_are_one_per_colour_and_shape_and_never_trained():
    assert len({c for c, _ in HELD_OUT_PAIRS}) == 6 and len({s for _, s in HELD_OUT_PAIRS}) == 6
    assert not any(s.held_out for s in training_scenes()) and len(training_scenes()) == 720 - 6 * 20


def test_shipped_suite_is_the_generated_one():
    assert (REPO / "resources/prompts/toyworld-60.tsv").read_text() == suite_tsv()
    from entmap.inputs.prompt_suites import load_prompts

    suite = load_prompts(REPO / "resources/prompts/toyworld-60.tsv", categories=TOY_CATEGORIES)
    assert suite.groupby("category").size().eq(10).all()
    colours = suite[suite["category"] == "colours"]["text"].str.split().str[1]
    assert list(colours) == [*COLOURS, *COLOURS][:10]  # every colour, in turn
    assert not suite["text"].str.contains("plain pattern").any()


def test_shipped_anchor_suite_is_the_generated_one_and_never_evaluated():
    from entmap.inputs.prompt_suites import load_prompts
    from entmap.toyworld.suite import anchors_tsv

    assert (REPO / "resources/prompts/toyworld-anchors.tsv").read_text() == anchors_tsv()
    anchors = load_prompts(REPO / "resources/prompts/toyworld-anchors.tsv")
    suite = load_prompts(REPO / "resources/prompts/toyworld-60.tsv")
    assert len(anchors) == 24 and anchors["text"].is_unique
    assert not set(anchors["text"]) & set(suite["text"])


def test_subjects_are_deterministic_and_large_enough_for_reference_folders():
    for kind in TOY_KINDS:
        a = np.asarray(draw_subject(kind, np.random.default_rng([1, 2])))
        b = np.asarray(draw_subject(kind, np.random.default_rng([1, 2])))
        assert np.array_equal(a, b) and a.shape == (128, 128, 3)
        assert a.std() > 10


def test_soft_infonce_by_hand():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(4, 3))
    txt = rng.normal(size=(4, 3))
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    labels = np.array([0, 1, 0, 2])  # rows 0 and 2 share a caption: positives of each other
    logits = 10 * img @ txt.T
    target = (labels[:, None] == labels[None]).astype(float)
    target /= target.sum(1, keepdims=True)

    def ce(m):
        log_p = m - np.log(np.exp(m).sum(1, keepdims=True))
        return -(target * log_p).sum(1).mean()

    expected = (ce(logits) + ce(logits.T)) / 2
    match = torch.tensor(labels[:, None] == labels[None])
    got = soft_infonce(torch.tensor(img), torch.tensor(txt), torch.tensor(10.0), match)
    assert float(got) == pytest.approx(expected)


def test_soft_infonce_with_partial_captions_by_hand():
    """An asymmetric match (image 1 fits the partial caption 0 too): each direction normalizes its own."""
    rng = np.random.default_rng(1)
    img = rng.normal(size=(3, 2))
    txt = rng.normal(size=(3, 2))
    match = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1]], dtype=float)
    logits = 3 * img @ txt.T

    def ce(m, target):
        log_p = m - np.log(np.exp(m).sum(1, keepdims=True))
        return -(target / target.sum(1, keepdims=True) * log_p).sum(1).mean()

    expected = (ce(logits, match) + ce(logits.T, match.T)) / 2
    got = soft_infonce(torch.tensor(img), torch.tensor(txt), torch.tensor(3.0), torch.tensor(match > 0))
    assert float(got) == pytest.approx(expected)


def test_partial_captions_and_their_matches():
    from entmap.toymodels.train import attribute_indices, caption_match, partial_subsets
    from entmap.toyworld.world import Scene

    red_circle = Scene("red", "circle", "on the left", "striped")
    blue_circle = Scene("blue", "circle", "on the left", "striped")
    subsets = partial_subsets()
    assert len(subsets) == 15 and len(set(subsets)) == 15 and len(subsets[-1]) == 4
    assert red_circle.partial_caption(subsets[-1]) == red_circle.caption
    assert red_circle.partial_caption({"shape"}) == "a circle"
    assert red_circle.partial_caption({"colour", "background"}) == "a red shape on a striped background"
    attributes = attribute_indices([red_circle, blue_circle])
    # caption 0 names only the shape ("a circle"), caption 1 everything ("a blue circle ...")
    named = torch.tensor([[False, True, False, False], [True, True, True, True]])
    match = caption_match(attributes, named)
    assert match.tolist() == [[True, False], [True, True]]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Each toy-world model trained for a few steps on CPU from the shipped training config."""
    from entmap.toymodels.train import run_training

    root = tmp_path_factory.mktemp("toy")
    block = load_training_config(REPO / "configs/toyworld-train.yaml", TRAIN_SCHEMA)
    short = {"steps": 2, "pool": 64, "decoder_steps": 2, "batch_size": 8, "lr_warmup_steps": 0}
    for kind, vae in (("scorer", None), ("vae", None), ("text_to_image", root / "vae")):
        out = root / {"scorer": "clip", "vae": "vae", "text_to_image": "sd"}[kind]
        run_training(kind, dict(block[kind], **short), out, root / f"{kind}.csv", vae, "cpu", 1)
    return root


def test_training_writes_loadable_standard_layouts(trained):
    import open_clip
    from diffusers import StableDiffusionPipeline

    for kind in ("scorer", "vae", "text_to_image"):
        log = pd.read_csv(trained / f"{kind}.csv")
        assert np.isfinite(log["loss"]).all() and len(log) >= 2
        record = json.loads((trained / f"{kind}.json").read_text())
        assert record["settings"]["steps"] == 2 and record["device"] == "cpu" and record["seconds"] > 0
    pipe = StableDiffusionPipeline.from_pretrained(str(trained / "sd"), torch_dtype=torch.float32)
    assert pipe.vae_scale_factor == 2 and pipe.unet.config.sample_size == 16
    assert pipe.vae.config.scaling_factor != 0.18215  # set from the latents' spread
    image = pipe("a red circle on the left on a plain background", num_inference_steps=2, height=32, width=32).images[0]
    assert image.size == (32, 32)
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{trained / 'clip'}")
    tokens = open_clip.get_tokenizer(f"local-dir:{trained / 'clip'}")(["a red circle"])
    assert tokens.shape == (1, 16)
    assert model.encode_text(tokens).shape == (1, 64)


def test_model_card_lists_data_training_and_quality():
    from entmap.toymodels.card import model_card

    quality = pd.DataFrame(
        {"images": ["generated"], "prompts": ["held-out"], "attribute": ["colour"], "accuracy": [0.97]}
    )
    vae_log = pd.DataFrame(
        {"step": [1, 2, 3, 1], "loss": [4.0, 2.0, 3.0, 0.5], "phase": ["vae", "vae", "vae", "decoder"]}
    )
    logs = {"scorer": pd.DataFrame({"step": [1, 2], "loss": [2.0, 1.0]}), "vae": vae_log}
    record = {"settings": {"steps": 2, "save_fp16": True}, "hardware": "a CPU", "device": "cpu", "torch": "2.x"}
    records = {
        "scorer": dict(record, seconds=90, commit="0123456789abcdef", uncommitted_changes=False),
        "vae": dict(record, seconds=60, settings={"steps": 3, "save_fp16": False}),
    }
    notes = "## Why position was at chance\n\nThe schedule."
    card = model_card(records, quality, logs, {"scorer": 12.5, "vae": 1.0}, "abc123", notes)
    assert card.index("| generated") < card.index(notes) < card.index("## Reproduce")
    for words in (
        "orange ring",
        "| scorer | 2 | 1.5 | 12.5 | `0123456789` | a CPU | cpu | 2.x | 1.5 |",
        "| vae | 3 (vae) + 1 (decoder) | 3 / 0.5 | 1.0 | not recorded | a CPU | cpu | 2.x | 1.0 |",
        "stored in float16 (scorer), else float32",
        "abc123",
        "| generated",
        "0.970",
        "steps: 2",
    ):
        assert words in card, words


def test_centre_latents_keeps_the_autoencoder_and_centres_its_latents():
    """Folding the mean into quant_conv/post_quant_conv: decode(encode(x)) unchanged, latents centred."""
    from entmap.toymodels.train import build_vae, centre_latents, to_unit_range, vae_batch
    from entmap.toyworld.world import all_scenes

    torch.manual_seed(0)
    vae = build_vae(load_training_config(REPO / "configs/toyworld-train.yaml", TRAIN_SCHEMA)["vae"]).eval()
    with torch.no_grad():
        vae.quant_conv.bias[:4] += torch.tensor([2.0, -3.0, 1.0, 0.5])  # latents far from centred
        x = to_unit_range(vae_batch(np.random.default_rng(0), all_scenes(), 16, 0.3))
        before = vae.decode(vae.encode(x).latent_dist.mode()).sample
        centre_latents(vae, x)
        latents = vae.encode(x).latent_dist.mode()
        after = vae.decode(latents).sample
    assert torch.allclose(before, after, atol=1e-5)
    assert latents.mean(dim=(0, 2, 3)).abs().max() < 1e-5
    assert vae.config.scaling_factor == pytest.approx(1 / float(latents.std()), rel=1e-5)


def test_training_config_is_checked_and_names_the_file_and_keys(tmp_path):
    from entmap.config.validation import ConfigError

    shipped = load_training_config(REPO / "configs/toyworld-train.yaml", TRAIN_SCHEMA)
    assert shipped["text_to_image"]["attention_heads"] == 2 and shipped["vae"]["kl_weight"] == 1e-5
    config = yaml.safe_load((REPO / "configs/toyworld-train.yaml").read_text())
    config["toyworld"]["text_to_image"]["attention_head"] = config["toyworld"]["text_to_image"].pop("attention_heads")
    del config["toyworld"]["scorer"]["pool"]
    bad = tmp_path / "train.yaml"
    bad.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError) as error:
        load_training_config(bad, TRAIN_SCHEMA)
    message = str(error.value)
    assert str(bad) in message and "toyworld.scorer" in message and "'pool' is a required property" in message
    assert "'attention_head' was unexpected" in message and "'attention_heads' is a required property" in message


def test_vae_training_repeats_with_its_seed_whatever_the_global_rng(tmp_path):
    """The posterior sample uses the seeded generator: the global torch RNG does not matter."""
    from entmap.toymodels.train import train_vae

    settings = load_training_config(REPO / "configs/toyworld-train.yaml", TRAIN_SCHEMA)["vae"]
    settings = dict(settings, steps=2, decoder_steps=1, batch_size=4, lr_warmup_steps=0)
    losses = []
    for run, (seed, global_seed) in enumerate([(0, 1), (0, 2), (1, 1)]):
        torch.manual_seed(global_seed)
        log, _ = train_vae(dict(settings, seed=seed), tmp_path / str(run), torch.device("cpu"))
        losses.append(log.frame()["loss"].tolist())
    assert losses[0] == losses[1] and losses[0] != losses[2]


def test_training_config_takes_the_shared_optimizers_optional_keys(tmp_path):
    """What entmap.personalize.training_loop.optimize reads with a default is allowed, not required."""
    from entmap.config.validation import ConfigError

    config = yaml.safe_load((REPO / "configs/toyworld-train.yaml").read_text())
    extra = {"mixed_precision": "bf16", "adam_beta1": 0.8, "gradient_accumulation_steps": 2, "scale_lr": False}
    config["toyworld"]["text_to_image"].update(extra)
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(config))
    assert load_training_config(good, TRAIN_SCHEMA)["text_to_image"]["mixed_precision"] == "bf16"
    config["toyworld"]["text_to_image"]["mixed_precision"] = "fp8"
    good.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match="mixed_precision"):
        load_training_config(good, TRAIN_SCHEMA)


def test_zero_terminal_snr_leaves_nothing_of_the_image_and_v_is_the_target():
    """The rescaled schedule's last alpha_bar is 0 (x_T is pure noise), its first is SD's; the
    v-prediction target is sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0, by hand; the saved sampler
    starts at t = 999 (trailing spacing)."""
    from diffusers import DDIMScheduler, DDPMScheduler

    from entmap.toymodels.train import denoising_target, sampling_schedule, training_schedule

    zero = {"prediction_type": "v_prediction", "zero_terminal_snr": True}
    sd = {"prediction_type": "epsilon", "zero_terminal_snr": False}
    rescaled, plain = DDPMScheduler(**training_schedule(zero)), DDPMScheduler(**training_schedule(sd))
    assert float(rescaled.alphas_cumprod[-1]) == 0.0 and float(plain.alphas_cumprod[-1]) == pytest.approx(
        0.0047, abs=1e-4
    )
    assert float(rescaled.alphas_cumprod[0]) == pytest.approx(float(plain.alphas_cumprod[0]))
    x0, eps = torch.randn(3, 4, 2, 2, generator=torch.Generator().manual_seed(0)), torch.randn(3, 4, 2, 2)
    t = torch.tensor([0, 500, 999])
    a = rescaled.alphas_cumprod[t].view(-1, 1, 1, 1)
    assert torch.allclose(denoising_target(rescaled, x0, eps, t), a.sqrt() * eps - (1 - a).sqrt() * x0, atol=1e-6)
    assert torch.equal(denoising_target(plain, x0, eps, t), eps)
    sampler = DDIMScheduler(**sampling_schedule(zero))
    sampler.set_timesteps(10)
    assert int(sampler.timesteps[0]) == 999 and sampler.config.prediction_type == "v_prediction"
    old = DDIMScheduler(**sampling_schedule(sd))
    old.set_timesteps(10)
    assert int(old.timesteps[0]) == 901  # SD's leading spacing with offset 1 never starts from pure noise


def test_zero_terminal_snr_needs_v_prediction(tmp_path):
    config = yaml.safe_load((REPO / "configs/toyworld-train.yaml").read_text())
    config["toyworld"]["text_to_image"]["schedule"] = {"prediction_type": "epsilon", "zero_terminal_snr": True}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match="schedule"):
        load_training_config(bad, TRAIN_SCHEMA)
