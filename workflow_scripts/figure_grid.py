"""Rule figure_grid: see entmap.present.grids.image_grid."""

from pathlib import Path

from entmap.core.joblog import job_log
from entmap.inputs.prompt_suites import prompts_by_id
from entmap.present.grids import image_grid

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]):
    image_grid(
        model=f"{sm.wildcards.subject}/{sm.wildcards.method}",
        disruption_paths=list(sm.input.disruption),
        prompts=prompts_by_id(sm.input.suite, sm.params.prompt_ids),
        base_image_paths=list(sm.input.base_images),
        pers_image_paths=list(sm.input.pers_images),
        n_prompts=sm.params.n_prompts,
        stem=Path(sm.output.png).with_suffix(""),
    )
