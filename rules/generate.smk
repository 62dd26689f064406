# Seed-matched generation. Base images are generated once and shared by every model; a personalized
# model takes the base's images of the prompts it provably renders exactly as the base (docs/map.md).


rule generate_base:
    input:
        base=base_model_input,
        suite=SUITE,
    output:
        "results/images/base/{shard}.parquet",
    log:
        "results/logs/generate/base/{shard}.log",
    benchmark:
        "results/benchmarks/generate/base/{shard}.tsv"
    conda:
        CONDA_ENV
    threads: config["torch_threads"]
    resources:
        gpu=1,
        mem_mb=gpu_mem_mb(16000),
        runtime=gpu_runtime(60),
    params:
        code=script_code("generate"),
        model="base",
        adapter=None,
        prompt_ids=shard_prompt_ids,
        seeds=SEEDS,
        settings=GENERATION,
        base_model=BASE_MODEL,
        runtime=RUNTIME,
    script:
        "../workflow_scripts/generate.py"


rule generate_personalized:
    input:
        base=base_model_input,
        suite=SUITE,
        adapter=adapter_inputs,
        base_images=reuse_base_input,
    output:
        "results/images/{subject}/{method}/{shard}.parquet",
    log:
        "results/logs/generate/{subject}/{method}/{shard}.log",
    benchmark:
        "results/benchmarks/generate/{subject}/{method}/{shard}.tsv"
    conda:
        CONDA_ENV
    threads: config["torch_threads"]
    resources:
        gpu=1,
        mem_mb=gpu_mem_mb(16000),
        runtime=gpu_runtime(60),
    params:
        code=script_code("generate"),
        model="{subject}/{method}",
        adapter="results/adapters/{subject}/{method}",
        prompt_ids=shard_prompt_ids,
        seeds=SEEDS,
        settings=GENERATION,
        base_model=BASE_MODEL,
        runtime=RUNTIME,
        reuse=REUSE,
    script:
        "../workflow_scripts/generate.py"
