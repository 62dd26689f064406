"""The ``generate`` stage: seed-matched images of one model for one shard of prompts.

Every image has its own initial latent from its own seed (:mod:`entmap.models.sampling`), so
base and personalized images of a (prompt, seed) start from the same noise. A personalized model
that provably renders a prompt exactly as the base does takes the base images of that prompt
instead of rendering them (:mod:`entmap.models.fingerprint`, :mod:`entmap.measure.reuse`).
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd

from entmap.core.checksums import settings_hash as hash_settings
from entmap.core.image_codec import png_bytes
from entmap.core.parquet_schemas import IMAGES, read_table, write_table
from entmap.measure.reuse import BaseReuse, base_images_by_key, verification_sample
from entmap.models.adapter_meta import read_meta
from entmap.models.fingerprint import model_print, reusable_prompts
from entmap.models.loading import apply_model_adapter, is_checkpoint, job_runtime, load_model, load_pipeline
from entmap.models.sampling import job_batches, render_jobs

log = logging.getLogger("entmap")


def generate_shard(
    pipe,
    prompts: pd.DataFrame,
    seeds: list[int],
    settings: dict[str, Any],
    model_name: str,
    settings_hash: str,
    reuse: BaseReuse | None = None,
) -> pd.DataFrame:
    """Generate every (prompt, seed) image of ``prompts`` with ``pipe``; one row per image.

    Jobs run in a fixed order (prompts in suite order, seeds ascending) in
    batches of ``settings['batch_size']``, so the same shard with the same
    batch size always sees the same batch composition. With ``reuse``, only the batches it
    names are rendered; the other images are the base's bytes (``reused`` True), and every
    rendered image of a reusable prompt is checked against the base's.
    """
    keys = [(row.id, seed) for row in prompts.itertuples() for seed in seeds]
    jobs = [(row.text, seed) for row in prompts.itertuples() for seed in seeds]
    batches = None if reuse is None else reuse.batches([pid for pid, _ in keys], settings["batch_size"])
    rows: dict[int, dict[str, Any]] = {}
    verified = 0
    # PNG encoding runs on a worker thread while the next batch denoises (zlib releases the GIL)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="png") as encoder:
        encoded = [
            (index, image, encoder.submit(png_bytes, image))
            for index, image in render_jobs(pipe, jobs, settings, f"generate {model_name}", batches)
        ]
    for index, image, future in encoded:
        prompt_id, seed = keys[index]
        png = future.result()
        verified += bool(reuse is not None and reuse.check(prompt_id, seed, png))
        rows[index] = image_row(prompt_id, seed, model_name, settings_hash, image.width, image.height, png, False)
    rendered = len(rows)
    for index, (prompt_id, seed) in enumerate(keys):
        if index not in rows:
            base = reuse.images[(prompt_id, seed)]
            rows[index] = image_row(prompt_id, seed, model_name, settings_hash, base.width, base.height, base.png, True)
    log.info(
        "generate %s: rendered %d of %d images (%d of %d batches), reused %d from the base, verified %d byte for byte",
        model_name,
        rendered,
        len(keys),
        len(job_batches(len(keys), settings["batch_size"]) if batches is None else batches),
        len(job_batches(len(keys), settings["batch_size"])),
        len(keys) - rendered,
        verified,
    )
    return pd.DataFrame([rows[i] for i in range(len(keys))], columns=IMAGES.names)


def image_row(
    prompt_id: str, seed: int, model: str, settings_hash: str, width: int, height: int, png: bytes, reused: bool
) -> dict[str, Any]:
    """One row of the images table (``IMAGES``)."""
    return {
        "prompt_id": prompt_id,
        "seed": seed,
        "model": model,
        "settings_hash": settings_hash,
        "width": width,
        "height": height,
        "png": png,
        "reused": reused,
    }


def write_images(frame: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    write_table(frame, path, IMAGES)


def personalized_with_reuse(
    base_model: str,
    adapter_dir: str | os.PathLike[str],
    prompts: pd.DataFrame,
    seeds: list[int],
    settings: dict[str, Any],
    model_name: str,
    base_images: str | os.PathLike[str],
    verify: int,
    device,
    dtype,
):
    """(personalized pipeline, :class:`BaseReuse`): the model, and what it may take from the base shard.

    The base pipeline is loaded and fingerprinted (:func:`entmap.models.fingerprint.model_print`),
    then turned into the model in place (a full checkpoint is loaded instead) and fingerprinted
    again; the prompts whose fingerprints agree are reusable, ``verify`` of them are the sample.
    """
    texts = list(zip(prompts["id"], prompts["text"], strict=True))
    negative = settings.get("negative_prompt", "")
    base = load_pipeline(base_model, device, dtype)
    base_print = model_print(base, texts, negative)
    if is_checkpoint(read_meta(adapter_dir)):
        del base
        pipe = load_model(base_model, adapter_dir, device, dtype)
    else:
        pipe = apply_model_adapter(base, adapter_dir)
    reusable = reusable_prompts(base_print, model_print(pipe, texts, negative))
    log.info("%s: %d of %d prompts render exactly as the base (%s)", model_name, len(reusable), len(texts), adapter_dir)
    keys = [(pid, seed) for pid in prompts["id"] if pid in reusable for seed in seeds]
    images = base_images_by_key(read_table(base_images, IMAGES), keys, hash_settings(settings), str(base_images))
    sample = verification_sample(reusable, model_name, verify)
    return pipe, BaseReuse(model_name, str(base_images), frozenset(reusable), frozenset(sample), images)


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
    base_images: str | os.PathLike[str] | None = None,
    reuse: dict[str, Any] | None = None,
) -> None:
    """Load the model, generate one shard, write its table.

    A personalized model with ``base_images`` (the base's shard) and ``reuse`` enabled
    (``generation.reuse``: ``enabled``, ``verify``) takes the base's images of the prompts it
    renders exactly as the base does (:func:`personalized_with_reuse`); otherwise every image is rendered.
    """
    torch_device, torch_dtype = job_runtime(device, dtype, threads)
    plan = None
    if adapter_dir is not None and base_images is not None and reuse and reuse["enabled"]:
        pipe, plan = personalized_with_reuse(
            base_model,
            adapter_dir,
            prompts,
            seeds,
            settings,
            model_name,
            base_images,
            reuse["verify"],
            torch_device,
            torch_dtype,
        )
    else:
        pipe = load_model(base_model, adapter_dir, torch_device, torch_dtype)
    frame = generate_shard(pipe, prompts, seeds, settings, model_name, hash_settings(settings), plan)
    write_images(frame, out_path)
