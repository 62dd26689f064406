"""Rule audit_sweep: see entmap.audit.strength.sweep_adapter."""

from entmap.audit.strength import sweep_adapter
from entmap.core.joblog import job_log

sm = snakemake  # noqa: F821  (injected by Snakemake)
with job_log(sm.log[0]):
    sweep_adapter(
        base_model=sm.params.base_model,
        adapter_dir=sm.params.adapter,
        kind=sm.params.kind,
        scales=sm.params.scales,
        prompts=[tuple(pair) for pair in sm.params.prompts],
        seeds=sm.params.seeds,
        settings=sm.params.settings,
        scorer=sm.params.scorer,
        lpips=sm.params.lpips,
        references=sm.params.references,
        out_path=sm.output[0],
        device=sm.params.runtime["device"],
        dtype=sm.params.runtime["dtype"],
        threads=sm.params.runtime["threads"],
    )
