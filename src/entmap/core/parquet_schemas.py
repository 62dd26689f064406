"""Parquet tables with explicit schemas, written atomically.

Every table the workflow passes between rules has a pyarrow schema here.
Readers check the schema, so a shard from an incompatible version or a
foreign file is refused with the file's name instead of failing later.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from entmap.core.atomic import write_bytes

#: the elements E_struct checks one by one (the toy world's attributes, entmap.measure.structure.ELEMENTS)
STRUCT_ELEMENTS: tuple[str, ...] = ("colour", "shape", "position", "background")

IMAGES = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("seed", pa.int64()),
        ("model", pa.string()),
        ("settings_hash", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("png", pa.binary()),
        ("reused", pa.bool_()),  # the base's bytes, copied, not rendered (docs/map.md, "Exact reuse")
    ]
)

SCORES = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("seed", pa.int64()),
        ("model", pa.string()),
        ("settings_hash", pa.string()),
        ("clip_cos", pa.float64()),
        ("image_embedding", pa.list_(pa.float32())),
    ]
)

DISRUPTION = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("seed", pa.int64()),
        ("model", pa.string()),
        ("a_base", pa.float64()),
        ("a_pers", pa.float64()),
        ("d_sem", pa.float64()),
        ("lpips", pa.float64()),
        ("f_base", pa.float64()),  # structured faithfulness f of each image; NaN where not scored
        ("f_pers", pa.float64()),
        # per element (colour, shape, position, background): 1 drawn, 0 not, NaN not required or not read
        *[(f"f_{image}_{element}", pa.float64()) for element in STRUCT_ELEMENTS for image in ("base", "pers")],
        ("reused", pa.bool_()),  # the personalized image is the base's, copied (x_pers = x_base by proof)
    ]
)

NOISE_PAIRS = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("seed_a", pa.int64()),
        ("seed_b", pa.int64()),
        ("d_sem", pa.float64()),
        ("lpips", pa.float64()),
        ("d_struct", pa.float64()),  # |f(x_a) - f(x_b)|; NaN where the prompt is not scored structurally
    ]
)

CELLS = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("category", pa.string()),
        ("text", pa.string()),
        ("model", pa.string()),
        ("subject", pa.string()),
        ("method", pa.string()),
        ("subject_category", pa.string()),
        ("n_seeds", pa.int64()),
        ("e_sem", pa.float64()),
        ("e_sem_signed", pa.float64()),
        ("e_per", pa.float64()),
        ("e_struct", pa.float64()),  # NaN where the prompt is not scored structurally
        ("e_struct_signed", pa.float64()),
        ("above_tau_sem", pa.bool_()),
        ("above_tau_per", pa.bool_()),
        ("above_tau_struct", pa.bool_()),  # False where not scored structurally
        ("reused", pa.bool_()),  # every seed's personalized image was copied from the base
    ]
)

AUDIT_SWEEP = pa.schema(
    [
        ("part", pa.string()),  # unrelated | trigger | triggered | reference (docs/audit.md)
        ("prompt_id", pa.string()),  # the suite's id; "trigger"; "<id>+trigger"; the reference's file name
        ("text", pa.string()),
        ("seed", pa.int64()),  # -1 for reference images
        ("scale", pa.float64()),  # the adapter's strength; NaN for reference images
        ("clip_cos", pa.float64()),  # a(text, image); NaN for reference images
        ("lpips", pa.float64()),  # LPIPS to the scale-0 image of the same prompt and seed; NaN for references
        ("image_embedding", pa.list_(pa.float32())),  # L2-normalized CLIP image embedding
    ]
)

GEOMETRY = pa.schema(
    [
        ("model", pa.string()),
        ("level", pa.string()),  # "text" (a text encoder's output) or "kv" (a cross-attention key/value)
        ("layer", pa.string()),  # the text encoder or the projection module
        ("n_prompts", pa.int64()),
        ("spread_base", pa.float64()),
        ("spread_model", pa.float64()),
        ("spread_ratio", pa.float64()),
        ("distortion", pa.float64()),
    ]
)

ATTENTION = pa.schema(
    [
        ("model", pa.string()),
        ("prompt_id", pa.string()),
        ("kind", pa.string()),  # high / low (most / least disrupted of the model's non-target prompts) / listed
        ("rank", pa.int64()),
        ("e_sem", pa.float64()),  # the model's map cell of the prompt
        ("layer_index", pa.int64()),  # order of the layer in the denoiser
        ("layer", pa.string()),
        ("n_queries", pa.int64()),  # image positions of the layer
        ("step", pa.int64()),  # denoising step (0 = the first)
        ("timestep", pa.float64()),
        ("token", pa.int64()),  # text position; -1: an encoder's padding positions, merged
        ("token_text", pa.string()),
        ("token_class", pa.string()),  # bos / word / eos / pad
        ("encoder", pa.string()),  # clip / t5 / none
        ("n_tokens", pa.int64()),  # positions the row stands for (1, or the padding's count)
        ("n_seeds", pa.int64()),
        ("base_attention", pa.float64()),  # mean over seeds, queries (and merged positions) of A_base
        ("model_attention", pa.float64()),
        ("mean_abs_delta", pa.float64()),  # mean of |A_model - A_base|
    ]
)

ATTENTION_MAPS = pa.schema(
    [
        ("model", pa.string()),
        ("prompt_id", pa.string()),
        ("seed", pa.int64()),
        ("token", pa.int64()),
        ("token_text", pa.string()),
        ("token_class", pa.string()),
        ("encoder", pa.string()),
        ("kind", pa.string()),  # base / model
        ("side", pa.int64()),
        ("values", pa.list_(pa.float32())),  # side x side, row-major
    ]
)

BLOCK_ATTRIBUTION = pa.schema(
    [
        ("model", pa.string()),
        ("config", pa.string()),  # base (every block off), full (none off), off (block off), only (block alone on)
        ("block", pa.string()),  # the block of off/only; "" for base and full
        ("adapted_modules", pa.int64()),  # modules the adapter changes in the block (all blocks: base, full)
        ("prompt_id", pa.string()),
        ("seed", pa.int64()),
        ("clip_cos", pa.float64()),
        ("d_sem", pa.float64()),  # |a(config) - a(base)|
        ("lpips", pa.float64()),  # LPIPS(x(base), x(config))
        ("png_sha256", pa.string()),
    ]
)

TRAIN_LOG = pa.schema(
    [
        ("step", pa.int64()),
        ("loss", pa.float64()),
        ("lr", pa.float64()),
    ]
)

TEA_IMAGES = pa.schema(
    [
        ("model", pa.string()),
        ("setting", pa.string()),
        ("alpha", pa.float64()),
        ("beta", pa.float64()),
        ("prompt_id", pa.string()),
        ("seed", pa.int64()),
        ("png", pa.binary()),
    ]
)

TEA_SCORES = pa.schema(
    [
        ("model", pa.string()),
        ("setting", pa.string()),
        ("alpha", pa.float64()),
        ("beta", pa.float64()),
        ("prompt_id", pa.string()),
        ("seed", pa.int64()),
        ("clip_context", pa.float64()),
        ("clip_concept", pa.float64()),
        ("clip_full", pa.float64()),
        ("clip_image", pa.float64()),
    ]
)


class TableError(ValueError):
    """A table file is missing, unreadable or has the wrong columns."""


def write_table(df: pd.DataFrame, path: str | os.PathLike[str], schema: pa.Schema) -> None:
    """Write ``df`` as Parquet with exactly ``schema``'s columns, atomically."""
    missing = [name for name in schema.names if name not in df.columns]
    if missing:
        raise TableError(f"cannot write {path}: columns {missing} are missing")
    table = pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer, write_page_checksum=True)  # a CRC per page, verified on every read
    write_bytes(path, buffer.getvalue().to_pybytes())


def read_table(path: str | os.PathLike[str], schema: pa.Schema) -> pd.DataFrame:
    """Read a Parquet table and check it has ``schema``'s columns and types."""
    path = Path(path)
    try:
        table = pq.read_table(path, page_checksum_verification=True)
    except FileNotFoundError as exc:
        raise TableError(f"{path}: file not found") from exc
    except (pa.ArrowInvalid, OSError) as exc:
        raise TableError(
            f"{path}: not a readable Parquet file, or its bytes changed after it was written ({exc}); "
            "delete it and rerun the workflow, which rewrites it"
        ) from exc
    for field in schema:
        if field.name not in table.schema.names:
            raise TableError(
                f"{path}: column {field.name!r} missing (has {table.schema.names}); "
                "it was written by another version: delete it and rerun"
            )
        if not table.schema.field(field.name).type.equals(field.type):
            raise TableError(
                f"{path}: column {field.name!r} has type {table.schema.field(field.name).type}, expected {field.type}"
            )
    return table.select(schema.names).to_pandas()


def read_tables(paths: list[str] | list[Path], schema: pa.Schema) -> pd.DataFrame:
    """Read and concatenate several tables of the same schema."""
    frames = [read_table(p, schema) for p in paths]
    if not frames:
        return pa.Table.from_pylist([], schema=schema).to_pandas()
    return pd.concat(frames, ignore_index=True)
