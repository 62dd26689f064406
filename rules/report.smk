# The single-file HTML report, and the archive of a finished run.


rule report:
    input:
        tables=expand("results/tables/{table}.csv", table=ANALYSIS_TABLES),
        stats=expand("results/stats/{name}.json", name=ANALYSIS_STATS),
        noise_floor="results/noise_floor.json",
        cells="results/maps/cells.parquet",
        figures=FIGURE_PNGS,
        collapse_tea=TEA_OUTPUTS,
        sage=SAGE_OUTPUTS,
        attention=ATTENTION_REPORT,
        blocks=BLOCK_OUTPUTS,
        images=expand("results/images/{model}/{shard}.parquet", model=["base", *MODELS], shard=SHARDS),
        disruption=expand("results/disruption/{model}/{shard}.parquet", model=MODELS, shard=SHARDS),
        adapter_meta=[f"results/adapters/{model}/meta.json" for model in MODELS],
        audit=AUDIT_OUTPUTS,  # shown first when the config has an `audit:` block
    output:
        report(
            "results/report.html",
            caption="../resources/report/report.rst",
            category="Report",
        ),
    log:
        "results/logs/report.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        code=script_code("report"),
        config=config,
        generation=GENERATION,
    script:
        "../workflow_scripts/report.py"


rule archive:
    input:
        RUN_OUTPUTS,
        meta=[f"results/adapters/{model}/meta.json" for model in MODELS],
        suite=SUITE,
    output:
        "results/archive/entmap-run.tar.gz",
    log:
        "results/logs/archive.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        code=script_code("archive"),
        config=config,
        include_images=config.get("archive", {}).get("include_images", False),
        include_weights=config.get("archive", {}).get("include_weights", False),
    script:
        "../workflow_scripts/archive.py"
