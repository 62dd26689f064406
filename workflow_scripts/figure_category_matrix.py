"""Rule figure_category_matrix: see entmap.present.figures.category_matrix_figure."""

from pathlib import Path

from entmap.core.joblog import job_log
from entmap.present.figures import category_matrix_figure

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]):
    category_matrix_figure(sm.input.matrix, Path(sm.output.png).with_suffix(""))
