"""Cross-attention capture and shift: probabilities against a hand computation, images untouched,
exact zeros where nothing changed, and the reductions against numbers worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from entmap.attention.capture import capture_attention, text_attention_layers
from entmap.attention.reduce import class_means
from entmap.attention.selection import choose_prompts, prompt_e_sem
from entmap.attention.stage import AttentionRun, render_captured, stats_frame
from entmap.attention.summary import by_axis, correlation, overall
from entmap.attention.tokens import classify, token_layout
from entmap.core.image_codec import png_bytes
from entmap.models.adapter_formats import apply_adapter
from entmap.models.families import family_of_pipeline
from entmap.models.loading import load_pipeline
from entmap.models.sampling import pipeline_latents, render
from entmap.personalize.perturb import save_perturbation

CPU = torch.device("cpu")
FAMILIES = ["sd1", "sdxl", "sd3", "flux"]
SETTINGS = {"steps": 3, "guidance_scale": 5.0, "resolution": 64, "batch_size": 4, "negative_prompt": ""}
PROMPTS = pd.DataFrame(
    {
        "prompt_id": ["p1", "p2"],
        "text": ["a red circle on the left", "a dog in a park"],
        "kind": ["high", "low"],
        "rank": [1, 1],
        "e_sem": [0.2, 0.0],
    }
)


@pytest.fixture(scope="module")
def folders(tiny_dir, tiny_family_dir) -> dict[str, str]:
    return {"sd1": str(tiny_dir / "tiny-sd"), **{f: str(tiny_family_dir / f) for f in ("sdxl", "sd3", "flux")}}


@pytest.fixture(scope="module")
def pipes(folders) -> dict:
    """One base pipeline per family, loaded once for the module (float32 on the CPU)."""
    return {family: load_pipeline(folder, CPU, torch.float32) for family, folder in folders.items()}


class Recorder:
    """A sink that keeps every (layer, step, probabilities) it is handed."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, torch.Tensor]] = []

    def __call__(self, layer: int, step: int, probabilities: torch.Tensor) -> None:
        self.calls.append((layer, step, probabilities.clone()))


# --- token classes and reductions, by hand -------------------------------------------------------


def test_token_classes_from_ids_and_mask():
    # CLIP as SD 1.5 pads: with the end token itself, masked out
    assert classify([49406, 320, 1929, 49407, 49407, 49407], [1, 1, 1, 1, 0, 0], 49406, 49407) == [
        "bos", "word", "word", "eos", "pad", "pad",
    ]  # fmt: skip
    # CLIP-G pads with "!" (id 0); a tokenizer that keeps the mask at 1 after the end token still pads
    assert classify([49406, 320, 49407, 0, 0], [1, 1, 1, 1, 1], 49406, 49407) == ["bos", "word", "eos", "pad", "pad"]
    # T5: no start token
    assert classify([37, 3, 1, 0, 0], [1, 1, 1, 0, 0], None, 1) == ["word", "word", "eos", "pad", "pad"]


@pytest.mark.parametrize("family", FAMILIES)
def test_the_layout_has_the_length_of_what_the_denoiser_reads(pipes, family):
    pipe = pipes[family]
    layout = token_layout(pipe, "a red circle on the left")
    expected = {"sd1": 77, "sdxl": 77, "sd3": 77 + 256, "flux": 512}[family]
    assert len(layout) == expected
    words = [t for t, c in zip(layout.texts, layout.classes, strict=True) if c == "word"]
    assert words and layout.classes.count("eos") == (2 if family == "sd3" else 1)
    assert ("bos" in layout.classes) == (family != "flux")  # Flux reads T5 alone


def test_class_means_on_a_hand_made_tensor():
    values = np.array([[[1.0, 2.0, 4.0, 8.0, 16.0, 32.0]], [[0.0, 0.0, 6.0, 0.0, 3.0, 3.0]]])  # (2, 1, J=6)
    classes = ["bos", "word", "word", "eos", "pad", "pad"]
    means = class_means(values, classes)
    assert means["bos"].tolist() == [[1.0], [0.0]]
    assert means["word"].tolist() == [[3.0], [3.0]]
    assert means["eos"].tolist() == [[8.0], [0.0]]
    assert means["pad"].tolist() == [[24.0], [3.0]]
    assert means["all"].tolist() == [[63 / 6], [2.0]]
    assert np.isnan(class_means(values, ["word"] * 6)["bos"]).all()


def hand_frame() -> pd.DataFrame:
    """One (model, prompt), 2 layers x 2 steps, positions bos, word, word, eos and 3 paddings merged.

    |Delta A| per position (bos, w1, w2, eos, pad1..pad3):
      layer 0 step 0: 0.1, 0.2, 0.4, 0.1, 0, 0, 0      layer 0 step 1: 0, 0, 0, 0, 0, 0, 0
      layer 1 step 0: 0.7, 0, 0, 0, 0.1, 0.2, 0.3      layer 1 step 1: 0, 0.6, 0, 0, 0, 0, 0
    """
    per_position = {
        (0, 0): [0.1, 0.2, 0.4, 0.1, 0, 0, 0],
        (0, 1): [0, 0, 0, 0, 0, 0, 0],
        (1, 0): [0.7, 0, 0, 0, 0.1, 0.2, 0.3],
        (1, 1): [0, 0.6, 0, 0, 0, 0, 0],
    }
    rows = []
    for (layer, step), v in per_position.items():
        classes = ["bos", "word", "word", "eos", "pad"]
        for token, cls, values in zip([0, 1, 2, 3, -1], classes, [*([x] for x in v[:4]), v[4:]], strict=True):
            rows.append(
                {
                    "model": "s/lora",
                    "prompt_id": "p1",
                    "kind": "high",
                    "rank": 1,
                    "e_sem": 0.3,
                    "layer_index": layer,
                    "layer": f"l{layer}",
                    "n_queries": 4,
                    "step": step,
                    "timestep": 900.0 - 100 * step,
                    "token": token,
                    "token_class": cls,
                    "n_tokens": len(values),
                    "base_attention": 1 / 7,
                    "model_attention": 1 / 7,
                    "mean_abs_delta": float(np.mean(values)),
                }
            )
    return pd.DataFrame(rows)


def test_shift_reductions_on_a_hand_made_table():
    frame = hand_frame()
    cells = overall(frame).iloc[0]
    # over all 7 positions: sums 0.8, 0, 1.3, 0.6 divided by 7 per (layer, step), then the mean of the four
    assert cells["shift"] == pytest.approx((0.8 / 7 + 0 + 1.3 / 7 + 0.6 / 7) / 4, abs=1e-15)
    assert cells["shift_word"] == pytest.approx((0.3 + 0 + 0 + 0.3) / 4, abs=1e-15)
    assert cells["shift_bos"] == pytest.approx((0.1 + 0.7) / 4, abs=1e-15)
    assert cells["shift_pad"] == pytest.approx((0.6 / 3) / 4, abs=1e-15)
    assert cells["shift_eos"] == pytest.approx(0.1 / 4, abs=1e-15)
    assert cells["base_share_pad"] == pytest.approx(3 / 7) and cells["model_share_word"] == pytest.approx(2 / 7)
    layers = by_axis(frame, ["layer_index", "layer", "n_queries"]).set_index("layer_index")
    assert layers.loc[0, "shift"] == pytest.approx((0.8 / 7) / 2)
    assert layers.loc[1, "shift"] == pytest.approx((1.3 + 0.6) / 7 / 2)
    assert layers.loc[1, "shift_word"] == pytest.approx((0 + 0.3) / 2)
    steps = by_axis(frame, ["step", "timestep"]).set_index("step")
    assert steps.loc[0, "shift"] == pytest.approx((0.8 / 7 + 1.3 / 7) / 2) and steps.loc[1, "timestep"] == 800.0


def test_correlation_is_scipys_and_undefined_without_variation():
    x, y = np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0, 4.0])
    assert correlation(x, y, "spearman") == pytest.approx(0.8)
    assert correlation(x, y, "pearson") == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert np.isnan(correlation(x, np.zeros(4), "spearman")) and np.isnan(correlation(x[:2], y[:2], "pearson"))


def test_prompts_are_the_models_most_and_least_disrupted_outside_its_own_category():
    suite = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d", "e", "f"],
            "category": ["people", "people", "animals", "animals", "objects", "objects"],
            "text": list("ABCDEF"),
        }
    )
    disruption = pd.DataFrame(
        {
            "prompt_id": [p for p in "abcdef" for _ in range(2)],
            "a_base": [0.5] * 12,  # binary fractions: the ties are exact
            "a_pers": [1.0, 1.0, 0.5, 0.5, 0.75, 0.5, 0.625, 0.625, 0.625, 0.375, 0.375, 0.375],
        }
    )
    e_sem = prompt_e_sem(disruption)
    assert e_sem.to_dict() == {"a": 0.5, "b": 0.0, "c": 0.125, "d": 0.125, "e": 0.125, "f": 0.125}
    chosen = choose_prompts(suite, e_sem, "people", {"most_disrupted": 2, "least_disrupted": 1})
    # "a" is the most disrupted but people prompts are the subject's own; ties keep the suite's order
    expected = [["c", "high", 1], ["d", "high", 2], ["e", "low", 1]]
    assert chosen[["prompt_id", "kind", "rank"]].values.tolist() == expected
    everything = choose_prompts(suite, e_sem, None, {"most_disrupted": 1, "least_disrupted": 9})
    assert everything["prompt_id"].tolist() == ["a", "b", "c", "d", "e", "f"]  # 5 left for the low side
    listed = choose_prompts(suite, e_sem, "people", ["f", "a"])
    assert listed[["prompt_id", "kind"]].values.tolist() == [["f", "listed"], ["a", "listed"]]
    with pytest.raises(ValueError, match="not evaluated"):
        choose_prompts(suite, e_sem, None, ["zz"])


# --- capture on the tiny pipelines of every family -----------------------------------------------


def capture_once(pipe, texts: list[str], seeds: list[int], steps=None):
    recorder = Recorder()
    length = len(token_layout(pipe, texts[0]))
    images, calls = render_captured(pipe, texts, seeds, SETTINGS, recorder, length, steps, None)
    return recorder, images, calls, length


@pytest.mark.parametrize("family", FAMILIES)
def test_probabilities_sum_to_one_over_text_positions_at_every_layer_and_step(pipes, family):
    pipe = pipes[family]
    recorder, _, calls, length = capture_once(pipe, ["a red circle on the left", "a dog"], [0, 1])
    layers = text_attention_layers(pipe)
    assert calls == SETTINGS["steps"]
    seen = sorted((layer, step) for layer, step, _ in recorder.calls)
    assert seen == [(layer, step) for layer in range(len(layers)) for step in range(calls)]  # each once
    for _, _, probabilities in recorder.calls:
        assert probabilities.dtype == torch.float32 and probabilities.shape[0] == 2
        assert probabilities.shape[-1] == length and (probabilities >= 0).all()
        torch.testing.assert_close(probabilities.sum(-1), torch.ones(probabilities.shape[:2]), atol=1e-5, rtol=0)
    if family == "flux":
        assert any(name.startswith("single_transformer_blocks") for name in layers)


def rms_norm(x: torch.Tensor, module) -> torch.Tensor:
    """RMSNorm written out: x / sqrt(mean(x^2) + eps) * weight."""
    out = x / torch.sqrt((x * x).mean(-1, keepdim=True) + module.eps)
    return out * module.weight.double() if module.weight is not None else out


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding written out on (n, S, H, d): each pair (a, b) -> (a cos - b sin, b cos + a sin)."""
    a, b = x[..., 0::2], x[..., 1::2]
    rotated = torch.stack([-b, a], dim=-1).flatten(-2)
    return x * cos[None, :, None, :] + rotated * sin[None, :, None, :]


def hand_probabilities(family: str, attn, inputs: dict, n: int, text_length: int) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) averaged over heads, in float64, from the layer's own weights."""

    def linear(module, x):
        return x.double() @ module.weight.double().T + (module.bias.double() if module.bias is not None else 0)

    hidden = inputs["hidden_states"][-n:]
    text = inputs.get("encoder_hidden_states")
    text = text[-n:] if text is not None else None
    if family in ("sd1", "sdxl"):
        q, k = linear(attn.to_q, hidden), linear(attn.to_k, text)
    elif family == "sd3":
        q, k = linear(attn.to_q, hidden), linear(attn.add_k_proj, text)
    else:
        if text is None:  # single-stream: text first, then the image
            text, hidden = hidden[:, :text_length], hidden[:, text_length:]
            k_module, k_norm = attn.to_k, attn.norm_k
        else:
            k_module, k_norm = attn.add_k_proj, attn.norm_added_k
        d = attn.head_dim
        q = rms_norm(linear(attn.to_q, hidden).unflatten(-1, (-1, d)), attn.norm_q)
        k = rms_norm(linear(k_module, text).unflatten(-1, (-1, d)), k_norm)
        cos, sin = (t.double() for t in inputs["image_rotary_emb"])
        q, k = rope(q, cos[text_length:], sin[text_length:]), rope(k, cos[:text_length], sin[:text_length])
        q, k = q.flatten(-2), k.flatten(-2)
    heads = attn.heads
    q = q.view(n, q.shape[1], heads, -1).transpose(1, 2)
    k = k.view(n, k.shape[1], heads, -1).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / np.sqrt(q.shape[-1])
    return torch.softmax(scores, dim=-1).mean(dim=1)


@pytest.mark.parametrize("family", FAMILIES)
def test_recorded_probabilities_are_softmax_of_the_layers_own_queries_and_keys(pipes, family):
    """The first and the last layer (Flux: a double-stream and a single-stream block), at step 1."""
    pipe = pipes[family]
    layers = text_attention_layers(pipe)
    names = list(layers)
    inputs = {0: [], len(names) - 1: []}

    def keeper(index):
        def keep_inputs(module, args, kwargs):
            keys = ["hidden_states", "encoder_hidden_states", "attention_mask", "image_rotary_emb"]
            inputs[index].append({**dict(zip(keys, args, strict=False)), **kwargs})

        return keep_inputs

    hooks = [layers[names[i]].register_forward_pre_hook(keeper(i), with_kwargs=True) for i in inputs]
    try:
        recorder, _, _, length = capture_once(pipe, ["a red circle on the left", "a blue square"], [3, 4])
    finally:
        for hook in hooks:
            hook.remove()
    if family == "flux":
        assert names[0].startswith("transformer_blocks") and names[-1].startswith("single_transformer_blocks")
    step = 1
    for index, calls in inputs.items():
        assert len(calls) == SETTINGS["steps"]
        recorded = next(p for layer, s, p in recorder.calls if layer == index and s == step)
        expected = hand_probabilities(family, layers[names[index]], calls[step], 2, length)
        torch.testing.assert_close(recorded.double(), expected, atol=2e-6, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_capture_leaves_the_images_byte_identical_and_restores_the_processors(pipes, family):
    pipe = pipes[family]
    texts, seeds = ["a red circle on the left", "a lighthouse at dusk"], [5, 6]
    before = {name: module.processor for name, module in text_attention_layers(pipe).items()}
    plain = render(pipe, pipeline_latents(pipe, seeds, SETTINGS["resolution"]), SETTINGS, prompts=texts)
    recorder, captured, _, _ = capture_once(pipe, texts, seeds)
    assert recorder.calls
    assert [png_bytes(i) for i in captured] == [png_bytes(i) for i in plain]
    after = {name: module.processor for name, module in text_attention_layers(pipe).items()}
    assert all(after[name] is before[name] for name in before)

    def failing(layer, step, probabilities):
        raise RuntimeError("sink failed")

    with pytest.raises(RuntimeError, match="sink failed"):
        render_captured(pipe, texts, seeds, SETTINGS, failing, len(token_layout(pipe, texts[0])), None, None)
    assert all(module.processor is before[name] for name, module in text_attention_layers(pipe).items())


def test_only_the_kept_steps_and_layers_are_captured(pipes):
    pipe = pipes["sd1"]
    recorder = Recorder()
    length = len(token_layout(pipe, "a dog"))
    latents = pipeline_latents(pipe, [0], SETTINGS["resolution"])
    with capture_attention(pipe, recorder, 1, length, steps=[0, 2], layers=[r"^up_blocks\.1\."]) as capture:
        render(pipe, latents, SETTINGS, prompts=["a dog"])
    assert all(name.startswith("up_blocks.1.") for name in capture.layers) and len(capture.layers) == 2
    assert sorted({(layer, step) for layer, step, _ in recorder.calls}) == [(0, 0), (0, 2), (1, 0), (1, 2)]
    with pytest.raises(ValueError, match="match no layer"):
        capture_attention(pipe, recorder, 1, length, layers=["nope"]).__enter__()


# --- the shift: exactly zero where nothing changed, not zero where something did ------------------


def shift_of(base_pipe, model_pipe, prompts: pd.DataFrame, tmp_path, steps=None) -> pd.DataFrame:
    """The stage's two passes with already loaded pipelines; its statistics table."""
    run = AttentionRun(prompts, [0, 1], SETTINGS, steps, None)
    layouts, layers, kept, timesteps = run.base_pass(base_pipe, tmp_path)
    accumulator, _ = run.model_pass(model_pipe, tmp_path, layouts, layers, kept)
    return stats_frame("m/x", run, layouts, layers, kept, timesteps, accumulator)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_base_against_itself_has_exactly_zero_shift(pipes, family, tmp_path):
    stats = shift_of(pipes[family], pipes[family], PROMPTS, tmp_path)
    assert (stats["mean_abs_delta"] == 0).all()
    assert (stats["base_attention"] == stats["model_attention"]).all()
    assert set(stats["token_class"]) >= {"word", "eos", "pad"} and (stats["base_attention"] > 0).all()
    # each (prompt, layer, step): the attention over the J positions adds up to 1
    mass = (stats["base_attention"] * stats["n_tokens"]).groupby([stats["prompt_id"], stats["layer"], stats["step"]])
    np.testing.assert_allclose(mass.sum().to_numpy(), 1.0, atol=1e-5)


def test_textual_inversion_leaves_attention_on_prompts_without_its_token_exactly_unchanged(folders, pipes, tmp_path):
    from safetensors.torch import save_file

    model = load_pipeline(folders["sd1"], CPU, torch.float32)
    vector = torch.randn(1, 32, generator=torch.Generator().manual_seed(4))
    save_file({"<v>": vector}, str(tmp_path / "ti.safetensors"))
    apply_adapter(model, "ti", tmp_path / "ti.safetensors", "<v>")
    stats = shift_of(pipes["sd1"], model, PROMPTS, tmp_path)
    assert (stats["mean_abs_delta"] == 0).all()
    with_token = PROMPTS.assign(text=[f"{t} with <v>" for t in PROMPTS["text"]])
    with pytest.raises(ValueError, match="tokenizes"):
        shift_of(pipes["sd1"], model, with_token, tmp_path)


def test_noise_where_text_meets_image_shifts_the_attention(folders, pipes, tmp_path):
    model = load_pipeline(folders["sd1"], CPU, torch.float32)
    save_perturbation(model, 0.5, 0, tmp_path / "kv.safetensors")
    apply_adapter(model, "cd", tmp_path / "kv.safetensors", None)
    stats = shift_of(pipes["sd1"], model, PROMPTS, tmp_path, steps=[0, 2])
    assert sorted(stats["step"].unique()) == [0, 2]
    assert (stats.groupby("layer")["mean_abs_delta"].max() > 1e-6).all()
    assert family_of_pipeline(model).name == "sd1"


# --- the stage's files, the run's tables and figures ----------------------------------------------


def test_the_stage_writes_its_tables_and_the_summary_its_tables_and_figures(folders, tmp_path):
    from entmap.attention.stage import write_model_attention
    from entmap.attention.summary import write_attention_tables
    from entmap.core.parquet_schemas import (
        ATTENTION,
        ATTENTION_MAPS,
        DISRUPTION,
        STRUCT_ELEMENTS,
        read_table,
        write_table,
    )
    from entmap.core.vocabulary import ATTENTION_TABLES
    from entmap.personalize.train import make_perturbation
    from entmap.present.attention_figures import attention_maps_figure, attention_shift_figure

    suite = pd.DataFrame(
        {"id": ["p1", "p2", "p3"], "category": ["people", "animals", "objects"], "text": ["a man", "a cat", "a cup"]}
    )
    disruption = pd.DataFrame(
        {
            "prompt_id": ["p1", "p1", "p2", "p2", "p3", "p3"],
            "seed": [0, 1] * 3,
            "model": "kv0p5/perturb",
            "a_base": [0.5] * 6,
            "a_pers": [0.5, 0.5, 0.75, 0.75, 0.25, 0.5],
            "d_sem": [0.0] * 6,
            "lpips": [0.0] * 6,
            "f_base": [np.nan] * 6,
            "f_pers": [np.nan] * 6,
            **{f"f_{image}_{e}": [np.nan] * 6 for e in STRUCT_ELEMENTS for image in ("base", "pers")},
            "reused": [False] * 6,
        }
    )
    write_table(disruption, tmp_path / "disruption.parquet", DISRUPTION)
    adapter = tmp_path / "adapters/kv0p5/perturb"
    make_perturbation(folders["sd1"], 0.5, 0, adapter)
    spec = {"prompts": {"most_disrupted": 1, "least_disrupted": 1}, "steps": [1, 2], "layers": [r"attn2$"]}
    runtime = {"device": "cpu", "dtype": "float32", "threads": 1}
    stats_path, maps_path = tmp_path / "stats.parquet", tmp_path / "maps.parquet"
    write_model_attention(
        folders["sd1"], adapter, "kv0p5/perturb", suite, [str(tmp_path / "disruption.parquet")], None, spec,
        [0, 1], SETTINGS, runtime, stats_path, maps_path,
    )  # fmt: skip
    stats, maps = read_table(stats_path, ATTENTION), read_table(maps_path, ATTENTION_MAPS)
    # E_sem: p2 0.25, p3 0.125, p1 0: p2 is the most disrupted, p1 the least
    cells = stats.drop_duplicates("prompt_id").set_index("prompt_id")
    assert cells.loc["p2", ["kind", "e_sem"]].tolist() == ["high", 0.25] and cells.loc["p1", "kind"] == "low"
    assert sorted(stats["step"].unique()) == [1, 2] and (stats["n_seeds"] == 2).all()
    assert set(maps["kind"]) == {"base", "model"} and maps["prompt_id"].nunique() == 1
    assert all(len(v) == s * s for v, s in zip(maps["values"], maps["side"], strict=True))
    outputs = {name: str(tmp_path / f"{name}.csv") for name in ATTENTION_TABLES}
    write_attention_tables([str(stats_path)], dict(zip(suite["id"], suite["text"], strict=True)),
                           {"bootstrap": 50, "bootstrap_seed": 0}, outputs)  # fmt: skip
    table3 = pd.read_csv(outputs["table3"])
    assert table3[["prompt_id", "kind", "text"]].values.tolist() == [["p2", "high", "a cat"], ["p1", "low", "a man"]]
    assert (table3["attention_shift"] > 0).all() and table3["population"].tolist() == ["control", "control"]
    by_layer = pd.read_csv(outputs["attention_by_layer"])
    assert len(by_layer) == 2 * 7 and (by_layer["shift"] > 0).all()  # the tiny UNet's 7 cross-attention layers
    correlation_table = pd.read_csv(outputs["attention_correlation"])
    assert set(correlation_table["models"]) == {"study", "all"} and correlation_table["value"].isna().all()  # 2 cells
    for path in attention_shift_figure(outputs["attention_layer_step"], tmp_path / "shift"):
        assert path.stat().st_size > 5_000
    for path in attention_maps_figure(maps_path, {"p2": "a cat"}, tmp_path / "maps"):
        assert path.stat().st_size > 5_000


def test_the_report_section_states_the_numbers(tmp_path):
    from entmap.core.vocabulary import output_caption
    from entmap.present.report import attention_in_words

    rows = [
        ("a", "lora", "study", "high", 0.4),
        ("a", "lora", "study", "low", 0.1),
        ("b", "cd", "study", "high", 0.2),
        ("b", "cd", "study", "low", 0.3),
        ("a", "ti", "study", "high", 0.0),
        ("a", "ti", "study", "low", 0.0),
    ]
    table3 = pd.DataFrame(rows, columns=["subject", "method", "population", "kind", "attention_shift"])
    table3.to_csv(tmp_path / "table3.csv", index=False)
    correlations = pd.DataFrame(
        [("study", "all", "spearman", 6, 0.5, 0.1, 0.9), ("all", "all", "pearson", 6, np.nan, np.nan, np.nan)],
        columns=["models", "tokens", "statistic", "n_cells", "value", "ci_low", "ci_high"],
    )
    correlations.to_csv(tmp_path / "attention_correlation.csv", index=False)
    lines = attention_in_words([str(tmp_path / "table3.csv"), str(tmp_path / "attention_correlation.csv")])
    text = " ".join(lines)
    # study means over the three models: high (0.4 + 0.2 + 0) / 3, low (0.1 + 0.3 + 0) / 3
    assert f"{0.2:.4g} on their most disrupted prompts against {0.4 / 3:.4g}" in text
    assert "for 1 of 3 models" in text and "Exactly zero on every prompt" in text and "a/ti" in text
    assert "spearman 0.5 [0.1, 0.9] over 6 cells of the study" in text and "pearson: not defined" in text
    title, caption = output_caption("results/figures/attention_maps/a/lora.png")
    assert title == "Attention heat maps: a/lora" and caption.startswith("a/lora: the model's most shifted prompt")
