"""The ``merge_map`` stage: per-seed disruption -> one cell per (prompt, personalized model).

cell.e_sem        = mean_k |a_pers - a_base|        (E_sem, the map's value)
cell.e_sem_signed = mean_k (a_pers - a_base)        (negative: degradation)
cell.e_per        = mean_k LPIPS(x_base, x_pers)    (E_per)
cell.e_struct     = mean_k |f_pers - f_base|        (E_struct; NaN where the prompt is not scored)
cell.e_struct_signed = mean_k (f_pers - f_base)     (negative: elements lost)
above_tau_*       = the cell exceeds the noise floor's threshold (tau_sem, tau_per, tau_struct;
                    above_tau_struct is False where the prompt is not scored or no tau_struct exists).
cell.reused       = every seed's personalized image was copied from the base (all_k reused), so the
                    cell is 0 by proof, not by measurement (docs/map.md, "Exact reuse of base images").
The wide matrices e_sem.csv and e_per.csv have prompts as rows and models as
columns: the Concept Entanglement Map M in R^{P x S}.

Explained in docs/map.md.
"""

from __future__ import annotations

import os
from typing import Any

import pandas as pd

from entmap.core.atomic import atomic_path
from entmap.core.parquet_schemas import CELLS, DISRUPTION, read_tables, write_table
from entmap.measure.metrics import e_per, e_sem, e_sem_signed
from entmap.measure.structure import e_struct


def _structure(group: pd.DataFrame) -> tuple[float, float]:
    """(E_struct, signed) of one cell's seeds, NaN when its images were not scored structurally."""
    if group["f_pers"].isna().any() or group["f_base"].isna().any():
        return float("nan"), float("nan")
    return e_struct(group["f_pers"], group["f_base"])


def merge_cells(
    disruption: pd.DataFrame,
    prompts: pd.DataFrame,
    subjects: dict[str, dict[str, Any]],
    noise_floor: dict[str, float],
) -> pd.DataFrame:
    """Aggregate per-seed rows into map cells, with prompt and subject metadata."""
    rows = [
        {
            "prompt_id": prompt_id,
            "model": model,
            "n_seeds": group["seed"].nunique(),
            "e_sem": e_sem(group["a_pers"], group["a_base"]),
            "e_sem_signed": e_sem_signed(group["a_pers"], group["a_base"]),
            "e_per": e_per(group["lpips"]),
            **dict(zip(("e_struct", "e_struct_signed"), _structure(group), strict=True)),
            "reused": bool(group["reused"].all()),
        }
        for (prompt_id, model), group in disruption.groupby(["prompt_id", "model"], sort=False)
    ]
    columns = [
        "prompt_id",
        "model",
        "n_seeds",
        "e_sem",
        "e_sem_signed",
        "e_per",
        "e_struct",
        "e_struct_signed",
        "reused",
    ]
    cells = pd.DataFrame(rows, columns=columns)
    info = prompts.rename(columns={"id": "prompt_id"})[["prompt_id", "category", "text"]]
    cells = cells.merge(info, on="prompt_id", how="left", validate="many_to_one")
    if cells["category"].isna().any():
        unknown = sorted(cells.loc[cells["category"].isna(), "prompt_id"].unique())[:5]
        raise ValueError(f"disruption rows for prompts not in the suite: {unknown}")
    split = cells["model"].str.split("/", n=1, expand=True)
    cells["subject"], cells["method"] = split[0], split[1]
    cells["subject_category"] = cells["subject"].map(lambda s: subjects.get(s, {}).get("category", ""))
    cells["above_tau_sem"] = cells["e_sem"] > noise_floor["tau_sem"]
    cells["above_tau_per"] = cells["e_per"] > noise_floor["tau_per"]
    tau_struct = noise_floor.get("tau_struct")
    cells["above_tau_struct"] = (cells["e_struct"] > tau_struct) if tau_struct is not None else False
    position = {pid: i for i, pid in enumerate(prompts["id"])}
    cells = cells.assign(_row=cells["prompt_id"].map(position)).sort_values(["model", "_row"])
    return cells[CELLS.names].reset_index(drop=True)


def wide_matrix(cells: pd.DataFrame, value: str, models: list[str]) -> pd.DataFrame:
    """Prompts x models matrix of ``value``, rows in suite order, with category and text."""
    matrix = cells.pivot(index="prompt_id", columns="model", values=value)
    info = cells.drop_duplicates("prompt_id").set_index("prompt_id")[["category", "text"]]
    order = list(dict.fromkeys(cells["prompt_id"]))
    return info.join(matrix).loc[order, ["category", "text", *models]]


def merge_map(
    disruption_paths: list[str],
    prompts: pd.DataFrame,
    subjects: dict[str, dict[str, Any]],
    models: list[str],
    noise_floor: dict[str, float],
    cells_path: str | os.PathLike[str],
    e_sem_path: str | os.PathLike[str],
    e_per_path: str | os.PathLike[str],
) -> pd.DataFrame:
    """Read every disruption shard, write cells.parquet, e_sem.csv and e_per.csv."""
    cells = merge_cells(read_tables(disruption_paths, DISRUPTION), prompts, subjects, noise_floor)
    missing = sorted(set(models) - set(cells["model"]))
    if missing:
        raise ValueError(f"no disruption rows for models {missing}")
    write_table(cells, cells_path, CELLS)
    for value, path in (("e_sem", e_sem_path), ("e_per", e_per_path)):
        with atomic_path(path) as tmp:
            wide_matrix(cells, value, models).to_csv(tmp, float_format="%.6g")
    return cells
