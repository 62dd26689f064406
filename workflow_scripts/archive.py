"""Rule archive: see entmap.present.archive.write_archive."""

from entmap.core.joblog import job_log
from entmap.present.archive import write_archive

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]) as log:
    path = write_archive(
        "results",
        sm.params.config,
        sm.input.suite,
        sm.output[0],
        include_images=sm.params.include_images,
        include_weights=sm.params.include_weights,
    )
    log.info("wrote %s; check an unpacked copy with `entmap verify-archive <folder>`", path)
