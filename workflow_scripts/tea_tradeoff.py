"""Rule tea_tradeoff: see entmap.tea.sweep.write_tradeoff and entmap.present.figures.tea_tradeoff_figure."""

from entmap.core.joblog import job_log
from entmap.present.figures import tea_tradeoff_figure
from entmap.tea.sweep import write_tradeoff

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]):
    write_tradeoff(list(sm.input.scores), sm.params.levels, sm.output.table)
    tea_tradeoff_figure(sm.output.table, sm.output.png.removesuffix(".png"))
