"""Rule sage_claims: see entmap.analysis.sage_claims and entmap.present.figures.geometry_figure."""

from entmap.analysis.sage_claims import write_sage_tables
from entmap.core.joblog import job_log
from entmap.present.figures import geometry_figure

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]):
    write_sage_tables(
        sm.input.geometry,
        sm.input.cells,
        sm.params.settings,
        sm.output.summary,
        sm.output.correlations,
        sm.output.agreement,
        sm.output.regularizer,
        sm.params.own_category,
        sm.input.tradeoff[0] if sm.input.tradeoff else None,
    )
    geometry_figure(sm.output.summary, sm.output.figure.removesuffix(".png"))
