"""Textual Inversion (Gal et al. 2022) as in the diffusers reference script.

One new token ``<s>`` is added to the tokenizer, its embedding row is
initialized from the class word's row, and only that row is optimized with
the denoising loss on captions such as "a photo of a <s>". After every
optimizer step all other rows are restored to their original values (AdamW's
weight decay would otherwise move them), so the text encoder differs from
the base in exactly one row. The result is saved as ``{token: (1, d)}`` in
safetensors, the format ``pipe.load_textual_inversion`` reads; the embedding
is also kept every ``save_every`` steps (the trajectory) for the
semantic-collapse diagnostics.

Explained in docs/methods.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from entmap.core.atomic import atomic_path
from entmap.personalize.captions import ReferenceBatches
from entmap.personalize.training_loop import FrozenRows, TrainLog, denoising_loss, encode_captions, freeze, optimize

TRAJECTORY_FILE = "trajectory.safetensors"


class TokenError(ValueError):
    """The placeholder token or the class word cannot be used."""


@dataclass
class TextualInversionResult:
    token: str
    token_id: int
    init_token_id: int
    embedding: torch.Tensor  # (d,)
    trajectory_steps: list[int]
    trajectory: torch.Tensor  # (n_saves, d), step 0 included
    log: TrainLog


def single_token_id(tokenizer, word: str) -> int:
    """The id of ``word`` if the tokenizer encodes it as exactly one token."""
    ids = tokenizer.encode(word, add_special_tokens=False)
    if len(ids) != 1:
        raise TokenError(
            f"word {word!r} is {len(ids)} tokens {ids}; a new token is initialized from "
            "a single token: choose a one-token word (e.g. 'face', 'toy', 'painting')"
        )
    return ids[0]


def add_placeholder_token(pipe, token: str, init_word: str) -> tuple[int, int]:
    """Add ``token`` to the tokenizer and give it the embedding of ``init_word``.

    Returns (token id, initializer id). ``mean_resizing=False`` keeps the
    global RNG untouched; the new row is then overwritten anyway.
    """
    init_id = single_token_id(pipe.tokenizer, init_word)
    if pipe.tokenizer.add_tokens(token) != 1:
        raise TokenError(f"token {token!r} already exists in the tokenizer; pick another token")
    token_id = pipe.tokenizer.convert_tokens_to_ids(token)
    pipe.text_encoder.resize_token_embeddings(len(pipe.tokenizer), mean_resizing=False)
    with torch.no_grad():
        weights = pipe.text_encoder.get_input_embeddings().weight
        weights[token_id] = weights[init_id].clone()
    return token_id, init_id


def train_textual_inversion(
    pipe,
    images: list[Image.Image],
    token: str,
    class_word: str,
    templates: tuple[str, ...],
    settings: dict[str, Any],
    device: torch.device,
) -> TextualInversionResult:
    """Train one token embedding in ``pipe`` (float32, modified in place); return it and its log."""
    from diffusers import DDPMScheduler

    token_id, init_id = add_placeholder_token(pipe, token, class_word)
    freeze(pipe)
    embeddings = pipe.text_encoder.get_input_embeddings()
    embeddings.weight.requires_grad_(True)
    frozen = FrozenRows(embeddings, token_id)
    pipe.text_encoder.train()
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    batches = ReferenceBatches(
        images,
        token,
        templates,
        settings["resolution"],
        center_crop=settings.get("center_crop", False),
        flip_p=settings.get("flip_p", 0.5),
        seed=settings.get("seed", 0),
    )
    generator = torch.Generator().manual_seed(settings.get("seed", 0) + 1)
    save_every = settings.get("save_every", 500)
    steps, trajectory = [0], [frozen.original[token_id].clone()]

    def compute_loss() -> torch.Tensor:
        pixels, captions = batches.sample(settings["batch_size"])
        hidden = encode_captions(pipe, captions, device)
        return denoising_loss(pipe, noise_scheduler, pixels.to(device), hidden, generator)

    def after_step(step: int) -> None:
        frozen.restore()
        if step % save_every == 0 or step == settings["steps"]:
            steps.append(step)
            trajectory.append(embeddings.weight[token_id].detach().clone())

    log = optimize(
        [{"params": [embeddings.weight]}],
        settings,
        device,
        compute_loss,
        after_step,
        f"textual inversion {token}",
    )
    pipe.text_encoder.eval()
    embeddings.weight.requires_grad_(False)
    return TextualInversionResult(
        token=token,
        token_id=token_id,
        init_token_id=init_id,
        embedding=embeddings.weight[token_id].detach().cpu().clone(),
        trajectory_steps=steps,
        trajectory=torch.stack(trajectory).cpu(),
        log=log,
    )


def save_textual_inversion(result: TextualInversionResult, out_dir: str | os.PathLike[str]) -> None:
    """Write adapter.safetensors ({token: (1, d)}) and trajectory.safetensors atomically."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    with atomic_path(out_dir / "adapter.safetensors") as tmp:
        save_file({result.token: result.embedding[None].contiguous()}, str(tmp))
    with atomic_path(out_dir / TRAJECTORY_FILE) as tmp:
        save_file(
            {
                "steps": torch.tensor(result.trajectory_steps, dtype=torch.int64),
                "embeddings": result.trajectory.contiguous(),
            },
            str(tmp),
        )
