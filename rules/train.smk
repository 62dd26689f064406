# Personalization: one adapter per subject x method; audited external adapters; class images.


rule train:
    input:
        base=base_model_input,
        references=reference_dir,
        class_images=class_images_input,
    output:
        adapter="results/adapters/{subject}/{method}/adapter.safetensors",
        meta="results/adapters/{subject}/{method}/meta.json",
        train_log="results/adapters/{subject}/{method}/train_log.parquet",
    log:
        "results/logs/train/{subject}/{method}.log",
    benchmark:
        "results/benchmarks/train/{subject}/{method}.tsv"
    wildcard_constraints:
        method=f"(?:lora|cd){vocabulary.VARIANT_REGEX}",
    conda:
        CONDA_ENV
    threads: config["torch_threads"]
    resources:
        gpu=1,
        mem_mb=gpu_mem_mb(24000),
        runtime=gpu_runtime(120),
    params:
        code=script_code("train"),
        subject=subject_identity,
        token=lambda wildcards: entmap_config.method_token(config, wildcards.subject, wildcards.method),
        settings=lambda wildcards: entmap_config.method_settings(config, wildcards.subject, wildcards.method),
        base_model=BASE_MODEL,
        runtime=RUNTIME,
    script:
        "../workflow_scripts/train.py"


use rule train as train_ti with:
    output:
        adapter="results/adapters/{subject}/{method}/adapter.safetensors",
        meta="results/adapters/{subject}/{method}/meta.json",
        train_log="results/adapters/{subject}/{method}/train_log.parquet",
        trajectory="results/adapters/{subject}/{method}/trajectory.safetensors",
    wildcard_constraints:
        method=f"ti{vocabulary.VARIANT_REGEX}",


rule class_images:
    input:
        base=base_model_input,
    output:
        directory("results/class_images/{class_slug}"),
    log:
        "results/logs/class_images/{class_slug}.log",
    benchmark:
        "results/benchmarks/class_images/{class_slug}.tsv"
    conda:
        CONDA_ENV
    threads: config["torch_threads"]
    resources:
        gpu=1,
        mem_mb=gpu_mem_mb(16000),
        runtime=gpu_runtime(60),
    params:
        code=script_code("class_images"),
        class_word=lambda wildcards: CLASS_WORDS[wildcards.class_slug],
        n_images=lambda wildcards: CLASS_IMAGE_COUNTS[CLASS_WORDS[wildcards.class_slug]],
        settings=GENERATION,
        base_model=BASE_MODEL,
        runtime=RUNTIME,
    script:
        "../workflow_scripts/class_images.py"


rule audit_external:
    input:
        base=base_model_input,
        source=external_source_input,
    output:
        meta="results/adapters/{subject}/external/meta.json",
    log:
        "results/logs/audit_external/{subject}.log",
    conda:
        CONDA_ENV
    resources:
        mem_mb=16000,
        runtime=30,
    params:
        code=script_code("audit_external"),
        spec=lambda wildcards: config["external"][wildcards.subject],
        base_model=BASE_MODEL,
        generation=PROBE_SETTINGS,
    script:
        "../workflow_scripts/audit_external.py"


rule example_external_adapter:
    input:
        base=base_model_input,
    output:
        "results/examples/{name}.safetensors",
    log:
        "results/logs/example_external_adapter/{name}.log",
    conda:
        CONDA_ENV
    threads: config["torch_threads"]
    resources:
        gpu=1,
        mem_mb=gpu_mem_mb(16000),
        runtime=gpu_runtime(30),
    params:
        code=script_code("example_external_adapter"),
        base_model=BASE_MODEL,
        resolution=config["generation"]["resolution"],
        runtime=RUNTIME,
    script:
        "../workflow_scripts/example_external_adapter.py"


rule perturb:
    input:
        base=base_model_input,
    output:
        adapter="results/adapters/{subject}/perturb/adapter.safetensors",
        meta="results/adapters/{subject}/perturb/meta.json",
    log:
        "results/logs/perturb/{subject}.log",
    conda:
        CONDA_ENV
    resources:
        mem_mb=16000,
        runtime=15,
    params:
        code=script_code("perturb"),
        scale=lambda wildcards: PERTURB_SCALES[wildcards.subject],
        seed=config.get("perturb", {}).get("seed", 0),
        base_model=BASE_MODEL,
        runtime=RUNTIME,
    script:
        "../workflow_scripts/perturb.py"
