# Figures (PNG for screens, PDF for print).


rule figure_map:
    input:
        cells="results/maps/cells.parquet",
        noise_floor="results/noise_floor.json",
    output:
        png=report(
            "results/figures/entanglement_map.png",
            caption="../resources/report/figure.rst",
            category="Figures",
        ),
        pdf="results/figures/entanglement_map.pdf",
    log:
        "results/logs/figures/entanglement_map.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        code=script_code("figure_map"),
        caption=figure_caption("entanglement_map"),
    script:
        "../workflow_scripts/figure_map.py"


rule figure_scatter:
    input:
        per_model="results/tables/per_model.csv",
        noise_floor="results/noise_floor.json",
    output:
        png=report(
            "results/figures/drift_scatter.png",
            caption="../resources/report/figure.rst",
            category="Figures",
        ),
        pdf="results/figures/drift_scatter.pdf",
    log:
        "results/logs/figures/drift_scatter.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        code=script_code("figure_scatter"),
        caption=figure_caption("drift_scatter"),
    script:
        "../workflow_scripts/figure_scatter.py"


rule figure_category_matrix:
    input:
        matrix="results/tables/category_matrix.csv",
    output:
        png=report(
            "results/figures/category_matrix.png",
            caption="../resources/report/figure.rst",
            category="Figures",
        ),
        pdf="results/figures/category_matrix.pdf",
    log:
        "results/logs/figures/category_matrix.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        code=script_code("figure_category_matrix"),
        caption=figure_caption("category_matrix"),
    script:
        "../workflow_scripts/figure_category_matrix.py"


rule figure_grid:
    input:
        suite=SUITE,
        disruption=expand("results/disruption/{{subject}}/{{method}}/{shard}.parquet", shard=SHARDS),
        base_images=expand("results/images/base/{shard}.parquet", shard=SHARDS),
        pers_images=expand("results/images/{{subject}}/{{method}}/{shard}.parquet", shard=SHARDS),
    output:
        png=report(
            "results/figures/grids/{subject}/{method}.png",
            caption="../resources/report/figure.rst",
            category="Image grids",
            labels={"model": "{subject}/{method}"},
        ),
        pdf="results/figures/grids/{subject}/{method}.pdf",
    log:
        "results/logs/figures/grids/{subject}/{method}.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        code=script_code("figure_grid"),
        caption=lambda wildcards: vocabulary.figure_caption("grid", f"{wildcards.subject}/{wildcards.method}"),
        n_prompts=config["analysis"].get("grid_prompts", 6),
        prompt_ids=list(PLAN.prompts["id"]),
    script:
        "../workflow_scripts/figure_grid.py"
