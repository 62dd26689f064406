# The audit of external adapters (docs/audit.md): a strength sweep per adapter checkpoint, then the
# leakage, checkpoint comparison, verdicts and model-card block of results/audit/. Only when the
# config has an `audit:` block (entmap audit writes one); otherwise none of these jobs exist.


rule audit_sweep:
    input:
        base=base_model_input,
        scorer=scorer_input,
        adapter=audit_adapter_inputs,
        references=audit_reference_input,
    output:
        "results/audit/sweep/{name}.parquet",
    log:
        "results/logs/audit_sweep/{name}.log",
    benchmark:
        "results/benchmarks/audit_sweep/{name}.tsv"
    wildcard_constraints:
        name="[a-z0-9_-]+",
    conda:
        CONDA_ENV
    threads: config["torch_threads"]
    resources:
        gpu=1,
        mem_mb=gpu_mem_mb(16000),
        runtime=gpu_runtime(60),
    params:
        code=script_code("audit_sweep"),
        adapter="results/adapters/{name}/external",
        kind=lambda wildcards: config["external"][wildcards.name]["kind"],
        scales=AUDIT.get("scales"),
        prompts=audit_sweep_prompts,
        seeds=SEEDS,
        settings=GENERATION,
        base_model=BASE_MODEL,
        scorer=SCORER,
        lpips=config["lpips"],
        references=AUDIT.get("references"),
        runtime=RUNTIME,
    script:
        "../workflow_scripts/audit_sweep.py"


rule audit_summary:
    input:
        cells="results/maps/cells.parquet",
        significance="results/tables/cell_significance.csv",
        noise_floor="results/noise_floor.json",
        scores=expand(
            "results/scores/{model}/{shard}.parquet",
            model=["base", *[f"{name}/external" for name in AUDIT_ENTRIES]],
            shard=SHARDS,
        ),
        sweeps=expand("results/audit/sweep/{name}.parquet", name=AUDIT_ENTRIES),
        metas=expand("results/adapters/{name}/external/meta.json", name=AUDIT_ENTRIES),
    output:
        strength="results/audit/strength.csv",
        checkpoints="results/audit/checkpoints.csv",
        json="results/audit/audit.json",
        card="results/audit/model_card.md",
    log:
        "results/logs/audit_summary.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        code=script_code("audit_summary"),
        entries=AUDIT_ENTRIES,
        adapters=AUDIT_ADAPTERS,
        externals=config.get("external", {}),
        settings=AUDIT,
        own_category=config["subject_categories"],
        alpha=config["analysis"]["alpha"],
        family=BASE_FAMILY,
    script:
        "../workflow_scripts/audit_summary.py"
