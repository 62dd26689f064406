"""The ``attention`` stage: one personalized model's cross-attention shift against the base.

For the model's chosen prompts (:mod:`entmap.attention.selection`) and seeds, the base and then the
personalized pipeline denoise exactly as the map's generation does (the same initial latents,
settings and batches: :mod:`entmap.models.sampling`) while :mod:`entmap.attention.capture` records
the text attention of the kept layers and steps. The base pass writes each batch's probabilities to
a temporary folder; the model pass compares its own with them as they come
(:class:`entmap.attention.reduce.ShiftAccumulator`). The two pipelines are loaded one after the
other, so the stage needs the memory of one.

Outputs: one row per (prompt, layer, step, text position) with the mean over seeds and queries of
A_base, A_model and |A_model - A_base| (an encoder's padding positions merged into one row), and
the heat maps of the prompt with the largest shift at the first seed. Explained in docs/attention.md.
"""

from __future__ import annotations

import gc
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from entmap.attention.capture import capture_attention, text_attention_layers
from entmap.attention.reduce import BatchStore, ShiftAccumulator, load_batch
from entmap.attention.selection import choose_prompts, prompt_e_sem
from entmap.attention.tokens import TokenLayout, token_layout
from entmap.core.parquet_schemas import ATTENTION, ATTENTION_MAPS, DISRUPTION, read_tables, write_table
from entmap.models.loading import open_model
from entmap.models.sampling import pipeline_latents, render


def render_captured(pipe, texts: list[str], seeds: list[int], settings: dict, sink, text_length: int, steps, layers):
    """One batch rendered as :func:`entmap.models.sampling.render_jobs` renders it, attention captured.

    Returns (images, number of denoiser calls)."""
    latents = pipeline_latents(pipe, seeds, settings["resolution"])
    with capture_attention(pipe, sink, len(texts), text_length, steps, layers) as capture:
        images = render(pipe, latents, settings, prompts=texts)
    return images, capture.step + 1


def _free(pipe) -> None:
    device = pipe.device
    del pipe
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


class AttentionRun:
    """The jobs of one model's attention stage: (prompt index, text, seed), prompts first, in batches."""

    def __init__(self, prompts: pd.DataFrame, seeds: list[int], settings: dict, steps, layers):
        self.prompts, self.seeds, self.settings = prompts.reset_index(drop=True), list(seeds), settings
        self.steps, self.layers = (sorted(steps) if steps is not None else None), layers
        self.jobs = [(p, text, seed) for p, text in enumerate(self.prompts["text"]) for seed in self.seeds]
        size = settings["batch_size"]
        self.batches = [list(range(s, min(s + size, len(self.jobs)))) for s in range(0, len(self.jobs), size)]

    def render(self, pipe, batch: list[int], sink, text_length: int) -> int:
        texts = [self.jobs[n][1] for n in batch]
        seeds = [self.jobs[n][2] for n in batch]
        return render_captured(pipe, texts, seeds, self.settings, sink, text_length, self.steps, self.layers)[1]

    def base_pass(self, pipe, folder: Path) -> tuple[list[TokenLayout], list[str], list[int], list[float]]:
        """Render every batch with the base, saving its probabilities; (layouts, layers, kept steps, timesteps)."""
        layouts = [token_layout(pipe, text) for text in self.prompts["text"]]
        if len({len(layout) for layout in layouts}) != 1:
            raise ValueError("the prompts' text sequences differ in length")
        layers = list(text_attention_layers(pipe, self.layers))
        calls = set()
        for b, batch in enumerate(self.batches):
            store = BatchStore()
            calls.add(self.render(pipe, batch, store.sink, len(layouts[0])))
            kept = self.steps if self.steps is not None else list(range(max(calls)))
            if len(calls) != 1 or set(store.probabilities) != {
                (layer, t) for layer in range(len(layers)) for t in kept
            }:
                raise ValueError(f"the base ran {sorted(calls)} denoising steps; kept {kept} of {len(layers)} layers")
            store.save(folder / f"{b}.pt")
        timesteps = [float(t) for t in pipe.scheduler.timesteps]
        if len(timesteps) != max(calls):
            raise ValueError(
                f"the denoiser ran {max(calls)} times for {len(timesteps)} scheduler steps: one call per step "
                "(classifier-free guidance in one batch) is what the capture counts"
            )
        return layouts, layers, kept, timesteps

    def model_pass(self, pipe, folder: Path, layouts: list[TokenLayout], layers: list[str], kept: list[int]):
        """Render every batch with the personalized model against the saved base; the filled accumulator."""
        for layout, text in zip(layouts, self.prompts["text"], strict=True):
            if token_layout(pipe, text).ids != layout.ids:
                raise ValueError(f"the model tokenizes {text!r} differently from the base: positions cannot be paired")
        if list(text_attention_layers(pipe, self.layers)) != layers:
            raise ValueError("the model's attention layers are not the base's")
        text_length = len(layouts[0])
        positions = [j for j in range(text_length) if any(layout.classes[j] != "pad" for layout in layouts)]
        accumulator = ShiftAccumulator(
            len(self.jobs), len(layers), kept, text_length, positions, len(self.prompts), pipe.device
        )
        for b, batch in enumerate(self.batches):
            maps = [(row, self.jobs[n][0]) for row, n in enumerate(batch) if self.jobs[n][2] == self.seeds[0]]
            accumulator.begin_batch(load_batch(folder / f"{b}.pt"), batch, maps)
            self.render(pipe, batch, accumulator.sink, text_length)
        if not accumulator.complete():
            raise ValueError("the model did not run every kept layer at every kept step")
        return accumulator, positions


def token_columns(layout: TokenLayout) -> tuple[list[dict], list[np.ndarray]]:
    """The rows' text positions: every non-padding position alone, each encoder's padding merged.

    Returns (descriptions, index arrays into the J positions)."""
    described, indices = [], []
    for j, cls in enumerate(layout.classes):
        if cls != "pad":
            described.append(
                {"token": j, "token_text": layout.texts[j], "token_class": cls, "encoder": layout.encoders[j]}
            )
            indices.append(np.array([j]))
    for encoder in dict.fromkeys(layout.encoders):
        pads = [
            j
            for j, (c, e) in enumerate(zip(layout.classes, layout.encoders, strict=True))
            if c == "pad" and e == encoder
        ]
        if pads:
            described.append({"token": -1, "token_text": "", "token_class": "pad", "encoder": encoder})
            indices.append(np.array(pads))
    return described, indices


def stats_frame(
    model: str,
    run: AttentionRun,
    layouts: list[TokenLayout],
    layers: list[str],
    kept: list[int],
    timesteps: list[float],
    accumulator: ShiftAccumulator,
) -> pd.DataFrame:
    """One row per (prompt, layer, kept step, text position or merged padding), means over seeds."""
    n_seeds, frames = len(run.seeds), []
    for p, prompt in enumerate(run.prompts.itertuples()):
        images = slice(p * n_seeds, (p + 1) * n_seeds)
        described, indices = token_columns(layouts[p])
        values = {
            name: np.stack([array[images].mean(axis=0)[..., index].mean(axis=-1) for index in indices], axis=-1)
            for name, array in (
                ("base_attention", accumulator.base),
                ("model_attention", accumulator.model),
                ("mean_abs_delta", accumulator.shift),
            )
        }  # each (L, T, K)
        layer_grid, step_grid, token_grid = np.meshgrid(
            np.arange(len(layers)), np.arange(len(kept)), np.arange(len(described)), indexing="ij"
        )
        tokens = pd.DataFrame(described).assign(n_tokens=[len(index) for index in indices])
        frame = tokens.iloc[token_grid.ravel()].reset_index(drop=True)
        frame.insert(0, "layer_index", layer_grid.ravel())
        frame.insert(1, "layer", np.asarray(layers)[layer_grid.ravel()])
        frame.insert(2, "n_queries", accumulator.queries[layer_grid.ravel()])
        frame.insert(3, "step", np.asarray(kept)[step_grid.ravel()])
        frame.insert(4, "timestep", np.asarray(timesteps, dtype=float)[np.asarray(kept)][step_grid.ravel()])
        for name, array in values.items():
            frame[name] = array.ravel()
        frames.append(
            frame.assign(
                model=model,
                prompt_id=prompt.prompt_id,
                kind=prompt.kind,
                rank=prompt.rank,
                e_sem=prompt.e_sem,
                n_seeds=n_seeds,
            )
        )
    return pd.concat(frames, ignore_index=True)[ATTENTION.names]


def most_shifted(accumulator: ShiftAccumulator, n_prompts: int, n_seeds: int) -> int:
    """The prompt with the largest mean |Delta A| over seeds, layers, steps and all text positions
    (the first on ties)."""
    per_prompt = accumulator.shift.reshape(n_prompts, n_seeds, -1).mean(axis=(1, 2))
    return int(np.argmax(per_prompt))


def maps_frame(
    model: str, run: AttentionRun, layouts: list[TokenLayout], positions: list[int], accumulator
) -> pd.DataFrame:
    """The heat maps (base and model) of each non-padding position of the most shifted prompt, first seed."""
    p = most_shifted(accumulator, len(run.prompts), len(run.seeds))
    base, personalized = accumulator.heat_maps()
    layout, rows = layouts[p], []
    for k, j in enumerate(positions):
        if layout.classes[j] == "pad":
            continue
        for kind, maps in (("base", base), ("model", personalized)):
            grid = maps[p, k]
            rows.append(
                {
                    "model": model,
                    "prompt_id": run.prompts["prompt_id"].iloc[p],
                    "seed": run.seeds[0],
                    "token": j,
                    "token_text": layout.texts[j],
                    "token_class": layout.classes[j],
                    "encoder": layout.encoders[j],
                    "kind": kind,
                    "side": grid.shape[-1],
                    "values": grid.astype(np.float32).ravel().tolist(),
                }
            )
    return pd.DataFrame(rows, columns=ATTENTION_MAPS.names)


def model_attention(
    base_model: str,
    adapter_dir: str | os.PathLike[str] | None,
    model: str,
    prompts: pd.DataFrame,
    seeds: list[int],
    settings: dict,
    steps: list[int] | None,
    layers: list[str] | None,
    runtime: dict,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(statistics, heat maps) of ``model`` against the base on ``prompts`` (prompt_id, text, kind, rank, e_sem)."""
    run = AttentionRun(prompts, seeds, settings, steps, layers)
    device, dtype, threads = runtime["device"], runtime["dtype"], runtime["threads"]
    with tempfile.TemporaryDirectory(prefix="entmap-attention-") as folder:
        pipe = open_model(base_model, None, device, dtype, threads)
        layouts, names, kept, timesteps = run.base_pass(pipe, Path(folder))
        _free(pipe)
        pipe = open_model(base_model, adapter_dir, device, dtype, threads)
        accumulator, positions = run.model_pass(pipe, Path(folder), layouts, names, kept)
    stats = stats_frame(model, run, layouts, names, kept, timesteps, accumulator)
    return stats, maps_frame(model, run, layouts, positions, accumulator)


def write_model_attention(
    base_model: str,
    adapter_dir: str | os.PathLike[str],
    model: str,
    candidates: pd.DataFrame,
    disruption_paths: list[str],
    own_category: str | None,
    spec: dict,
    seeds: list[int],
    settings: dict,
    runtime: dict,
    stats_path: str | os.PathLike[str],
    maps_path: str | os.PathLike[str],
) -> None:
    """Choose the model's prompts from its disruption tables, run :func:`model_attention`, write both tables.

    ``candidates``: the evaluated prompts (id, category, text); ``spec``: the config's ``attention`` block.
    """
    e_sem_by_prompt = prompt_e_sem(read_tables(disruption_paths, DISRUPTION))
    prompts = choose_prompts(candidates, e_sem_by_prompt, own_category, spec["prompts"])
    stats, maps = model_attention(
        base_model, adapter_dir, model, prompts, seeds, settings, spec.get("steps"), spec.get("layers"), runtime
    )
    write_table(stats, stats_path, ATTENTION)
    write_table(maps, maps_path, ATTENTION_MAPS)
