"""What the archive of a run packs (entmap.present.archive.run_files), on a hand-made results folder."""

from __future__ import annotations

from pathlib import Path

from entmap.present.archive import run_files

TABLES = [
    "maps/cells.parquet",
    "tables/per_model.csv",
    "stats/h1.json",
    "figures/map.png",
    "noise_floor/base/000.parquet",
    "disruption/star/lora/000.parquet",
    "scores/base/000.parquet",
    "blocks/star/lora.parquet",
    "geometry/star/lora.parquet",
    "collapse/star.csv",
    "audit/verdicts.csv",
    "attention/star/lora/stats.parquet",
    "tea/star/lora/scores.parquet",
    "noise_floor.json",
    "report.html",
    "adapters/star/lora/meta.json",
    "adapters/star/lora/train_log.parquet",
]
IMAGES = [
    "images/base/000.parquet",
    "images/star/lora/000.parquet",
    "attention/star/lora/maps.parquet",
    "tea/star/lora/images.parquet",
]
NEVER = ["references/star/0.png", "logs/score/base.log", "benchmarks/score/base.tsv", "tables/.hidden"]
WEIGHTS = ["adapters/star/lora/adapter.safetensors"]


def _results(root: Path) -> Path:
    for name in TABLES + IMAGES + NEVER + WEIGHTS:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name)
    return root


def _names(results: Path, images: bool, weights: bool) -> set[str]:
    return {p.relative_to(results).as_posix() for p in run_files(results, images, weights)}


def test_every_stage_table_is_packed_and_image_sized_data_only_when_asked(tmp_path):
    results = _results(tmp_path / "results")
    assert _names(results, False, False) == set(TABLES)
    assert _names(results, True, False) == set(TABLES + IMAGES)
    assert _names(results, True, True) == set(TABLES + IMAGES + WEIGHTS)


def test_files_are_sorted_and_listed_once(tmp_path):
    results = _results(tmp_path / "results")
    files = run_files(results, True, True)
    assert files == sorted(files) and len(files) == len(set(files))
