"""Rule tea_sweep: see entmap.tea.sweep.run_sweep."""

from entmap.core.joblog import job_log
from entmap.inputs.prompt_suites import load_context_prompts
from entmap.tea.sweep import run_sweep, settings_grid

sm = snakemake  # noqa: F821  (injected by Snakemake)
sweep = sm.params.sweep
with job_log(sm.log[0]):
    run_sweep(
        base_model=sm.params.base_model,
        adapter_dir=sm.params.adapter,
        model_name=sm.params.model,
        spec=sm.params.spec,
        prompts=load_context_prompts(sm.input.suite, sweep["prompts"]),
        seeds=sm.params.seeds,
        grid=settings_grid(sweep["alphas"], sweep["betas"], sweep["variant"]),
        generation=sm.params.settings,
        options={k: sweep[k] for k in ("variant", "norm_mix", "anchor_reduction")},
        out_path=sm.output[0],
        device=sm.params.runtime["device"],
        dtype=sm.params.runtime["dtype"],
        threads=sm.params.runtime["threads"],
    )
