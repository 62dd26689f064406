"""The prompts whose attention a model's job captures: its most and least disrupted, or a fixed list.

A model's disruption of prompt p is its map cell, E_sem(p) = mean_k |a_pers,k - a_base,k| over the
map's seeds (:func:`entmap.measure.metrics.e_sem`), read from the model's own per-seed disruption
tables, so a model's prompts depend on its own column of the map and on nothing another model does.
Among the prompts outside the subject's own prompt category (all of them for the planted controls),
``most_disrupted: N`` takes the N with the largest E_sem (rank 1 first) and ``least_disrupted: M``
the M with the smallest among the rest (rank 1 = the least disrupted); ties keep the suite's order.
A list of prompt ids is taken as it is (kind ``listed``).
"""

from __future__ import annotations

import pandas as pd

from entmap.measure.metrics import e_sem

HIGH, LOW, LISTED = "high", "low", "listed"


def prompt_e_sem(disruption: pd.DataFrame) -> pd.Series:
    """E_sem of each prompt of one model's per-seed disruption rows, indexed by prompt id."""
    groups = disruption.groupby("prompt_id", sort=False)[["a_pers", "a_base"]]
    return groups.apply(lambda g: e_sem(g["a_pers"], g["a_base"]))


def choose_prompts(prompts: pd.DataFrame, e_sem_by_prompt: pd.Series, own_category: str | None, spec) -> pd.DataFrame:
    """Columns prompt_id, text, category, kind (high, low or listed), rank, e_sem.

    ``prompts`` (id, category, text) in suite order; ``spec``: {most_disrupted, least_disrupted} or
    a list of prompt ids.
    """
    frame = prompts.rename(columns={"id": "prompt_id"})[["prompt_id", "text", "category"]].reset_index(drop=True)
    frame["e_sem"] = frame["prompt_id"].map(e_sem_by_prompt).astype(float)
    if isinstance(spec, list):
        unknown = [pid for pid in spec if pid not in set(frame["prompt_id"])]
        if unknown:
            raise ValueError(f"attention.prompts: {unknown} are not evaluated prompts")
        chosen = frame.set_index("prompt_id").loc[spec].reset_index()
        return chosen.assign(kind=LISTED, rank=range(1, len(chosen) + 1))[_COLUMNS]
    missing = frame.loc[frame["e_sem"].isna(), "prompt_id"].tolist()
    if missing:
        raise ValueError(f"no disruption rows for prompts {missing[:5]}")
    candidates = frame[frame["category"] != own_category] if own_category else frame
    ranked = candidates.sort_values("e_sem", ascending=False, kind="stable")
    high = ranked.head(spec.get("most_disrupted", 0))
    rest = ranked.drop(high.index).sort_values("e_sem", ascending=True, kind="stable")
    low = rest.head(spec.get("least_disrupted", 0))
    parts = [high.assign(kind=HIGH, rank=range(1, len(high) + 1)), low.assign(kind=LOW, rank=range(1, len(low) + 1))]
    return pd.concat(parts, ignore_index=True)[_COLUMNS]


_COLUMNS = ["prompt_id", "text", "category", "kind", "rank", "e_sem"]
