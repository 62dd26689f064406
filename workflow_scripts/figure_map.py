"""Rule figure_map: see entmap.present.figures.entanglement_map_figure."""

from pathlib import Path

from entmap.core.joblog import job_log
from entmap.present.figures import entanglement_map_figure

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]):
    entanglement_map_figure(sm.input.cells, sm.input.noise_floor, Path(sm.output.png).with_suffix(""))
