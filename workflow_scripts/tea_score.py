"""Rule tea_score: see entmap.tea_sweep.run_scoring."""

from entmap.joblog import job_log
from entmap.prompts import load_context_prompts
from entmap.tea_sweep import run_scoring

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]):
    run_scoring(
        images_path=sm.input.images,
        prompts=load_context_prompts(sm.input.suite, sm.params.tea.get("prompts")),
        class_word=sm.params.spec["class_word"],
        reference_dir=sm.params.spec["references"],
        scorer_spec=sm.params.scorer,
        out_path=sm.output[0],
        device=sm.params.runtime["device"],
        threads=sm.params.runtime["threads"],
    )
