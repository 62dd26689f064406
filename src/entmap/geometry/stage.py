"""The ``geometry`` stage: one personalized model's prompt geometry against the base's.

Over the evaluated prompts, for every text encoder (level ``text``) and every key and value
projection where text meets image (level ``kv``: cross-attention in the UNet families, the text
tokens' keys and values of joint attention in SD3 and Flux; see
:func:`entmap.geometry.features.kv_features`): spread of the base's and the model's features,
their ratio, and the local-structure distortion
(:func:`entmap.geometry.measures.geometry_change`). One row per (level, layer). The two
pipelines are loaded one after the other, so the stage needs the memory of one.

The base's features are computed once per process (:func:`base_prompt_features`): a process that
measures several models against one base (a notebook, the tests) loads the base once. The workflow
runs one job per model, each its own process, so each job still computes them; sharing them
between jobs would take a rule of their own or a lock on a shared file, for a saving of one
forward pass of the prompts per job.

Explained in docs/geometry.md.
"""

from __future__ import annotations

import functools
import gc
import os
from pathlib import Path

import pandas as pd

from entmap.core.parquet_schemas import GEOMETRY, write_table
from entmap.geometry.features import kv_features, text_encoder_features
from entmap.geometry.measures import NEIGHBOURS, geometry_change
from entmap.models.loading import open_model


def prompt_features(pipe, prompts: list[str]) -> dict[tuple[str, str], object]:
    """{(level, layer): features} of ``prompts``: each text encoder's, and the keys and values where
    text meets image."""
    features = {("text", name): value for name, value in text_encoder_features(pipe, prompts).items()}
    return features | {("kv", name): value for name, value in kv_features(pipe, prompts).items()}


def model_stamp(model: str | os.PathLike[str]) -> tuple[tuple[str, int, int], ...]:
    """(relative path, size, mtime in ns) of every file of a local model folder; () for a hub id.

    Rewriting any file of the folder changes it, so a cache keyed on it never serves stale features.
    """
    root = Path(model)
    if not root.is_dir():
        return ()
    files = sorted(path for path in root.rglob("*") if path.is_file())
    return tuple((str(path.relative_to(root)), path.stat().st_size, path.stat().st_mtime_ns) for path in files)


@functools.lru_cache(maxsize=1)
def _cached_base_features(
    base_model: str, prompts: tuple[str, ...], device: str, dtype: str, threads: int, stamp: tuple
) -> dict[tuple[str, str], object]:
    return prompt_features(open_model(base_model, None, device, dtype, threads), list(prompts))


def base_prompt_features(base_model: str, prompts: list[str], runtime: dict) -> dict[tuple[str, str], object]:
    """:func:`prompt_features` of the base model, computed once per process for the same base files
    (:func:`model_stamp`), prompts and runtime; the last such set is kept. Shared: do not modify it."""
    key = (runtime["device"], runtime["dtype"], runtime["threads"])
    return _cached_base_features(str(base_model), tuple(prompts), *key, model_stamp(base_model))


def model_geometry(
    base_model: str,
    adapter_dir: str | os.PathLike[str],
    model: str,
    prompts: list[str],
    runtime: dict,
    neighbours: int = NEIGHBOURS,
) -> pd.DataFrame:
    """One row per (level, layer): the model's spread, spread ratio and distortion against the base."""
    device, dtype, threads = runtime["device"], runtime["dtype"], runtime["threads"]
    base = base_prompt_features(base_model, prompts, runtime)
    gc.collect()
    personalized = prompt_features(open_model(base_model, adapter_dir, device, dtype, threads), prompts)
    rows = []
    for (level, layer), base_features in base.items():
        change = geometry_change(personalized[(level, layer)], base_features, neighbours)
        rows.append(
            {
                "model": model,
                "level": level,
                "layer": layer,
                "n_prompts": len(prompts),
                "spread_base": change.spread_base,
                "spread_model": change.spread_model,
                "spread_ratio": change.spread_ratio,
                "distortion": change.distortion,
            }
        )
    return pd.DataFrame(rows, columns=GEOMETRY.names)


def write_model_geometry(
    base_model: str,
    adapter_dir: str | os.PathLike[str],
    model: str,
    prompts: list[str],
    runtime: dict,
    neighbours: int,
    out_path: str | os.PathLike[str],
) -> None:
    """:func:`model_geometry`, written as Parquet."""
    write_table(model_geometry(base_model, adapter_dir, model, prompts, runtime, neighbours), out_path, GEOMETRY)
