"""The report's audit section, from ``entmap audit``'s outputs in results/audit/ when a run has them.

``audit.json``: ``{"thresholds": {...}, "adapters": [{"name", "file", "family", "base", "trigger",
"verdict": "pass|warn|fail", "reasons": [str], "metrics": {...}, "recommended_checkpoint": str|null}]}``;
``strength.csv``: adapter, scale, e_sem, e_per, target_fidelity, n_prompts; ``checkpoints.csv``:
adapter, checkpoint, epoch, mean_e_sem, frac_disrupted, leakage, target_fidelity, recommended;
``model_card.md``. Any of them may be missing; what is there is shown, verdicts first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd

from entmap.present.datatables import sortable_table
from entmap.present.map_explorer import script_json

VERDICTS = ("pass", "warn", "fail")


def strength_spec(strength: pd.DataFrame) -> dict[str, Any]:
    """Vega-Lite spec: E_sem and target fidelity against the adapter's scale, one line per adapter."""
    long = strength.melt(
        id_vars=["adapter", "scale"], value_vars=["e_sem", "target_fidelity"], var_name="quantity", value_name="value"
    )
    long["quantity"] = long["quantity"].map({"e_sem": "E_sem", "target_fidelity": "target fidelity"})
    chart = (
        alt.Chart(long)
        .mark_line(point=True)
        .encode(
            x=alt.X("scale:Q", title="adapter scale"),
            y=alt.Y("value:Q", title=None),
            color=alt.Color("adapter:N"),
            tooltip=["adapter:N", "scale:Q", "quantity:N", alt.Tooltip("value:Q", format=".4g")],
        )
        .properties(width=280, height=200)
        .facet(column=alt.Column("quantity:N", title=None, sort=["E_sem", "target fidelity"]))
        .resolve_scale(y="independent")
    )
    return chart.to_dict()


def audit_section(paths: list[str]) -> dict[str, Any] | None:
    """What the template shows of the audit outputs among ``paths`` (None: no audit.json)."""
    files = {Path(p).name: Path(p) for p in paths}
    if "audit.json" not in files:
        return None
    audit = json.loads(files["audit.json"].read_text(encoding="utf-8"))
    adapters = []
    for entry in audit.get("adapters", []):
        verdict = entry.get("verdict", "")
        if verdict not in VERDICTS:
            raise ValueError(
                f"{files['audit.json']}: adapter {entry.get('name')!r} has verdict {verdict!r}, not one of {VERDICTS}"
            )
        adapters.append({**entry, "reasons": entry.get("reasons") or []})
    section: dict[str, Any] = {
        "adapters": adapters,
        "thresholds": ", ".join(f"{key} {value}" for key, value in (audit.get("thresholds") or {}).items()),
        "strength_json": None,
        "checkpoints_html": None,
        "model_card": None,
    }
    if "strength.csv" in files:
        strength = pd.read_csv(files["strength.csv"])
        if "final" in strength.columns:  # one line per adapter: its final checkpoint's sweep
            strength = strength[strength["final"].astype(str).str.lower().isin(("true", "1"))]
        if len(strength):
            section["strength_json"] = script_json(strength_spec(strength))
    if "checkpoints.csv" in files:
        checkpoints = pd.read_csv(files["checkpoints.csv"])
        recommended = checkpoints["recommended"].astype(str).str.lower().isin(("true", "1", "yes"))
        checkpoints["recommended"] = recommended.map({True: "★ recommended", False: ""})
        section["checkpoints_html"] = sortable_table(checkpoints)
    if "model_card.md" in files:
        section["model_card"] = files["model_card.md"].read_text(encoding="utf-8")
    return section
