"""Rule block_attribution: see entmap.measure.block_attribution.write_block_attribution."""

from entmap.core.joblog import job_log
from entmap.core.parquet_schemas import DISRUPTION, read_tables
from entmap.inputs.prompt_suites import prompts_by_id
from entmap.measure.block_attribution import most_disrupted, write_block_attribution

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]):
    settings = sm.params.settings
    chosen = settings["prompts"]
    if isinstance(chosen, int):  # the model's most disrupted prompts of this run's map
        chosen = most_disrupted(read_tables(list(sm.input.disruption), DISRUPTION), chosen, settings["rank_by"])
    write_block_attribution(
        sm.params.base_model,
        sm.params.adapter,
        sm.params.model,
        prompts_by_id(sm.input.suite, list(chosen)),
        settings["seeds"],
        sm.params.generation,
        sm.params.scorer,
        sm.params.lpips,
        sm.params.runtime,
        settings["transformer_groups"],
        settings["isolated"],
        sm.output[0],
    )
