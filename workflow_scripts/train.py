"""Rules train_*: see entmap.train.train_adapter."""

import os

from entmap.runtime import job_log
from entmap.train import train_adapter

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]):
    train_adapter(
        method=sm.params.method,
        base_model=sm.params.base_model,
        reference_dir=sm.input.references,
        subject=sm.wildcards.subject,
        subject_config=sm.params.subject,
        token=sm.params.token,
        settings=sm.params.settings,
        out_dir=os.path.dirname(sm.output.adapter),
        device=sm.params.runtime["device"],
        threads=sm.params.runtime["threads"],
    )
