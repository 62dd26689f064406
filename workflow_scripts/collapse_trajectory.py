"""Rule collapse_trajectory: see entmap.tea.trajectory.run_diagnostics."""

from entmap.core.joblog import job_log
from entmap.inputs.prompt_suites import load_context_prompts
from entmap.tea.trajectory import run_diagnostics

sm = snakemake  # noqa: F821  (injected by Snakemake)
collapse = sm.params.collapse
with job_log(sm.log[0]):
    run_diagnostics(
        base_model=sm.params.base_model,
        trajectory_path=sm.input.trajectory,
        subject=sm.wildcards.subject,
        token=sm.params.subject["token"],
        class_word=sm.params.subject["class_word"],
        templates=list(load_context_prompts(sm.input.suite, collapse["prompts"])["prompt"]),
        out_csv=sm.output[0],
        reduction=collapse["anchor_reduction"],
        distances=collapse["distances"],
        temperature=collapse["kl_temperature"],
        threads=sm.params.runtime["threads"],
    )
