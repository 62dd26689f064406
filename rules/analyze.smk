# Merging per-seed tables into the Concept Entanglement Map.


rule merge_map:
    input:
        disruption=expand(
            "results/disruption/{model}/{shard}.parquet", model=MODELS, shard=SHARDS
        ),
        noise_floor="results/noise_floor.json",
        suite=SUITE,
    output:
        cells="results/maps/cells.parquet",
        e_sem="results/maps/e_sem.csv",
        e_per="results/maps/e_per.csv",
    params:
        models=MODELS,
        prompt_ids=list(PLAN.prompts["id"]),
        subjects=subject_categories(),
    log:
        "results/logs/merge_map.log",
    localrule: True
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/merge_map.py"
