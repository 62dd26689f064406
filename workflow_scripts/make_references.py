"""Rule make_references: see entmap.inputs.references.make_references."""

from entmap.core.joblog import job_log
from entmap.inputs.references import make_references

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]) as log:
    files = make_references(sm.params.spec, sm.output[0])
    log.info("wrote %d reference images to %s", len(files), sm.output[0])
