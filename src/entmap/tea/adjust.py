"""TEA: training-free test-time embedding adjustment against semantic collapse (docs/tea-and-collapse.md).

Token level (Textual Inversion), with anchor row M_c (the class word) and learned row M_V:

    r = beta * ||M_c||,   v = r * M_V / ||M_V||,   c = r * M_c / ||M_c||,
    theta = arccos(<v, c> / r^2),
    M_V' = sin((1 - alpha) theta) / sin(theta) * v + sin(alpha theta) / sin(theta) * c

(linear interpolation when sin(theta) < 1e-6). alpha = 0 keeps V*'s direction at norm
beta * ||M_c||; alpha = 1 gives beta * M_c; the angle to c is (1 - alpha) * theta. The public
code's variant (``variant="norm_mix"``) instead slerps the unit directions by ``alpha`` and mixes
the norms, m = (1 - a) ||M_V|| + a ||M_c||, with a = ``norm_mix`` (0.5 there).

Prompt level (LoRA with a trained text encoder, Custom Diffusion, external adapters): the same
formula per token on the text-encoder outputs of a prompt with V* and of the same prompt with the
anchor word, tokens paired by *word* (the public code pairs position i with i, which shifts every
context token by one when "sks dog" is compared with "dog"). The unconditional embeddings are
not touched: pass the result as ``prompt_embeds`` to any diffusers pipeline.
"""

from __future__ import annotations

import difflib
import re
from typing import Literal

import torch

Variant = Literal["tea", "norm_mix"]
PARALLEL_EPS = 1e-6


class AnchorError(ValueError):
    """The anchor word cannot be used as it stands (e.g. several tokens and no reduction chosen)."""


def slerp(v: torch.Tensor, c: torch.Tensor, alpha: float) -> torch.Tensor:
    """Spherical interpolation between two vectors of equal norm.

    Near-parallel vectors (sin(theta) < 1e-6, cos > 0) interpolate linearly. Antiparallel ones have
    no unique great circle between them; entmap turns v through the direction u of the coordinate
    axis least aligned with v, made orthogonal to v: cos(alpha pi) v + sin(alpha pi) ||v|| u, so the
    result keeps its norm and is never the zero vector (which the linear fallback gives at 0.5).
    """
    r2 = (v.norm() * c.norm()).clamp_min(1e-12)
    cos = (v @ c / r2).clamp(-1.0, 1.0)
    theta = torch.arccos(cos)
    sin = torch.sin(theta)
    if sin < PARALLEL_EPS and cos > 0:
        return (1 - alpha) * v + alpha * c
    if sin < PARALLEL_EPS:
        axis = torch.zeros_like(v)
        axis[int(torch.argmin(v.abs()))] = 1.0
        u = axis - (axis @ v) / (v @ v) * v
        u = u / u.norm()
        angle = torch.tensor(alpha * torch.pi, dtype=v.dtype)
        return torch.cos(angle) * v + torch.sin(angle) * v.norm() * u
    return torch.sin((1 - alpha) * theta) / sin * v + torch.sin(alpha * theta) / sin * c


def adjust(
    learned: torch.Tensor,
    anchor: torch.Tensor,
    alpha: float = 0.2,
    beta: float | None = 1.5,
    variant: Variant = "tea",
    norm_mix: float = 0.5,
) -> torch.Tensor:
    """The adjusted vector M_V' of one learned vector (see the module docstring).

    ``beta=None`` keeps the learned norm (r = ||M_V||): with alpha = 0 the vector is unchanged.
    """
    learned_f, anchor_f = learned.double(), anchor.double()
    if variant == "tea":
        r = learned_f.norm() if beta is None else beta * anchor_f.norm()
        v = r * learned_f / learned_f.norm()
        c = r * anchor_f / anchor_f.norm()
        out = slerp(v, c, alpha)
    elif variant == "norm_mix":
        direction = slerp(learned_f / learned_f.norm(), anchor_f / anchor_f.norm(), alpha)
        m = (1 - norm_mix) * learned_f.norm() + norm_mix * anchor_f.norm()
        out = m * direction / direction.norm()
    else:
        raise ValueError(f"unknown TEA variant {variant!r}; use 'tea' or 'norm_mix'")
    return out.to(learned.dtype)


def anchor_row(tokenizer, embeddings: torch.Tensor, word: str, reduction: str | None = None) -> torch.Tensor:
    """The embedding row of the anchor word; a multi-token word needs ``reduction='mean'``."""
    ids = tokenizer.encode(word, add_special_tokens=False)
    if len(ids) == 1:
        return embeddings[ids[0]]
    if reduction == "mean":
        return embeddings[ids].mean(dim=0)
    raise AnchorError(
        f"anchor {word!r} is {len(ids)} tokens {ids}; pick a one-token anchor or set the anchor "
        "reduction to 'mean' (the mean of its token rows)"
    )


def adjust_token(
    pipe,
    token: str,
    anchor: str,
    alpha: float,
    beta: float | None,
    variant: Variant = "tea",
    reduction: str | None = None,
    norm_mix: float = 0.5,
) -> torch.Tensor:
    """Replace the embedding row of ``token`` in ``pipe`` by its TEA adjustment; return the old row."""
    weights = pipe.text_encoder.get_input_embeddings().weight
    token_id = pipe.tokenizer.convert_tokens_to_ids(token)
    original = weights[token_id].detach().clone()
    with torch.no_grad():
        weights[token_id] = adjust(
            original, anchor_row(pipe.tokenizer, weights, anchor, reduction), alpha, beta, variant, norm_mix
        )
    return original


def _whole(token: str) -> re.Pattern[str]:
    """``token`` as a whole word: not preceded or followed by a letter or digit ("sks" is not in "desks")."""
    return re.compile(rf"(?<![A-Za-z0-9]){re.escape(token)}(?![A-Za-z0-9])")


def holds_word(word: str, token: str) -> bool:
    """Whether the whitespace-separated ``word`` holds ``token`` as a whole word ("sks," yes, "desks" no)."""
    return _whole(token).search(word) is not None


def word_token_spans(tokenizer, words: list[str]) -> list[tuple[int, int]]:
    """Token positions [start, end) of each word in the tokenized prompt (after the BOS token)."""
    spans, position = [], 1
    for word in words:
        n = len(tokenizer.encode(word, add_special_tokens=False))
        spans.append((position, position + n))
        position += n
    return spans


def token_pairs(tokenizer, prompt: str, anchored: str, token: str, anchor: str) -> list[tuple[int, list[int]]]:
    """Pairs (position in ``prompt``, positions in ``anchored``) aligned by word.

    Words are matched with difflib on the two word lists; the word holding ``token`` as a whole word
    (:func:`holds_word`: "sks," does, "desks" does not) is paired with the first word of the other
    prompt holding ``anchor`` as a whole word (all its tokens). BOS pairs with BOS, and the
    end-of-text and padding positions pair by their offset from the end of the words.
    """
    words_p, words_a = prompt.split(), anchored.split()
    spans_p, spans_a = word_token_spans(tokenizer, words_p), word_token_spans(tokenizer, words_a)
    pairs: list[tuple[int, list[int]]] = [(0, [0])]
    matcher = difflib.SequenceMatcher(a=words_p, b=words_a, autojunk=False)
    anchor_index = next((j for j, w in enumerate(words_a) if holds_word(w, anchor)), None)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            (ps, pe), (as_, ae) = spans_p[block.a + k], spans_a[block.b + k]
            if pe - ps == ae - as_:
                pairs += [(ps + t, [as_ + t]) for t in range(pe - ps)]
    if anchor_index is not None:
        n_token = len(tokenizer.encode(token, add_special_tokens=False))
        n_anchor = len(tokenizer.encode(anchor, add_special_tokens=False))
        anchor_word, (a_start, a_end) = words_a[anchor_index], spans_a[anchor_index]
        for i, word in enumerate(words_p):
            if not holds_word(word, token):
                continue
            start, end = spans_p[i]
            if word.startswith(token) and anchor_word.startswith(anchor):
                # V*'s own pieces pair with the anchor's; trailing punctuation pairs piece by piece
                anchor_positions = list(range(a_start, a_start + n_anchor))
                pairs += [(position, anchor_positions) for position in range(start, start + n_token)]
                if end - start - n_token == a_end - a_start - n_anchor:
                    pairs += [(start + n_token + k, [a_start + n_anchor + k]) for k in range(end - start - n_token)]
            else:
                pairs += [(position, list(range(a_start, a_end))) for position in range(start, end)]
    end_p, end_a = (spans_p[-1][1] if spans_p else 1), (spans_a[-1][1] if spans_a else 1)
    length = tokenizer.model_max_length
    pairs += [(end_p + t, [end_a + t]) for t in range(min(length - end_p, length - end_a))]
    return sorted(pairs)


def anchored_prompt(prompt: str, token: str, anchor: str) -> str:
    """``prompt`` with the anchor in place of the token.

    Only whole-word occurrences count (:func:`holds_word`: "desks" keeps its letters). The token
    becomes the anchor ("<v>'s hat" -> "dog's hat", "sks," -> "dog,"), except that a word that is
    only the token is dropped when the anchor follows it, as an identifier is used ("a sks dog" ->
    "a dog"; "<v> on a beach" -> "dog on a beach").
    """
    words = prompt.split()
    out = []
    for i, word in enumerate(words):
        if not holds_word(word, token):
            out.append(word)
        elif word != token or i + 1 >= len(words) or not holds_word(words[i + 1], anchor):
            out.append(_whole(token).sub(anchor, word))
    return " ".join(out)


def adjust_prompt_embeds(
    pipe,
    prompt: str,
    token: str,
    anchor: str,
    alpha: float,
    beta: float | None,
    variant: Variant = "tea",
    norm_mix: float = 0.5,
) -> torch.Tensor:
    """prompt_embeds (1, 77, d) for ``prompt`` with every token's output pulled toward the anchor prompt's.

    The anchor prompt is :func:`anchored_prompt`; each token's output is adjusted toward the mean
    output of the tokens it is paired with by :func:`token_pairs`.
    """
    anchored = anchored_prompt(prompt, token, anchor)
    encode = lambda text: pipe.text_encoder(  # noqa: E731
        pipe.tokenizer(
            text, padding="max_length", max_length=pipe.tokenizer.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids.to(pipe.text_encoder.device)
    )[0][0]
    with torch.no_grad():
        out_p, out_a = encode(prompt), encode(anchored)
    adjusted = out_p.clone()
    for i, js in token_pairs(pipe.tokenizer, prompt, anchored, token, anchor):
        adjusted[i] = adjust(out_p[i], out_a[js].mean(dim=0), alpha, beta, variant, norm_mix)
    return adjusted[None]
