"""Rule audit_external: see entmap.models.audit.audit_external."""

from entmap.core.joblog import job_log
from entmap.models.audit import audit_external

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]) as log:
    meta = audit_external(
        sm.params.base_model, sm.wildcards.subject, sm.params.spec, sm.output.meta, sm.params.generation
    )
    log.info("external adapter accepted: %s", meta)
