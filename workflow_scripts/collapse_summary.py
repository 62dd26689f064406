"""Rule collapse_summary: see entmap.collapse_trajectory.merge_tables and entmap.figures.collapse_figure."""

from entmap.collapse_trajectory import merge_tables
from entmap.figures import collapse_figure
from entmap.joblog import job_log

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]):
    merge_tables(list(sm.input.tables), sm.output.table)
    collapse_figure(sm.output.table, sm.output.png.removesuffix(".png"))
