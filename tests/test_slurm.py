"""The workflow through a real SLURM cluster: every non-local job goes through sbatch, a
personalized model's jobs as one group submission (profiles/slurm `groups`).

Brings up a single-node SLURM from Debian's packages on localhost (installing them when run as
root, as in CI), runs the workflow with ``profiles/slurm`` changed only in the keys this test
cluster needs, and tears the daemons down again.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections import Counter

import pytest
import yaml
from conftest import SNAKEMAKE, make_workdir, small_config
from slurm_cluster import LocalSlurm, ensure_installed

from entmap.core.parquet_schemas import IMAGES, read_table

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]
SUBMITTED = re.compile(r"Job (\S+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    problem = ensure_installed()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    slurm = LocalSlurm(tmp_path_factory.mktemp("slurm")).start()
    yield slurm
    slurm.stop()


def ci_profile(workdir) -> str:
    """profiles/slurm with only the test cluster's keys changed: partition, account, memory, polling."""
    profile = yaml.safe_load((workdir / "profiles/slurm/profile.yaml").read_text())
    profile["default-resources"].update(slurm_partition="debug", mem_mb=1000)
    profile["default-resources"].pop("slurm_account")
    profile["slurm-no-account"] = True
    profile["set-resources"] = {rule: {"slurm_partition": "debug", "mem_mb": 1000} for rule in profile["set-resources"]}
    profile["slurm-status-command"] = "squeue"  # no slurmdbd here
    profile["slurm-init-seconds-before-status-checks"] = 2
    profile["slurm-keep-successful-logs"] = True
    folder = workdir / "profiles/slurm-ci"
    folder.mkdir()
    (folder / "profile.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return str(folder)


def cancel_a_running_generate_job(cluster, snakemake_run: subprocess.Popen, running_for: float = 3.0) -> str:
    """scancel the first generate job once it has run ``running_for`` seconds; return its SLURM id."""
    deadline = time.time() + 600
    while time.time() < deadline and snakemake_run.poll() is None:
        queue = subprocess.run(
            ["squeue", "-h", "-o", "%i|%T|%M|%k"], env=cluster.env, capture_output=True, text=True
        ).stdout
        for line in queue.splitlines():
            job, state, elapsed, comment = line.split("|", 3)
            seconds = sum(int(x) * 60**i for i, x in enumerate(reversed(elapsed.split("-")[-1].split(":"))))
            if state == "RUNNING" and "generate" in comment and seconds >= running_for:
                subprocess.run(["scancel", job], env=cluster.env, check=True)
                return job
        time.sleep(0.5)
    raise AssertionError("no generate job was seen running")


def test_workflow_runs_through_sbatch_and_survives_a_cancelled_job(cluster, tmp_path):
    """Every non-local job goes through sbatch; a generate job scancelled while it runs (as a
    preemption would) is retried from a clean state and the run completes with nothing partial."""
    config = small_config()
    config["subjects"] = {"face1": dict(config["subjects"]["face1"], methods=["ti"])}
    config.pop("external")
    config.pop("perturb")
    workdir = make_workdir(tmp_path, config)
    profile = ci_profile(workdir)
    run = subprocess.Popen(
        ["timeout", "-k", "20", "900", SNAKEMAKE, "--profile", profile],
        cwd=workdir,
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    cancelled = cancel_a_running_generate_job(cluster, run)
    log, _ = run.communicate(timeout=960)
    (tmp_path / "snakemake.log").write_text(log)  # kept for a failing run
    assert run.returncode == 0, log[-6000:]
    planned = re.findall(r"^(local)?rule (\w+):", log, re.MULTILINE)  # jobs on their own
    alone = sorted(rule for local, rule in planned if not local)
    groups = re.findall(r"Group job (\S+) \(jobs in lexicogr. order\):\n\n((?:    .*\n)+)", log)
    grouped = {name: sorted(re.findall(r"^    rule (\w+):", body, re.MULTILINE)) for name, body in groups}
    # profiles/slurm groups every job of a personalized model into one submission
    assert {"train_ti", "generate_personalized", "score", "disrupt", "geometry"} <= set(grouped["model_face1/ti"])
    assert set(grouped["model_base"]) == {"score"}  # the base model's scores: a group of their own
    assert {"generate_base", "noise_floor"} <= set(alone) and not {"train_ti", "generate_personalized"} & set(alone)
    assert {"merge_map", "analyze", "report"} <= {rule for local, rule in planned if local}
    submitted = SUBMITTED.findall(log)
    print(f"cancelled SLURM job {cancelled}")
    print("\n".join(f"snakemake job {j} -> SLURM job {s}" for j, s, _ in submitted))
    alone_submitted = [m.group(1) for _, _, path in submitted if (m := re.search(r"/rule_(\w+)/", path))]
    # the cancelled job was submitted once more, and no other job
    retried = [job for job, count in Counter(job for job, _, _ in submitted).items() if count > 1]
    assert len(retried) == 1, submitted
    first, second = [(slurm, path) for job, slurm, path in submitted if job == retried[0]]
    assert first[0] == cancelled and "rule_generate" in first[1] and second[0] != cancelled
    # every job on its own and every group went through sbatch, and nothing else
    assert sorted(set(alone_submitted)) == sorted(set(alone))
    assert len(submitted) == len(alone) + len(groups)  # the retry is announced and submitted like any job
    slurm_ids = {int(s) for _, s, _ in submitted}
    assert len(slurm_ids) == len(submitted)
    assert (workdir / "results/report.html").is_file()
    leftovers = [str(p) for p in (workdir / "results").rglob("*") if p.name.startswith(".") and ".tmp" in p.name]
    assert leftovers == []  # the cancelled write left no temporary behind
    for shard in (workdir / "results/images").rglob("*.parquet"):
        read_table(shard, IMAGES)  # complete, and its page checksums hold
