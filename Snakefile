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
include: "rules/geometry.smk"
include: "rules/attention.smk"
include: "rules/blocks.smk"
include: "rules/figures.smk"
include: "rules/tea.smk"
include: "rules/audit.smk"
include: "rules/report.smk"
include: "rules/toyworld.smk"  # training the toy world's models (not part of `all`)


rule all:
    default_target: True
    input:
        RUN_OUTPUTS,
    localrule: True
