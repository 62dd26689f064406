"""Rule noise_floor: see entmap.measure.noise_floor.noise_floor_shard."""

from entmap.core.joblog import job_log
from entmap.measure.noise_floor import noise_floor_shard

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]):
    noise_floor_shard(
        images_path=sm.input.images,
        scores_path=sm.input.scores,
        seeds=sm.params.seeds,
        pairs=sm.params.pairs,
        lpips_settings=sm.params.lpips,
        out_path=sm.output[0],
        device=sm.params.runtime["device"],
        threads=sm.params.runtime["threads"],
        structure=sm.params.structure,
        suite=sm.input.suite,
        vqa=sm.params.vqa,
    )
