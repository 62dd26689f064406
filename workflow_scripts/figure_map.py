"""Rule figure_map: see entmap.figures.entanglement_map_figure."""

from pathlib import Path

from entmap.figures import entanglement_map_figure
from entmap.joblog import job_log

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]):
    entanglement_map_figure(sm.input.cells, sm.input.noise_floor, Path(sm.output.png).with_suffix(""))
