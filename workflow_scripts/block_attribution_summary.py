"""Rule block_attribution_summary: see entmap.analysis.block_attribution and
entmap.present.figures.block_attribution_figure."""

from entmap.analysis.block_attribution import write_attribution_table
from entmap.core.joblog import job_log
from entmap.present.figures import block_attribution_figure

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]):
    write_attribution_table(
        list(sm.input), dict(sm.params.unmeasured), sm.params.bootstrap, sm.params.bootstrap_seed, sm.output.table
    )
    block_attribution_figure(sm.output.table, sm.output.figure.removesuffix(".png"))
