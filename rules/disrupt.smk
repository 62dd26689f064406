# Per-seed disruption of each personalized model, and the base model's seed-pair noise floor.


rule disrupt:
    input:
        base_images="results/images/base/{shard}.parquet",
        pers_images="results/images/{subject}/{method}/{shard}.parquet",
        base_scores="results/scores/base/{shard}.parquet",
        pers_scores="results/scores/{subject}/{method}/{shard}.parquet",
    output:
        "results/disruption/{subject}/{method}/{shard}.parquet",
    params:
        code=script_code("disrupt"),
        model="{subject}/{method}",
        lpips=config["lpips"],
        runtime=RUNTIME,
    threads: config["torch_threads"]
    resources:
        gpu=1,
        mem_mb=gpu_mem_mb(8000),
        runtime=gpu_runtime(30),
    log:
        "results/logs/disrupt/{subject}/{method}/{shard}.log",
    benchmark:
        "results/benchmarks/disrupt/{subject}/{method}/{shard}.tsv"
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/disrupt.py"


rule noise_floor:
    input:
        images="results/images/base/{shard}.parquet",
        scores="results/scores/base/{shard}.parquet",
    output:
        "results/noise_floor/{shard}.parquet",
    params:
        code=script_code("noise_floor"),
        seeds=SEEDS,
        pairs=config["noise_floor"]["pairs"],
        lpips=config["lpips"],
        runtime=RUNTIME,
    threads: config["torch_threads"]
    resources:
        gpu=1,
        mem_mb=gpu_mem_mb(8000),
        runtime=gpu_runtime(30),
    log:
        "results/logs/noise_floor/{shard}.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/noise_floor.py"


rule noise_floor_thresholds:
    input:
        expand("results/noise_floor/{shard}.parquet", shard=SHARDS),
    output:
        "results/noise_floor.json",
    params:
        code=script_code("noise_floor_thresholds"),
        percentile=config["noise_floor"]["percentile"],
    log:
        "results/logs/noise_floor_thresholds.log",
    localrule: True
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/noise_floor_thresholds.py"
