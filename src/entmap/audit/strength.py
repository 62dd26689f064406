"""The strength sweep: an adapter's images at several scales, and what they cost and buy (docs/audit.md).

A LoRA applied at scale w changes each adapted weight by w (alpha / r) B A (the ``<lora:name:w>``
habit); w = 0 is the base model exactly (the images are the base's byte for byte), w = 1 the adapter
as published. For each scale the sweep renders, seed-matched with the map's seeds:

* ``unrelated``: the first ``audit.sweep_prompts`` prompts of the map outside the adapter's own
  prompt category;
* ``trigger``: the trigger prompt "a photo of {trigger}" (the fixed probe prompt when the adapter
  names no trigger, :func:`entmap.models.audit.probe_prompt`);
* ``triggered`` (scales 0 and 1 only): each unrelated prompt with the trigger in front,
  "{trigger}, {prompt}", for the leakage with the trigger (:mod:`entmap.audit.leakage`);
* ``reference``: the reference images of ``audit.references``, embedded once (no scale).

Adapters without a defined scale (Textual Inversion, Custom Diffusion, full checkpoints:
:data:`entmap.models.adapter_formats.SCALE_UNDEFINED`) are rendered at 0 (the base model) and 1
only. Every image is scored with the run's CLIP scorer and compared by LPIPS with the scale-0
image of its prompt and seed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from entmap.core.parquet_schemas import AUDIT_SWEEP, write_table
from entmap.models.audit import probe_prompt

#: the numbers of :func:`strength_table`, one row per (model, scale)
STRENGTH_COLUMNS = ["scale", "e_sem", "e_sem_low", "e_sem_high", "e_per", "e_per_low", "e_per_high"]
STRENGTH_COLUMNS += ["target_fidelity", "n_prompts", "n_seeds"]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


def sweep_scales(kind: str, scales: list[float]) -> list[float]:
    """The scales rendered for an adapter of ``kind``: ``audit.scales`` for a LoRA, else 0 and 1."""
    return sorted({float(s) for s in scales}) if kind == "lora" else [0.0, 1.0]


def with_trigger(text: str, trigger: str) -> str:
    """An unrelated prompt with the trigger in front: "{trigger}, {text}"."""
    return f"{trigger}, {text}"


def sweep_jobs(
    prompts: list[tuple[str, str]], trigger: str | None, seeds: list[int], scale: float
) -> list[tuple[str, str, str, int]]:
    """(part, prompt id, text, seed) of every image rendered at ``scale`` (module docstring)."""
    jobs = [("unrelated", pid, text, seed) for pid, text in prompts for seed in seeds]
    jobs += [("trigger", "trigger", probe_prompt(trigger), seed) for seed in seeds]
    if trigger and scale in (0.0, 1.0):
        jobs += [
            ("triggered", f"{pid}+trigger", with_trigger(text, trigger), seed)
            for pid, text in prompts
            for seed in seeds
        ]
    return jobs


def reference_images(folder: str | os.PathLike[str]) -> list[Path]:
    """The image files of a reference folder, by name."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def sweep_adapter(
    base_model: str,
    adapter_dir: str,
    kind: str,
    scales: list[float],
    prompts: list[tuple[str, str]],
    seeds: list[int],
    settings: dict[str, Any],
    scorer: dict[str, str | None],
    lpips: dict[str, Any],
    references: str | None,
    out_path: str | os.PathLike[str],
    device: str = "auto",
    dtype: str = "auto",
    threads: int = 1,
) -> pd.DataFrame:
    """Render, score and compare the sweep's images (module docstring); write the AUDIT_SWEEP table.

    The trigger is the one the adapter's audit recorded (its meta.json ``token``).
    """
    import torch

    from entmap.measure.metrics import Lpips, clip_cosine
    from entmap.measure.score import ClipScorer
    from entmap.models.adapter_formats import set_lora_scale
    from entmap.models.loading import adapter_source, job_runtime, load_model, load_pipeline
    from entmap.models.sampling import render_jobs

    trigger = adapter_source(adapter_dir).token
    torch_device, torch_dtype = job_runtime(device, dtype, threads)
    rendered: list[tuple[str, str, str, int, float, Any]] = []
    if kind == "lora":
        pipe = load_model(base_model, adapter_dir, torch_device, torch_dtype)
        pipes = {scale: pipe for scale in sweep_scales(kind, scales)}
    else:
        pipes = {0.0: load_pipeline(base_model, torch_device, torch_dtype)}
        pipes[1.0] = load_model(base_model, adapter_dir, torch_device, torch_dtype)
    for scale, pipe in pipes.items():
        if kind == "lora":
            set_lora_scale(pipe, scale)
        jobs = sweep_jobs(prompts, trigger, seeds, scale)
        for index, image in render_jobs(
            pipe, [(text, seed) for _, _, text, seed in jobs], settings, f"scale {scale:g}"
        ):
            rendered.append((*jobs[index], scale, image))
    del pipes
    clip = ClipScorer(scorer["model"], scorer["pretrained"], torch_device)
    rows = []
    for start in range(0, len(rendered), 32):
        chunk = rendered[start : start + 32]
        image_emb = clip.image_embeddings([image for *_, image in chunk])
        cos = clip_cosine(clip.text_embeddings([text for _, _, text, *_ in chunk]), image_emb).double().numpy()
        normalized = torch.nn.functional.normalize(image_emb, dim=-1).numpy().astype(np.float32)
        for (part, pid, text, seed, scale, _), a, emb in zip(chunk, cos, normalized, strict=True):
            rows.append({"part": part, "prompt_id": pid, "text": text, "seed": seed, "scale": scale, "clip_cos": a})
            rows[-1]["image_embedding"] = emb.tolist()
    zero = {(part, pid, seed): image for part, pid, _, seed, scale, image in rendered if scale == 0.0}
    pairs = [(zero[(part, pid, seed)], image) for part, pid, _, seed, _, image in rendered]
    meter = Lpips.from_settings(lpips, torch_device)
    distances = meter.distance(np.stack([np.asarray(a) for a, _ in pairs]), np.stack([np.asarray(b) for _, b in pairs]))
    for row, distance in zip(rows, distances, strict=True):
        row["lpips"] = float(distance)
    if references:
        files = reference_images(references)
        embeddings = clip.image_embeddings([Image.open(path).convert("RGB") for path in files])
        normalized = torch.nn.functional.normalize(embeddings, dim=-1).numpy().astype(np.float32)
        for path, emb in zip(files, normalized, strict=True):
            rows.append({"part": "reference", "prompt_id": path.name, "text": "", "seed": -1, "scale": np.nan})
            rows[-1].update(clip_cos=np.nan, lpips=np.nan, image_embedding=emb.tolist())
    table = pd.DataFrame(rows, columns=AUDIT_SWEEP.names)
    write_table(table, out_path, AUDIT_SWEEP)
    return table


def bootstrap_mean(per_prompt: np.ndarray, replicates: int, seed: int) -> tuple[float, float, float]:
    """(mean, 2.5th, 97.5th percentile) of the mean of per-prompt values, prompts resampled with replacement.

    One prompt: the interval is the point (nothing to resample); no prompt: NaNs.
    """
    values = np.asarray(per_prompt, dtype=float)
    if values.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(values.mean())
    if values.size == 1:
        return mean, mean, mean
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(replicates, values.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return mean, float(low), float(high)


def target_fidelity(sweep: pd.DataFrame, scale: float, references: np.ndarray | None) -> float:
    """How well the trigger prompt's images at ``scale`` show the adapter's concept.

    With reference images: CLIP-I = mean_k mean_j cos(f_I(x_s(T, k)), f_I(r_j)) (= mean_k <x_hat, r_bar>,
    r_bar the mean of the references' normalized embeddings). Without: the trigger prompt's CLIP score
    mean_k a(T, x_s(T, k)).
    """
    rows = sweep[(sweep["part"] == "trigger") & np.isclose(sweep["scale"], scale)]
    if rows.empty:
        return float("nan")
    if references is None:
        return float(rows["clip_cos"].mean())
    return float((np.stack(rows["image_embedding"].to_numpy()) @ references).mean())


def strength_table(
    sweep: pd.DataFrame, references: np.ndarray | None, replicates: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Per scale s of one adapter's sweep, against its scale-0 (base) images of the same prompt and seed:

    * e_sem(s) = mean_p mean_k |a(p, x_s(p, k)) - a(p, x_0(p, k))| over the unrelated prompts p;
    * e_per(s) = mean_p mean_k LPIPS(x_s(p, k), x_0(p, k));
    * target_fidelity(s): :func:`target_fidelity`;

    with 95% bootstrap intervals over prompts (:func:`bootstrap_mean`). At s = 0 both shifts are 0.
    """
    unrelated = sweep[sweep["part"] == "unrelated"]
    base = unrelated[unrelated["scale"] == 0.0].set_index(["prompt_id", "seed"])["clip_cos"]
    rows = []
    for scale, group in unrelated.groupby("scale", sort=True):
        shift = (group.set_index(["prompt_id", "seed"])["clip_cos"] - base).abs()
        per_prompt_sem = shift.groupby(level="prompt_id").mean().to_numpy()
        per_prompt_per = group.groupby("prompt_id")["lpips"].mean().to_numpy()
        e_sem = bootstrap_mean(per_prompt_sem, replicates, seed)
        e_per = bootstrap_mean(per_prompt_per, replicates, seed)
        rows.append(
            [float(scale), *e_sem, *e_per, target_fidelity(sweep, scale, references)]
            + [int(group["prompt_id"].nunique()), int(group["seed"].nunique())]
        )
    return pd.DataFrame(rows, columns=STRENGTH_COLUMNS)
