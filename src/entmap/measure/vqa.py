"""A VQA model answers each prompt's questions about an image: the structured faithfulness f of real models.

Supported family: ViLT's VQA classifier (``ViltForQuestionAnswering``, e.g.
``dandelin/vilt-b32-finetuned-vqa``, fine-tuned on VQAv2), loaded with ``from_pretrained`` from a
hub id or a local folder in the Hugging Face layout. It answers by picking one of a fixed set of
answers (``config.id2label``), so it is deterministic: eval mode, no sampling, every question
padded to the model's full text length (so a batch's make-up cannot change an answer), ties to
the lowest label index. For an image x of prompt p with questions Q(p)
(:mod:`entmap.measure.questions`):

    answer(x, q) = id2label[argmax over labels of logits(x, q)]
    f(x, p)      = (1 / |Q(p)|) * sum over q in Q(p) of [normalize(answer(x, q)) == answer(q)]

A question whose expected answer is none of the model's labels (after normalization) could never
be answered right; :func:`answerable_questions` leaves it out of Q(p), with a warning naming it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from entmap.core.runtime import resolve_dtype
from entmap.measure.questions import Question, normalize_answer

ARCHITECTURE = "ViltForQuestionAnswering"


class VqaError(ValueError):
    """The VQA model cannot be used as configured; the message names the model and the fix."""


@dataclass(frozen=True)
class VqaSettings:
    """The ``prompts.vqa`` block: the model (hub id or folder), questions per forward pass, dtype."""

    model: str
    batch_size: int = 32
    dtype: str = "float32"

    @classmethod
    def from_config(cls, block: Mapping) -> VqaSettings:
        return cls(**block)


class VqaModel:
    """A ViLT VQA classifier with its processor (image resizing, WordPiece tokenizer), in eval mode."""

    def __init__(self, settings: VqaSettings, device: torch.device) -> None:
        from transformers import AutoConfig, ViltForQuestionAnswering, ViltProcessor

        source = settings.model
        try:
            config = AutoConfig.from_pretrained(source)
        except OSError as exc:
            raise VqaError(
                f"prompts.vqa.model {source!r} cannot be loaded ({exc}); name a local model folder, or a hub id "
                "with HF_HUB_OFFLINE=0 so it can be downloaded"
            ) from None
        architectures = config.architectures or []
        if config.model_type != "vilt" or (architectures and ARCHITECTURE not in architectures):
            raise VqaError(
                f"prompts.vqa.model {source!r} is a {config.model_type} model ({', '.join(architectures) or '?'}); "
                f"entmap answers questions with ViLT VQA classifiers ({ARCHITECTURE}), such as "
                "dandelin/vilt-b32-finetuned-vqa"
            )
        self.name = source
        self.device = device
        self.dtype = resolve_dtype(settings.dtype, device)
        self.batch_size = settings.batch_size
        self.processor = ViltProcessor.from_pretrained(source)
        self.model = ViltForQuestionAnswering.from_pretrained(source, dtype=self.dtype).to(device).eval()
        self.labels = tuple(config.id2label[index] for index in range(config.num_labels))
        self.normalized_labels = frozenset(normalize_answer(label) for label in self.labels)
        self.max_length = config.max_position_embeddings

    def check_lengths(self, questions: Sequence[str]) -> None:
        """Refuse a question longer than the model's text positions (it would be cut, changing its meaning)."""
        for text in dict.fromkeys(questions):
            length = len(self.processor.tokenizer(text)["input_ids"])
            if length > self.max_length:
                raise VqaError(
                    f"question {text!r} is {length} tokens long; {self.name} reads at most {self.max_length}: "
                    "shorten the structured cell it comes from"
                )

    def answer(self, images: Sequence[np.ndarray], questions: Sequence[str]) -> list[str]:
        """The model's label for each (image, question) pair: ``images[i]`` (H, W, 3 uint8) with ``questions[i]``."""
        if len(images) != len(questions):
            raise ValueError(f"{len(images)} images for {len(questions)} questions")
        self.check_lengths(questions)
        answers: list[str] = []
        starts = range(0, len(questions), self.batch_size)
        for start in tqdm(starts, desc="vqa", mininterval=2, disable=len(starts) < 2):
            stop = start + self.batch_size
            batch = self.processor(
                images=[Image.fromarray(np.asarray(image, dtype=np.uint8)) for image in images[start:stop]],
                text=list(questions[start:stop]),
                padding="max_length",
                max_length=self.max_length,
                truncation=True,
                return_tensors="pt",
            )
            inputs = {key: value.to(self.device) for key, value in batch.items()}
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
            with torch.inference_mode():
                logits = self.model(**inputs).logits
            answers += [self.labels[index] for index in logits.float().argmax(dim=-1).tolist()]
        return answers


def answerable_questions(
    model: VqaModel, questions: Mapping[str, Sequence[Question]]
) -> dict[str, tuple[Question, ...]]:
    """Each prompt's questions whose expected answer is one of ``model``'s labels (normalized).

    The others are left out, and named in one warning: a classifier can never give them.
    """
    kept, dropped = {}, []
    for pid, found in questions.items():
        kept[pid] = tuple(q for q in found if q.answer in model.normalized_labels)
        dropped += [f"{pid}: {q.text} ({q.answer})" for q in found if q.answer not in model.normalized_labels]
    if dropped:
        warnings.warn(
            f"{model.name} has no answer for {len(dropped)} question(s), left out of f: " + "; ".join(dropped),
            stacklevel=2,
        )
    return kept


def vqa_faithfulness(
    model: VqaModel, images: Sequence[np.ndarray], question_sets: Sequence[Sequence[Question]]
) -> np.ndarray:
    """f of each image against its prompt's questions: the share answered as expected; NaN without questions."""
    if len(images) != len(question_sets):
        raise ValueError(f"{len(images)} images for {len(question_sets)} question sets")
    pairs = [(index, q) for index, found in enumerate(question_sets) for q in found]
    answers = model.answer([images[index] for index, _ in pairs], [q.text for _, q in pairs])
    right = np.zeros(len(images))
    for (index, question), given in zip(pairs, answers, strict=True):
        right[index] += normalize_answer(given) == question.answer
    asked = np.array([len(found) for found in question_sets], dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(asked > 0, right / asked, np.nan)
