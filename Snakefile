# entmap: Concept Entanglement Maps for personalized text-to-image diffusion models.
# Table of contents only: the stages live in rules/*.smk, the logic in src/entmap.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "rules/common.smk"  # validates the config before anything else
include: "rules/models.smk"
include: "rules/references.smk"
include: "rules/train.smk"
include: "rules/generate.smk"
include: "rules/score.smk"
include: "rules/disrupt.smk"
include: "rules/analyze.smk"
include: "rules/figures.smk"


rule all:
    input:
        "results/maps/cells.parquet",
        "results/maps/e_sem.csv",
        "results/maps/e_per.csv",
        "results/noise_floor.json",
        expand("results/tables/{table}.csv", table=ANALYSIS_TABLES),
        expand("results/stats/{name}.json", name=ANALYSIS_STATS),
        [png.replace(".png", ".pdf") for png in FIGURE_PNGS],
        "results/report.html",
    default_target: True
    localrule: True
