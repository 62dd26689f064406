"""A small run's outputs made by hand, for the report tests: the report is built from these in a
second instead of from a workflow run.

Three prompts x two models x two seeds; every image is a distinct random PNG, so a panel showing
another cell's images is caught. The stats and tables hold only the keys the report reads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from entmap.core.image_codec import png_bytes
from entmap.core.parquet_schemas import CELLS, DISRUPTION, IMAGES, STRUCT_ELEMENTS, write_table
from entmap.core.vocabulary import ANALYSIS_TABLES

PROMPTS = {"p000": "a photo of a cat", "p001": "a red car, at night", "p002": "a <b>bold</b> teapot"}
MODELS = ("face1/lora", "bands1/cd")
SEEDS = (0, 1)
#: face1/lora loses position on 30 pairs of 40; bands1/cd changes nothing measurable
ELEMENT_DAMAGE = pd.DataFrame(
    {
        "model": ["face1/lora", "face1/lora", "bands1/cd"],
        "element": ["position", "colour", "position"],
        "n_prompts": [10, 10, 10],
        "n_pairs": [40, 40, 40],
        "base_accuracy": [0.9, 1.0, 0.9],
        "model_accuracy": [0.15, 1.0, 0.875],
        "change": [-0.75, 0.0, -0.025],
        "ci_low": [-0.9, 0.0, -0.1],
        "ci_high": [-0.6, 0.0, 0.05],
        "damaged": [True, False, False],
    }
)
SIZE = 16
# E_sem per cell: face1/lora disrupts p001 most, bands1/cd p002
E_SEM = {
    ("p000", "face1/lora"): 0.01,
    ("p001", "face1/lora"): 0.30,
    ("p002", "face1/lora"): 0.05,
    ("p000", "bands1/cd"): 0.02,
    ("p001", "bands1/cd"): 0.04,
    ("p002", "bands1/cd"): 0.25,
}
GENERATION = {
    "base_model": "resources/models/toyworld/sd",
    "steps": 10,
    "guidance_scale": 5.0,
    "resolution": SIZE,
    "negative_prompt": "",
    "scheduler": "ddim",
    "dtype": "float32",
    "batch_size": 4,
}


def image_png(model: str, prompt_id: str, seed: int) -> bytes:
    """The stored PNG of (model, prompt, seed): random pixels seeded by the three."""
    key = f"{model}|{prompt_id}|{seed}".encode()
    rng = np.random.default_rng(list(key))
    return png_bytes(Image.fromarray(rng.integers(0, 256, size=(SIZE, SIZE, 3), dtype=np.uint8)))


def d_sem(prompt_id: str, model: str, seed: int) -> float:
    return E_SEM[(prompt_id, model)] * (0.5 + seed)


def lpips(prompt_id: str, model: str, seed: int) -> float:
    return 0.1 + 0.01 * seed + E_SEM[(prompt_id, model)]


def _write_images(results: Path) -> list[str]:
    paths = []
    for model in ("base", *MODELS):
        rows = [
            {
                "prompt_id": prompt_id,
                "seed": seed,
                "model": model,
                "settings_hash": "0" * 16,
                "width": SIZE,
                "height": SIZE,
                "png": image_png(model, prompt_id, seed),
                "reused": False,
            }
            for prompt_id in PROMPTS
            for seed in SEEDS
        ]
        path = results / "images" / model / "000.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_table(pd.DataFrame(rows), path, IMAGES)
        paths.append(str(path))
    return paths


def _write_disruption(results: Path) -> list[str]:
    paths = []
    for model in MODELS:
        rows = [
            {
                "prompt_id": prompt_id,
                "seed": seed,
                "model": model,
                "a_base": 0.3,
                "a_pers": 0.3 - d_sem(prompt_id, model, seed),
                "d_sem": d_sem(prompt_id, model, seed),
                "lpips": lpips(prompt_id, model, seed),
                "f_base": float("nan"),
                "f_pers": float("nan"),
                **{f"f_{image}_{e}": float("nan") for e in STRUCT_ELEMENTS for image in ("base", "pers")},
                "reused": False,
            }
            for prompt_id in PROMPTS
            for seed in SEEDS
        ]
        path = results / "disruption" / model / "000.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_table(pd.DataFrame(rows), path, DISRUPTION)
        paths.append(str(path))
    return paths


def _write_cells(results: Path) -> Path:
    rows = []
    for (prompt_id, model), e_sem in E_SEM.items():
        subject, method = model.split("/")
        rows.append(
            {
                "prompt_id": prompt_id,
                "category": "objects",
                "text": PROMPTS[prompt_id],
                "model": model,
                "subject": subject,
                "method": method,
                "subject_category": "face" if subject == "face1" else "style",
                "n_seeds": len(SEEDS),
                "e_sem": e_sem,
                "e_sem_signed": -e_sem,
                "e_per": 0.1 + e_sem,
                "e_struct": float("nan"),
                "e_struct_signed": float("nan"),
                "above_tau_sem": e_sem > 0.1,
                "above_tau_per": True,
                "above_tau_struct": False,
                "reused": False,
            }
        )
    path = results / "maps" / "cells.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_table(pd.DataFrame(rows), path, CELLS)
    return path


def _write_adapters(results: Path) -> list[str]:
    """meta.json and adapter.safetensors of each model (the LoRA's hash goes into its PNGs)."""
    paths = []
    for model in MODELS:
        folder = results / "adapters" / model
        folder.mkdir(parents=True, exist_ok=True)
        method = model.split("/")[1]
        (folder / "meta.json").write_text(json.dumps({"method": method, "format": method, "token": "sks"}))
        header = b'{"__metadata__":{}}'
        (folder / "adapter.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + model.encode())
        paths.append(str(folder / "meta.json"))
    return paths


def _write_tables_and_stats(results: Path) -> None:
    tables, stats = results / "tables", results / "stats"
    tables.mkdir(parents=True, exist_ok=True)
    stats.mkdir(parents=True, exist_ok=True)
    per_model = pd.DataFrame(
        {
            "model": list(MODELS),
            "population": ["study", "study"],
            "n_prompts_non_target": [3, 3],
            "mean_e_sem": [np.mean([E_SEM[(p, m)] for p in PROMPTS]) for m in MODELS],
        }
    )
    for name in ANALYSIS_TABLES:
        frame = per_model if name == "per_model" else per_model[["model", "mean_e_sem"]].assign(table=name)
        frame.to_csv(tables / f"{name}.csv", index=False)
    ELEMENT_DAMAGE.to_csv(tables / "element_damage.csv", index=False)
    untestable = {"testable": False, "reason": "too few models", "n_x": 1, "n_y": 1, "hypothesis": "H"}
    hypotheses = {
        "H1": untestable,
        "H2": untestable,
        "H3": {
            "hypothesis": "H3",
            "means": {"face": 0.12, "style": 0.1},
            "ordering_holds": False,
            "object_vs_face": untestable,
            "style_vs_object": untestable,
            "supported": False,
        },
    }
    files = {
        "hypotheses": hypotheses,
        "normalization": {"scope": "the study's models"},
        "mixed_model": {"fitted": False, "reason": "too few cells"},
        "significance": {
            "flagged_sem": 2,
            "flagged_per": 6,
            "cells": 6,
            "fdr": 0.05,
            "test": "one-sided",
            "correction": "BH",
        },
        "paired_shift": {"significant_models": [], "by_model": {m: {} for m in MODELS}, "alpha": 0.05},
    }
    for name, data in files.items():
        (stats / f"{name}.json").write_text(json.dumps(data))
    floor = {"tau_sem": 0.1, "tau_per": 0.2, "percentile": 95, "pairs_per_prompt": 1, "prompts": 3, "measurements": 3}
    (results / "noise_floor.json").write_text(json.dumps(floor))


def write_audit(results: Path) -> list[str]:
    """results/audit/ as `entmap audit` writes it: two adapters, a strength sweep, checkpoints, a card."""
    folder = results / "audit"
    folder.mkdir(parents=True, exist_ok=True)
    audit = {
        "thresholds": {"max_mean_e_sem": 0.1, "max_frac_disrupted": 0.2},
        "adapters": [
            {
                "name": "mydog",
                "file": "mydog.safetensors",
                "family": "sd15",
                "base": "toyworld/sd",
                "trigger": "sks dog",
                "verdict": "fail",
                "reasons": ["mean E_sem 0.31 above 0.1", "42% of prompts disrupted (above 20%)"],
                "metrics": {"mean_e_sem": 0.31},
                "recommended_checkpoint": "mydog-000004.safetensors",
            },
            {
                "name": "mystyle",
                "file": "mystyle.safetensors",
                "family": "sd15",
                "base": "toyworld/sd",
                "trigger": "in sks style",
                "verdict": "pass",
                "reasons": [],
                "metrics": {"mean_e_sem": 0.02},
                "recommended_checkpoint": None,
            },
        ],
    }
    (folder / "audit.json").write_text(json.dumps(audit))
    strength = pd.DataFrame(
        [
            {"adapter": a, "scale": s, "e_sem": e * s, "e_per": e * s, "target_fidelity": 0.2 + 0.5 * s, "n_prompts": 3}
            for a, e in (("mydog", 0.3), ("mystyle", 0.02))
            for s in (0.0, 0.5, 1.0)
        ]
    )
    strength.to_csv(folder / "strength.csv", index=False)
    checkpoints = pd.DataFrame(
        {
            "adapter": ["mydog"] * 3,
            "checkpoint": [f"mydog-00000{i}.safetensors" for i in (2, 4, 6)],
            "epoch": [2, 4, 6],
            "mean_e_sem": [0.05, 0.08, 0.31],
            "frac_disrupted": [0.1, 0.15, 0.42],
            "leakage": [0.01, 0.02, 0.2],
            "target_fidelity": [0.4, 0.6, 0.7],
            "recommended": [False, True, False],
        }
    )
    checkpoints.to_csv(folder / "checkpoints.csv", index=False)
    (folder / "model_card.md").write_text("# mydog\n\n| metric | value |\n|---|---|\n| mean E_sem | 0.31 |\n")
    return [str(folder / name) for name in ("audit.json", "strength.csv", "checkpoints.csv", "model_card.md")]


def report_inputs(root: Path, audit: bool = False) -> dict[str, Any]:
    """Keyword arguments of :func:`entmap.present.report.write_report` for the hand-made run under ``root``."""
    results = root / "results"
    _write_tables_and_stats(results)
    return {
        "tables_dir": results / "tables",
        "stats_dir": results / "stats",
        "noise_floor_path": results / "noise_floor.json",
        "cells_path": _write_cells(results),
        "figures": [],
        "config": {"generation": {"seeds": len(SEEDS)}, "report": {"image_cells": {"most_disrupted": 1, "sample": 1}}},
        "out_path": results / "report.html",
        "images": _write_images(results),
        "disruption": _write_disruption(results),
        "adapter_meta": _write_adapters(results),
        "generation": GENERATION,
        "audit": write_audit(results) if audit else [],
    }
