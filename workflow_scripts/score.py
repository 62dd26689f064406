"""Rule score: see entmap.score.score_shard."""

from entmap.joblog import job_log
from entmap.prompts import prompts_by_id
from entmap.score import score_shard

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
