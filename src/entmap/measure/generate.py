"""The ``generate`` stage: seed-matched images of one model for one shard of prompts.

Every image has its own initial latent from its own seed (:mod:`entmap.models.sampling`), so
base and personalized images of a (prompt, seed) start from the same noise.
"""

from __future__ import annotations

import os
from typing import Any

import pandas as pd

from entmap.core.checksums import settings_hash as hash_settings
from entmap.core.image_codec import png_bytes
from entmap.core.parquet_schemas import IMAGES, write_table
from entmap.models.loading import open_model
from entmap.models.sampling import render_jobs


def generate_shard(
    pipe,
    prompts: pd.DataFrame,
    seeds: list[int],
    settings: dict[str, Any],
    model_name: str,
    settings_hash: str,
) -> pd.DataFrame:
    """Generate every (prompt, seed) image of ``prompts`` with ``pipe``; one row per image.

    Jobs run in a fixed order (prompts in suite order, seeds ascending) in
    batches of ``settings['batch_size']``, so the same shard with the same
    batch size always sees the same batch composition.
    """
    keys = [(row.id, seed) for row in prompts.itertuples() for seed in seeds]
    jobs = [(row.text, seed) for row in prompts.itertuples() for seed in seeds]
    rows = []
    for index, image in render_jobs(pipe, jobs, settings, desc=f"generate {model_name}"):
        prompt_id, seed = keys[index]
        rows.append(
            {
                "prompt_id": prompt_id,
                "seed": seed,
                "model": model_name,
                "settings_hash": settings_hash,
                "width": image.width,
                "height": image.height,
                "png": png_bytes(image),
            }
        )
    return pd.DataFrame(rows, columns=IMAGES.names)


def write_images(frame: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    write_table(frame, path, IMAGES)


def generate_model_shard(
    base_model: str,
    adapter_dir: str | os.PathLike[str] | None,
    prompts: pd.DataFrame,
    seeds: list[int],
    settings: dict[str, Any],
    model_name: str,
    out_path: str | os.PathLike[str],
    device: str = "auto",
    dtype: str = "auto",
    threads: int = 1,
) -> None:
    """Load the base pipeline (plus the adapter, if any), generate one shard, write its table."""
    pipe = open_model(base_model, adapter_dir, device, dtype, threads)
    frame = generate_shard(pipe, prompts, seeds, settings, model_name, hash_settings(settings))
    write_images(frame, out_path)
