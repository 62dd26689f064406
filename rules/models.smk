# Tiny random-weight base pipeline and CLIP scorer (only when the config asks for kind: tiny).


rule build_tiny_base:
    output:
        sd=directory(entmap_config.tiny_base_dir(config)),
        clip=directory(entmap_config.TINY_SCORER_DIR),
    log:
        "results/logs/build_tiny_base.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        code=script_code("build_tiny_base"),
        base_seed=config["base"].get("tiny_seed", 0),
        family=config["base"].get("tiny_family", "sd1"),
        scorer_seed=config["scorer"].get("tiny_seed", 0),
    script:
        "../workflow_scripts/build_tiny_base.py"
