"""Rule analyze: see entmap.analysis.run.run_analysis."""

import os

from entmap.analysis.run import run_analysis
from entmap.core.joblog import job_log
from entmap.inputs.prompt_suites import prompts_by_id

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]):
    run_analysis(
        cells_path=sm.input.cells,
        disruption_paths=list(sm.input.disruption),
        noise_paths=list(sm.input.noise),
        score_paths=list(sm.input.scores),
        prompts=prompts_by_id(sm.input.suite, sm.params.prompt_ids),
        own_category=sm.params.own_category,
        settings=sm.params.settings,
        tables_dir=os.path.dirname(sm.output.cell_significance),
        stats_dir=os.path.dirname(sm.output.stats[0]),
    )
