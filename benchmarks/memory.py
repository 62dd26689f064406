"""Peak memory (RSS) of the merge and analysis stages on synthetic per-seed tables, paper scale and 10x.

    python benchmarks/memory.py [--scales 1 10] [--embedding-dim 768] [--bootstrap 200]

Writes, in a temporary folder, the tables those stages read at the scale of configs/paper.yaml
(45 models = 15 subjects x 3 methods, 200 prompts in 4 shards, 10 seeds; N-fold subjects at
scale N): per-seed disruption rows, base noise-floor pairs and CLIP scores with image
embeddings of ``--embedding-dim`` (768 for ViT-L/14). Random values: memory depends on the
shapes, not the numbers. Then runs :func:`entmap.measure.map_cells.merge_map` and the analysis' embedding-heavy part,
:func:`entmap.analysis.hypothesis_tests.frechet_from_score_files` (and with ``--full-analysis``
the whole :func:`entmap.analysis.run.run_analysis`), each in a fresh process, recording its peak RSS.
Writes ``benchmarks/results/memory.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from common import save

from entmap.core.parquet_schemas import DISRUPTION, NOISE_PAIRS, SCORES, STRUCT_ELEMENTS, write_table
from entmap.inputs.prompt_suites import load_prompts

REPO = Path(__file__).resolve().parents[1]
SHARD = 50
SEEDS = 10
SIDES = ("base", "pers")


def write_inputs(root: Path, scale: int, dim: int) -> dict:
    """The stage inputs at ``scale`` x the paper study; returns the arguments of both stages."""
    config = yaml.safe_load((REPO / "configs/paper.yaml").read_text())
    prompts = load_prompts(REPO / config["prompts"]["suite"])
    subjects = {
        (name if copy == 0 else f"{name}x{copy}"): {"category": subject["category"]}
        for copy in range(scale)
        for name, subject in config["subjects"].items()
    }
    models = [f"{subject}/{method}" for subject in subjects for method in ("ti", "lora", "cd")]
    rng = np.random.default_rng(0)
    shards = [prompts["id"].iloc[i : i + SHARD].tolist() for i in range(0, len(prompts), SHARD)]
    paths: dict[str, list[str]] = {"disruption": [], "noise": [], "scores": []}
    for s, ids in enumerate(shards):
        keys = pd.DataFrame([(pid, seed) for pid in ids for seed in range(SEEDS)], columns=["prompt_id", "seed"])
        noise = pd.DataFrame(
            {"prompt_id": ids, "seed_a": 0, "seed_b": 1, "d_sem": rng.random(len(ids)) * 0.02}
            | {"lpips": rng.random(len(ids)) * 0.3, "d_struct": np.nan}
        )
        write_table(noise, root / f"noise/{s}.parquet", NOISE_PAIRS)
        paths["noise"].append(str(root / f"noise/{s}.parquet"))
        for model in ["base", *models]:
            emb = rng.normal(size=(len(keys), dim)).astype(np.float32)
            scores = keys.assign(model=model, settings_hash="h", clip_cos=rng.random(len(keys)) * 0.3)
            scores["image_embedding"] = list(emb)
            path = root / f"scores/{model}/{s}.parquet"
            write_table(scores, path, SCORES)
            paths["scores"].append(str(path))
            if model == "base":
                continue
            a_base, a_pers = rng.random(len(keys)) * 0.3, rng.random(len(keys)) * 0.3
            disruption = keys.assign(model=model, a_base=a_base, a_pers=a_pers, d_sem=np.abs(a_pers - a_base))
            lpips = rng.random(len(keys)) * 0.5
            disruption = disruption.assign(lpips=lpips, f_base=np.nan, f_pers=np.nan, reused=False)
            disruption = disruption.assign(**{f"f_{side}_{e}": np.nan for e in STRUCT_ELEMENTS for side in SIDES})
            path = root / f"disruption/{model}/{s}.parquet"
            write_table(disruption, path, DISRUPTION)
            paths["disruption"].append(str(path))
    return {
        "paths": paths,
        "subjects": subjects,
        "models": models,
        "own_category": config["subject_categories"],
        "analysis": config["analysis"],
    }


MERGE = """
import json, sys
from entmap.inputs.prompt_suites import load_prompts
from entmap.measure.map_cells import merge_map
a = json.load(open(sys.argv[1]))
merge_map(a["paths"]["disruption"], load_prompts(a["suite"]), a["subjects"], a["models"],
          {"tau_sem": 0.01, "tau_per": 0.2}, a["root"] + "/cells.parquet", a["root"] + "/e_sem.csv",
          a["root"] + "/e_per.csv")
"""
FRECHET = """
import json, sys
from entmap.analysis.hypothesis_tests import frechet_from_score_files
from entmap.inputs.prompt_suites import load_prompts
a = json.load(open(sys.argv[1]))
frechet_from_score_files(a["paths"]["scores"], load_prompts(a["suite"]))
"""
ANALYSIS = """
import json, sys
from entmap.analysis.run import run_analysis
from entmap.inputs.prompt_suites import load_prompts
a = json.load(open(sys.argv[1]))
run_analysis(a["root"] + "/cells.parquet", a["paths"]["disruption"], a["paths"]["noise"], a["paths"]["scores"],
             load_prompts(a["suite"]), a["own_category"], a["analysis"], a["root"] + "/tables", a["root"] + "/stats")
"""


def peak_rss_mb(code: str, arguments: Path) -> float:
    """Peak resident memory (MB) of a fresh Python process running ``code`` (its own getrusage at exit)."""
    report = "\nimport resource\nprint(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    out = subprocess.run([sys.executable, "-c", code + report, str(arguments)], check=True, capture_output=True)
    return int(out.stdout.decode().split()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=None, help="(internal) measure one scale")
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--embedding-dim", type=int, default=768)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument(
        "--full-analysis",
        action="store_true",
        help="also the whole analysis stage (MixedLM, bootstrap, per-cell tests: many CPU minutes at 10x)",
    )
    args = parser.parse_args()
    if args.scale is None:  # one process per scale, so that each measures its own children's peak
        record = {}
        for scale in args.scales:
            out = subprocess.run(
                [sys.executable, __file__, "--scale", str(scale), "--embedding-dim", str(args.embedding_dim)]
                + ["--bootstrap", str(args.bootstrap)]
                + (["--full-analysis"] if args.full_analysis else []),
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            record[f"x{scale}"] = json.loads(out.strip().splitlines()[-1])
            print(f"paper x{scale}: {record[f'x{scale}']}")
        ratios = {
            stage: record[f"x{args.scales[-1]}"][stage] / record[f"x{args.scales[0]}"][stage]
            for stage in ("merge_mb", "frechet_mb", "analysis_mb")
            if stage in record[f"x{args.scales[0]}"]
        }
        print(f"peak RSS ratio x{args.scales[-1]} / x{args.scales[0]}: {ratios}")
        print(f"wrote {save('memory', {'settings': vars(args), 'scales': record, 'ratios': ratios})}")
        return
    root = Path(tempfile.mkdtemp(prefix="entmap-memory-"))
    try:
        arguments = write_inputs(root, args.scale, args.embedding_dim)
        arguments["analysis"] = arguments["analysis"] | {"bootstrap": args.bootstrap}
        arguments |= {"root": str(root), "suite": str(REPO / "resources/prompts/entanglement-200.tsv")}
        (root / "arguments.json").write_text(json.dumps(arguments))
        rows = len(arguments["paths"]["disruption"]) * SHARD * SEEDS
        peaks = {"models": len(arguments["models"]), "per_seed_rows": rows}
        peaks["merge_mb"] = peak_rss_mb(MERGE, root / "arguments.json")
        peaks["frechet_mb"] = peak_rss_mb(FRECHET, root / "arguments.json")
        if args.full_analysis:
            peaks["analysis_mb"] = peak_rss_mb(ANALYSIS, root / "arguments.json")
        print(json.dumps(peaks))
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
