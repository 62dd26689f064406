"""Rule figure_scatter: see entmap.present.figures.drift_scatter_figure."""

from pathlib import Path

from entmap.core.joblog import job_log
from entmap.present.figures import drift_scatter_figure

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]):
    drift_scatter_figure(sm.input.per_model, sm.input.noise_floor, Path(sm.output.png).with_suffix(""))
