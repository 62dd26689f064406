# Shared definitions: config validation, the run plan, input helpers, resources.
import functools
import os
import sys
import types

from snakemake.exceptions import WorkflowError

# The rules run the package of this checkout, installed or not (also inside --sdm conda envs).
ENTMAP_SRC = os.path.join(workflow.basedir, "src")
sys.path.insert(0, ENTMAP_SRC)
# Nothing reaches a model hub unless the user says so: hub ids resolve only with HF_HUB_OFFLINE=0.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Jobs inherit it (set, not required: no `envvars:` needed).
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [ENTMAP_SRC, os.environ.get("PYTHONPATH")])))

from entmap.config import plan as entmap_config  # noqa: E402
from entmap.config.validation import load_config_file  # noqa: E402
from entmap.core import vocabulary  # noqa: E402
from entmap.core.code_graph import code_hash  # noqa: E402
from entmap.toymodels.training_config import load_training_config  # noqa: E402

SCHEMA = os.path.join(workflow.basedir, "schemas", "config.schema.yaml")
try:
    for path in workflow.configfiles:  # duplicate keys (which YAML drops silently), named by file and line
        load_config_file(path)
    PLAN = entmap_config.load_plan(config, SCHEMA)
except ValueError as exc:
    raise WorkflowError(f"entmap: {exc}") from None

MODELS = list(PLAN.models)  # personalized models, "subject/method"
SHARDS = PLAN.shard_names
SEEDS = entmap_config.seeds(config)
GENERATION = entmap_config.generation_settings(config)
REUSE = entmap_config.reuse_settings(config)  # exact reuse of base images (docs/map.md)
# The audit's probe image: one image at the first seed, so the number of seeds is not its concern.
PROBE_SETTINGS = {key: value for key, value in config["generation"].items() if key not in ("seeds", "reuse")}
BASE_MODEL = entmap_config.base_model_id(config)
SCORER = entmap_config.scorer_spec(config)
RUNTIME = {"device": config["device"], "dtype": config["dtype"], "threads": config["torch_threads"]}
SUITE = config["prompts"]["suite"]
VQA = entmap_config.vqa_spec(config)  # the VQA model of prompts.structure: vqa (None otherwise)
ANALYSIS_TABLES = list(vocabulary.ANALYSIS_TABLES)
ANALYSIS_STATS = list(vocabulary.ANALYSIS_STATS)
FIGURE_PNGS = [
    *[f"results/figures/{stem}.png" for stem in ("entanglement_map", "drift_scatter", "category_matrix")],
    *[f"results/figures/grids/{model}.png" for model in MODELS],
]
CLASS_IMAGE_COUNTS = entmap_config.class_image_counts(config)  # class word -> images
PERTURB_SCALES = entmap_config.perturbation_scales(config)  # kv0p05 -> 0.05
CLASS_WORDS = {entmap_config.class_slug(word): word for word in CLASS_IMAGE_COUNTS}
TEA_MODELS = entmap_config.tea_models(config)  # model -> level, token, class_word, references
COLLAPSE_SUBJECTS = entmap_config.collapse_subjects(config)  # TI subjects -> token, class_word
# The report's "Semantic collapse and TEA" section: tables and figures, captions from vocabulary.
TEA_OUTPUTS = [
    *(["results/tables/tea_tradeoff.csv", "results/figures/tea_tradeoff.png"] if TEA_MODELS else []),
    *(["results/tables/collapse.csv", "results/figures/collapse.png"] if COLLAPSE_SUBJECTS else []),
]
# The report's "Prompt geometry and structured faithfulness (SAGE)" section.
SAGE_OUTPUTS = [
    "results/tables/geometry.csv",
    "results/tables/sage_correlations.csv",
    "results/tables/sage_agreement.csv",
    "results/tables/sage_regularizer.csv",
    "results/figures/geometry.png",
]
# The report's "Cross-attention shift" section (docs/attention.md); none when attention is off.
ATTENTION_SPEC = entmap_config.attention_spec(config)
ATTENTION_MODELS = MODELS if ATTENTION_SPEC else []
ATTENTION_TABLES = list(vocabulary.ATTENTION_TABLES)
ATTENTION_REPORT = (
    [
        "results/tables/table3.csv",
        "results/tables/attention_correlation.csv",
        "results/figures/attention_shift.png",
        *[f"results/figures/attention_maps/{model}.png" for model in ATTENTION_MODELS],
    ]
    if ATTENTION_SPEC
    else []
)
ATTENTION_OUTPUTS = (
    [*[f"results/tables/{table}.csv" for table in ATTENTION_TABLES], *ATTENTION_REPORT[2:]] if ATTENTION_SPEC else []
)

# Block attribution (docs/blocks.md): settings, the models measured, those without blocks and why.
BLOCK_SETTINGS = entmap_config.block_attribution_settings(config)
BLOCK_MODELS, BLOCK_UNMEASURED = entmap_config.block_attribution_models(config, MODELS)
BLOCK_OUTPUTS = (
    ["results/tables/block_attribution.csv", "results/figures/block_attribution.png"] if BLOCK_SETTINGS else []
)

# The audit of external adapters (docs/audit.md): only when the config has an `audit:` block.
AUDIT = entmap_config.audit_settings(config) if entmap_config.audit_enabled(config) else {}
AUDIT_ADAPTERS = entmap_config.audit_adapters(config) if AUDIT else {}  # adapter -> checkpoints, final last
AUDIT_ENTRIES = [name for names in AUDIT_ADAPTERS.values() for name in names]
AUDIT_OUTPUTS = [f"results/audit/{name}" for name in vocabulary.AUDIT_FILES] if AUDIT else []
BASE_FAMILY = getattr(entmap_config.base_family(config), "name", None)


wildcard_constraints:
    subject="[a-z0-9_-]+",
    method=vocabulary.METHOD_REGEX,
    shard="[0-9]+",
    class_slug="[a-z0-9-]+",


def base_model_input(wildcards):
    """The tiny base is a workflow output; a pretrained base is loaded by id."""
    return [entmap_config.tiny_base_dir(config)] if config["base"]["kind"] == "tiny" else []


def scorer_input(wildcards):
    return [entmap_config.TINY_SCORER_DIR] if config["scorer"]["kind"] == "tiny" else []


def adapter_inputs(wildcards):
    """What a personalized model is made of: its adapter files, or an external source and audit."""
    folder = f"results/adapters/{wildcards.subject}/{wildcards.method}"
    if wildcards.method == "external":
        return [f"{folder}/meta.json", *external_source_input(wildcards)]
    return [f"{folder}/meta.json", f"{folder}/adapter.safetensors"]


def external_source_input(wildcards):
    """An external adapter's file or folder; nothing for a Hub id (the audit job downloads it)."""
    path = config["external"][wildcards.subject]["path"]
    return [] if entmap_config.is_hub_source(path) else [path]


def reference_dir(wildcards):
    refs = config["subjects"][wildcards.subject]["references"]
    return refs if isinstance(refs, str) else f"results/references/{wildcards.subject}"


def subject_identity(wildcards):
    """Only the keys a subject's adapter depends on (so other edits do not retrain it)."""
    subject = config["subjects"][wildcards.subject]
    return {"category": subject["category"], "class_word": subject["class_word"]}


def subject_categories():
    """Subject category of every personalized model's subject (trained or external)."""
    names = [model.split("/")[0] for model in MODELS]
    return {name: {"category": entmap_config.subject_category(config, name)} for name in names}


def reuse_base_input(wildcards):
    """The base shard a personalized shard may take images from (none when reuse is off)."""
    return [f"results/images/base/{wildcards.shard}.parquet"] if REUSE["enabled"] else []


def shard_prompt_ids(wildcards):
    return list(PLAN.shard(wildcards.shard).prompt_ids)


def class_images_input(wildcards):
    """The prior-preservation class images a subject x method needs (none without prior)."""
    settings = entmap_config.method_settings(config, wildcards.subject, wildcards.method)
    if not settings.get("prior_preservation", False):
        return []
    word = config["subjects"][wildcards.subject]["class_word"]
    return [f"results/class_images/{entmap_config.class_slug(word)}"]


def model_disruption_input(wildcards):
    """Every shard of a model's per-seed disruption (its column of the map)."""
    return expand(f"results/disruption/{wildcards.subject}/{wildcards.method}/{{shard}}.parquet", shard=SHARDS)


def tea_spec(wildcards):
    return TEA_MODELS[f"{wildcards.subject}/{wildcards.method}"]


def tea_tradeoff_input(wildcards):
    """The TEA trade-off table when the run sweeps a variant (its CLIP-I is the identity a variant kept)."""
    swept = [model for model in TEA_MODELS if vocabulary.split_method(model.split("/", 1)[1])[1]]
    return ["results/tables/tea_tradeoff.csv"] if swept else []


def block_disruption_input(wildcards):
    """The model's disruption shards, when its most disrupted prompts are chosen from this run's map."""
    if not isinstance(BLOCK_SETTINGS.get("prompts"), int):
        return []
    return [f"results/disruption/{wildcards.subject}/{wildcards.method}/{shard}.parquet" for shard in SHARDS]


def tea_reference_input(wildcards):
    folder = tea_spec(wildcards)["references"]
    return [folder] if folder else []


def audit_adapter_inputs(wildcards):
    """An audited checkpoint's meta.json and source (the sweep loads it as the map does)."""
    return adapter_inputs(types.SimpleNamespace(subject=wildcards.name, method="external"))


def audit_reference_input(wildcards):
    return [AUDIT["references"]] if AUDIT.get("references") else []


def audit_sweep_prompts(wildcards):
    """(id, text) of the first audit.sweep_prompts prompts outside the checkpoint's own prompt category."""
    own = entmap_config.own_prompt_category(config, wildcards.name)
    unrelated = PLAN.prompts[PLAN.prompts["category"] != own].head(AUDIT["sweep_prompts"])
    return [[pid, text] for pid, text in zip(unrelated["id"], unrelated["text"])]


TOYWORLD_TRAIN = config.get("toyworld_training", "configs/toyworld-train.yaml")


@functools.cache
def toyworld_block():
    """The checked `toyworld:` block, read once however many jobs ask."""
    return load_training_config(TOYWORLD_TRAIN, os.path.join(workflow.basedir, "schemas", "toyworld-train.schema.yaml"))


def toyworld_settings(kind):
    block = toyworld_block()
    return {"settings": block[kind], "device": block["device"], "threads": block["threads"]}


def gpu_mem_mb(base_mb):
    """Memory request that grows with each retry (attempt 1, 2, ...)."""
    return lambda wildcards, attempt: base_mb * attempt


def gpu_runtime(base_minutes):
    return lambda wildcards, attempt: base_minutes * attempt


CONDA_ENV = "../envs/entmap.yaml"


def script_code(script):
    """Hash of the entmap modules a rule's script imports, transitively (entmap.core.code_graph).

    Snakemake's code trigger sees only the script; this parameter makes an edit of any module the
    script reaches rerun the rule's jobs, and an edit of any other module rerun nothing.
    """
    return code_hash(os.path.join(workflow.basedir, "workflow_scripts", f"{script}.py"), ENTMAP_SRC)


def figure_caption(stem):
    """A figure's caption for `snakemake --report` (resources/report/figure.rst shows this param)."""
    return vocabulary.figure_caption(stem)


# Everything a finished run leaves (the inputs of `all`, and what `archive` packs).
RUN_OUTPUTS = [
    "results/maps/cells.parquet",
    "results/maps/e_sem.csv",
    "results/maps/e_per.csv",
    "results/noise_floor.json",
    *[f"results/tables/{table}.csv" for table in ANALYSIS_TABLES],
    *[f"results/stats/{name}.json" for name in ANALYSIS_STATS],
    *[png.replace(".png", ".pdf") for png in FIGURE_PNGS],
    *[path.replace(".png", ".pdf") if path.endswith(".png") else path for path in TEA_OUTPUTS],
    *[path.replace(".png", ".pdf") if path.endswith(".png") else path for path in SAGE_OUTPUTS],
    *[path.replace(".png", ".pdf") if path.endswith(".png") else path for path in ATTENTION_OUTPUTS],
    *[path.replace(".png", ".pdf") if path.endswith(".png") else path for path in BLOCK_OUTPUTS],
    *AUDIT_OUTPUTS,
    "results/report.html",
]
