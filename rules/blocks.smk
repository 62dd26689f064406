# Block attribution: each personalized model's adapter switched off one block at a time (docs/blocks.md).


rule block_attribution:
    input:
        base=base_model_input,
        scorer=scorer_input,
        suite=SUITE,
        adapter=adapter_inputs,
        disruption=block_disruption_input,
    output:
        "results/blocks/{subject}/{method}.parquet",
    log:
        "results/logs/block_attribution/{subject}/{method}.log",
    benchmark:
        "results/benchmarks/block_attribution/{subject}/{method}.tsv"
    conda:
        CONDA_ENV
    threads: config["torch_threads"]
    resources:
        gpu=1,
        mem_mb=gpu_mem_mb(16000),
        runtime=gpu_runtime(60),
    params:
        code=script_code("block_attribution"),
        model="{subject}/{method}",
        adapter="results/adapters/{subject}/{method}",
        base_model=BASE_MODEL,
        scorer=SCORER,
        lpips=config["lpips"],
        runtime=RUNTIME,
        generation=GENERATION,
        settings=BLOCK_SETTINGS,
    script:
        "../workflow_scripts/block_attribution.py"


rule block_attribution_summary:
    input:
        expand("results/blocks/{model}.parquet", model=BLOCK_MODELS),
    output:
        table="results/tables/block_attribution.csv",
        figure=report(
            "results/figures/block_attribution.png",
            caption="../resources/report/figure.rst",
            category="Figures",
        ),
        pdf="results/figures/block_attribution.pdf",
    log:
        "results/logs/block_attribution_summary.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        code=script_code("block_attribution_summary"),
        unmeasured=BLOCK_UNMEASURED,
        bootstrap=config["analysis"]["bootstrap"],
        bootstrap_seed=config["analysis"].get("bootstrap_seed", 0),
        caption=figure_caption("block_attribution"),
    script:
        "../workflow_scripts/block_attribution_summary.py"
