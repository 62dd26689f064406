# Merging per-seed tables into the Concept Entanglement Map, then its tables and statistics.


rule merge_map:
    input:
        disruption=expand("results/disruption/{model}/{shard}.parquet", model=MODELS, shard=SHARDS),
        noise_floor="results/noise_floor.json",
        suite=SUITE,
    output:
        cells="results/maps/cells.parquet",
        e_sem="results/maps/e_sem.csv",
        e_per="results/maps/e_per.csv",
    log:
        "results/logs/merge_map.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        code=script_code("merge_map"),
        models=MODELS,
        prompt_ids=list(PLAN.prompts["id"]),
        subjects=subject_categories(),
    script:
        "../workflow_scripts/merge_map.py"


rule analyze:
    input:
        cells="results/maps/cells.parquet",
        disruption=expand("results/disruption/{model}/{shard}.parquet", model=MODELS, shard=SHARDS),
        noise=expand("results/noise_floor/{shard}.parquet", shard=SHARDS),
        scores=expand("results/scores/{model}/{shard}.parquet", model=["base"] + MODELS, shard=SHARDS),
        suite=SUITE,
    output:
        tables=expand("results/tables/{table}.{ext}", table=ANALYSIS_TABLES, ext=["csv", "md"]),
        cell_significance="results/tables/cell_significance.csv",
        stats=expand("results/stats/{name}.json", name=ANALYSIS_STATS),
    log:
        "results/logs/analyze.log",
    benchmark:
        "results/benchmarks/analyze.tsv"
    localrule: True
    conda:
        CONDA_ENV
    params:
        code=script_code("analyze"),
        settings=config["analysis"],
        own_category=config["subject_categories"],
        prompt_ids=list(PLAN.prompts["id"]),
    script:
        "../workflow_scripts/analyze.py"
