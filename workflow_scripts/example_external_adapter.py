"""Rule example_external_adapter: see entmap.personalize.examples.train_example_lora."""

from entmap.core.joblog import job_log
from entmap.personalize.examples import train_example_lora

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]):
    train_example_lora(
        sm.params.base_model, sm.output[0], threads=sm.params.runtime["threads"], resolution=sm.params.resolution
    )
