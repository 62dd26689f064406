# Cross-attention shift of every personalized model against the base, and the run's tables.


rule attention:
    input:
        base=base_model_input,
        suite=SUITE,
        adapter=adapter_inputs,
        disruption=model_disruption_input,
    output:
        stats="results/attention/{subject}/{method}/stats.parquet",
        maps="results/attention/{subject}/{method}/maps.parquet",
    log:
        "results/logs/attention/{subject}/{method}.log",
    benchmark:
        "results/benchmarks/attention/{subject}/{method}.tsv"
    conda:
        CONDA_ENV
    threads: config["torch_threads"]
    resources:
        gpu=1,
        mem_mb=gpu_mem_mb(16000),
        runtime=gpu_runtime(60),
    params:
        code=script_code("attention"),
        model="{subject}/{method}",
        adapter="results/adapters/{subject}/{method}",
        prompt_ids=list(PLAN.prompts["id"]),
        own_category=lambda wildcards: entmap_config.own_prompt_category(config, wildcards.subject),
        spec=ATTENTION_SPEC,
        seeds=entmap_config.attention_seeds(config) if ATTENTION_SPEC else [],
        settings=GENERATION,
        base_model=BASE_MODEL,
        runtime=RUNTIME,
    script:
        "../workflow_scripts/attention.py"


rule attention_summary:
    input:
        stats=expand("results/attention/{model}/stats.parquet", model=ATTENTION_MODELS),
        maps=expand("results/attention/{model}/maps.parquet", model=ATTENTION_MODELS),
        suite=SUITE,
    output:
        **{table: f"results/tables/{table}.csv" for table in ATTENTION_TABLES},
        figure=report(
            "results/figures/attention_shift.png",
            caption="../resources/report/figure.rst",
            category="Figures",
        ),
        pdf="results/figures/attention_shift.pdf",
        maps_figures=expand("results/figures/attention_maps/{model}.png", model=ATTENTION_MODELS),
        maps_pdfs=expand("results/figures/attention_maps/{model}.pdf", model=ATTENTION_MODELS),
    log:
        "results/logs/attention_summary.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        code=script_code("attention_summary"),
        tables=ATTENTION_TABLES,
        settings=config["analysis"],
        caption=figure_caption("attention_shift"),
    script:
        "../workflow_scripts/attention_summary.py"
