# Semantic collapse and TEA: sweeps of the test-time adjustment, and drift over TI training.


rule tea_sweep:
    input:
        base=base_model_input,
        suite=config["tea"]["suite"] if TEA_MODELS else [],
        adapter=adapter_inputs,
    output:
        "results/tea/{subject}/{method}/images.parquet",
    log:
        "results/logs/tea/{subject}/{method}/sweep.log",
    benchmark:
        "results/benchmarks/tea/{subject}/{method}/sweep.tsv"
    conda:
        CONDA_ENV
    threads: config["torch_threads"]
    resources:
        gpu=1,
        mem_mb=gpu_mem_mb(16000),
        runtime=gpu_runtime(60),
    params:
        code=script_code("tea_sweep"),
        model="{subject}/{method}",
        adapter="results/adapters/{subject}/{method}",
        spec=tea_spec,
        sweep=entmap_config.tea_sweep_settings(config),
        seeds=entmap_config.tea_seeds(config) if TEA_MODELS else [],
        settings=GENERATION,
        base_model=BASE_MODEL,
        runtime=RUNTIME,
    script:
        "../workflow_scripts/tea_sweep.py"


rule tea_score:
    input:
        images="results/tea/{subject}/{method}/images.parquet",
        scorer=scorer_input,
        suite=config["tea"]["suite"] if TEA_MODELS else [],
        references=tea_reference_input,
    output:
        "results/tea/{subject}/{method}/scores.parquet",
    log:
        "results/logs/tea/{subject}/{method}/score.log",
    benchmark:
        "results/benchmarks/tea/{subject}/{method}/score.tsv"
    conda:
        CONDA_ENV
    threads: config["torch_threads"]
    resources:
        gpu=1,
        mem_mb=gpu_mem_mb(8000),
        runtime=gpu_runtime(30),
    params:
        code=script_code("tea_score"),
        spec=tea_spec,
        prompts=entmap_config.tea_sweep_settings(config).get("prompts"),
        scorer=SCORER,
        runtime=RUNTIME,
    script:
        "../workflow_scripts/tea_score.py"


rule tea_tradeoff:
    input:
        scores=expand("results/tea/{model}/scores.parquet", model=TEA_MODELS),
    output:
        table="results/tables/tea_tradeoff.csv",
        png=report(
            "results/figures/tea_tradeoff.png",
            caption="../resources/report/figure.rst",
            category="Semantic collapse and TEA",
        ),
        pdf="results/figures/tea_tradeoff.pdf",
    log:
        "results/logs/tea/tradeoff.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        code=script_code("tea_tradeoff"),
        caption=figure_caption("tea_tradeoff"),
        levels={model: spec["level"] for model, spec in TEA_MODELS.items()},
    script:
        "../workflow_scripts/tea_tradeoff.py"


rule collapse_trajectory:
    input:
        base=base_model_input,
        suite=config["tea"]["suite"] if COLLAPSE_SUBJECTS else [],
        trajectory="results/adapters/{subject}/ti/trajectory.safetensors",
    output:
        "results/collapse/{subject}.csv",
    log:
        "results/logs/collapse/{subject}.log",
    conda:
        CONDA_ENV
    threads: config["torch_threads"]
    params:
        code=script_code("collapse_trajectory"),
        subject=lambda wildcards: COLLAPSE_SUBJECTS[wildcards.subject],
        collapse=entmap_config.collapse_settings(config),
        base_model=BASE_MODEL,
        runtime=RUNTIME,
    script:
        "../workflow_scripts/collapse_trajectory.py"


rule collapse_summary:
    input:
        tables=expand("results/collapse/{subject}.csv", subject=COLLAPSE_SUBJECTS),
    output:
        table="results/tables/collapse.csv",
        png=report(
            "results/figures/collapse.png",
            caption="../resources/report/figure.rst",
            category="Semantic collapse and TEA",
        ),
        pdf="results/figures/collapse.pdf",
    log:
        "results/logs/collapse/summary.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        code=script_code("collapse_summary"),
        caption=figure_caption("collapse"),
    script:
        "../workflow_scripts/collapse_summary.py"
