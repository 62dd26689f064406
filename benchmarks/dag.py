"""Wall time of ``snakemake -n`` and the number of jobs and SLURM submissions, at paper scale and 10x.

    python benchmarks/dag.py [--scales 1 10] [--repeats 3]

Builds a work folder per scale with configs/paper.yaml (15 subjects x 3 methods = 45 models,
200 prompts in one shard, 10 seeds); scale N gives N copies of every subject, each with its
own reference folder of three small PNGs. Times ``snakemake -n`` (median of ``--repeats``) and
counts the jobs of the dry run and, with ``--profile profiles/slurm``, the sbatch submissions
(jobs that are not local rules, a group job counting once: profiles/slurm groups every job of
a personalized model). Writes ``benchmarks/results/dag.json``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from common import median, save
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = ("Snakefile", "rules", "workflow_scripts", "schemas", "resources", "profiles", "src", "configs")
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def paper_workdir(root: Path, scale: int) -> Path:
    """A work folder with configs/paper.yaml's subjects repeated ``scale`` times, references made up."""
    workdir = root / f"x{scale}"
    workdir.mkdir(parents=True)
    for name in WORKFLOW:
        (workdir / name).symlink_to(REPO / name)
    config = yaml.safe_load((REPO / "configs/paper.yaml").read_text())
    subjects = {}
    for copy in range(scale):
        for name, subject in config["subjects"].items():
            key = name if copy == 0 else f"{name}x{copy}"
            folder = workdir / "data/references" / key
            folder.mkdir(parents=True)
            for i in range(3):
                pixels = np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
            subjects[key] = subject | {"references": str(folder.relative_to(workdir))}
    config["subjects"] = subjects
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return workdir


def dry_run(workdir: Path, *args: str) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run([SNAKEMAKE, "-n", *args], cwd=workdir, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"snakemake -n failed in {workdir}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return seconds, result.stdout + result.stderr


def local_rules() -> set[str]:
    """Rules marked ``localrule: True`` in rules/*.smk (they run on the submitting node)."""
    local = set()
    for path in [REPO / "Snakefile", *(REPO / "rules").glob("*.smk")]:
        for name, body in re.findall(r"^rule (\w+):\n((?:[ \t].*\n|\n)*)", path.read_text(), re.MULTILINE):
            if re.search(r"^    localrule: True", body, re.MULTILINE):
                local.add(name)
    return local


def jobs_and_submissions(output: str) -> tuple[int, int]:
    """(jobs, sbatch submissions) of a dry run: every job not of a local rule and not in a group is
    one submission, and so is every group job (``Group job NAME`` in the dry run's listing)."""
    total = re.search(r"^total\s+(\d+)$", output, re.MULTILINE)
    if total is None:
        raise SystemExit("no job stats in the dry run's output")
    local = local_rules()
    ungrouped = [rule for rule in re.findall(r"^rule (\w+):", output, re.MULTILINE) if rule not in local]
    return int(total.group(1)), len(ungrouped) + len(re.findall(r"Group job ", output))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="entmap-dag-"))
    record = {}
    try:
        for scale in args.scales:
            workdir = paper_workdir(root, scale)
            dry_run(workdir)  # warm-up: file system caches, bytecode
            seconds = [dry_run(workdir)[0] for _ in range(args.repeats)]
            jobs, _ = jobs_and_submissions(dry_run(workdir)[1])
            _, submissions = jobs_and_submissions(dry_run(workdir, "--profile", "profiles/slurm")[1])
            record[f"x{scale}"] = {"seconds": seconds, "median_s": median(seconds), "jobs": jobs}
            record[f"x{scale}"]["slurm_submissions"] = submissions
            print(
                f"paper x{scale}: snakemake -n {median(seconds):.2f} s (median of {args.repeats}), {jobs} jobs, "
                f"{submissions} SLURM submissions"
            )
    finally:
        shutil.rmtree(root)
    print(f"wrote {save('dag', {'settings': vars(args), 'scales': record})}")


if __name__ == "__main__":
    main()
