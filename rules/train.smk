# Personalization: one adapter per subject x method.


rule train_ti:
    input:
        base=base_model_input,
        references=reference_dir,
    output:
        adapter="results/adapters/{subject}/ti/adapter.safetensors",
        meta="results/adapters/{subject}/ti/meta.json",
        train_log="results/adapters/{subject}/ti/train_log.parquet",
        trajectory="results/adapters/{subject}/ti/trajectory.safetensors",
    params:
        method="ti",
        subject=subject_identity,
        token=lambda wildcards: entmap_config.subject_token(config, wildcards.subject),
        settings=lambda wildcards: entmap_config.method_settings(config, wildcards.subject, "ti"),
        base_model=BASE_MODEL,
        runtime=RUNTIME,
    threads: config["torch_threads"]
    resources:
        gpu=1,
        mem_mb=gpu_mem_mb(16000),
        runtime=gpu_runtime(120),
    log:
        "results/logs/train/{subject}/ti.log",
    benchmark:
        "results/benchmarks/train/{subject}/ti.tsv"
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/train.py"
