"""Rules toyworld_scorer, toyworld_vae, toyworld_text_to_image: see entmap.toyworld.train.run_training."""

from entmap.core.joblog import job_log
from entmap.toymodels.train import run_training

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]):
    run_training(
        kind=sm.params.kind,
        settings=sm.params.train["settings"],
        out_dir=sm.output.model,
        log_path=sm.output.log,
        vae_dir=sm.input.get("vae"),
        device=sm.params.train["device"],
        threads=sm.params.train["threads"],
    )
