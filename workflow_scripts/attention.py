"""Rule attention: see entmap.attention.stage.write_model_attention."""

from entmap.attention.stage import write_model_attention
from entmap.core.joblog import job_log
from entmap.inputs.prompt_suites import prompts_by_id

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]):
    write_model_attention(
        base_model=sm.params.base_model,
        adapter_dir=sm.params.adapter,
        model=sm.params.model,
        candidates=prompts_by_id(sm.input.suite, sm.params.prompt_ids),
        disruption_paths=list(sm.input.disruption),
        own_category=sm.params.own_category,
        spec=sm.params.spec,
        seeds=sm.params.seeds,
        settings=sm.params.settings,
        runtime=sm.params.runtime,
        stats_path=sm.output.stats,
        maps_path=sm.output.maps,
    )
