"""A tiny random-weight ViLT VQA model in the Hugging Face layout, built offline.

The same files a hub VQA model has (``config.json``, ``model.safetensors``, ``vocab.txt`` with
``tokenizer.json`` and ``tokenizer_config.json``, ``preprocessor_config.json``), written by
``save_pretrained`` and read back by the ``from_pretrained`` path a real model takes
(:mod:`entmap.measure.vqa`). Its WordPiece vocabulary holds the words of the questions it is built
for (anything else reads as ``[UNK]``); its answers are the labels given. Its answers are random
but a function of the seed: the weights are drawn at a wide initializer range (0.5) so that
different images and questions get different answers.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from entmap.core.runtime import seeded

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
#: words and single punctuation marks, as BERT's pre-tokenizer splits lowercased text
_WORDS = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")
#: ViLT's text length (dandelin/vilt-b32-finetuned-vqa uses 40 positions)
MAX_TEXT_LENGTH = 40


def question_vocabulary(texts: Iterable[str]) -> list[str]:
    """The special tokens, then every word and punctuation mark of ``texts`` (lowercased), sorted."""
    words = sorted({word for text in texts for word in _WORDS.findall(text.lower())})
    return [*SPECIAL_TOKENS, *words]


def build_tiny_vqa(
    folder: str | os.PathLike[str], questions: Iterable[str], answers: Sequence[str], seed: int = 0
) -> Path:
    """Write a random-weight ``ViltForQuestionAnswering`` to ``folder``; returns the folder.

    ``questions``: texts whose words make the vocabulary; ``answers``: the classifier's labels
    (``config.id2label``, in order). Images are resized to a 64-pixel shorter side and cut into
    16-pixel patches; 2 layers of width 32.
    """
    from transformers import BertTokenizer, ViltConfig, ViltForQuestionAnswering, ViltImageProcessor

    if len(set(answers)) != len(answers) or not answers:
        raise ValueError(f"answers must be distinct and non-empty, got {list(answers)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(question_vocabulary(questions)) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer.from_pretrained(folder, do_lower_case=True, model_max_length=MAX_TEXT_LENGTH)
    tokenizer.save_pretrained(folder)
    ViltImageProcessor(size={"shortest_edge": 64}, size_divisor=32).save_pretrained(folder)
    config = ViltConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=64,
        patch_size=16,
        max_position_embeddings=MAX_TEXT_LENGTH,
        initializer_range=0.5,
        num_labels=len(answers),
        id2label=dict(enumerate(answers)),
        label2id={answer: index for index, answer in enumerate(answers)},
    )
    with seeded(seed):
        model = ViltForQuestionAnswering(config).eval()
    model.save_pretrained(folder)
    return folder
