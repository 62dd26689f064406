"""Rule figure_category_matrix: see entmap.figures.category_matrix_figure."""

from pathlib import Path

from entmap.figures import category_matrix_figure
from entmap.joblog import job_log

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]):
    category_matrix_figure(sm.input.matrix, Path(sm.output.png).with_suffix(""))
