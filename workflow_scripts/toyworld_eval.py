"""Rule toyworld_models: see entmap.toyworld.evaluate.evaluate (the quality table)."""

from entmap.core.atomic import write_text
from entmap.core.joblog import job_log
from entmap.toymodels.evaluate import evaluate

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]):
    table = evaluate(sm.input.model, sm.input.scorer, threads=sm.threads)
    print(table.to_markdown(index=False, floatfmt=".3f"))
    write_text(sm.output[0], table.to_csv(index=False))
