"""The audit as a Markdown block to paste into a model card (results/audit/model_card.md).

One section per adapter: the verdict and its reasons, the numbers behind them, the strength sweep
and, for several checkpoints, their comparison; then the thresholds and how the numbers were made.
Built only from the audit.json document (:func:`entmap.audit.summary.audit_document`), so the card
and the JSON never disagree.
"""

from __future__ import annotations

import math
from typing import Any


def _num(value: Any, digits: int = 3, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _interval(metrics: dict[str, Any], key: str) -> str:
    return (
        f"{_num(metrics.get(key), signed=True)} "
        f"(95% CI {_num(metrics.get(key + '_low'), signed=True)} to {_num(metrics.get(key + '_high'), signed=True)})"
    )


def adapter_section(adapter: dict[str, Any], alpha: float) -> list[str]:
    """The Markdown lines of one adapter."""
    m = adapter["metrics"]
    lines = [f"### {adapter['name']}: **{adapter['verdict'].upper()}**", ""]
    lines += [f"- {reason}" for reason in adapter["reasons"]]
    n = m.get("n_unrelated", 0)
    frac = m.get("frac_disrupted")
    disrupted = "n/a" if frac is None or math.isnan(frac) else f"{round(frac * n)} of {n} ({frac:.0%})"
    with_trigger = m.get("leakage_with_trigger") or {}
    lines += [
        "",
        "| | |",
        "|---|---|",
        f"| file | `{adapter['file']}` ({adapter['kind']}, sha256 `{(adapter.get('sha256') or '')[:12]}`) |",
        f"| base model | `{adapter['base']}` ({adapter['family']}) |",
        f"| trigger | {adapter['trigger'] or 'none'} |",
        f"| unrelated prompts disrupted (BH q < {alpha}) | {disrupted} |",
        f"| mean E_sem on unrelated prompts | {_num(m.get('mean_e_sem'))} |",
        f"| mean E_per on unrelated prompts | {_num(m.get('mean_e_per'))} |",
        f"| leakage without trigger (CLIP-I shift vs base) | {_interval(m, 'leakage')} |",
        f"| leakage with trigger | {_interval(with_trigger, 'leakage') if with_trigger else 'n/a'} |",
        f"| target fidelity ({m.get('fidelity_measure', '')}) | {_num(m.get('target_fidelity'))} "
        f"(base {_num(m.get('base_fidelity'))}, gain {_num(m.get('fidelity_gain'), signed=True)}) |",
    ]
    if adapter.get("recommended_checkpoint"):
        lines.append(f"| recommended checkpoint | `{adapter['recommended_checkpoint']}` |")
    sweep = adapter.get("strength") or []
    if sweep:
        lines += ["", "Strength sweep (unrelated prompts vs the base's seed-matched images):", ""]
        lines += ["| scale | E_sem | E_per | target fidelity |", "|---|---|---|---|"]
        lines += [
            f"| {row['scale']:g} | {_num(row['e_sem'])} | {_num(row['e_per'])} | {_num(row['target_fidelity'])} |"
            for row in sweep
        ]
    for note in adapter.get("notes", []):
        lines += ["", f"Note: {note}"]
    checkpoints = adapter.get("checkpoints") or []
    if len(checkpoints) > 1:
        lines += ["", "Checkpoints:", ""]
        lines += [
            "| checkpoint | epoch | mean E_sem | disrupted | leakage | target fidelity | |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in checkpoints:
            mark = "recommended" if row["recommended"] else ""
            epoch = "" if row["epoch"] is None else row["epoch"]
            lines.append(
                f"| `{row['checkpoint']}` | {epoch} | {_num(row['mean_e_sem'])} | {_num(row['frac_disrupted'], 2)} | "
                f"{_num(row['leakage'], signed=True)} | {_num(row['target_fidelity'])} | {mark} |"
            )
    return lines + [""]


def model_card(document: dict[str, Any]) -> str:
    """The whole Markdown block (module docstring)."""
    thresholds = document["thresholds"]
    lines = ["## Collateral effects (entmap audit)", ""]
    lines += [
        f"Measured with entmap on {document['n_prompts']} prompts x {document['n_seeds']} seeds, seed-matched against "
        f"the base model; noise floor tau_sem = {_num(document['noise_floor'].get('tau_sem'))}, "
        f"tau_per = {_num(document['noise_floor'].get('tau_per'))}.",
        "",
    ]
    for adapter in document["adapters"]:
        lines += adapter_section(adapter, document["alpha"])
    lines += [
        "Thresholds: "
        + ", ".join(f"{key} = {value}" for key, value in thresholds.items())
        + f"; checkpoint tolerance {document['checkpoint_tolerance']}.",
        "Pass: no threshold exceeded. Warn: a warning threshold exceeded or a number not measurable. "
        "Fail: a failure threshold exceeded. Definitions: entmap's docs/audit.md.",
        "",
    ]
    return "\n".join(lines)
