"""Rule perturb: see entmap.personalize.train.make_perturbation."""

import os

from entmap.core.joblog import job_log
from entmap.personalize.train import make_perturbation

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]):
    make_perturbation(
        sm.params.base_model,
        sm.params.scale,
        sm.params.seed,
        os.path.dirname(sm.output.adapter),
        threads=sm.params.runtime["threads"],
    )
