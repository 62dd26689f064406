"""A single self-contained HTML report of a run: figures embedded, tables, hypotheses in words.

Everything is read from the run's outputs (tables, stats, figures, noise floor, images) and
inlined, so the file opens offline and can be mailed or archived on its own. It is interactive
without a server: the map is a heat map whose cells show their images when clicked
(:mod:`entmap.present.map_explorer`), tables sort and filter (:mod:`entmap.present.datatables`),
and an audit's verdicts come first when the run has one (:mod:`entmap.present.audit_verdicts`).
The JavaScript is inlined from the libraries' offline bundles; nothing is fetched.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import importlib.resources
import json
import os
import platform
import re
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
import pandas as pd
import yaml

from entmap.core.atomic import write_text
from entmap.core.parquet_schemas import CELLS, DISRUPTION, IMAGES, read_table, read_tables
from entmap.core.png_parameters import embedding_short_hash, lora_short_hash
from entmap.core.provenance import __version__, git_commit, package_versions
from entmap.core.vocabulary import ANALYSIS_TABLES, TABLES, output_caption
from entmap.models.adapter_meta import read_meta
from entmap.present.audit_verdicts import audit_section
from entmap.present.datatables import datatables_bundle, sortable_table
from entmap.present.map_explorer import (
    DEFAULT_IMAGE_CELLS,
    choose_image_cells,
    explorer_data,
    explorer_spec,
    script_json,
    vega_bundle,
)

TEMPLATE_FILE = "report_template.html"


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def describe_test(result: dict[str, Any], x_label: str, y_label: str) -> str:
    """A one-sided Mann-Whitney result in words."""
    if not result.get("testable"):
        reason = result.get("reason", "no data")
        return f"not testable ({reason}; n = {result.get('n_x')} vs {result.get('n_y')})"
    verdict = "supported" if result["supported"] else "not supported"
    return (
        f"{verdict}: mean E {x_label} {result['mean_x']:.4g} vs {y_label} {result['mean_y']:.4g}, one-sided "
        f"Mann-Whitney U = {result['U']:.1f}, p = {result['p']:.3g}, n = {result['n_x']} vs {result['n_y']}, "
        f"rank-biserial r = {result['rank_biserial']:.2f}"
    )


def hypotheses_in_words(data: dict[str, Any]) -> list[dict[str, str]]:
    """H1-H3 as sentences, with the numbers behind each verdict."""
    out = []
    for name, x_label, y_label in (("H1", "on people prompts", "on other prompts"), ("H2", "style", "face")):
        result = data[name]
        out.append(
            {
                "name": name,
                "text": f"{result['hypothesis']} — {describe_test(result, x_label, y_label)}.",
                "css": "supported" if result.get("supported") else "rejected",
            }
        )
    h3 = data["H3"]
    means = ", ".join(f"{k} {_fmt(v)}" for k, v in h3["means"].items())
    text = (
        f"{h3['hypothesis']} — mean E per subject category: {means}; ordering "
        f"{'holds' if h3['ordering_holds'] else 'does not hold'}; objects vs faces: "
        f"{describe_test(h3['object_vs_face'], 'object', 'face')}; styles vs objects: "
        f"{describe_test(h3['style_vs_object'], 'style', 'object')}."
    )
    out.append({"name": "H3", "text": text, "css": "supported" if h3.get("supported") else "rejected"})
    return out


def paired_shift_in_words(data: dict[str, Any]) -> str:
    """Which models' CLIP scores differ from the base model's across prompts (paired tests)."""
    significant = data["significant_models"]
    by_model = data["by_model"]
    text = (
        f"Paired across prompts (personalized vs base CLIP score, t-test, BH over models at {data['alpha']}), "
        f"{len(significant)} of {len(by_model)} models shift significantly"
    )
    if not significant:
        return text + "."
    parts = [
        f"{m} (mean signed shift {by_model[m]['mean_signed_shift']:+.4f}, t = {by_model[m]['t']:.2f}, "
        f"q = {by_model[m]['q_t']:.2g}, n = {by_model[m]['n_prompts']})"
        for m in significant
    ]
    return text + ": " + "; ".join(parts) + "."


def _section_item(path: str) -> dict[str, Any]:
    """A figure (inlined PNG) or a table (HTML) of the collapse and TEA section, with its caption."""

    title, caption = output_caption(path)
    if path.endswith(".png"):
        return {"title": title, "caption": caption, "data": base64.b64encode(Path(path).read_bytes()).decode()}
    html_table = pd.read_csv(path).to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0, na_rep="n/a")
    return {"title": title, "caption": caption, "html": markupsafe.Markup(html_table)}


def populations_in_words(per_model: pd.DataFrame, bounds: dict[str, Any]) -> str:
    """Which models each number is over (docs/analysis.md, "Populations")."""
    counts = per_model["population"].value_counts() if "population" in per_model else pd.Series(dtype=int)
    beside = ", ".join(f"{counts[name]} {name}" for name in ("external", "control", "variant") if counts.get(name, 0))
    text = (
        f"Populations: E's min-max bounds are over {bounds['scope']}; Table 1, Table 2, the category matrix "
        f"and H1-H3 are over the study's {int(counts.get('study', 0))} models"
    )
    if beside:
        text += f"; {beside} models are reported beside them in the per-model table, against the same bounds"
    return text + ". Significance is corrected (BH) within each population."


def tea_in_words(table: pd.DataFrame) -> str:
    """What the strongest swept setting (largest alpha, then beta) did, averaged over models."""
    adjusted = table[table["setting"] != "none"]
    if adjusted.empty:
        return "No TEA setting was swept."
    alpha = adjusted["alpha"].max()
    beta = adjusted.loc[adjusted["alpha"] == alpha, "beta"].max()  # NaN: the norm_mix variant has no beta
    rows = adjusted[(adjusted["alpha"] == alpha) & ((adjusted["beta"] == beta) | pd.isna(beta))]
    gained = int((rows["delta_clip_context"] > 0).sum())
    identity = rows["delta_clip_image"].dropna()
    setting = f"alpha = {alpha:g}" + ("" if pd.isna(beta) else f", beta = {beta:g}")
    text = (
        f"At {setting}, TEA changed CLIP-T against the context by "
        f"{rows['delta_clip_context'].mean():+.4f} on average over {len(rows)} models ({gained} gained)"
    )
    if len(identity):
        text += (
            f", and CLIP-I against the references by {identity.mean():+.4f} ({len(identity)} models with references)"
        )
    return text + ", relative to the unadjusted models on the same prompts and seeds."


def collapse_in_words(table: pd.DataFrame) -> str:
    """How far V* drifted between the first and last kept step, per subject."""
    parts = []
    for subject, rows in table.sort_values("step").groupby("subject", sort=True):
        first, last = rows.iloc[0], rows.iloc[-1]
        parts.append(
            f"{subject}: ||V*||/||c|| {first['norm_ratio']:.3g} -> {last['norm_ratio']:.3g} "
            f"(percentile {first['norm_percentile']:.3g} -> {last['norm_percentile']:.3g}), "
            f"cos(V*, c) {first['cos_anchor']:.3g} -> {last['cos_anchor']:.3g} over {int(last['step'])} steps"
        )
    if not parts:
        return ""
    definitions = sorted(set(table["distances"])) if "distances" in table else []
    named = {"paper": "the TEA paper's", "entmap": "entmap's set-mean"}
    distances = (
        f" Mahalanobis and KL use {', '.join(named.get(d, d) for d in definitions)} definition "
        "(docs/tea-and-collapse.md)."
        if definitions
        else ""
    )
    return "Textual Inversion drift, first to last kept step. " + "; ".join(parts) + "." + distances


def collapse_tea_in_words(paths: list[str]) -> list[str]:
    """Plain-language summaries of the collapse and TEA tables present in the section."""
    lines = []
    for path in paths:
        if path.endswith("tea_tradeoff.csv"):
            lines.append(tea_in_words(pd.read_csv(path)))
        elif path.endswith("collapse.csv"):
            lines.append(collapse_in_words(pd.read_csv(path)))
    return [line for line in lines if line]


def sage_in_words(paths: list[str]) -> list[str]:
    """What this run says about each of SAGE's claims, in numbers (docs/geometry.md)."""
    tables = {Path(p).stem: pd.read_csv(p) for p in paths if p.endswith(".csv")}
    lines = []
    summary = tables.get("geometry")
    if summary is not None and len(summary):
        parts = []
        for level, rows in summary.groupby("level", sort=False):
            contracted = int((rows["spread_ratio"] < 1).sum())
            parts.append(
                f"{level} level: spread ratio {rows['spread_ratio'].min():.4g} to {rows['spread_ratio'].max():.4g} "
                f"({contracted} of {len(rows)} models contract), distortion up to {rows['distortion'].max():.3g}"
            )
        lines.append("Prompt geometry against the base, " + "; ".join(parts) + ".")
    correlations = tables.get("sage_correlations")
    if correlations is not None and len(correlations):
        chosen = correlations[(correlations["geometry"] == "distortion") & (correlations["disruption"] == "e_sem")]
        parts = [
            f"{row.level} distortion vs E_sem: rho = {row.spearman_rho:.3g} "
            f"[{row.ci_low:.3g}, {row.ci_high:.3g}] over {row.n_models} models"
            if pd.notna(row.spearman_rho)
            else f"{row.level} distortion vs E_sem: no correlation defined ({row.n_models} models, or no variation)"
            for row in chosen.itertuples()
        ]
        lines.append("Claim 2 (geometry change goes with damage): " + "; ".join(parts) + ".")
    agreement = tables.get("sage_agreement")
    overall = agreement[agreement["method"] == "all"] if agreement is not None else pd.DataFrame()
    if len(overall) and int(overall.iloc[0]["cells"]):
        row = overall.iloc[0]
        moved = int(row["both"] + row["only_struct"])
        missed = f" ({row['struct_missed_by_clip']:.0%})" if moved else ""
        lines.append(
            f"Claim 1 (coarse scores miss fine damage): of {int(row['cells'])} structurally scored cells, E_struct "
            f"rose above its noise floor (tau_struct) in {moved}; the CLIP score stayed within its noise floor in "
            f"{int(row['only_struct'])} of them{missed}, and moved without E_struct in {int(row['only_clip'])}."
        )
    else:
        lines.append(
            "Claim 1 (coarse scores miss fine damage): no cell is scored structurally in this run "
            "(set prompts.structure)."
        )
    lines.append(regularizer_in_words(tables.get("sage_regularizer")))
    return lines


def regularizer_in_words(table: pd.DataFrame | None) -> str:
    """Claim 3 in numbers: each variant against its method, over the subjects that ran both."""
    if table is None or not len(table):
        return (
            "Claim 3 (a geometry-preserving regularizer restores fidelity): no method runs with and without it in "
            "this run (add a variant such as lora+sage to a subject's methods)."
        )
    parts = []
    for (method, variant), rows in table.groupby(["method", "variant"], sort=True):
        subjects = sorted(rows["subject"].unique())
        words = []
        for quantity in ("e_sem", "e_struct", "e_per"):
            chosen = rows[rows["quantity"] == quantity].dropna(subset=["delta"])
            if len(chosen):
                lower = int((chosen["ci_high"] < 0).sum())
                higher = int((chosen["ci_low"] > 0).sum())
                words.append(
                    f"mean {quantity.replace('e_', 'E_')} {chosen['method_value'].mean():.3g} -> "
                    f"{chosen['variant_value'].mean():.3g} (lower in {lower}, higher in {higher} of {len(chosen)} "
                    "subjects at 95%)"
                )
        for quantity, label in (("kv_distortion", "k/v distortion"), ("text_distortion", "text-encoder distortion")):
            chosen = rows[rows["quantity"] == quantity].dropna(subset=["method_value"])
            if len(chosen):
                words.append(f"{label} {chosen['method_value'].mean():.3g} -> {chosen['variant_value'].mean():.3g}")
        chosen = rows[rows["quantity"] == "identity_clip_image"].dropna(subset=["method_value"])
        if len(chosen):
            words.append(
                f"identity kept (CLIP-I to the references) {chosen['method_value'].mean():.3g} -> "
                f"{chosen['variant_value'].mean():.3g}"
            )
        count = f"{len(subjects)} subject{'' if len(subjects) == 1 else 's'}"
        parts.append(f"{method}+{variant} against {method} over {count}: " + "; ".join(words))
    return "Claim 3 (a geometry-preserving regularizer restores fidelity): " + ". ".join(parts) + "."


def element_damage_in_words(table: pd.DataFrame) -> list[str]:
    """One sentence per model of the element_damage table: the elements it damaged (accuracies,
    change and interval), and those where no damage was detected."""
    lines = []
    for model, group in table.groupby("model", sort=True):
        damaged = group[group["damaged"]].sort_values("change")
        kept = group[~group["damaged"]]["element"].tolist()
        if len(damaged):
            parts = [
                f"{r.element} ({r.base_accuracy:.2f} → {r.model_accuracy:.2f}, change {r.change:+.2f}, "
                f"95% CI [{r.ci_low:+.2f}, {r.ci_high:+.2f}])"
                for r in damaged.itertuples()
            ]
            text = f"{model} damaged " + "; ".join(parts)
            text += f"; no damage detected in {', '.join(kept)}." if kept else "."
        else:
            text = f"{model} damaged no element (checked: {', '.join(kept)})."
        lines.append(text)
    return lines


def reuse_in_words(cells: pd.DataFrame) -> str:
    """How many cells of the map were reused from the base (``reused``: every seed's image copied), per model."""
    reused = cells[cells["reused"]]
    text = f"{len(reused)} of {len(cells)} cells reused from the base"
    if not len(reused):
        return text + " (generation.reuse is off, or no model renders any prompt exactly as the base does)."
    counts = reused.groupby("model", sort=False).size()
    per_model = ", ".join(f"{model} {count}" for model, count in counts.items())
    return (
        f"{text} ({per_model}): each of these models renders the prompt exactly as the base does (denoiser, VAE "
        "and scheduler bitwise equal to the base's, and the prompt's conditioning bitwise equal), so its images "
        "are the base's images, copied, and E_sem and E_per are 0 by proof, not measured. A sample of such "
        "prompts per model and shard was rendered anyway and matched the base byte for byte."
    )


def attention_in_words(paths: list[str]) -> list[str]:
    """What this run's cross-attention tables say, in numbers (docs/attention.md)."""
    tables = {Path(p).stem: pd.read_csv(p) for p in paths if p.endswith(".csv")}
    lines = []
    table = tables.get("table3")
    if table is not None and len(table):
        table = table.assign(model=table["subject"] + "/" + table["method"])
        unchanged = sorted(m for m, rows in table.groupby("model") if (rows["attention_shift"] == 0).all())
        study = table[table["population"] == "study"]
        means = study.pivot_table(index="model", columns="kind", values="attention_shift", aggfunc="mean")
        if {"high", "low"} <= set(means.columns) and len(means.dropna()):
            paired = means[["high", "low"]].dropna()
            lines.append(
                f"Cross-attention shift |Δ A| of the study's {len(paired)} models: {paired['high'].mean():.4g} on "
                f"their most disrupted prompts against {paired['low'].mean():.4g} on their least disrupted ones "
                f"(higher on the most disrupted for {int((paired['high'] > paired['low']).sum())} of {len(paired)} "
                "models)."
            )
        if unchanged:
            lines.append(
                f"Exactly zero on every prompt (the attention of the base, to the last bit): {', '.join(unchanged)}."
            )
    correlations = tables.get("attention_correlation")
    if correlations is not None and len(correlations):
        chosen = correlations[correlations["tokens"] == "all"]
        parts = [
            f"{row.statistic} {row.value:.3g} [{row.ci_low:.3g}, {row.ci_high:.3g}] over {row.n_cells} cells of "
            f"{'the study' if row.models == 'study' else 'every model'}"
            if pd.notna(row.value)
            else f"{row.statistic}: not defined over {row.n_cells} cells of {row.models} (too few or no variation)"
            for row in chosen.itertuples()
        ]
        lines.append("Shift against E_sem across (prompt, model) cells: " + "; ".join(parts) + ".")
    lines.append(
        "By layer, step, text position and token class: tables/attention_overall.csv, attention_by_layer.csv, "
        "attention_by_step.csv, attention_by_token.csv."
    )
    return lines


def blocks_in_words(paths: list[str], settings: dict[str, Any] | None = None) -> list[str]:
    """Per measured model, the block carrying the largest share of E_sem and of E_per; the models without blocks.

    ``settings``: the config's ``block_attribution`` block, which says how the prompts were chosen.
    """
    tables = [pd.read_csv(p) for p in paths if p.endswith(".csv")]
    if not tables:
        return []
    table = tables[0]
    table["block"] = table["block"].fillna("")
    measured, skipped = table[table["block"] != ""], table[table["block"] == ""]
    lines = []
    if len(measured):
        first = measured.iloc[0]
        chosen = (settings or {}).get("prompts", int(first["n_prompts"]))
        prompts = (
            f"the {len(chosen)} configured prompts"
            if isinstance(chosen, list)
            else f"its {chosen} most disrupted prompts ({(settings or {}).get('rank_by', 'e_sem')})"
        )
        lines.append(
            f"Each model's adapter switched off one block at a time, on {prompts} and {int(first['n_seeds'])} seeds; "
            "a block's share is (E(full) - E(block off)) / E(full)."
        )
    parts = []
    for model, rows in measured.groupby("model", sort=False):
        words = []
        for q, label in (("sem", "E_sem"), ("per", "E_per")):
            total = rows[f"e_full_{q}"].iloc[0]
            if not rows[f"share_{q}"].notna().any():
                words.append(f"{label} {total:.3g} (nothing to attribute)")
                continue
            top = rows.loc[rows[f"share_{q}"].idxmax()]
            words.append(
                f"{label} {total:.3g}, most in {top['block']} ({top[f'share_{q}']:.0%}; shares sum to "
                f"{rows[f'share_{q}'].sum():.2f})"
            )
        parts.append(f"{model}: " + ", ".join(words))
    if parts:
        lines.append("; ".join(parts) + ".")
    for note, rows in skipped.groupby("note", sort=False):
        lines.append(f"Not measured ({', '.join(rows['model'])}): {note}.")
    return lines


def model_parameters(meta_path: str | os.PathLike[str]) -> dict[str, Any]:
    """What an exported PNG of a model says about it (:func:`entmap.map_explorer.exported_png`): the
    A1111 hash of its LoRA or embedding file when the adapter is one and the file is here."""
    meta_path = Path(meta_path)
    model = f"{meta_path.parent.parent.name}/{meta_path.parent.name}"
    meta = read_meta(meta_path.parent)
    if meta["method"] == "external":
        kind, path = meta.get("kind"), Path(meta.get("source", ""))
    else:
        kind, path = meta.get("format", meta["method"]), meta_path.parent / "adapter.safetensors"
    name = model.replace("/", "-")
    info: dict[str, Any] = {"extra": {"Entmap model": model}}
    if path.is_file() and kind == "lora":
        info["lora_hashes"] = {name: lora_short_hash(path)}
    elif path.is_file() and kind == "ti":
        info["ti_hashes"] = {name: embedding_short_hash(path)}
    return info


def map_explorer(
    cells: pd.DataFrame,
    image_paths: list[str],
    disruption_paths: list[str],
    adapter_meta: list[str],
    generation: dict[str, Any],
    image_cells: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The interactive map's spec (JSON for the page) and, in words, which cells carry images."""
    settings = {**DEFAULT_IMAGE_CELLS, **(image_cells or {})}
    chosen = choose_image_cells(cells, settings["most_disrupted"], settings["sample"], settings["seed"])
    infos = {}
    for path in adapter_meta:
        info = model_parameters(path)
        infos[info["extra"]["Entmap model"]] = info
    base = str(generation.get("base_model", "base")).rstrip("/")
    export = {**generation, "model_name": Path(base).name or base}
    prompts = set(chosen["prompt_id"])
    frames = [frame[frame["prompt_id"].isin(prompts)] for frame in (read_table(p, IMAGES) for p in image_paths)]
    data = explorer_data(
        cells,
        chosen,
        pd.concat(frames, ignore_index=True) if frames else read_tables([], IMAGES),  # one shard in memory at a time
        read_tables(disruption_paths, DISRUPTION),
        export,
        lambda model: {"name": export["model_name"], **infos.get(model, {"extra": {"Entmap model": model}})},
    )
    lines = [
        f"Images are in the page for {len(chosen)} of {len(cells)} cells: per model its "
        f"{settings['most_disrupted']} most disrupted prompts by E_sem and {settings['sample']} others drawn "
        f"at random (seed {settings['seed']}), framed in the map (report.image_cells in the config)."
    ]
    for model, rows in chosen.groupby("model", sort=True):
        parts = [f"{why}: {', '.join(group['prompt_id'])}" for why, group in rows.groupby("why", sort=False)]
        lines.append(f"{model}: " + "; ".join(parts) + ".")
    return {"spec": script_json(explorer_spec(data)), "lines": lines}


def external_references(page: str) -> list[str]:
    """Every URL the page would load from a network: src/href of an element other than a plain
    link (<a>), CSS url(...) and @import. The SVG/XML namespaces are names, not loads."""
    found = []
    for tag, attribute in re.findall(r"<([a-zA-Z]+)\b[^>]*?\b(?:src|href)\s*=\s*[\"']?(https?:[^\"' >]*)", page):
        if tag.lower() != "a":
            found.append(attribute)
    found += re.findall(r"url\(\s*[\"']?(https?:[^)\"']*)", page)
    found += re.findall(r"@import\s+[\"'](https?:[^\"']*)", page)
    return found


def write_report(
    tables_dir: str | os.PathLike[str],
    stats_dir: str | os.PathLike[str],
    noise_floor_path: str | os.PathLike[str],
    cells_path: str | os.PathLike[str],
    figures: list[str],
    config: dict[str, Any],
    out_path: str | os.PathLike[str],
    collapse_tea: list[str] | None = None,
    sage: list[str] | None = None,
    attention: list[str] | None = None,
    blocks: list[str] | None = None,
    images: list[str] | None = None,
    disruption: list[str] | None = None,
    adapter_meta: list[str] | None = None,
    generation: dict[str, Any] | None = None,
    audit: list[str] | None = None,
) -> None:
    """Assemble report.html from the run's outputs.

    ``cells_path`` is cells.parquet, for the count of cells reused from the base (:func:`reuse_in_words`);
    ``figures`` are PNG paths; ``collapse_tea`` are the CSV and PNG paths of the semantic-collapse
    and TEA section (empty: no such section), ``sage`` those of the geometry and structured
    faithfulness section, ``attention`` those of the cross-attention section. Captions come from
    faithfulness section, ``blocks`` those of the block attribution section. Captions come from
    :mod:`entmap.core.vocabulary`. ``images`` (IMAGES shards of the base and the models),
    ``disruption`` (their DISRUPTION shards), ``adapter_meta`` (each model's meta.json) and
    ``generation`` (the generation settings) make the map explorer; without ``images`` the page has
    the static figures only. ``audit`` are the paths of ``entmap audit``'s outputs (results/audit/),
    shown first when audit.json is among them.
    """

    tables_dir, stats_dir = Path(tables_dir), Path(stats_dir)
    floor = json.loads(Path(noise_floor_path).read_text(encoding="utf-8"))
    hyp = json.loads((stats_dir / "hypotheses.json").read_text(encoding="utf-8"))
    sig = json.loads((stats_dir / "significance.json").read_text(encoding="utf-8"))
    mixed = json.loads((stats_dir / "mixed_model.json").read_text(encoding="utf-8"))
    per_model = pd.read_csv(tables_dir / "per_model.csv")
    tables = []
    for name in ANALYSIS_TABLES:
        title, caption = TABLES[name]
        frame = pd.read_csv(tables_dir / f"{name}.csv")
        tables.append({"title": title, "caption": caption, "html": sortable_table(frame)})
    if mixed.get("fitted"):
        effects = pd.DataFrame(mixed["fixed_effects"]).T.reset_index(names="term")
        mixed_html = effects.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0)
        mixed_text = (
            f"{mixed['formula']}; {mixed['random_effects']}; {mixed['n_cells']} cells; "
            f"converged: {mixed['converged']}; variance components: "
            + ", ".join(f"{k} {v:.3g}" for k, v in mixed["variance_components"].items())
            + f"; residual variance {mixed['residual_variance']:.3g}."
        )
    else:
        mixed_html, mixed_text = "", f"not fitted: {mixed.get('reason')}"
    n_prompts = int(per_model["n_prompts_non_target"].max()) if len(per_model) else 0
    bounds = json.loads((stats_dir / "normalization.json").read_text(encoding="utf-8"))
    summary = (
        f"{len(per_model)} personalized models compared with the base model on seed-matched images; "
        f"per-model means, hypothesis tests and figures below are computed from the stored per-seed "
        f"tables (up to {n_prompts} non-target prompts per model). " + populations_in_words(per_model, bounds)
    )
    noise = (
        f"tau_sem = {floor['tau_sem']:.4g} and tau_per = {floor['tau_per']:.4g}: the {floor['percentile']}th "
        f"percentiles of |Δ CLIP cosine| and LPIPS between {floor['pairs_per_prompt']} seed pair(s) of the "
        f"base model on each of {floor['prompts']} prompts ({floor['measurements']} measurements). "
        "A single cell below these is indistinguishable from seed noise."
    )
    significance = (
        f"{sig['flagged_sem']} of {sig['cells']} cells have a semantic shift and {sig['flagged_per']} "
        f"a perceptual shift above the noise floor at FDR {sig['fdr']} ({sig['test']}; "
        f"{sig['correction']})."
    )
    significance += " " + paired_shift_in_words(
        json.loads((stats_dir / "paired_shift.json").read_text(encoding="utf-8"))
    )
    versions = pd.DataFrame(list(package_versions().items()), columns=["package", "version"])
    figure_data = [
        {"data": base64.b64encode(Path(p).read_bytes()).decode(), "caption": output_caption(p)[1]} for p in figures
    ]
    cells = read_table(cells_path, CELLS)
    explorer = (
        map_explorer(
            cells,
            images,
            disruption or [],
            adapter_meta or [],
            generation or {},
            (config.get("report") or {}).get("image_cells"),
        )
        if images
        else None
    )
    cells_columns = ["prompt_id", "category", "text", "model", "method", "subject_category", "n_seeds"]
    cells_columns += ["e_sem", "e_per", "e_struct", "above_tau_sem", "above_tau_per", "reused"]
    template = importlib.resources.files("entmap.present").joinpath(TEMPLATE_FILE).read_text(encoding="utf-8")
    page = (
        jinja2.Environment(autoescape=True)
        .from_string(template)
        .render(
            summary=summary,
            reuse=reuse_in_words(cells),
            element_damage=element_damage_in_words(pd.read_csv(tables_dir / "element_damage.csv")),
            audit=audit_section(audit or []),
            explorer=explorer,
            cells_table=markupsafe.Markup(sortable_table(cells[cells_columns], page_length=10)),
            datatables_bundle=markupsafe.Markup(datatables_bundle()),
            vega_bundle=markupsafe.Markup(vega_bundle()),
            noise=noise,
            hypotheses=hypotheses_in_words(hyp),
            figures=figure_data,
            tables=[{**t, "html": markupsafe.Markup(t["html"])} for t in tables],
            significance=significance,
            mixed_text=mixed_text,
            mixed_html=markupsafe.Markup(mixed_html),
            version=__version__,
            commit=git_commit(),
            date=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            platform=html.escape(platform.platform()),
            versions=markupsafe.Markup(versions.to_html(index=False, border=0)),
            config=yaml.safe_dump(config, sort_keys=False),
            collapse_tea=[_section_item(path) for path in collapse_tea or []],
            collapse_tea_text=collapse_tea_in_words(collapse_tea or []),
            sage=[_section_item(path) for path in sage or []],
            sage_text=sage_in_words(sage or []),
            attention=[_section_item(path) for path in attention or []],
            attention_text=attention_in_words(attention or []),
            blocks=[_section_item(path) for path in blocks or []],
            blocks_text=blocks_in_words(blocks or [], config.get("block_attribution")),
        )
    )
    write_text(out_path, page)
