"""Rule example_external_adapter: see entmap.examples.train_example_lora."""

from entmap.examples import train_example_lora
from entmap.joblog import job_log

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]):
    train_example_lora(
        sm.params.base_model, sm.output[0], threads=sm.params.runtime["threads"], resolution=sm.params.resolution
    )
