# The toy world's models, trained from scratch (not part of the default run):
#   snakemake toyworld_models    -> results/toyworld/{clip,vae,sd} and quality.csv
#   snakemake toyworld_release   -> the above, then results/toyworld/release (shippable folder)
# Settings: configs/toyworld-train.yaml (its `toyworld:` block); the shipped weights in
# resources/models/toyworld/ were made this way (see their MODEL_CARD.md).
rule toyworld_scorer:
    output:
        model=directory("results/toyworld/clip"),
        log="results/toyworld/train_logs/scorer.csv",
        record="results/toyworld/train_logs/scorer.json",
    log:
        "results/logs/toyworld/scorer.log",
    benchmark:
        "results/benchmarks/toyworld/scorer.tsv"
    conda:
        CONDA_ENV
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=120,
    params:
        code=script_code("toyworld_train"),
        kind="scorer",
        train=lambda wildcards: toyworld_settings("scorer"),
    script:
        "../workflow_scripts/toyworld_train.py"


rule toyworld_vae:
    output:
        model=directory("results/toyworld/vae"),
        log="results/toyworld/train_logs/vae.csv",
        record="results/toyworld/train_logs/vae.json",
    log:
        "results/logs/toyworld/vae.log",
    benchmark:
        "results/benchmarks/toyworld/vae.tsv"
    conda:
        CONDA_ENV
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=120,
    params:
        code=script_code("toyworld_train"),
        kind="vae",
        train=lambda wildcards: toyworld_settings("vae"),
    script:
        "../workflow_scripts/toyworld_train.py"


rule toyworld_text_to_image:
    input:
        vae="results/toyworld/vae",
    output:
        model=directory("results/toyworld/sd"),
        log="results/toyworld/train_logs/text_to_image.csv",
        record="results/toyworld/train_logs/text_to_image.json",
    log:
        "results/logs/toyworld/text_to_image.log",
    benchmark:
        "results/benchmarks/toyworld/text_to_image.tsv"
    conda:
        CONDA_ENV
    threads: 2
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=240,
    params:
        code=script_code("toyworld_train"),
        kind="text_to_image",
        train=lambda wildcards: toyworld_settings("text_to_image"),
    script:
        "../workflow_scripts/toyworld_train.py"


rule toyworld_models:
    input:
        model="results/toyworld/sd",
        scorer="results/toyworld/clip",
    output:
        "results/toyworld/quality.csv",
    log:
        "results/logs/toyworld/quality.log",
    conda:
        CONDA_ENV
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=60,
    params:
        code=script_code("toyworld_eval"),
    script:
        "../workflow_scripts/toyworld_eval.py"


rule toyworld_release:
    input:
        model="results/toyworld/sd",
        scorer="results/toyworld/clip",
        quality="results/toyworld/quality.csv",
        logs=expand("results/toyworld/train_logs/{kind}.csv", kind=["scorer", "vae", "text_to_image"]),
        records=expand("results/toyworld/train_logs/{kind}.json", kind=["scorer", "vae", "text_to_image"]),
        notes="resources/toyworld/diagnosis.md",  # the recipe's history, copied into MODEL_CARD.md
    output:
        directory("results/toyworld/release"),
    log:
        "results/logs/toyworld/release.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        code=script_code("toyworld_release"),
    script:
        "../workflow_scripts/toyworld_release.py"
