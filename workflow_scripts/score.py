"""Rule score: see entmap.measure.score.score_shard."""

from entmap.core.joblog import job_log
from entmap.inputs.prompt_suites import prompts_by_id
from entmap.measure.score import score_shard

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]):
    prompts = prompts_by_id(sm.input.suite, sm.params.prompt_ids)
    score_shard(
        images_path=sm.input.images,
        texts=dict(zip(prompts["id"], prompts["text"], strict=True)),
        model=sm.params.scorer["model"],
        pretrained=sm.params.scorer["pretrained"],
        out_path=sm.output[0],
        device=sm.params.runtime["device"],
        threads=sm.params.runtime["threads"],
    )
