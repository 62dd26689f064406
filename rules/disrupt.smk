# Per-seed disruption of each personalized model, and the base model's seed-pair noise floor.


rule disrupt:
    input:
        base_images="results/images/base/{shard}.parquet",
        pers_images="results/images/{subject}/{method}/{shard}.parquet",
        base_scores="results/scores/base/{shard}.parquet",
        pers_scores="results/scores/{subject}/{method}/{shard}.parquet",
        suite=SUITE,
    output:
        "results/disruption/{subject}/{method}/{shard}.parquet",
    log:
        "results/logs/disrupt/{subject}/{method}/{shard}.log",
    benchmark:
        "results/benchmarks/disrupt/{subject}/{method}/{shard}.tsv"
    conda:
        CONDA_ENV
    threads: config["torch_threads"]
    resources:
        gpu=1,
        mem_mb=gpu_mem_mb(8000),
        runtime=gpu_runtime(30),
    params:
        code=script_code("disrupt"),
        model="{subject}/{method}",
        lpips=config["lpips"],
        runtime=RUNTIME,
        structure=config["prompts"].get("structure"),
        vqa=VQA,
    script:
        "../workflow_scripts/disrupt.py"


rule noise_floor:
    input:
        images="results/images/base/{shard}.parquet",
        scores="results/scores/base/{shard}.parquet",
        suite=SUITE,
    output:
        "results/noise_floor/{shard}.parquet",
    log:
        "results/logs/noise_floor/{shard}.log",
    conda:
        CONDA_ENV
    threads: config["torch_threads"]
    resources:
        gpu=1,
        mem_mb=gpu_mem_mb(8000),
        runtime=gpu_runtime(30),
    params:
        code=script_code("noise_floor"),
        seeds=SEEDS,
        pairs=config["noise_floor"]["pairs"],
        lpips=config["lpips"],
        runtime=RUNTIME,
        structure=config["prompts"].get("structure"),
        vqa=VQA,
    script:
        "../workflow_scripts/noise_floor.py"


rule noise_floor_thresholds:
    input:
        expand("results/noise_floor/{shard}.parquet", shard=SHARDS),
    output:
        "results/noise_floor.json",
    log:
        "results/logs/noise_floor_thresholds.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        code=script_code("noise_floor_thresholds"),
        percentile=config["noise_floor"]["percentile"],
    script:
        "../workflow_scripts/noise_floor_thresholds.py"
