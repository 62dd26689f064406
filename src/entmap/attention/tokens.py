"""The text positions a denoiser's attention reads, each with its token and class.

A prompt reaches the denoiser as a padded sequence of J text positions, the keys of every layer
where text meets image:

* SD 1.x and SDXL: the CLIP tokenizer's 77 positions (SDXL concatenates its two encoders' outputs
  along the features, so the positions are those of the first tokenizer);
* SD3: CLIP's 77 positions followed by T5's ``max_sequence_length`` (256 by default) positions;
  without a T5 encoder the pipeline fills that block with zeros (all padding here);
* Flux: T5's ``max_sequence_length`` (512 by default) positions; CLIP gives only a pooled vector.

Each position has a class: ``bos`` (CLIP's start token at position 0; T5 has none), ``word`` (the
prompt's tokens), ``eos`` (the first end token) and ``pad`` (everything after it, whatever its id:
SD 1.5 pads with the end token, SD 2 and CLIP-G with "!"). The classes come from the tokenizer's
ids and attention mask, the same call the pipeline makes.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from entmap.models.families import family_of_pipeline

TOKEN_CLASSES: tuple[str, ...] = ("bos", "word", "eos", "pad")


@dataclass(frozen=True)
class TokenLayout:
    """One prompt's J text positions: token id, token text, class and encoder ("clip", "t5", "none")."""

    ids: tuple[int, ...]
    texts: tuple[str, ...]
    classes: tuple[str, ...]
    encoders: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ids)


def classify(ids: list[int], mask: list[int], bos_id: int | None, eos_id: int | None) -> list[str]:
    """The class of each position: ``bos`` at position 0 when it holds ``bos_id``; ``eos`` at the first
    ``eos_id`` the mask keeps; ``pad`` where the mask is 0 and at every position after that end token;
    ``word`` elsewhere."""
    classes, ended = [], False
    for position, (token, keep) in enumerate(zip(ids, mask, strict=True)):
        if ended or not keep:
            classes.append("pad")
        elif position == 0 and bos_id is not None and token == bos_id:
            classes.append("bos")
        elif eos_id is not None and token == eos_id:
            classes.append("eos")
            ended = True
        else:
            classes.append("word")
    return classes


def default_max_sequence_length(pipe) -> int:
    """The T5 length ``pipe(...)`` uses when not told otherwise (the default of its ``max_sequence_length``)."""
    return int(inspect.signature(type(pipe).__call__).parameters["max_sequence_length"].default)


def text_segments(pipe) -> list[tuple[str | None, int]]:
    """(tokenizer attribute or None for a block of zeros, length) of each block of the text sequence."""
    family = family_of_pipeline(pipe)
    if family.name in ("sd1", "sdxl"):
        return [("tokenizer", pipe.tokenizer.model_max_length)]
    if family.name == "sd3":
        t5 = "tokenizer_3" if pipe.text_encoder_3 is not None else None
        return [("tokenizer", pipe.tokenizer_max_length), (t5, default_max_sequence_length(pipe))]
    if family.name == "flux":
        return [("tokenizer_2", default_max_sequence_length(pipe))]
    raise ValueError(f"{family.name}: no text layout known")


def encoder_name(tokenizer) -> str:
    name = type(tokenizer).__name__.lower()
    return "clip" if "clip" in name else "t5" if "t5" in name else name.removesuffix("fast").removesuffix("tokenizer")


def token_layout(pipe, prompt: str) -> TokenLayout:
    """The text positions ``pipe`` feeds its denoiser for ``prompt``, tokenized as the pipeline does
    (a Textual Inversion pipeline's multi-vector tokens expanded first)."""
    ids, texts, classes, encoders = [], [], [], []
    for attribute, length in text_segments(pipe):
        if attribute is None:
            ids += [0] * length
            texts += [""] * length
            classes += ["pad"] * length
            encoders += ["none"] * length
            continue
        tokenizer = getattr(pipe, attribute)
        text = pipe.maybe_convert_prompt(prompt, tokenizer) if hasattr(pipe, "maybe_convert_prompt") else prompt
        encoded = tokenizer(text, padding="max_length", max_length=length, truncation=True)
        segment = list(encoded["input_ids"])
        mask = list(encoded.get("attention_mask", [1] * len(segment)))
        ids += segment
        texts += tokenizer.convert_ids_to_tokens(segment)
        classes += classify(segment, mask, tokenizer.bos_token_id, tokenizer.eos_token_id)
        encoders += [encoder_name(tokenizer)] * length
    return TokenLayout(tuple(ids), tuple(texts), tuple(classes), tuple(encoders))
