"""Rule tea_tradeoff: see entmap.tea_sweep.write_tradeoff and entmap.figures.tea_tradeoff_figure."""

from entmap.figures import tea_tradeoff_figure
from entmap.joblog import job_log
from entmap.tea_sweep import write_tradeoff

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]):
    write_tradeoff(list(sm.input.scores), sm.params.levels, sm.output.table)
    tea_tradeoff_figure(sm.output.table, sm.output.png.removesuffix(".png"))
