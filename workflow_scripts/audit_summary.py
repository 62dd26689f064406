"""Rule audit_summary: see entmap.audit.summary.write_audit."""

from entmap.audit.summary import write_audit
from entmap.core.joblog import job_log

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]) as log:
    entries = sm.params.entries
    document = write_audit(
        cells_path=sm.input.cells,
        significance_path=sm.input.significance,
        noise_floor_path=sm.input.noise_floor,
        score_paths=list(sm.input.scores),
        sweep_paths=dict(zip(entries, sm.input.sweeps, strict=True)),
        meta_paths=dict(zip(entries, sm.input.metas, strict=True)),
        adapters=sm.params.adapters,
        externals=sm.params.externals,
        settings=sm.params.settings,
        own_category=sm.params.own_category,
        alpha=sm.params.alpha,
        family=sm.params.family,
        out=dict(sm.output.items()),
    )
    log.info("verdicts: %s", {a["name"]: a["verdict"] for a in document["adapters"]})
