"""Rule collapse_trajectory: see entmap.collapse_trajectory.run_diagnostics."""

from entmap.collapse_trajectory import run_diagnostics
from entmap.joblog import job_log
from entmap.prompts import load_context_prompts

sm = snakemake  # noqa: F821  (injected by Snakemake)
tea = sm.params.tea
with job_log(sm.log[0]):
    run_diagnostics(
        base_model=sm.params.base_model,
        trajectory_path=sm.input.trajectory,
        subject=sm.wildcards.subject,
        token=sm.params.subject["token"],
        class_word=sm.params.subject["class_word"],
        templates=list(load_context_prompts(sm.input.suite, tea.get("collapse_prompts"))["prompt"]),
        out_csv=sm.output[0],
        reduction=tea.get("anchor_reduction"),
        threads=sm.params.runtime["threads"],
    )
