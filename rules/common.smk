# Shared definitions: config validation, the run plan, input helpers, resources.
import os
import sys

from snakemake.exceptions import WorkflowError

# The rules run the package of this checkout, installed or not (also inside --sdm conda envs).
ENTMAP_SRC = os.path.join(workflow.basedir, "src")
sys.path.insert(0, ENTMAP_SRC)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [ENTMAP_SRC, os.environ.get("PYTHONPATH")]))

from entmap import analyze as entmap_analyze  # noqa: E402
from entmap import config as entmap_config  # noqa: E402

SCHEMA = os.path.join(workflow.basedir, "schemas", "config.schema.yaml")
try:
    PLAN = entmap_config.load_plan(config, SCHEMA)
except ValueError as exc:
    raise WorkflowError(f"entmap: {exc}") from None

MODELS = list(PLAN.models)  # personalized models, "subject/method"
SHARDS = PLAN.shard_names
SEEDS = entmap_config.seeds(config)
GENERATION = entmap_config.generation_settings(config)
BASE_MODEL = entmap_config.base_model_id(config)
SCORER = entmap_config.scorer_spec(config)
RUNTIME = {"device": config["device"], "dtype": config["dtype"], "threads": config["torch_threads"]}
SUITE = config["prompts"]["suite"]
ANALYSIS_TABLES = list(entmap_analyze.TABLES)
ANALYSIS_STATS = list(entmap_analyze.STATS)
FIGURE_CAPTIONS = {
    "results/figures/entanglement_map.png": "Concept Entanglement Map: E_sem per prompt (rows, grouped by "
    "category) and personalized model (columns); dots mark cells above the noise floor tau_sem.",
    "results/figures/drift_scatter.png": "Per-model mean E_sem vs mean E_per; the dashed noise floors split "
    "safe, semantic drift, visual drift and full entanglement.",
    "results/figures/category_matrix.png": "Mean E_sem by subject category (columns) and prompt category (rows).",
    **{
        f"results/figures/grids/{model}.png": f"{model}: its highest-shift prompts, base and personalized image "
        "side by side at the seed with the largest shift, with their CLIP scores."
        for model in MODELS
    },
}
FIGURE_PNGS = list(FIGURE_CAPTIONS)
CLASS_IMAGE_COUNTS = entmap_config.class_image_counts(config)  # class word -> images
PERTURB_SCALES = entmap_config.perturbation_scales(config)  # kv0p05 -> 0.05
CLASS_WORDS = {entmap_config.class_slug(word): word for word in CLASS_IMAGE_COUNTS}
TEA_MODELS = entmap_config.tea_models(config)  # model -> level, token, class_word, references
COLLAPSE_SUBJECTS = entmap_config.collapse_subjects(config)  # TI subjects -> token, class_word
TEA_OUTPUTS = {
    # table or figure -> (title, caption) in the report's "Semantic collapse and TEA" section
    **(
        {
            "results/tables/tea_tradeoff.csv": (
                "TEA trade-off",
                "Per model and setting (alpha, beta; 'none' = unadjusted): mean CLIP-T against the context "
                "(clip_context), the concept (clip_concept) and the full prompt with the class word (clip_full), "
                "CLIP-I against the references (clip_image), and each one's change against the unadjusted model.",
            ),
            "results/figures/tea_tradeoff.png": (
                "TEA trade-off",
                "Change of context alignment (S_T^p) and identity (CLIP-I) against the unadjusted model as "
                "alpha grows, one panel per model, one line style per beta.",
            ),
        }
        if TEA_MODELS
        else {}
    ),
    **(
        {
            "results/tables/collapse.csv": (
                "Semantic collapse over training",
                "Per Textual Inversion subject and kept step: ||V*||, its percentile among the vocabulary's "
                "norms, ||V*||/||c||, cos(V*, c), and the distances between the context prompts with V* and "
                "with c (pooled EOS output): mean pairwise, Hausdorff, Mahalanobis, KL; intra-set spreads.",
            ),
            "results/figures/collapse.png": (
                "Semantic collapse over training",
                "Each collapse diagnostic over Textual Inversion training steps, one line per subject.",
            ),
        }
        if COLLAPSE_SUBJECTS
        else {}
    ),
}


wildcard_constraints:
    subject="[a-z0-9_-]+",
    method="ti|lora|cd|external|perturb",
    shard="[0-9]+",
    class_slug="[a-z0-9-]+",


def base_model_input(wildcards):
    """The tiny base is a workflow output; a pretrained base is loaded by id."""
    return [entmap_config.TINY_BASE_DIR] if config["base"]["kind"] == "tiny" else []


def scorer_input(wildcards):
    return [entmap_config.TINY_SCORER_DIR] if config["scorer"]["kind"] == "tiny" else []


def adapter_inputs(wildcards):
    """What a personalized model is made of: its adapter files, or an external source and audit."""
    folder = f"results/adapters/{wildcards.subject}/{wildcards.method}"
    if wildcards.method == "external":
        return [f"{folder}/meta.json", config["external"][wildcards.subject]["path"]]
    return [f"{folder}/meta.json", f"{folder}/adapter.safetensors"]


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


def shard_prompt_ids(wildcards):
    return list(PLAN.shard(wildcards.shard).prompt_ids)


def gpu_mem_mb(base_mb):
    """Memory request that grows with each retry (attempt 1, 2, ...)."""
    return lambda wildcards, attempt: base_mb * attempt


def gpu_runtime(base_minutes):
    return lambda wildcards, attempt: base_minutes * attempt


CONDA_ENV = "../envs/entmap.yaml"

# The package modules each stage runs; their hash is a parameter of the stage's rules.
STAGE_SOURCES = {
    "models": ["tiny.py"],
    "references": ["references.py", "toyworld/subjects.py", "toyworld/world.py"],
    "train": ["train.py", "pipeline.py", "methods/*.py"],
    "external": ["external.py", "checksums.py", "pipeline.py", "methods/custom_diffusion.py"],
    "generate": ["generate.py", "pipeline.py", "images.py", "external.py", "methods/custom_diffusion.py"],
    "score": ["score.py", "metrics.py"],
    "disrupt": ["disrupt.py", "metrics.py", "images.py"],
    "noise_floor": ["noise_floor.py", "metrics.py", "images.py"],
    "merge": ["merge.py", "metrics.py"],
    "analyze": ["analyze.py", "aggregate.py", "stats.py"],
    "figures": ["figures.py"],
    "grids": ["grids.py", "figures.py", "images.py"],
    "report": ["report.py", "report_template.html"],
    "archive": ["archive.py", "checksums.py"],
    "tea": ["tea.py", "tea_sweep.py", "generate.py", "pipeline.py", "images.py", "external.py", "methods/*.py"],
    "tea_score": ["tea_sweep.py", "score.py", "metrics.py", "references.py"],
    "collapse": ["collapse.py", "collapse_trajectory.py", "tea.py"],
    "toyworld_train": [
        "toyworld/train.py",
        "toyworld/training_config.py",
        "toyworld/world.py",
        "methods/common.py",
        "tiny.py",
        "runtime.py",
    ],
    "toyworld_eval": ["toyworld/evaluate.py", "toyworld/world.py", "generate.py", "pipeline.py", "score.py"],
    "toyworld_release": ["toyworld/card.py", "toyworld/evaluate.py"],
}
CODE = {stage: entmap_config.source_hash(*files) for stage, files in STAGE_SOURCES.items()}


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
    "results/report.html",
]
