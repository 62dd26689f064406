"""Rule disrupt: see entmap.measure.disrupt.disrupt_shard."""

from entmap.core.joblog import job_log
from entmap.measure.disrupt import disrupt_shard

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]):
    disrupt_shard(
        base_images=sm.input.base_images,
        pers_images=sm.input.pers_images,
        base_scores=sm.input.base_scores,
        pers_scores=sm.input.pers_scores,
        model=sm.params.model,
        lpips_settings=sm.params.lpips,
        out_path=sm.output[0],
        device=sm.params.runtime["device"],
        threads=sm.params.runtime["threads"],
        structure=sm.params.structure,
        suite=sm.input.suite,
        vqa=sm.params.vqa,
    )
