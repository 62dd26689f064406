"""The toy world's shipped weights (resources/models/toyworld/): they load offline through the
standard paths, fit the size budget, and do what the model card says on a few fixed cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from entmap.toyworld.world import COLOURS, Scene, read_colour, render

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "resources/models/toyworld"


def test_shipped_folder_is_complete_and_under_40_mb():
    for name in ("MODEL_CARD.md", "quality.csv", "sd/model_index.json", "clip/open_clip_config.json"):
        assert (SHIPPED / name).is_file(), name
    size = sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file())
    assert size < 40e6
    weights = list(SHIPPED.rglob("*.safetensors"))
    assert len(weights) == 4 and not list(SHIPPED.rglob("*.bin"))  # unet, text encoder, vae, scorer


def test_model_card_quotes_the_shipped_quality_table():
    quality = pd.read_csv(SHIPPED / "quality.csv")
    card = (SHIPPED / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert quality.to_markdown(index=False, floatfmt=".3f") in card
    accuracy = quality.set_index(["images", "prompts", "attribute", "read by"])["accuracy"]
    for prompts in ("held-out", "seen"):  # what the shipped text-to-image model is trusted for
        for attribute in ("colour", "position", "background"):
            assert accuracy["generated", prompts, attribute, "pixels"] >= 0.95
        assert accuracy["generated", prompts, "shape", "pixels"] >= 0.60  # composition of held-out pairs
    for attribute in ("colour", "position", "background"):
        assert accuracy["scorer on real scenes", "held-out", attribute, "zero-shot"] >= 0.95
        assert accuracy["real scenes through the VAE", "held-out", attribute, "pixels"] >= 0.95


README_ROWS = {  # README's quality table: row start -> (images, prompts, read by) of quality.csv
    "| generated | held-out pairs | pixel checks |": ("generated", "held-out", "pixels"),
    "| generated | seen pairs | pixel checks |": ("generated", "seen", "pixels"),
    "| real scenes through the VAE | held-out pairs | pixel checks |": (
        "real scenes through the VAE",
        "held-out",
        "pixels",
    ),
    "| real scenes | held-out pairs | scorer, zero-shot |": ("scorer on real scenes", "held-out", "zero-shot"),
}


def test_readme_quotes_the_shipped_quality_table():
    """README's table (two decimals) is the shipped quality.csv, row by row."""
    quality = pd.read_csv(SHIPPED / "quality.csv").set_index(["images", "prompts", "read by", "attribute"])
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for start, key in README_ROWS.items():
        cells = " | ".join(
            f"{quality.loc[(*key, attribute), 'accuracy']:.2f}"
            for attribute in ("colour", "position", "shape", "background")
        )
        assert f"{start} {cells} |" in readme, (key, cells)
    for prompts, words in (("held-out", "held-out pairs"), ("seen", "seen pairs")):
        by_scorer = quality.loc[("generated", prompts, "scorer", "shape"), "accuracy"]
        assert f"| generated | {words} | scorer, zero-shot | | | {by_scorer:.2f} | |" in readme


@pytest.fixture(scope="module")
def pipe():
    from diffusers import StableDiffusionPipeline

    torch.set_num_threads(1)
    pipe = StableDiffusionPipeline.from_pretrained(str(SHIPPED / "sd"), torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_shipped_pipeline_loads_offline_and_draws_the_asked_colour(pipe):
    """Six prompts, one per colour (shapes and places varied), one seed each: the pixel check
    reads the asked colour back from most of them (the card's table measures it on 48)."""
    assert pipe.vae_scale_factor == 2 and pipe.unet.config.sample_size == 16
    scenes = [
        Scene(colour, shape, position, background)
        for colour, shape, position, background in zip(
            COLOURS,
            ("square", "triangle", "circle", "cross", "diamond", "ring"),
            ("on the left", "at the top", "in the center", "on the right", "at the bottom", "on the left"),
            ("plain", "striped", "dotted", "checkered", "plain", "striped"),
            strict=True,
        )
    ]
    generator = [torch.Generator().manual_seed(i) for i in range(len(scenes))]
    images = pipe(
        [s.caption for s in scenes],
        num_inference_steps=25,
        guidance_scale=5.0,
        height=32,
        width=32,
        generator=generator,
        output_type="np",
    ).images
    found = [read_colour((image * 255).round().astype(np.uint8)) for image in images]
    hits = sum(f == s.colour for f, s in zip(found, scenes, strict=True))
    assert hits >= 5, list(zip(found, [s.colour for s in scenes], strict=True))


def test_shipped_scorer_loads_with_open_clip_and_reads_real_scenes():
    """Zero-shot through open_clip's local-dir path: each rendered scene's own caption scores
    higher than the captions of other colours."""
    import open_clip

    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{SHIPPED / 'clip'}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{SHIPPED / 'clip'}")
    model.eval()
    scene = Scene("green", "triangle", "on the right", "dotted")
    captions = [Scene(c, scene.shape, scene.position, scene.background).caption for c in COLOURS]
    with torch.no_grad():
        image = model.encode_image(preprocess(Image.fromarray(render(scene, 7))).unsqueeze(0))
        text = model.encode_text(tokenizer(captions))
    scores = torch.nn.functional.normalize(image, dim=-1) @ torch.nn.functional.normalize(text, dim=-1).T
    assert list(COLOURS)[int(scores.argmax())] == "green"


def test_toy_prompts_fit_the_shipped_scorers_context():
    """open_clip cuts text past the scorer's 16 tokens silently: every prompt of the toy suites
    (the TEA templates filled with the default subjects' class words) must fit, and a longer
    text is flagged and warned about."""
    import yaml

    from entmap.measure.score import ClipScorer

    scorer = ClipScorer(f"local-dir:{SHIPPED / 'clip'}", None, torch.device("cpu"))
    suite = pd.read_csv(REPO / "resources/prompts/toyworld-60.tsv", sep="\t")
    context = pd.read_csv(REPO / "resources/prompts/toyworld-context.tsv", sep="\t")
    class_words = [s["class_word"] for s in yaml.safe_load((REPO / "config.yaml").read_text())["subjects"].values()]
    texts = list(suite["text"]) + [t.format(w) for t in context["prompt"] for w in class_words]
    assert len(texts) == 60 + 8 * len(class_words) and scorer.truncated(texts) == []
    long = "a red circle on the left and a blue square on the right on a striped background"  # 17 words
    assert scorer.truncated([long, "a red circle"]) == [long]
    with pytest.warns(UserWarning, match="16-token context"):
        scorer.text_embeddings([long])


def test_pixel_checks_read_scenes_back_through_the_shipped_autoencoder():
    """The quality table's pixel checks on images that went through the VAE (what generated
    images are made of; `decoded_accuracy`, the table's own row): colour, position and
    background still read back, and most shapes, so a low generated accuracy is mostly the
    model's, not the check's."""
    from diffusers import AutoencoderKL

    from entmap.toymodels.evaluate import decoded_accuracy
    from entmap.toyworld.world import all_scenes

    vae = AutoencoderKL.from_pretrained(str(SHIPPED / "sd/vae"), torch_dtype=torch.float32).eval()
    scenes = all_scenes()
    picked = [scenes[i] for i in np.random.default_rng(0).choice(len(scenes), 60, replace=False)]
    read = decoded_accuracy(vae, picked, [0, 1])
    assert len(read) == 120 and read["caption"].tolist()[:2] == [picked[0].caption] * 2
    assert read["colour"].all() and read["position"].all() and read["background"].all()
    assert read["shape"].mean() >= 0.8  # the VAE softens edges; the blurred templates follow them


def test_collapse_diagnostics_load_the_float16_text_encoder_in_float32():
    from transformers import CLIPTextModel

    from entmap.tea.trajectory import load_text_encoder

    stored = CLIPTextModel.from_pretrained(SHIPPED / "sd", subfolder="text_encoder")
    assert stored.dtype == torch.float16  # what transformers gives without a dtype
    _, text_encoder = load_text_encoder(str(SHIPPED / "sd"))
    assert text_encoder.dtype == torch.float32
    assert torch.equal(
        text_encoder.get_input_embeddings().weight, stored.get_input_embeddings().weight.to(torch.float32)
    )


def test_the_prompt_not_the_seed_decides_where_the_object_goes(pipe):
    """Five position prompts at each of two seeds: the pixel check reads back each asked place
    (before the zero-terminal-SNR retrain the seed decided: all five prompts gave one place)."""
    from entmap.toymodels.diagnose import generated_positions

    read = generated_positions(pipe, Scene("blue", "square", "on the left", "dotted"), [100, 101], 5.0, steps=10)
    assert read.tolist() == [[0, 1, 2, 3, 4]] * 2
