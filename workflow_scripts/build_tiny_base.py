"""Rule build_tiny_base: see entmap.models.tiny."""

from entmap.core.joblog import job_log
from entmap.models.tiny import build_tiny_base, build_tiny_scorer

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]) as log:
    build_tiny_base(sm.output.sd, seed=sm.params.base_seed, family=sm.params.family)
    build_tiny_scorer(sm.output.clip, seed=sm.params.scorer_seed)
    log.info("tiny base pipeline in %s, tiny scorer in %s", sm.output.sd, sm.output.clip)
