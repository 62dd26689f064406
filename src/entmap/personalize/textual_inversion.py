"""Textual Inversion (Gal et al. 2022) as in the diffusers reference script.

One new token ``<s>`` is added to the tokenizer of every CLIP text encoder of the family (SDXL
and SD3 have two, SD 1.x and Flux one; T5 is left alone), its embedding row is initialized from
the class word's row, and only those rows are optimized with the family's training loss
(:mod:`entmap.personalize.objectives`) on captions such as "a photo of a <s>". After every
optimizer step all other rows are restored to their original values (AdamW's weight decay would
otherwise move them), so each text encoder differs from the base in exactly one row. The result is
saved as ``{token: (1, d)}`` (one encoder) or ``{clip_l, clip_g}`` (SDXL's embedding format) in
safetensors; the first encoder's embedding is also kept every ``save_every`` steps (the
trajectory) for the semantic-collapse diagnostics.

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
from entmap.models.embeddings import add_placeholder_token, clip_encoders
from entmap.personalize.captions import ReferenceBatches
from entmap.personalize.geometry_regularizer import GeometryRegularizer, regularized
from entmap.personalize.objectives import objective_for
from entmap.personalize.training_loop import FrozenRows, TrainLog, freeze, optimize

TRAJECTORY_FILE = "trajectory.safetensors"


@dataclass
class TextualInversionResult:
    token: str
    #: the new token's id and its initializer's in the first CLIP encoder (the one SD 1.x has)
    token_id: int
    init_token_id: int
    #: the learnt embedding, {encoder key: (d,)}: ``clip_l`` (and ``clip_g`` for SDXL and SD3)
    embeddings: dict[str, torch.Tensor]
    trajectory_steps: list[int]
    trajectory: torch.Tensor  # (n_saves, d) in the first CLIP encoder, step 0 included
    log: TrainLog

    @property
    def embedding(self) -> torch.Tensor:
        """The learnt embedding in the first CLIP encoder, (d,)."""
        return next(iter(self.embeddings.values()))


def train_textual_inversion(
    pipe,
    images: list[Image.Image],
    token: str,
    class_word: str,
    templates: tuple[str, ...],
    settings: dict[str, Any],
    device: torch.device,
) -> TextualInversionResult:
    """Train one token embedding per CLIP encoder in ``pipe`` (float32, in place); return it and its log."""
    ids = add_placeholder_token(pipe, token, class_word)
    freeze(pipe)
    tables = {key: encoder.get_input_embeddings() for key, _, encoder in clip_encoders(pipe)}
    frozen = [FrozenRows(tables[key], ids[key][0]) for key in tables]
    for key, _, encoder in clip_encoders(pipe):
        tables[key].weight.requires_grad_(True)
        encoder.train()
    first = next(iter(tables))
    token_id, init_id = ids[first]
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
    objective = objective_for(pipe, device, generator)
    save_every = settings.get("save_every", 500)
    steps, trajectory = [0], [frozen[0].original[token_id].clone()]

    def task_loss() -> torch.Tensor:
        pixels, captions = batches.sample(settings["batch_size"])
        return objective(pixels, captions)

    compute_loss = regularized(task_loss, GeometryRegularizer.build(pipe, settings))

    def after_step(step: int) -> None:
        for rows in frozen:
            rows.restore()
        if step % save_every == 0 or step == settings["steps"]:
            steps.append(step)
            trajectory.append(tables[first].weight[token_id].detach().clone())

    log = optimize(
        [{"params": [table.weight for table in tables.values()]}],
        settings,
        device,
        compute_loss,
        after_step,
        f"textual inversion {token}",
    )
    for key, _, encoder in clip_encoders(pipe):
        encoder.eval()
        tables[key].weight.requires_grad_(False)
    return TextualInversionResult(
        token=token,
        token_id=token_id,
        init_token_id=init_id,
        embeddings={key: table.weight[ids[key][0]].detach().cpu().clone() for key, table in tables.items()},
        trajectory_steps=steps,
        trajectory=torch.stack(trajectory).cpu(),
        log=log,
    )


def save_textual_inversion(result: TextualInversionResult, out_dir: str | os.PathLike[str]) -> None:
    """Write adapter.safetensors and trajectory.safetensors atomically.

    One CLIP encoder: ``{token: (1, d)}`` (diffusers' format); two: ``{clip_l: (1, d), clip_g: (1, d')}``
    (the SDXL embedding format), the token then named in meta.json.
    """
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    if len(result.embeddings) == 1:
        tensors = {result.token: result.embedding[None].contiguous()}
    else:
        tensors = {key: value[None].contiguous() for key, value in result.embeddings.items()}
    with atomic_path(out_dir / "adapter.safetensors") as tmp:
        save_file(tensors, str(tmp))
    with atomic_path(out_dir / TRAJECTORY_FILE) as tmp:
        save_file(
            {
                "steps": torch.tensor(result.trajectory_steps, dtype=torch.int64),
                "embeddings": result.trajectory.contiguous(),
            },
            str(tmp),
        )
