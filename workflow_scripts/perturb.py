"""Rule perturb: see entmap.train.make_perturbation."""

import os

from entmap.joblog import job_log
from entmap.train import make_perturbation

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]):
    make_perturbation(
        sm.params.base_model,
        sm.params.scale,
        sm.params.seed,
        os.path.dirname(sm.output.adapter),
        threads=sm.params.runtime["threads"],
    )
