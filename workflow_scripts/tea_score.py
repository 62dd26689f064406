"""Rule tea_score: see entmap.tea.sweep.run_scoring."""

from entmap.core.joblog import job_log
from entmap.inputs.prompt_suites import load_context_prompts
from entmap.tea.sweep import run_scoring

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]):
    run_scoring(
        images_path=sm.input.images,
        prompts=load_context_prompts(sm.input.suite, sm.params.prompts),
        class_word=sm.params.spec["class_word"],
        reference_dir=sm.params.spec["references"],
        scorer_spec=sm.params.scorer,
        out_path=sm.output[0],
        device=sm.params.runtime["device"],
        threads=sm.params.runtime["threads"],
    )
