# CLIP alignment of every generated image.


rule score:
    input:
        images="results/images/{model}/{shard}.parquet",
        scorer=scorer_input,
        suite=SUITE,
    output:
        "results/scores/{model}/{shard}.parquet",
    log:
        "results/logs/score/{model}/{shard}.log",
    benchmark:
        "results/benchmarks/score/{model}/{shard}.tsv"
    wildcard_constraints:
        model=f"base|[a-z0-9_-]+/{vocabulary.METHOD_REGEX}",
    conda:
        CONDA_ENV
    threads: config["torch_threads"]
    resources:
        gpu=1,
        mem_mb=gpu_mem_mb(8000),
        runtime=gpu_runtime(30),
    params:
        code=script_code("score"),
        scorer=SCORER,
        prompt_ids=shard_prompt_ids,
        runtime=RUNTIME,
    script:
        "../workflow_scripts/score.py"
