"""Rule noise_floor_thresholds: see entmap.measure.noise_floor.merge_noise_floor."""

from entmap.core.joblog import job_log
from entmap.measure.noise_floor import merge_noise_floor

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]) as log:
    result = merge_noise_floor(list(sm.input), sm.params.percentile, sm.output[0])
    log.info("noise floor: %s", result)
