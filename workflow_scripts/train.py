"""Rules train and train_ti: see entmap.personalize.train.train_adapter."""

import os

from entmap.core.joblog import job_log
from entmap.personalize.train import train_adapter

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]):
    train_adapter(
        method=sm.wildcards.method,
        base_model=sm.params.base_model,
        reference_dir=sm.input.references,
        subject=sm.wildcards.subject,
        subject_config=sm.params.subject,
        token=sm.params.token,
        settings=sm.params.settings,
        out_dir=os.path.dirname(sm.output.adapter),
        class_dir=sm.input.class_images[0] if sm.input.class_images else None,
        device=sm.params.runtime["device"],
        threads=sm.params.runtime["threads"],
    )
