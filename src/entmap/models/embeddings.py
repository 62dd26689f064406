"""New tokens in a family's CLIP text encoders: adding one, and registering a learnt embedding.

Textual Inversion and Custom Diffusion's modifier token are one new token with its own embedding
row in every CLIP text encoder of the family (:attr:`entmap.models.families.Family.clip_encoders`):
SD 1.x and Flux have one (for Flux it gives only the pooled vector; T5 never sees the token),
SDXL and SD3 two, whose vectors an embedding file keeps under ``clip_l`` and ``clip_g``.

Embeddings are registered with the pipeline's public ``load_textual_inversion`` where the pipeline
has it (SD 1.x, SDXL, Flux); SD3's pipeline has no Textual Inversion loader, so the token is added
to each tokenizer and its row written by hand, which is what that loader does for one vector.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from entmap.models.families import family_of_pipeline

if TYPE_CHECKING:
    import torch


class TokenError(ValueError):
    """The placeholder token, the class word or an embedding cannot be used."""


def clip_encoders(pipe) -> list[tuple[str, object, torch.nn.Module]]:
    """(file key, tokenizer, text encoder) of each CLIP text encoder of ``pipe``, in the family's order."""
    return [(key, getattr(pipe, tok), getattr(pipe, enc)) for key, tok, enc in family_of_pipeline(pipe).clip_encoders]


def single_token_id(tokenizer, word: str) -> int:
    """The id of ``word`` if the tokenizer encodes it as exactly one token."""
    ids = tokenizer.encode(word, add_special_tokens=False)
    if len(ids) != 1:
        raise TokenError(
            f"word {word!r} is {len(ids)} tokens {ids}; a new token is initialized from "
            "a single token: choose a one-token word (e.g. 'face', 'toy', 'painting')"
        )
    return ids[0]


def add_placeholder_token(pipe, token: str, init_word: str) -> dict[str, tuple[int, int]]:
    """Add ``token`` to every CLIP tokenizer and give it the embedding of ``init_word`` in each encoder.

    Returns {file key: (token id, initializer id)}. ``mean_resizing=False`` keeps the global RNG
    untouched; the new row is then overwritten anyway.
    """
    import torch

    ids = {}
    for key, tokenizer, encoder in clip_encoders(pipe):
        init_id = single_token_id(tokenizer, init_word)
        if tokenizer.add_tokens(token) != 1:
            raise TokenError(f"token {token!r} already exists in the tokenizer; pick another token")
        token_id = tokenizer.convert_tokens_to_ids(token)
        encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        with torch.no_grad():
            weights = encoder.get_input_embeddings().weight
            weights[token_id] = weights[init_id].clone()
        ids[key] = (token_id, init_id)
    return ids


def register_embedding(pipe, token: str, vectors: dict[str, torch.Tensor], source: str) -> None:
    """Give ``token`` the embedding ``vectors[key]`` ((n, d), n vectors) in each CLIP encoder of ``pipe``.

    Every CLIP encoder of the family needs its vector; widths are checked against each encoder.
    """
    import torch

    encoders = clip_encoders(pipe)
    missing = [key for key, _, _ in encoders if key not in vectors]
    if missing:
        raise TokenError(
            f"{source}: the {family_of_pipeline(pipe).name} family needs an embedding for each CLIP text encoder "
            f"({', '.join(k for k, _, _ in encoders)}); the file has none for {', '.join(missing)}"
        )
    for key, tokenizer, encoder in encoders:
        vector = vectors[key] if vectors[key].ndim == 2 else vectors[key][None]
        width = encoder.get_input_embeddings().weight.shape[1]
        if vector.shape[-1] != width:
            raise TokenError(f"{source}: {key} embedding width {vector.shape[-1]} != the text encoder's {width}")
        vector = vector.to(encoder.dtype)
        if hasattr(pipe, "load_textual_inversion"):
            pipe.load_textual_inversion(vector, token=token, tokenizer=tokenizer, text_encoder=encoder)
            continue
        if vector.shape[0] != 1:
            raise TokenError(
                f"{source}: a {vector.shape[0]}-vector embedding needs prompt expansion, which the "
                f"{family_of_pipeline(pipe).name} pipeline lacks; use a one-vector embedding"
            )
        if tokenizer.add_tokens(token) != 1:
            raise TokenError(f"{source}: token {token!r} already exists in the tokenizer; set another `token:`")
        encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        with torch.no_grad():
            encoder.get_input_embeddings().weight[tokenizer.convert_tokens_to_ids(token)] = vector[0]
