"""Rules generate_base and generate_personalized: see entmap.measure.generate.generate_model_shard."""

from entmap.core.joblog import job_log
from entmap.inputs.prompt_suites import prompts_by_id
from entmap.measure.generate import generate_model_shard

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]):
    generate_model_shard(
        base_model=sm.params.base_model,
        adapter_dir=sm.params.adapter,
        prompts=prompts_by_id(sm.input.suite, sm.params.prompt_ids),
        seeds=sm.params.seeds,
        settings=sm.params.settings,
        model_name=sm.params.model,
        out_path=sm.output[0],
        device=sm.params.runtime["device"],
        dtype=sm.params.runtime["dtype"],
        threads=sm.params.runtime["threads"],
        base_images=sm.input.base_images[0] if getattr(sm.input, "base_images", None) else None,
        reuse=getattr(sm.params, "reuse", None),
    )
