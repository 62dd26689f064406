"""The ``score`` stage: CLIP alignment a = cos(f_T(p), f_I(x)) of every image of a shard.

The scorer is any open_clip model: a built-in name with a pretrained tag
(``ViT-L-14`` / ``openai``), an ``hf-hub:`` id, or a ``local-dir:`` folder
in the Hugging Face layout (the tiny scorer). The stored image embedding is
L2-normalized, ready for the Frechet distance of the analysis stage.

Explained in docs/map.md.
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm.auto import tqdm

from entmap.core.parquet_schemas import IMAGES, SCORES, read_table, write_table
from entmap.measure.metrics import clip_cosine


class ClipScorer:
    """An open_clip model with its preprocessing and tokenizer."""

    def __init__(self, model: str, pretrained: str | None, device: torch.device) -> None:
        import open_clip

        self.model, _, self.preprocess = open_clip.create_model_and_transforms(
            model, pretrained=pretrained, device=device
        )
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(model)
        self.device = device
        self.name = model
        self._length_checked: set[str] = set()  # texts already checked against the context

    def truncated(self, texts: list[str]) -> list[str]:
        """The texts longer than the text tower's context (start and end tokens included).

        open_clip cuts them silently, so the score would be of their beginning only. Tokenizers
        without a BPE ``encode`` (``hf-hub:`` ones) are not checked.
        """
        encode = getattr(self.tokenizer, "encode", None)
        context = getattr(self.tokenizer, "context_length", None)
        if encode is None or context is None:
            return []
        return [text for text in texts if len(encode(text)) + 2 > context]

    def text_embeddings(self, texts: list[str]) -> torch.Tensor:
        new = [text for text in dict.fromkeys(texts) if text not in self._length_checked]
        self._length_checked.update(new)
        for text in self.truncated(new):
            warnings.warn(
                f"scorer {self.name}: {text!r} is longer than its {self.tokenizer.context_length}-token context "
                "and is scored cut off; shorten the prompt",
                stacklevel=2,
            )
        with torch.inference_mode():
            return self.model.encode_text(self.tokenizer(texts).to(self.device)).float().cpu()

    def image_embeddings(self, images: list[Image.Image]) -> torch.Tensor:
        pixels = torch.stack([self.preprocess(img.convert("RGB")) for img in images]).to(self.device)
        with torch.inference_mode():
            return self.model.encode_image(pixels).float().cpu()


def score_frame(scorer: ClipScorer, images: pd.DataFrame, texts: dict[str, str], batch_size: int = 32) -> pd.DataFrame:
    """Score every image row against the text of its prompt id.

    Each distinct prompt text is encoded once (in batches of ``batch_size``, in order of first
    appearance), not once per seed; images are encoded in batches of ``batch_size`` rows.
    """
    wanted = list(dict.fromkeys(texts[pid] for pid in images["prompt_id"]))
    encoded = [scorer.text_embeddings(wanted[i : i + batch_size]) for i in range(0, len(wanted), batch_size)]
    by_text = dict(zip(wanted, torch.cat(encoded) if encoded else [], strict=True))
    cos, embeddings = [], []
    for start in tqdm(range(0, len(images), batch_size), desc="score", mininterval=2):
        chunk = images.iloc[start : start + batch_size]
        pil = [Image.open(io.BytesIO(data)) for data in chunk["png"]]
        image_emb = scorer.image_embeddings(pil)
        text_emb = torch.stack([by_text[texts[pid]] for pid in chunk["prompt_id"]])
        cos.append(clip_cosine(text_emb, image_emb).double().numpy())
        embeddings.extend(torch.nn.functional.normalize(image_emb, dim=-1).numpy().astype(np.float32))
    out = images[["prompt_id", "seed", "model", "settings_hash"]].copy()
    out["clip_cos"] = np.concatenate(cos) if cos else np.zeros(0)
    out["image_embedding"] = [e.tolist() for e in embeddings]
    return out


def score_shard(
    images_path: str | os.PathLike[str],
    texts: dict[str, str],
    model: str,
    pretrained: str | None,
    out_path: str | os.PathLike[str],
    device: str = "auto",
    threads: int = 1,
) -> None:
    """Read an image shard, score it, write the score table."""
    from entmap.core.runtime import configure_torch, resolve_device

    configure_torch(threads)
    scorer = ClipScorer(model, pretrained, resolve_device(device))
    images = read_table(images_path, IMAGES)
    write_table(score_frame(scorer, images, texts), out_path, SCORES)
