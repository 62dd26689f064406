"""Rule attention_summary: see entmap.attention.summary and entmap.present.attention_figures."""

from entmap.attention.summary import write_attention_tables
from entmap.core.joblog import job_log
from entmap.inputs.prompt_suites import load_prompts
from entmap.present.attention_figures import attention_figures

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]):
    prompts = load_prompts(sm.input.suite)
    texts = dict(zip(prompts["id"], prompts["text"], strict=True))
    tables = {name: getattr(sm.output, name) for name in sm.params.tables}
    write_attention_tables(list(sm.input.stats), texts, sm.params.settings, tables)
    attention_figures(
        sm.output.attention_layer_step, list(sm.input.maps), texts, sm.output.figure, list(sm.output.maps_figures)
    )
