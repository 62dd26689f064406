# Synthetic reference images; subjects with a folder of real images skip this rule.


rule make_references:
    output:
        directory("results/references/{subject}"),
    log:
        "results/logs/make_references/{subject}.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        code=script_code("make_references"),
        spec=lambda wildcards: config["subjects"][wildcards.subject]["references"],
    script:
        "../workflow_scripts/make_references.py"
