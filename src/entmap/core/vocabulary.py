"""The names entmap's stages share: methods, subject categories, analysis outputs, figures.

One home for every list a stage, a rule, the schema or a figure needs; the config schema's enums
are checked against these by the test suite. A figure's caption lives here too, so entmap's
report and Snakemake's ``--report`` (``resources/report/*.rst``, written from these) say the same.
"""

from __future__ import annotations

#: Methods the workflow trains, in the order tables and figures show them.
TRAINED_METHODS: tuple[str, ...] = ("ti", "lora", "cd")
#: Every method a personalized model of the map can have: trained, audited, or the planted control.
MODEL_METHODS: tuple[str, ...] = (*TRAINED_METHODS, "external", "perturb")
#: Methods a TEA sweep can cover.
TEA_METHODS: tuple[str, ...] = (*TRAINED_METHODS, "external")
#: The TEA sweep's setting name of the model as trained (no adjustment).
UNADJUSTED = "none"
#: Kinds of adapter file an external entry can declare.
EXTERNAL_KINDS: tuple[str, ...] = ("lora", "ti", "cd", "checkpoint")
#: A variant of a trained method: the method re-trained with some settings changed (the config's
#: ``variants`` block), written ``<method>+<variant>`` (e.g. ``lora+sage``) and mapped beside it.
VARIANT_SEPARATOR = "+"
#: The variant part of a method name as a regular expression (Snakemake's wildcard constraints).
VARIANT_REGEX = r"(?:\+[a-z][a-z0-9_]*)?"
#: Every method of a model of the map as a regular expression.
METHOD_REGEX = f"(?:(?:{'|'.join(TRAINED_METHODS)}){VARIANT_REGEX}|external|perturb)"
#: Human-readable method names.
METHOD_NAMES: dict[str, str] = {
    "ti": "Textual Inversion",
    "lora": "DreamBooth-LoRA",
    "cd": "Custom Diffusion",
    "external": "external adapter",
    "perturb": "planted-effect control",
}

#: The paper's subject categories (the hypotheses compare them).
SUBJECT_CATEGORIES: tuple[str, ...] = ("face", "object", "style")
#: Subject category of the planted-effect controls (no prompt category of their own).
CONTROL_CATEGORY = "control"

#: Populations of the analysis: the study's trained models set E's bounds, the paper's tables and
#: the hypotheses; external adapters and planted-effect controls are reported beside them.
#: Variants of a trained method (``lora+sage``) are compared with their method, never pooled with it.
STUDY, EXTERNAL, CONTROL, VARIANT = "study", "external", "control", "variant"
POPULATIONS: tuple[str, ...] = (STUDY, EXTERNAL, CONTROL, VARIANT)


def split_method(method: str) -> tuple[str, str | None]:
    """(method, variant) of a model's method: ``"lora+sage"`` -> ``("lora", "sage")``, ``"ti"`` -> ``("ti", None)``."""
    name, _, variant = method.partition(VARIANT_SEPARATOR)
    return name, variant or None


def method_name(method: str) -> str:
    """A method's name in words: ``"lora+sage"`` -> "DreamBooth-LoRA + sage"."""
    name, variant = split_method(method)
    words = METHOD_NAMES.get(name, name)
    return f"{words} + {variant}" if variant else words


def population(method: str, include_external: bool = False) -> str:
    """The population of a model of the map by its method (``analysis.include_external`` moves
    external adapters into the study; a variant of a trained method is its own population)."""
    if split_method(method)[1] is not None:
        return VARIANT
    if method in TRAINED_METHODS or (method == "external" and include_external):
        return STUDY
    return EXTERNAL if method == "external" else CONTROL


#: The audit's outputs: results/audit/{name} (docs/audit.md).
AUDIT_FILES: tuple[str, ...] = ("strength.csv", "checkpoints.csv", "audit.json", "model_card.md")
#: Analysis outputs: results/tables/{name}.csv and results/stats/{name}.json.
ANALYSIS_TABLES: tuple[str, ...] = ("per_model", "table1", "table2", "category_matrix", "frechet", "element_damage")
ANALYSIS_STATS: tuple[str, ...] = ("hypotheses", "normalization", "mixed_model", "significance", "paired_shift")
#: The cross-attention stage's tables (results/tables/{name}.csv); the report shows the first two.
ATTENTION_TABLES: tuple[str, ...] = (
    "table3",
    "attention_correlation",
    "attention_overall",
    "attention_by_layer",
    "attention_by_step",
    "attention_layer_step",
    "attention_by_token",
)

#: Figure stem -> (title, caption); the per-model image grids ``grids/{model}`` share "grid".
FIGURES: dict[str, tuple[str, str]] = {
    "entanglement_map": (
        "Concept Entanglement Map",
        "E_sem per prompt (rows, grouped by category) and personalized model (columns); dots mark cells "
        "above the noise floor tau_sem; hatched cells were reused from the base (the model renders the prompt "
        "exactly as the base does, so the cell is 0 by proof).",
    ),
    "drift_scatter": (
        "Semantic vs perceptual drift",
        "Per-model mean E_sem against mean E_per; the dashed noise floors split safe, semantic drift, "
        "visual drift and full entanglement.",
    ),
    "category_matrix": (
        "Subject category x prompt category",
        "Mean E_sem of the study's models by subject category (columns) and prompt category (rows).",
    ),
    "grid": (
        "Image grids",
        "The model's highest-shift prompts: base and personalized image side by side at the seed with the "
        "largest shift, with their CLIP scores.",
    ),
    "tea_tradeoff": (
        "TEA trade-off",
        "Change of context alignment (S_T^p) and identity (CLIP-I) against the unadjusted model as alpha "
        "grows, one panel per model, one line style per beta.",
    ),
    "collapse": (
        "Semantic collapse over training",
        "Each collapse diagnostic over Textual Inversion training steps, one line per subject.",
    ),
    "geometry": (
        "Prompt-embedding geometry",
        "Per model, against the base over the evaluated prompts: spread ratio (< 1: the prompts contract) and "
        "local-structure distortion 1 - r, at the text encoders' outputs and at the cross-attention keys and "
        "values (means over layers).",
    ),
    "attention_shift": (
        "Cross-attention shift by layer and step",
        "Per model: mean |Δ A| = |A_model - A_base| of the text attention probabilities (image queries x text "
        "positions), over its chosen prompts, seeds, image queries and all text positions, by layer (rows, input to "
        "output) and denoising step (columns).",
    ),
    "attention_maps": (
        "Attention heat maps",
        "The model's most shifted prompt at the first seed: each word's attention over the image in the base and "
        "the personalized model, averaged over the kept layers and steps, and their difference (red: the "
        "personalized model attends more).",
    ),
    "block_attribution": (
        "Block attribution",
        "Per model, the share of its E_sem and E_per (over the subset of prompts and seeds) that switching "
        "each block of its adapter off removes: (E(full) - E(block off)) / E(full); 1 = the block carries it all.",
    ),
}

#: Table stem -> (title, caption) of the tables the report shows.
TABLES: dict[str, tuple[str, str]] = {
    "per_model": (
        "Per-model summary",
        "Every model with its population (study, external, control, variant): mean E_sem and E_per over all prompts, "
        "E over non-target prompts against the study's bounds, share of cells above the noise floor, "
        "BH-flagged cells; 95% bootstrap intervals.",
    ),
    "table1": (
        "Table 1: method x subject category",
        "The study's models (trained methods): mean non-target E_sem and E over subjects, std of E over "
        "subjects, 95% bootstrap intervals (prompts and seeds resampled).",
    ),
    "table2": (
        "Table 2: most fragile and most robust prompts",
        "Mean E_sem over the study's models, 95% intervals resampling seeds.",
    ),
    "category_matrix": (
        "Subject category x prompt category",
        "Mean E_sem over the study's models with 95% bootstrap intervals.",
    ),
    "frechet": ("Frechet distance per prompt category", "Between base and personalized CLIP image embeddings."),
    "element_damage": (
        "Which elements each model damaged",
        "E_struct element by element, on non-target prompts that require it: the share of seed-matched images "
        "that show the element (base, model), the change, its 95% bootstrap interval (prompts resampled) and "
        "damaged = the interval lies below 0. Empty without structured faithfulness (prompts.structure).",
    ),
    "tea_tradeoff": (
        "TEA trade-off",
        "Per model and setting (alpha, beta; 'none' = unadjusted): mean CLIP-T against the context "
        "(clip_context), the concept (clip_concept) and the full prompt with the class word (clip_full), "
        "CLIP-I against the references (clip_image), and each one's change against the unadjusted model.",
    ),
    "geometry": (
        "Prompt-embedding geometry",
        "Per model and level (text: the text encoders' outputs; kv: the text's keys and values in cross- or "
        "joint attention): layers, mean spread ratio, contraction 1 - ratio, mean local-structure distortion.",
    ),
    "sage_correlations": (
        "Geometry change against disruption",
        "Across models: Spearman rank correlation of each geometry change with the mean E_sem, E_per and "
        "E_struct, 95% intervals resampling models (NaN: fewer than 3 models or no variation).",
    ),
    "sage_agreement": (
        "CLIP score against structured faithfulness",
        "Cells scored structurally: the CLIP score moved (E_sem above tau_sem) and/or E_struct moved (above "
        "tau_struct, its own noise floor from base seed pairs); "
        "struct_missed_by_clip = share of E_struct changes the CLIP score misses.",
    ),
    "sage_regularizer": (
        "A method with and without the geometry regularizer",
        "Each variant (e.g. lora+sage) against its method, per subject: mean E_sem, E_per, E_struct over the "
        "subject's non-target prompts and delta = variant - method (< 0: less disruption) with a 95% interval "
        "resampling the paired prompts; mean distortion and spread ratio per geometry level; identity_clip_image: "
        "CLIP-I of the unadjusted model's TEA-sweep images against the references.",
    ),
    "table3": (
        "Table 3: cross-attention shift on high- and low-disruption prompts",
        "Per model, its most (high) and least (low) disrupted non-target prompts by its map cells: E_sem and the mean "
        "cross-attention shift |Δ A| over seeds, layers, steps, image queries and all text positions "
        "(attention_shift) or the prompt's words (attention_shift_word).",
    ),
    "attention_correlation": (
        "Cross-attention shift against E_sem",
        "Across (prompt, model) cells: Spearman's rho and Pearson's r of the shift (all text positions, or words) "
        "with E_sem, 95% intervals resampling cells (NaN: fewer than 3 cells or no variation).",
    ),
    "block_attribution": (
        "Block attribution",
        "Per model and block of its adapter (adapted_modules: modules it changes there), over its most disrupted "
        "prompts and the first seeds: E(full) of the personalized model against the seed-matched base, "
        "contribution = E(full) - E(block off) with a 95% interval resampling prompts and seeds, share = "
        "contribution / E(full), E(only: the block alone on); models without blocks (Textual Inversion, full "
        "checkpoints) with the reason.",
    ),
    "collapse": (
        "Semantic collapse over training",
        "Per Textual Inversion subject and kept step: ||V*||, its percentile among the vocabulary's norms, "
        "||V*||/||c||, cos(V*, c), and the distances between the context prompts with V* and with c (pooled "
        "EOS output): mean pairwise, Hausdorff, Mahalanobis, KL; intra-set spreads.",
    ),
}


def figure_caption(stem: str, model: str | None = None) -> str:
    """The caption of figure ``stem`` (for a grid, of ``model``'s grid)."""
    caption = FIGURES[stem][1]
    return f"{model}: {caption[0].lower()}{caption[1:]}" if model else caption


def output_caption(path: str) -> tuple[str, str]:
    """(title, caption) of a figure (``results/figures/...png``) or table (``results/tables/...csv``)."""
    parts = path.split("/")
    stem = parts[-1].rsplit(".", 1)[0]
    for folder, name in (("grids", "grid"), ("attention_maps", "attention_maps")):
        if folder in parts:
            model = "/".join(parts[parts.index(folder) + 1 :]).rsplit(".", 1)[0]
            return f"{FIGURES[name][0]}: {model}", figure_caption(name, model)
    if path.endswith(".csv"):
        return TABLES[stem]
    return FIGURES[stem][0], figure_caption(stem)
