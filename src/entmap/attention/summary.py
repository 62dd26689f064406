"""The run's cross-attention tables, from every model's attention table (:mod:`entmap.attention.stage`).

Notation: S[l, t, j] is a row's mean over seeds and image queries of |A_model - A_base| at layer l,
kept step t and text position j (a merged padding row stands for its n_tokens positions). For a set
C of positions (a token class, or all J of them) and a (model, prompt):

    shift_C        = (1 / (L T)) sum_{l, t} (1 / |C|) sum_{j in C} S[l, t, j]
    share_C(model) = (1 / (L T)) sum_{l, t} sum_{j in C} A_model[l, t, j]   (the attention C receives)

* ``attention_overall.csv``: per (model, prompt), shift over all positions and per class (bos,
  word, eos, pad) and the base's and model's shares of each class.
* ``attention_by_layer.csv`` / ``attention_by_step.csv``: per (model, prompt) and layer (step), the
  shift over all positions and over words, averaged over the kept steps (layers).
* ``attention_layer_step.csv``: per model, layer and step, the shift over all positions averaged over
  the model's prompts (what the layers x steps figure draws).
* ``attention_by_token.csv``: per (model, prompt) and non-padding position (and each encoder's
  padding, merged): the mean over layers and steps of A_base, A_model and the shift.
* ``table3.csv``: the paper's Table 3, one number per (prompt, model): each model's most and least
  disrupted prompts with their E_sem and shift_all (and shift_word).
* ``attention_correlation.csv``: across (prompt, model) cells, Spearman's rho and Pearson's r of
  shift_all and shift_word with E_sem, with 95% percentile intervals from resampling cells
  (``analysis.bootstrap`` replicates); for the study's models and for every model. Fewer than 3
  cells or a constant column give NaN.

Explained in docs/attention.md.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from entmap.attention.tokens import TOKEN_CLASSES
from entmap.core.atomic import write_text
from entmap.core.parquet_schemas import ATTENTION, read_tables
from entmap.core.vocabulary import POPULATIONS, STUDY, population

CELL = ["model", "prompt_id"]


def _weighted(frame: pd.DataFrame, keys: list[str], value: str) -> pd.Series:
    """Per ``keys``: sum(value * n_tokens) / sum(n_tokens), the mean over the positions the rows stand for."""
    weighted = frame.assign(_v=frame[value] * frame["n_tokens"])
    sums = weighted.groupby(keys, sort=False)[["_v", "n_tokens"]].sum()
    return sums["_v"] / sums["n_tokens"]


def _mass(frame: pd.DataFrame, keys: list[str], value: str) -> pd.Series:
    """Per ``keys``: sum(value * n_tokens), the attention the rows' positions receive together."""
    return frame.assign(_v=frame[value] * frame["n_tokens"]).groupby(keys, sort=False)["_v"].sum()


def shift_by(frame: pd.DataFrame, keys: list[str], token_class: str | None = None) -> pd.Series:
    """Mean shift per ``keys``: within each (layer, step) over the positions (of ``token_class``), then
    over the remaining (layer, step) pairs, each weighing the same."""
    rows = frame if token_class is None else frame[frame["token_class"] == token_class]
    per_layer_step = _weighted(rows, [*keys, "layer_index", "step"], "mean_abs_delta").rename("s").reset_index()
    return per_layer_step.groupby(keys, sort=False)["s"].mean()


def with_model_columns(frame: pd.DataFrame, include_external: bool = False) -> pd.DataFrame:
    """``frame`` plus subject, method and population, from its ``model`` column."""
    split = frame["model"].str.split("/", n=1, expand=True)
    frame = frame.assign(subject=split[0], method=split[1])
    return frame.assign(population=frame["method"].map(lambda m: population(m, include_external)))


def overall(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (model, prompt): kind, rank, E_sem, shift over all positions and per class, class shares."""
    cells = frame.drop_duplicates(CELL)[[*CELL, "kind", "rank", "e_sem"]].set_index(CELL)
    cells["shift"] = shift_by(frame, CELL)
    for token_class in TOKEN_CLASSES:
        cells[f"shift_{token_class}"] = shift_by(frame, CELL, token_class)
    for who in ("base", "model"):
        for token_class in TOKEN_CLASSES:
            rows = frame[frame["token_class"] == token_class]
            mass = _mass(rows, [*CELL, "layer_index", "step"], f"{who}_attention").rename("m").reset_index()
            cells[f"{who}_share_{token_class}"] = mass.groupby(CELL)["m"].mean()
    share = [c for c in cells.columns if "_share_" in c]
    cells[share] = cells[share].fillna(0.0)  # a class with no position receives no attention
    return cells.reset_index()


def by_axis(frame: pd.DataFrame, axis: list[str]) -> pd.DataFrame:
    """Per (model, prompt, ``axis``): the shift over all positions and over words; within each
    (layer, step) over the positions, then over the (layer, step) pairs with the same ``axis`` values."""
    pairs = [*CELL, "layer_index", "step"]
    table = frame.drop_duplicates(pairs)[list(dict.fromkeys([*pairs, *axis]))].set_index(pairs)
    table["shift"] = _weighted(frame, pairs, "mean_abs_delta")
    table["shift_word"] = _weighted(frame[frame["token_class"] == "word"], pairs, "mean_abs_delta")
    keys = [*CELL, *axis]
    return table.reset_index().groupby(keys, sort=False)[["shift", "shift_word"]].mean().reset_index()


def layer_step(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (model, layer, step): the shift over all positions, averaged over the model's prompts."""
    keys = ["model", "layer_index", "layer", "step", "timestep"]
    per_cell = by_axis(frame, ["layer_index", "layer", "step", "timestep"])
    return per_cell.groupby(keys, sort=False)["shift"].mean().reset_index()


def by_token(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (model, prompt, position row): the means over layers and steps of A_base, A_model and the shift."""
    keys = [*CELL, "token", "token_text", "token_class", "encoder", "n_tokens"]
    values = ["base_attention", "model_attention", "mean_abs_delta"]
    table = frame.groupby(keys, sort=False)[values].mean().reset_index()
    return table.rename(columns={"mean_abs_delta": "shift"})


def table3(cells: pd.DataFrame, texts: dict[str, str]) -> pd.DataFrame:
    """The paper's Table 3: per model, its most and least disrupted prompts, E_sem and |Delta A|."""
    order = {name: i for i, name in enumerate(POPULATIONS)}
    kinds = {"high": 0, "low": 1, "listed": 2}
    table = cells.assign(text=cells["prompt_id"].map(texts), _p=cells["population"].map(order))
    table = table.assign(_k=table["kind"].map(kinds)).sort_values(["_p", "model", "_k", "rank"], kind="stable")
    table = table.rename(columns={"shift": "attention_shift", "shift_word": "attention_shift_word"})
    columns = ["subject", "method", "population", "kind", "rank", "prompt_id", "text", "e_sem"]
    return table[[*columns, "attention_shift", "attention_shift_word"]].reset_index(drop=True)


def correlation(x: np.ndarray, y: np.ndarray, statistic: str) -> float:
    """Spearman's rho or Pearson's r (scipy); NaN below 3 values or when either side is constant."""
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    function = stats.spearmanr if statistic == "spearman" else stats.pearsonr
    return float(function(x, y).statistic)


def correlations(cells: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """Shift against E_sem across (prompt, model) cells: one row per (models, tokens, statistic)."""
    rng = np.random.default_rng(seed)
    rows = []
    for models, chosen in (("study", cells[cells["population"] == STUDY]), ("all", cells)):
        resamples = rng.integers(0, len(chosen), (n_boot, len(chosen))) if len(chosen) else np.zeros((0, 0), int)
        for tokens, column in (("all", "shift"), ("word", "shift_word")):
            x, y = chosen[column].to_numpy(float), chosen["e_sem"].to_numpy(float)
            for statistic in ("spearman", "pearson"):
                value = correlation(x, y, statistic)
                boot = np.array([correlation(x[i], y[i], statistic) for i in resamples]) if not np.isnan(value) else []
                boot = np.asarray(boot, float)
                boot = boot[~np.isnan(boot)]
                low, high = np.percentile(boot, [2.5, 97.5]) if len(boot) else (np.nan, np.nan)
                rows.append(
                    {
                        "models": models,
                        "tokens": tokens,
                        "statistic": statistic,
                        "n_cells": int((~(np.isnan(x) | np.isnan(y))).sum()),
                        "value": value,
                        "ci_low": float(low),
                        "ci_high": float(high),
                    }
                )
    return pd.DataFrame(rows, columns=["models", "tokens", "statistic", "n_cells", "value", "ci_low", "ci_high"])


def write_attention_tables(
    paths: list[str],
    texts: dict[str, str],
    settings: dict,
    outputs: dict[str, str],
) -> None:
    """Read every model's attention table and write the seven tables (``outputs``: name -> CSV path).

    ``texts``: prompt id -> text; ``settings``: the config's ``analysis`` block (bootstrap, seed,
    include_external)."""
    frame = read_tables(paths, ATTENTION)
    cells = with_model_columns(overall(frame), settings.get("include_external", False))
    head = ["model", "subject", "method", "population", "prompt_id"]
    cells = cells[[*head, *[c for c in cells.columns if c not in head]]]
    tables = {
        "attention_overall": cells,
        "attention_by_layer": by_axis(frame, ["layer_index", "layer", "n_queries"]),
        "attention_by_step": by_axis(frame, ["step", "timestep"]),
        "attention_layer_step": layer_step(frame),
        "attention_by_token": by_token(frame),
        "table3": table3(cells, texts),
        "attention_correlation": correlations(cells, settings["bootstrap"], settings.get("bootstrap_seed", 0)),
    }
    for name, table in tables.items():
        write_text(outputs[name], table.to_csv(index=False))
