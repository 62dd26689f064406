# Prompt-embedding geometry of every personalized model against the base, and SAGE's claims.


rule geometry:
    input:
        base=base_model_input,
        suite=SUITE,
        adapter=adapter_inputs,
    output:
        "results/geometry/{subject}/{method}.parquet",
    log:
        "results/logs/geometry/{subject}/{method}.log",
    conda:
        CONDA_ENV
    threads: config["torch_threads"]
    resources:
        gpu=1,
        mem_mb=gpu_mem_mb(16000),
        runtime=gpu_runtime(30),
    params:
        code=script_code("geometry"),
        model="{subject}/{method}",
        adapter="results/adapters/{subject}/{method}",
        prompt_ids=list(PLAN.prompts["id"]),
        base_model=BASE_MODEL,
        runtime=RUNTIME,
        neighbours=config["analysis"].get("geometry_neighbours", 15),
    script:
        "../workflow_scripts/geometry.py"


rule sage_claims:
    input:
        geometry=expand("results/geometry/{model}.parquet", model=MODELS),
        cells="results/maps/cells.parquet",
        tradeoff=tea_tradeoff_input,
    output:
        summary="results/tables/geometry.csv",
        correlations="results/tables/sage_correlations.csv",
        agreement="results/tables/sage_agreement.csv",
        regularizer="results/tables/sage_regularizer.csv",
        figure=report("results/figures/geometry.png", caption="../resources/report/figure.rst", category="Figures"),
        pdf="results/figures/geometry.pdf",
    log:
        "results/logs/sage_claims.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        code=script_code("sage_claims"),
        settings=config["analysis"],
        own_category=config["subject_categories"],
        caption=figure_caption("geometry"),
    script:
        "../workflow_scripts/sage_claims.py"
