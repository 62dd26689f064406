"""Rule collapse_summary: see entmap.tea.trajectory.merge_tables and entmap.present.figures.collapse_figure."""

from entmap.core.joblog import job_log
from entmap.present.figures import collapse_figure
from entmap.tea.trajectory import merge_tables

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]):
    merge_tables(list(sm.input.tables), sm.output.table)
    collapse_figure(sm.output.table, sm.output.png.removesuffix(".png"))
