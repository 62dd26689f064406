"""The ``geometry`` stage: one personalized model's prompt geometry against the base's.

Over the evaluated prompts, for every text encoder (level ``text``) and, in the UNet families,
every cross-attention key and value projection (level ``kv``): spread of the base's and the
model's features, their ratio, and the local-structure distortion
(:func:`entmap.geometry.measures.geometry_change`). One row per (level, layer). The two
pipelines are loaded one after the other, so the stage needs the memory of one.

Explained in docs/geometry.md.
"""

from __future__ import annotations

import gc
import os

import pandas as pd

from entmap.core.parquet_schemas import GEOMETRY, write_table
from entmap.geometry.features import cross_attention_features, text_encoder_features
from entmap.geometry.measures import NEIGHBOURS, geometry_change
from entmap.models.families import family_of_pipeline
from entmap.models.loading import open_model


def prompt_features(pipe, prompts: list[str]) -> dict[tuple[str, str], object]:
    """{(level, layer): features} of ``prompts``: every text encoder, and the UNet families' keys and values."""
    features = {("text", name): value for name, value in text_encoder_features(pipe, prompts).items()}
    if family_of_pipeline(pipe).denoiser == "unet":
        features |= {("kv", name): value for name, value in cross_attention_features(pipe, prompts).items()}
    return features


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
    base = prompt_features(open_model(base_model, None, device, dtype, threads), prompts)
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
