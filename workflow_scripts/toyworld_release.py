"""Rule toyworld_release: see entmap.toyworld.card.release."""

from pathlib import Path

from entmap.core.joblog import job_log
from entmap.core.provenance import git_commit
from entmap.toymodels.card import release

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]):
    release(
        model_dir=sm.input.model,
        scorer_dir=sm.input.scorer,
        quality_csv=sm.input.quality,
        train_log_csvs={Path(p).stem: p for p in sm.input.logs},
        out_dir=sm.output[0],
        commit=git_commit(),
        notes_path=sm.input.notes,
    )
