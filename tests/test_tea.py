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


def test_identifier_inside_a_context_word_is_neither_cut_nor_paired(pipe):
    """ "sks" is inside "desks" and "tasks": only the whole word is V*; "dog," still counts as the anchor."""
    from entmap.tea.adjust import anchored_prompt

    tok = pipe.tokenizer
    prompt = "a sks dog, among desks and tasks"
    anchored = anchored_prompt(prompt, "sks", "dog")
    assert anchored == "a dog, among desks and tasks"
    pairs = dict(token_pairs(tok, prompt, anchored, "sks", "dog"))
    ids_p, ids_a = tok(prompt).input_ids, tok(anchored).input_ids
    # every token of "desks" and "tasks" pairs with the same token of the anchored prompt, one to one
    for word in ("desks", "tasks"):
        for piece in tok.encode(word, add_special_tokens=False):
            position = ids_p.index(piece)
            assert [ids_a[j] for j in pairs[position]] == [piece], word
    sks = ids_p.index(tok.encode("sks", add_special_tokens=False)[0])
    dog = ids_a.index(tok.convert_tokens_to_ids("dog</w>"))
    assert pairs[sks] == [dog]  # "dog," (with its comma) is found as the anchor word
    assert sum(dog in js for js in pairs.values()) == 2  # V* and the prompt's own "dog,"


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
    # pooled covariance: the two within-set scatter matrices over n_x + n_y - 2
    scatter = sum(np.outer(a - x.mean(0), a - x.mean(0)) for a in x) + sum(
        np.outer(b - y.mean(0), b - y.mean(0)) for b in y
    )
    pooled = scatter / (len(x) + len(y) - 2)
    assert mahalanobis_means(x, y) == pytest.approx(mahalanobis(x.mean(0), y.mean(0), np.linalg.pinv(pooled)))
    assert mean_pairwise(x, y) == pytest.approx(np.mean([np.linalg.norm(a - b) for a in x for b in y]))
    assert intra_set(x) == pytest.approx(
        np.mean([np.linalg.norm(a - b) for i, a in enumerate(x) for j, b in enumerate(x) if i != j])
    )

    def rows(m, temperature=1.0):
        u = m / np.linalg.norm(m, axis=1, keepdims=True)
        s = np.exp(u @ u.T / temperature)
        return s / s.sum(1, keepdims=True)

    p, q = rows(x), rows(y)
    assert similarity_kl(x, y) == pytest.approx(np.mean([entropy(p[i], q[i]) for i in range(len(x))]))
    assert similarity_kl(x, x) == pytest.approx(0, abs=1e-12)
    p, q = rows(x, 0.1), rows(y, 0.1)
    assert similarity_kl(y, x, 0.1) == pytest.approx(np.mean([entropy(q[i], p[i]) for i in range(len(x))]))


def test_the_tea_papers_collapse_distances_by_hand():
    """Mahalanobis: mean over the anchor prompts of their distance to the V* set's distribution;
    KL(P_c || P_V*) with the temperature. Checked on a 2-D case small enough to do by hand."""
    from entmap.tea.collapse import mahalanobis_to_set, set_distances

    v = np.array([[1.0, 1.0], [3.0, 1.0], [1.0, 3.0], [3.0, 3.0]])  # mean (2, 2), covariance (4/3) I
    c = v + np.array([2.0, 0.0])  # the same square moved right by 2
    # distances of c's points to N((2, 2), 4/3 I): sqrt(3/4 * ||c_i - (2, 2)||^2)
    by_hand = np.mean([np.sqrt(0.75 * np.sum((point - 2.0) ** 2)) for point in c])
    assert mahalanobis_to_set(c, v) == pytest.approx(by_hand)
    assert by_hand == pytest.approx(np.mean([np.sqrt(0.75 * d) for d in (2.0, 10.0, 2.0, 10.0)]))
    paper = set_distances(v, c, "paper", temperature=0.5)
    assert paper["mahalanobis"] == pytest.approx(by_hand)
    assert paper["kl"] == pytest.approx(similarity_kl(c, v, 0.5))
    entmap = set_distances(v, c, "entmap")
    assert entmap["mahalanobis"] == pytest.approx(mahalanobis_means(v, c))
    assert entmap["kl"] == pytest.approx(similarity_kl(v, c))
    # pooled covariance of two copies of the square: 4/3 I, so the mean-to-mean distance is sqrt(3/4 * 4)
    assert mahalanobis_means(v, c) == pytest.approx(np.sqrt(3.0))
    with pytest.raises(ValueError, match="definition"):
        set_distances(v, c, "other")


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


@pytest.mark.parametrize("variant", ["tea", "norm_mix"])
def test_antiparallel_vectors_give_a_finite_vector_of_the_right_norm(variant):
    v = torch.tensor([1.0, 2.0, -0.5, 0.25], dtype=torch.float64)
    c = -2.0 * v  # antiparallel anchor, twice as long
    for alpha in (0.0, 0.5, 1.0):
        out = adjust(v, c, alpha=alpha, beta=1.0, variant=variant, norm_mix=0.5)
        assert torch.isfinite(out).all()
        expected_norm = c.norm() if variant == "tea" else 0.5 * v.norm() + 0.5 * c.norm()
        assert float(out.norm()) == pytest.approx(float(expected_norm))
    # the ends of the path are V*'s and the anchor's directions
    start = adjust(v, c, alpha=0.0, beta=1.0, variant=variant)
    end = adjust(v, c, alpha=1.0, beta=1.0, variant=variant)
    assert float(start @ v / (start.norm() * v.norm())) == pytest.approx(1.0)
    assert float(end @ c / (end.norm() * c.norm())) == pytest.approx(1.0)
    # half way the vector is orthogonal to both (a quarter turn)
    mid = adjust(v, c, alpha=0.5, beta=1.0, variant=variant)
    assert float(mid @ v) == pytest.approx(0.0, abs=1e-9)


def test_norm_mix_grid_has_one_setting_per_alpha_and_grids_drop_repeats():
    from entmap.tea.sweep import settings_grid

    grid = settings_grid([0, 0.4, 0.8], [1.0, 1.5], "norm_mix")
    assert [s.name for s in grid] == ["none", "a0", "a0.4", "a0.8"] and all(s.beta is None for s in grid)
    grid = settings_grid([0, 0.4, 0.4], [1.5, 1.5], "tea")
    assert [s.name for s in grid] == ["none", "a0_b1.5", "a0.4_b1.5"]
    # and norm_mix really ignores beta: the same vector for every beta
    v, c = torch.tensor([1.0, 0.2, 0.3]), torch.tensor([0.1, 1.0, -0.4])
    assert torch.equal(adjust(v, c, 0.4, 1.0, "norm_mix"), adjust(v, c, 0.4, 3.0, "norm_mix"))
