# The single-file HTML report, and the archive of a finished run.

AUDIT_FILES = ["audit.json", "strength.csv", "checkpoints.csv", "model_card.md"]


def report_audit_input(wildcards):
    """`entmap audit`'s outputs (results/audit/), shown first in the report, when the config has an
    `audit:` block; none otherwise (the report then has no audit section)."""
    return [f"results/audit/{name}" for name in AUDIT_FILES] if config.get("audit") else []


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
        audit=report_audit_input,
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
