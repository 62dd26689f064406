"""Rule geometry: see entmap.geometry.stage.write_model_geometry."""

from entmap.core.joblog import job_log
from entmap.geometry.stage import write_model_geometry
from entmap.inputs.prompt_suites import prompts_by_id

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]):
    prompts = prompts_by_id(sm.input.suite, sm.params.prompt_ids)["text"].tolist()
    write_model_geometry(
        sm.params.base_model,
        sm.params.adapter,
        sm.params.model,
        prompts,
        sm.params.runtime,
        sm.params.neighbours,
        sm.output[0],
    )
