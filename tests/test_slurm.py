"""The workflow through a real SLURM cluster: every non-local job goes through sbatch.

Brings up a single-node SLURM from Debian's packages on localhost (installing them when run as
root, as in CI), runs the workflow with ``profiles/slurm`` changed only in the keys this test
cluster needs, and tears the daemons down again.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest
import yaml
from conftest import SNAKEMAKE, make_workdir, small_config
from slurm_cluster import LocalSlurm, ensure_installed

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)")


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


def test_workflow_runs_through_sbatch(cluster, tmp_path):
    config = small_config()
    config["subjects"] = {"face1": dict(config["subjects"]["face1"], methods=["ti"])}
    config.pop("external")
    config.pop("perturb")
    workdir = make_workdir(tmp_path, config)
    profile = ci_profile(workdir)
    run = subprocess.run(
        ["timeout", "-k", "20", "900", SNAKEMAKE, "--profile", profile],
        cwd=workdir,
        env=cluster.env,
        capture_output=True,
        text=True,
    )
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-6000:]
    planned = re.findall(r"^(local)?rule (\w+):", run.stdout + run.stderr, re.MULTILINE)
    remote = sorted(rule for local, rule in planned if not local)
    assert {"train_ti", "generate_base", "generate_personalized", "score", "disrupt", "noise_floor"} <= set(remote)
    assert {"merge_map", "analyze", "report"} <= {rule for local, rule in planned if local}
    submitted = SUBMITTED.findall(log)
    print("\n".join(f"snakemake job {j} -> SLURM job {s}" for j, s, _ in submitted))
    rules = sorted(re.search(r"rule_(\w+)", path).group(1) for _, _, path in submitted)
    assert rules == remote  # every non-local job, and nothing else, went through sbatch
    slurm_ids = {int(s) for _, s, _ in submitted}
    assert len(slurm_ids) == len(submitted)
    assert (workdir / "results/report.html").is_file()
