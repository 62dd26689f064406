"""The TEA sweep, its scores and trade-off table, and the collapse diagnostics over a trajectory."""

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from entmap.inputs.prompt_suites import PromptSuiteError, load_context_prompts
from entmap.measure.score import ClipScorer
from entmap.models.loading import load_pipeline
from entmap.models.sampling import initial_latents, render
from entmap.tea.adjust import adjust, adjust_prompt_embeds, anchored_prompt
from entmap.tea.collapse import set_distances
from entmap.tea.sweep import Setting, score_sweep, settings_grid, sweep_images, tradeoff_table
from entmap.tea.trajectory import diagnose_trajectory, pooled_prompts

SUITE = Path(__file__).resolve().parents[1] / "resources/prompts/context-24.tsv"
GENERATION = {"steps": 3, "guidance_scale": 5.0, "resolution": 64, "batch_size": 4, "negative_prompt": ""}
PROMPTS = pd.DataFrame(
    {
        "id": ["c0", "c1"],
        "prompt": ["{} on a beach", "a painting of {} in a forest"],
        "concept": ["{}", "{}"],
        "context": ["a beach", "a painting of a forest"],
    }
)


@pytest.fixture(scope="module")
def ti_pipe(tiny_dir):
    pipe = load_pipeline(str(tiny_dir / "tiny-sd"), torch.device("cpu"), torch.float32)
    row = torch.randn(1, 32, generator=torch.Generator().manual_seed(5)) * 3
    pipe.load_textual_inversion({"<v>": row}, token="<v>")
    return pipe


def pixels(frame: pd.DataFrame) -> np.ndarray:
    return np.stack([np.asarray(Image.open(io.BytesIO(b)), dtype=np.int16) for b in frame["png"]])


def test_anchored_prompt_drops_the_identifier_or_replaces_the_token():
    assert anchored_prompt("a photo of sks dog on a beach", "sks", "dog") == "a photo of dog on a beach"
    assert anchored_prompt("<v> on a beach", "<v>", "dog") == "dog on a beach"
    assert anchored_prompt("a <v>'s hat", "<v>", "dog") == "a dog's hat"
    # whole words only: "desks" and "tasks" contain the letters of "sks" and keep them
    assert anchored_prompt("a sks dog among desks", "sks", "dog") == "a dog among desks"
    assert anchored_prompt("sks, tasks done", "sks", "dog") == "dog, tasks done"


def test_beta_none_and_alpha_zero_is_the_identity():
    v, c = torch.randn(16, dtype=torch.float64), torch.randn(16, dtype=torch.float64)
    torch.testing.assert_close(adjust(v, c, alpha=0.0, beta=None), v)


def test_prompt_level_identity_reproduces_the_prompt_path(ti_pipe):
    """prompt_embeds from the adjustment with nothing to change give the images of the plain prompt."""
    text = "a photo of <v> dog on a beach"
    latents = initial_latents([0, 1], 64, torch.float32, torch.device("cpu"))
    plain = render(ti_pipe, latents, GENERATION, prompts=[text, text])
    embeds = adjust_prompt_embeds(ti_pipe, text, "<v>", "dog", alpha=0.0, beta=None)
    adjusted = render(ti_pipe, latents, GENERATION, prompt_embeds=torch.cat([embeds, embeds]))
    for a, b in zip(plain, adjusted, strict=True):
        assert np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float)).max() <= 1
    moved = adjust_prompt_embeds(ti_pipe, text, "<v>", "dog", alpha=1.0, beta=1.0)
    anchored = ti_pipe.text_encoder(
        ti_pipe.tokenizer(
            "a photo of dog on a beach", padding="max_length", max_length=77, return_tensors="pt"
        ).input_ids
    )[0][0]
    v_position = 4  # BOS a photo of <v>
    torch.testing.assert_close(moved[0, v_position], anchored[4], atol=1e-5, rtol=1e-5)  # <v> -> "dog"
    torch.testing.assert_close(moved[0, 6], anchored[5], atol=1e-5, rtol=1e-5)  # "on" -> "on", not shifted


def test_grid_names_and_unadjusted_first():
    grid = settings_grid([0, 0.4], [1.5])
    assert grid == [Setting("none", None, None), Setting("a0_b1.5", 0.0, 1.5), Setting("a0.4_b1.5", 0.4, 1.5)]


def test_token_sweep_is_seed_matched_and_restores_the_row(ti_pipe):
    rows = ti_pipe.text_encoder.get_input_embeddings().weight
    token_id = ti_pipe.tokenizer.convert_tokens_to_ids("<v>")
    before = rows[token_id].detach().clone()
    v_norm = float(before.norm())
    c_norm = float(rows[ti_pipe.tokenizer.convert_tokens_to_ids("dog</w>")].detach().norm())
    grid = [Setting("none", None, None), Setting("same", 0.0, v_norm / c_norm), Setting("anchor", 1.0, 1.0)]
    options = {"variant": "tea", "norm_mix": 0.5, "anchor_reduction": None}
    frame = sweep_images(ti_pipe, "s/ti", "token", "<v>", "dog", PROMPTS, [0, 1], grid, GENERATION, options)
    assert torch.equal(rows[token_id], before)
    assert len(frame) == 3 * 2 * 2 and math.isnan(frame["alpha"].iloc[0])
    by = {name: pixels(group) for name, group in frame.groupby("setting", sort=False)}
    assert np.abs(by["same"] - by["none"]).max() <= 1  # 1/255: alpha 0, beta ||V||/||c||: unchanged
    assert np.abs(by["anchor"] - by["none"]).max() > 12  # V* replaced by the anchor: changed
    # the unadjusted images are what the model draws for these prompts and seeds, rendered in the
    # sweep's own batch composition (both prompts x both seeds in one batch of 4): batch composition
    # changes float rounding, so only the same composition can be compared byte for byte
    latents = initial_latents([0, 1, 0, 1], 64, torch.float32, torch.device("cpu"))
    texts = ["<v> on a beach"] * 2 + ["a painting of <v> in a forest"] * 2
    direct = render(ti_pipe, latents, GENERATION, prompts=texts)
    np.testing.assert_array_equal(by["none"], np.stack([np.asarray(i, dtype=np.int16) for i in direct]))
    # with V* set to the anchor row, "<v> on a beach" draws "dog on a beach"
    dog = render(ti_pipe, latents, GENERATION, prompts=[text.replace("<v>", "dog") for text in texts])
    assert np.abs(by["anchor"] - np.stack([np.asarray(i, dtype=np.int16) for i in dog])).max() <= 1


def test_scores_match_the_scorer_by_hand(tiny_dir):
    scorer = ClipScorer(f"local-dir:{tiny_dir / 'tiny-clip'}", None, torch.device("cpu"))
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(3)]
    refs = [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(2)]
    buffers = []
    for image in images:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        buffers.append(buffer.getvalue())
    frame = pd.DataFrame(
        {
            "model": "s/ti",
            "setting": "none",
            "alpha": np.nan,
            "beta": np.nan,
            "prompt_id": ["c0", "c1", "c0"],
            "seed": [0, 0, 1],
            "png": buffers,
        }
    )
    out = score_sweep(frame, PROMPTS, "dog", refs, scorer)

    def unit(x):
        x = x.numpy().astype(np.float64)
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    img = unit(scorer.image_embeddings(images))
    ref = unit(scorer.image_embeddings(refs))
    texts = {
        "c0": ("a beach", "dog", "dog on a beach"),
        "c1": ("a painting of a forest", "dog", "a painting of dog in a forest"),
    }
    for i, pid in enumerate(frame["prompt_id"]):
        t = unit(scorer.text_embeddings(list(texts[pid])))
        assert out["clip_context"].iloc[i] == pytest.approx(t[0] @ img[i], abs=1e-5)
        assert out["clip_concept"].iloc[i] == pytest.approx(t[1] @ img[i], abs=1e-5)
        assert out["clip_full"].iloc[i] == pytest.approx(t[2] @ img[i], abs=1e-5)
        assert out["clip_image"].iloc[i] == pytest.approx(np.mean(ref @ img[i]), abs=1e-5)
    assert score_sweep(frame, PROMPTS, "dog", [], scorer)["clip_image"].isna().all()


def test_tradeoff_table_by_hand():
    scores = pd.DataFrame(
        {
            "model": ["a/ti"] * 4,
            "setting": ["none", "none", "a0.5_b1", "a0.5_b1"],
            "alpha": [np.nan, np.nan, 0.5, 0.5],
            "beta": [np.nan, np.nan, 1.0, 1.0],
            "prompt_id": ["c0", "c1", "c0", "c1"],
            "seed": [0, 0, 0, 0],
            "clip_context": [0.1, 0.3, 0.4, 0.4],
            "clip_concept": [0.5, 0.5, 0.2, 0.4],
            "clip_full": [0.0, 0.2, 0.1, 0.1],
            "clip_image": [0.9, 0.7, 0.5, 0.5],
        }
    )
    table = tradeoff_table(scores, {"a/ti": "token"}).set_index("setting")
    assert table.loc["a0.5_b1", "delta_clip_context"] == pytest.approx(0.4 - 0.2)
    assert table.loc["a0.5_b1", "delta_clip_image"] == pytest.approx(0.5 - 0.8)
    assert table.loc["none", "delta_clip_concept"] == 0
    assert table.loc["a0.5_b1", "n"] == 2 and table.loc["a0.5_b1", "level"] == "token"
    assert table.loc["a0.5_b1", "subject"] == "a" and table.loc["a0.5_b1", "method"] == "ti"


def test_collapse_diagnostics_over_a_trajectory(tiny_dir):
    from transformers import CLIPTextModel, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(tiny_dir / "tiny-sd"), subfolder="tokenizer")
    encoder = CLIPTextModel.from_pretrained(str(tiny_dir / "tiny-sd"), subfolder="text_encoder").eval()
    dog = encoder.get_input_embeddings().weight[tokenizer.convert_tokens_to_ids("dog</w>")].detach().clone()
    trajectory = torch.stack([dog, dog * 3 + 0.5])
    templates = ["{} on a beach", "a painting of {} in a forest", "{} in the snow"]
    frame = diagnose_trajectory(tokenizer, encoder, "<v>", "dog", [0, 10], trajectory, templates)
    first, last = frame.iloc[0], frame.iloc[1]
    # V* equal to the anchor row: the two prompt sets coincide
    assert first["hausdorff"] == pytest.approx(0, abs=1e-6) and first["kl"] == pytest.approx(0, abs=1e-9)
    assert first["cos_anchor"] == pytest.approx(1) and first["distances"] == "paper"
    p_c = pooled_prompts(tokenizer, encoder, [t.format("dog") for t in templates])
    # the paper's Mahalanobis of a set to its own distribution is not 0: each point's own distance
    assert first["mahalanobis"] == pytest.approx(set_distances(p_c, p_c)["mahalanobis"], rel=1e-5)
    assert last["norm_ratio"] > 2.5 and last["hausdorff"] > 0
    # the pooled vector is the final-layer output at the end-of-text token
    ids = tokenizer(["dog on a beach"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    eos = int((ids[0] == tokenizer.eos_token_id).nonzero()[0])
    hidden = encoder(ids).last_hidden_state[0, eos].detach().double().numpy()
    np.testing.assert_allclose(pooled_prompts(tokenizer, encoder, ["dog on a beach"])[0], hidden, atol=1e-6)
    # the step-10 distances are set_distances of the pooled sets
    weights = encoder.get_input_embeddings().weight
    with torch.no_grad():
        weights[tokenizer.convert_tokens_to_ids("<v>")] = trajectory[1]
    expected = set_distances(
        pooled_prompts(tokenizer, encoder, [t.format("<v>") for t in templates]),
        pooled_prompts(tokenizer, encoder, [t.format("dog") for t in templates]),
    )
    assert last["mean_pairwise"] == pytest.approx(expected["mean_pairwise"])
    assert last["intra_v"] == pytest.approx(expected["intra_x"]) and last["intra_c"] == pytest.approx(
        expected["intra_y"]
    )


def test_context_suite_is_checked(tmp_path):
    suite = load_context_prompts(SUITE)
    assert len(suite) == 24 and all(p.count("{}") == 1 for p in suite["prompt"])
    assert list(load_context_prompts(SUITE, 3)["id"]) == ["c00", "c01", "c02"]
    bad = tmp_path / "bad.tsv"
    bad.write_text("id\tprompt\tconcept\tcontext\nc0\ta beach\t{}\ta beach\n")
    with pytest.raises(PromptSuiteError, match=r"bad.tsv:2: prompt must hold exactly one"):
        load_context_prompts(bad)


def test_pooled_vector_is_the_end_of_text_output_with_the_legacy_eos_id():
    """SD v1.5's text-encoder config says eos_token_id 2, so transformers pools at the highest token id:
    with an added token V* that is V*'s own output, not the end of text. entmap takes the EOS position
    from the tokenizer instead."""
    from transformers import CLIPTextConfig, CLIPTextModel

    from entmap.models.tiny import clip_tokenizer

    tokenizer = clip_tokenizer()
    torch.manual_seed(0)
    config = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        eos_token_id=2,  # the legacy value of SD v1.5's and OpenAI CLIP's configs
    )
    encoder = CLIPTextModel(config).eval()
    tokenizer.add_tokens("<v>")
    encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    prompts = ["<v> on a beach", "a painting of <v> in a forest"]
    ids = tokenizer(prompts, padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        out = encoder(ids)
    v_id, eos_id = tokenizer.convert_tokens_to_ids("<v>"), tokenizer.eos_token_id
    v_pos = [int((row == v_id).nonzero()[0]) for row in ids]
    eos_pos = [int((row == eos_id).nonzero()[0]) for row in ids]
    # the trap: pooler_output is V*'s output
    for i in range(2):
        torch.testing.assert_close(out.pooler_output[i], out.last_hidden_state[i, v_pos[i]])
    pooled = pooled_prompts(tokenizer, encoder, prompts)
    expected = np.stack([out.last_hidden_state[i, eos_pos[i]].double().numpy() for i in range(2)])
    np.testing.assert_allclose(pooled, expected, atol=1e-6)
    assert np.abs(pooled - out.pooler_output.double().numpy()).max() > 1e-3
