"""Semantic-collapse diagnostics over a Textual Inversion training trajectory (docs/tea-and-collapse.md).

For every kept step t of the trajectory (train_ti's ``trajectory.safetensors``), with V*'s row
set to M_V(t) in the base text encoder:

* the token drift of :func:`entmap.tea.collapse.trajectory_diagnostics` (||M_V||, its percentile
  in the vocabulary's norm distribution, ||M_V|| / ||M_c||, cos(M_V, M_c));
* the prompt-set distances of :func:`entmap.tea.collapse.set_distances` between P_V* (the context
  prompts with V*) and P_c (the same prompts with the class word).

Each prompt is pooled to one vector: the final-layer-normed output at the end-of-text token, found
from the tokenizer's eos id (CLIP's own sentence vector; :func:`eos_positions` says why not
``pooler_output``; the public TEA code used the last padding position instead).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import torch

from entmap.core.atomic import write_text
from entmap.tea.adjust import anchor_row
from entmap.tea.collapse import set_distances, trajectory_diagnostics

COLUMNS = [
    "subject",
    "step",
    "norm",
    "norm_percentile",
    "norm_ratio",
    "cos_anchor",
    "mean_pairwise",
    "hausdorff",
    "mahalanobis",
    "kl",
    "intra_v",
    "intra_c",
    "distances",
]


def eos_positions(input_ids: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """Index of the first end-of-text token of each row of ``input_ids`` (n, L).

    Taken from the tokenizer's eos id, never from the text encoder's config: configs with the
    legacy ``eos_token_id: 2`` (SD v1.5's, OpenAI CLIP's) make transformers pool at the highest
    token id of the prompt, which is an added token such as V* rather than the end of text.
    """
    is_eos = input_ids == eos_token_id
    if not bool(is_eos.any(dim=1).all()):
        raise ValueError("a prompt has no end-of-text token; it was cut at the tokenizer's context")
    return is_eos.int().argmax(dim=1)


def pooled_prompts(tokenizer, text_encoder, prompts: list[str]) -> np.ndarray:
    """(n, d) pooled text-encoder vectors of ``prompts``: the final-layer-normed output at the end-of-text token.

    pooled_i = last_hidden_state[i, eos_i], eos_i from :func:`eos_positions` with the tokenizer's
    eos id (this equals CLIP's ``pooler_output`` only where the encoder's config pools correctly).
    """
    ids = tokenizer(
        prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids.to(text_encoder.device)
    positions = eos_positions(ids, tokenizer.eos_token_id)
    with torch.no_grad():
        hidden = text_encoder(ids).last_hidden_state
    return hidden[torch.arange(len(prompts)), positions].double().cpu().numpy()


def diagnose_trajectory(
    tokenizer,
    text_encoder,
    token: str,
    class_word: str,
    steps: list[int],
    trajectory: torch.Tensor,
    templates: list[str],
    reduction: str | None = None,
    distances: str = "paper",
    temperature: float = 1.0,
) -> pd.DataFrame:
    """One row per kept step: token drift and prompt-set distances (columns: :data:`COLUMNS` but subject).

    ``distances`` and ``temperature`` choose the Mahalanobis and KL forms of
    :func:`entmap.tea.collapse.set_distances` (the ``distances`` column records which).
    ``tokenizer``/``text_encoder`` are the *base* model's; V* is added here with
    ``mean_resizing=False`` (no draw from the global RNG) and set to each trajectory row in turn.
    """
    vocabulary = text_encoder.get_input_embeddings().weight.detach().double().cpu().numpy().copy()
    anchor = anchor_row(tokenizer, torch.from_numpy(vocabulary), class_word, reduction).numpy()
    drift = trajectory_diagnostics(steps, trajectory.double().cpu().numpy(), vocabulary, anchor)
    if token not in tokenizer.get_vocab():
        tokenizer.add_tokens(token)
        text_encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    token_id = tokenizer.convert_tokens_to_ids(token)
    weights = text_encoder.get_input_embeddings().weight
    p_c = pooled_prompts(tokenizer, text_encoder, [t.format(class_word) for t in templates])
    rows = []
    for row, vector in zip(drift, trajectory, strict=True):
        with torch.no_grad():
            weights[token_id] = vector.to(weights.dtype)
        p_v = pooled_prompts(tokenizer, text_encoder, [t.format(token) for t in templates])
        found = set_distances(p_v, p_c, distances, temperature)
        found["intra_v"], found["intra_c"] = found.pop("intra_x"), found.pop("intra_y")
        rows.append({**row, **found, "distances": distances})
    return pd.DataFrame(rows)


def load_text_encoder(base_model: str):
    """(tokenizer, text encoder) of a diffusers pipeline folder or hub id, on the CPU in float32.

    transformers loads weights in their stored dtype unless told otherwise; a pipeline stored in
    float16 (the shipped toy world's) would otherwise round every trajectory row to float16.
    """
    import torch
    from transformers import CLIPTextModel, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(base_model, subfolder="tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(base_model, subfolder="text_encoder", dtype=torch.float32)
    return tokenizer, text_encoder.eval()


def run_diagnostics(
    base_model: str,
    trajectory_path: str | os.PathLike[str],
    subject: str,
    token: str,
    class_word: str,
    templates: list[str],
    out_csv: str | os.PathLike[str],
    reduction: str | None = None,
    threads: int = 1,
    distances: str = "paper",
    temperature: float = 1.0,
) -> None:
    """Load the base text encoder (CPU, float32) and the trajectory; write the per-step table."""
    from safetensors.torch import load_file

    from entmap.core.runtime import configure_torch

    configure_torch(threads)
    tokenizer, text_encoder = load_text_encoder(base_model)
    saved = load_file(str(trajectory_path))
    steps = [int(s) for s in saved["steps"].tolist()]
    frame = diagnose_trajectory(
        tokenizer,
        text_encoder,
        token,
        class_word,
        steps,
        saved["embeddings"],
        templates,
        reduction,
        distances,
        temperature,
    )
    frame.insert(0, "subject", subject)
    write_text(out_csv, frame[COLUMNS].to_csv(index=False))


def merge_tables(paths: list[str], out_csv: str | os.PathLike[str]) -> None:
    """Concatenate the per-subject tables into tables/collapse.csv (columns :data:`COLUMNS`)."""

    frames = [pd.read_csv(path) for path in paths]
    merged = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    write_text(out_csv, merged[COLUMNS].to_csv(index=False))
