# The toy world's models, trained from scratch (not part of the default run):
#   snakemake toyworld_models    -> results/toyworld/{clip,vae,sd} and quality.csv
#   snakemake toyworld_release   -> the above, then results/toyworld/release (shippable folder)
# Settings: configs/toyworld-train.yaml (its `toyworld:` block); the shipped weights in
# resources/models/toyworld/ were made this way (see their MODEL_CARD.md).
import functools

from entmap.toymodels.training_config import load_training_config

TOYWORLD_TRAIN = config.get("toyworld_training", "configs/toyworld-train.yaml")


@functools.cache
def toyworld_block():
    """The checked `toyworld:` block, read once however many jobs ask."""
    return load_training_config(TOYWORLD_TRAIN, os.path.join(workflow.basedir, "schemas", "toyworld-train.schema.yaml"))


def toyworld_settings(kind):
    block = toyworld_block()
    return {"settings": block[kind], "device": block["device"], "threads": block["threads"]}


rule toyworld_scorer:
    output:
        model=directory("results/toyworld/clip"),
        log="results/toyworld/train_logs/scorer.csv",
        record="results/toyworld/train_logs/scorer.json",
    params:
        code=script_code("toyworld_train"),
        kind="scorer",
        train=lambda wildcards: toyworld_settings("scorer"),
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=120,
    log:
        "results/logs/toyworld/scorer.log",
    benchmark:
        "results/benchmarks/toyworld/scorer.tsv"
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/toyworld_train.py"


rule toyworld_vae:
    output:
        model=directory("results/toyworld/vae"),
        log="results/toyworld/train_logs/vae.csv",
        record="results/toyworld/train_logs/vae.json",
    params:
        code=script_code("toyworld_train"),
        kind="vae",
        train=lambda wildcards: toyworld_settings("vae"),
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=120,
    log:
        "results/logs/toyworld/vae.log",
    benchmark:
        "results/benchmarks/toyworld/vae.tsv"
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/toyworld_train.py"


rule toyworld_text_to_image:
    input:
        vae="results/toyworld/vae",
    output:
        model=directory("results/toyworld/sd"),
        log="results/toyworld/train_logs/text_to_image.csv",
        record="results/toyworld/train_logs/text_to_image.json",
    params:
        code=script_code("toyworld_train"),
        kind="text_to_image",
        train=lambda wildcards: toyworld_settings("text_to_image"),
    threads: 2
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=240,
    log:
        "results/logs/toyworld/text_to_image.log",
    benchmark:
        "results/benchmarks/toyworld/text_to_image.tsv"
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/toyworld_train.py"


rule toyworld_models:
    input:
        model="results/toyworld/sd",
        scorer="results/toyworld/clip",
    output:
        "results/toyworld/quality.csv",
    params:
        code=script_code("toyworld_eval"),
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=60,
    log:
        "results/logs/toyworld/quality.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/toyworld_eval.py"


rule toyworld_release:
    input:
        model="results/toyworld/sd",
        scorer="results/toyworld/clip",
        quality="results/toyworld/quality.csv",
        logs=expand("results/toyworld/train_logs/{kind}.csv", kind=["scorer", "vae", "text_to_image"]),
        records=expand("results/toyworld/train_logs/{kind}.json", kind=["scorer", "vae", "text_to_image"]),
    output:
        directory("results/toyworld/release"),
    params:
        code=script_code("toyworld_release"),
    log:
        "results/logs/toyworld/release.log",
    localrule: True
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/toyworld_release.py"
