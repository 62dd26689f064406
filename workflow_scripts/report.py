"""Rule report: see entmap.present.report.write_report."""

import os

from entmap.core.joblog import job_log
from entmap.present.report import write_report

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]):
    write_report(
        tables_dir=os.path.dirname(sm.input.tables[0]),
        stats_dir=os.path.dirname(sm.input.stats[0]),
        noise_floor_path=sm.input.noise_floor,
        cells_path=sm.input.cells,
        figures=list(sm.input.figures),
        config=sm.params.config,
        collapse_tea=list(sm.input.collapse_tea),
        sage=list(sm.input.sage),
        attention=list(sm.input.attention),
        blocks=list(sm.input.blocks),
        images=list(sm.input.images),
        disruption=list(sm.input.disruption),
        adapter_meta=list(sm.input.adapter_meta),
        generation=sm.params.generation,
        audit=list(sm.input.audit),
        out_path=sm.output[0],
    )
