"""TEA geometry, word-aligned prompt pairing, and the collapse distances against scipy."""

import numpy as np
import pytest
import torch
from scipy.spatial.distance import directed_hausdorff, mahalanobis
from scipy.stats import entropy

from entmap.models.loading import load_pipeline
from entmap.tea.adjust import AnchorError, adjust, adjust_prompt_embeds, adjust_token, anchor_row, token_pairs
from entmap.tea.collapse import hausdorff, intra_set, mahalanobis_means, mean_pairwise, similarity_kl

rng = np.random.default_rng(0)
V = torch.tensor(rng.normal(size=16) * 3.0)
C = torch.tensor(rng.normal(size=16))


def angle(a, b):
    return float(torch.arccos((a @ b / (a.norm() * b.norm())).clamp(-1, 1)))


def test_alpha_zero_keeps_the_direction_at_norm_beta_c():
    out = adjust(V, C, alpha=0.0, beta=1.5)
    assert out.norm() == pytest.approx(1.5 * C.norm())
    assert angle(out, V) == pytest.approx(0, abs=1e-6)


def test_alpha_one_gives_beta_c():
    torch.testing.assert_close(adjust(V, C, alpha=1.0, beta=1.5), 1.5 * C)


def test_angle_to_c_falls_linearly_in_alpha():
    theta = angle(V, C)
    for alpha in (0.0, 0.2, 0.5, 0.8, 1.0):
        out = adjust(V, C, alpha=alpha, beta=0.7)
        assert angle(out, C) == pytest.approx((1 - alpha) * theta, abs=1e-6)
        assert out.norm() == pytest.approx(0.7 * C.norm())


def test_near_parallel_does_not_divide_by_zero():
    out = adjust(C * 5, C, alpha=0.3, beta=1.0)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, C)


def test_norm_mix_variant():
    out = adjust(V, C, alpha=0.0, beta=1.0, variant="norm_mix", norm_mix=0.5)
    assert out.norm() == pytest.approx(0.5 * V.norm() + 0.5 * C.norm())
    assert angle(out, V) == pytest.approx(0, abs=1e-6)
    with pytest.raises(ValueError, match="variant"):
        adjust(V, C, variant="other")


@pytest.fixture(scope="module")
def pipe(tiny_dir):
    return load_pipeline(str(tiny_dir / "tiny-sd"), torch.device("cpu"), torch.float32)


def test_prompt_pairs_align_by_word_not_position(pipe):
    tok = pipe.tokenizer
    prompt, anchored = "a photo of sks dog on a beach", "a photo of dog on a beach"
    pairs = dict(token_pairs(tok, prompt, anchored, "sks", "dog"))
    ids_p = tok(prompt).input_ids
    ids_a = tok(anchored).input_ids
    on_p = ids_p.index(tok.convert_tokens_to_ids("on</w>"))
    assert [ids_a[j] for j in pairs[on_p]] == [ids_p[on_p]]  # "on" pairs with "on"
    sks_p = ids_p.index(tok.encode("sks", add_special_tokens=False)[0])
    dog_a = ids_a.index(tok.convert_tokens_to_ids("dog</w>"))
    assert pairs[sks_p] == [dog_a]  # the identifier pairs with the anchor word
    assert pairs[0] == [0] and pairs[len(ids_p) - 1] == [len(ids_a) - 1]  # BOS and EOS


def test_multi_token_anchor_needs_a_reduction(pipe):
    rows = pipe.text_encoder.get_input_embeddings().weight
    ids = pipe.tokenizer.encode("zxqvw", add_special_tokens=False)
    assert len(ids) > 1
    with pytest.raises(AnchorError, match="reduction"):
        anchor_row(pipe.tokenizer, rows, "zxqvw")
    torch.testing.assert_close(anchor_row(pipe.tokenizer, rows, "zxqvw", "mean"), rows[ids].mean(0))


def test_tea_with_alpha_zero_and_matching_beta_reproduces_the_images(tiny_dir):
    pipe = load_pipeline(str(tiny_dir / "tiny-sd"), torch.device("cpu"), torch.float32)
    generator = torch.Generator().manual_seed(3)
    pipe.load_textual_inversion({"<v>": torch.randn(1, 32, generator=generator) * 4}, token="<v>")

    def render():
        latents = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(0))
        return pipe(
            "a photo of <v> on a beach", num_inference_steps=3, latents=latents, height=64, width=64, output_type="np"
        ).images

    before = render()
    rows = pipe.text_encoder.get_input_embeddings().weight
    v = rows[pipe.tokenizer.convert_tokens_to_ids("<v>")].detach()
    beta = float(v.norm() / anchor_row(pipe.tokenizer, rows, "dog").norm())
    adjust_token(pipe, "<v>", "dog", alpha=0.0, beta=beta)
    assert np.abs(render() - before).max() <= 1 / 255
    embeds = adjust_prompt_embeds(pipe, "a photo of <v> on a beach", "<v>", "dog", alpha=0.5, beta=1.0)
    assert embeds.shape == (1, 77, 32) and torch.isfinite(embeds).all()


def test_distances_match_scipy():
    x, y = rng.normal(size=(12, 5)), rng.normal(size=(12, 5)) + 0.5
    assert hausdorff(x, y) == pytest.approx(max(directed_hausdorff(x, y)[0], directed_hausdorff(y, x)[0]))
    pooled = np.cov(np.vstack([x - x.mean(0), y - y.mean(0)]), rowvar=False)
    assert mahalanobis_means(x, y) == pytest.approx(mahalanobis(x.mean(0), y.mean(0), np.linalg.pinv(pooled)))
    assert mean_pairwise(x, y) == pytest.approx(np.mean([np.linalg.norm(a - b) for a in x for b in y]))
    assert intra_set(x) == pytest.approx(
        np.mean([np.linalg.norm(a - b) for i, a in enumerate(x) for j, b in enumerate(x) if i != j])
    )

    def rows(m):
        u = m / np.linalg.norm(m, axis=1, keepdims=True)
        s = np.exp(u @ u.T)
        return s / s.sum(1, keepdims=True)

    p, q = rows(x), rows(y)
    assert similarity_kl(x, y) == pytest.approx(np.mean([entropy(p[i], q[i]) for i in range(len(x))]))
    assert similarity_kl(x, x) == pytest.approx(0, abs=1e-12)


def test_trajectory_diagnostics_match_scipy():
    from scipy.stats import percentileofscore

    from entmap.tea.collapse import trajectory_diagnostics

    vocab = rng.normal(size=(500, 8))
    anchor = vocab[7]
    trajectory = np.stack([anchor, anchor * 2 + 0.1, anchor * 4 + rng.normal(size=8)])
    rows = trajectory_diagnostics([0, 10, 20], trajectory, vocab, anchor)
    norms = np.linalg.norm(vocab, axis=1)
    for row, vector in zip(rows, trajectory, strict=True):
        assert row["norm_percentile"] == pytest.approx(percentileofscore(norms, np.linalg.norm(vector), kind="weak"))
        assert row["cos_anchor"] == pytest.approx(vector @ anchor / (np.linalg.norm(vector) * np.linalg.norm(anchor)))
    assert rows[0]["cos_anchor"] == pytest.approx(1.0) and rows[0]["norm_ratio"] == pytest.approx(1.0)
    assert [r["step"] for r in rows] == [0, 10, 20] and rows[2]["norm"] > rows[1]["norm"] > rows[0]["norm"]
