"""The TEA sweep of one personalized model: seed-matched images over an alpha x beta grid, and their scores.

For every context prompt p (``{}`` filled with the subject phrase), seed k and setting
(alpha, beta), one image x = G(p, z_k; model, TEA(alpha, beta)); the setting ``none`` is the
unadjusted model. Token level (Textual Inversion) replaces V*'s embedding row
(:func:`entmap.tea.adjust.adjust_token`); prompt level (LoRA with a trained text encoder, Custom
Diffusion, external adapters) passes adjusted ``prompt_embeds`` (:func:`entmap.tea.adjust.adjust_prompt_embeds`).

Scores per image (cosines of the scorer's embeddings, docs/tea-and-collapse.md):

* clip_context = S_T^p, against the context alone ("the grand canyon");
* clip_concept = S_T^c, against the concept alone with the class word ("dog");
* clip_full = S_T^f, against the full prompt with V* replaced by the class word;
* clip_image = CLIP-I, the mean cosine to the subject's reference images (NaN without references).

The trade-off table reports their means per setting and the change against ``none``: TEA should
raise clip_context and lower clip_image as alpha grows.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm.auto import tqdm

from entmap.core.atomic import write_text
from entmap.core.image_codec import png_bytes
from entmap.core.parquet_schemas import TEA_IMAGES, TEA_SCORES, read_table, write_table
from entmap.core.vocabulary import UNADJUSTED
from entmap.inputs.references import load_reference_images
from entmap.models.sampling import pipeline_latents, render
from entmap.tea.adjust import adjust_prompt_embeds, adjust_token

SCORE_COLUMNS = ["clip_context", "clip_concept", "clip_full", "clip_image"]


@dataclass(frozen=True)
class Setting:
    """One point of the grid; ``alpha`` and ``beta`` are None for the unadjusted model."""

    name: str
    alpha: float | None
    beta: float | None

    @property
    def adjusted(self) -> bool:
        return self.alpha is not None


def settings_grid(alphas: list[float], betas: list[float], variant: str = "tea") -> list[Setting]:
    """The unadjusted model, then every (alpha, beta) pair, named like ``a0.4_b1.5``.

    The ``norm_mix`` variant has no beta (its norm is a fixed mix of the two norms), so its grid is
    one setting per alpha, named like ``a0.4``, with beta None: a beta grid would render the same
    images under several names.
    """
    grid = [Setting(UNADJUSTED, None, None)]
    if variant == "norm_mix":
        return grid + [Setting(f"a{alpha:g}", float(alpha), None) for alpha in dict.fromkeys(alphas)]
    pairs = dict.fromkeys((float(alpha), float(beta)) for alpha in alphas for beta in betas)
    return grid + [Setting(f"a{alpha:g}_b{beta:g}", alpha, beta) for alpha, beta in pairs]


def subject_phrase(level: str, token: str, class_word: str) -> str:
    """What fills a context prompt's slot: V* alone (token level) or "V* class" (prompt level)."""
    return token if level == "token" else f"{token} {class_word}"


def sweep_images(
    pipe,
    model_name: str,
    level: str,
    token: str,
    anchor: str,
    prompts: pd.DataFrame,
    seeds: list[int],
    grid: list[Setting],
    generation: dict[str, Any],
    options: dict[str, Any],
) -> pd.DataFrame:
    """Every (setting, prompt, seed) image of one model; ``options`` holds variant, norm_mix, anchor_reduction."""
    phrase = subject_phrase(level, token, anchor)
    texts = {row.id: row.prompt.format(phrase) for row in prompts.itertuples()}
    jobs = [(pid, seed) for pid in prompts["id"] for seed in seeds]
    batch_size = generation["batch_size"]
    dtype, device = pipe.unet.dtype, pipe.device
    kwargs = {"variant": options.get("variant", "tea"), "norm_mix": options.get("norm_mix", 0.5)}
    original_row = None
    if level == "token":
        weights = pipe.text_encoder.get_input_embeddings().weight
        token_id = pipe.tokenizer.convert_tokens_to_ids(token)
        original_row = weights[token_id].detach().clone()
    rows = []
    progress = tqdm(total=len(grid) * len(jobs), desc=f"tea {model_name}", mininterval=2)
    for setting in grid:
        embeds: dict[str, torch.Tensor] = {}
        if level == "token":
            with torch.no_grad():
                weights[token_id] = original_row
            if setting.adjusted:
                adjust_token(
                    pipe,
                    token,
                    anchor,
                    setting.alpha,
                    setting.beta,
                    reduction=options.get("anchor_reduction"),
                    **kwargs,
                )
        elif setting.adjusted:
            embeds = {
                pid: adjust_prompt_embeds(pipe, text, token, anchor, setting.alpha, setting.beta, **kwargs)
                for pid, text in texts.items()
            }
        for start in range(0, len(jobs), batch_size):
            batch = jobs[start : start + batch_size]
            latents = pipeline_latents(pipe, [seed for _, seed in batch], generation["resolution"])
            if embeds:
                prompt_embeds = torch.cat([embeds[pid] for pid, _ in batch]).to(device=device, dtype=dtype)
                images = render(pipe, latents, generation, prompt_embeds=prompt_embeds)
            else:
                images = render(pipe, latents, generation, prompts=[texts[pid] for pid, _ in batch])
            for (pid, seed), image in zip(batch, images, strict=True):
                rows.append(
                    {
                        "model": model_name,
                        "setting": setting.name,
                        "alpha": math.nan if setting.alpha is None else setting.alpha,
                        "beta": math.nan if setting.beta is None else setting.beta,
                        "prompt_id": pid,
                        "seed": seed,
                        "png": png_bytes(image),
                    }
                )
            progress.update(len(batch))
    progress.close()
    if original_row is not None:
        with torch.no_grad():
            weights[token_id] = original_row
    return pd.DataFrame(rows, columns=TEA_IMAGES.names)


def score_sweep(images: pd.DataFrame, prompts: pd.DataFrame, class_word: str, references: list, scorer) -> pd.DataFrame:
    """S_T^p, S_T^c, S_T^f and CLIP-I of every sweep image (see the module docstring)."""

    from entmap.measure.metrics import clip_cosine

    by_id = prompts.set_index("id")
    texts = {
        "clip_context": {pid: row.context for pid, row in by_id.iterrows()},
        "clip_concept": {pid: row.concept.format(class_word) for pid, row in by_id.iterrows()},
        "clip_full": {pid: row.prompt.format(class_word) for pid, row in by_id.iterrows()},
    }
    text_embeddings = {
        column: dict(zip(mapping, scorer.text_embeddings(list(mapping.values())), strict=True))
        for column, mapping in texts.items()
    }
    reference_unit = None
    if references:
        reference_unit = torch.nn.functional.normalize(scorer.image_embeddings(references), dim=-1)
    out = images[["model", "setting", "alpha", "beta", "prompt_id", "seed"]].copy()
    scores: dict[str, list[np.ndarray]] = {column: [] for column in SCORE_COLUMNS}
    for start in tqdm(range(0, len(images), 32), desc="score tea", mininterval=2):
        chunk = images.iloc[start : start + 32]
        image_emb = scorer.image_embeddings([Image.open(io.BytesIO(data)) for data in chunk["png"]])
        for column, by_prompt in text_embeddings.items():
            text_emb = torch.stack([by_prompt[pid] for pid in chunk["prompt_id"]])
            scores[column].append(clip_cosine(text_emb, image_emb).double().numpy())
        if reference_unit is None:
            scores["clip_image"].append(np.full(len(chunk), np.nan))
        else:
            unit = torch.nn.functional.normalize(image_emb, dim=-1)
            scores["clip_image"].append((unit @ reference_unit.T).mean(dim=1).double().numpy())
    for column in SCORE_COLUMNS:
        out[column] = np.concatenate(scores[column]) if scores[column] else np.zeros(0)
    return out


def tradeoff_table(scores: pd.DataFrame, levels: dict[str, str]) -> pd.DataFrame:
    """Mean of each score per model and setting, with its change against the unadjusted model.

    ``delta_<score>`` = mean at the setting - mean at ``none`` over the same prompts and seeds,
    so delta_clip_context > 0 means better context alignment and delta_clip_image < 0 lost identity.
    """
    keys = ["model", "setting"]
    means = scores.groupby(keys, sort=False).agg(
        alpha=("alpha", "first"), beta=("beta", "first"), n=("seed", "size"), **{c: (c, "mean") for c in SCORE_COLUMNS}
    )
    means = means.reset_index()
    baseline = means[means["setting"] == UNADJUSTED].set_index("model")[SCORE_COLUMNS]
    for column in SCORE_COLUMNS:
        means[f"delta_{column}"] = means[column] - means["model"].map(baseline[column])
    means.insert(1, "subject", means["model"].str.split("/").str[0])
    means.insert(2, "method", means["model"].str.split("/").str[1])
    means.insert(3, "level", means["model"].map(levels))
    return means


def run_sweep(
    base_model: str,
    adapter_dir: str | os.PathLike[str],
    model_name: str,
    spec: dict[str, Any],
    prompts: pd.DataFrame,
    seeds: list[int],
    grid: list[Setting],
    generation: dict[str, Any],
    options: dict[str, Any],
    out_path: str | os.PathLike[str],
    device: str = "auto",
    dtype: str = "auto",
    threads: int = 1,
) -> None:
    """Load one personalized model and write its sweep images (``spec``: level, token, class_word)."""
    from entmap.models.loading import open_model

    pipe = open_model(base_model, adapter_dir, device, dtype, threads)
    frame = sweep_images(
        pipe, model_name, spec["level"], spec["token"], spec["class_word"], prompts, seeds, grid, generation, options
    )
    write_table(frame, out_path, TEA_IMAGES)


def run_scoring(
    images_path: str | os.PathLike[str],
    prompts: pd.DataFrame,
    class_word: str,
    reference_dir: str | os.PathLike[str] | None,
    scorer_spec: dict[str, Any],
    out_path: str | os.PathLike[str],
    device: str = "auto",
    threads: int = 1,
) -> None:
    """Score one model's sweep images and write the score table."""
    from entmap.core.runtime import configure_torch, resolve_device
    from entmap.measure.score import ClipScorer

    configure_torch(threads)
    scorer = ClipScorer(scorer_spec["model"], scorer_spec["pretrained"], resolve_device(device))
    references = load_reference_images(reference_dir) if reference_dir else []
    frame = score_sweep(read_table(images_path, TEA_IMAGES), prompts, class_word, references, scorer)
    write_table(frame, out_path, TEA_SCORES)


def write_tradeoff(score_paths: list[str], levels: dict[str, str], out_csv: str | os.PathLike[str]) -> None:
    """Merge every model's scores into the trade-off table (CSV)."""

    scores = pd.concat([read_table(path, TEA_SCORES) for path in score_paths], ignore_index=True)
    write_text(out_csv, tradeoff_table(scores, levels).to_csv(index=False))
