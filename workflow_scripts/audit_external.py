"""Rule audit_external: see entmap.external.audit_external."""

from entmap.external import audit_external
from entmap.joblog import job_log

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]) as log:
    meta = audit_external(sm.params.base_model, sm.wildcards.subject, sm.params.spec, sm.output.meta)
    log.info("external adapter accepted: %s", meta)
