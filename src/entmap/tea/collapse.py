"""Prompt-set distances of the semantic-collapse diagnostics (docs/tea-and-collapse.md).

P_V* holds the text-encoder vectors of context prompts with the learned token, P_c the same
prompts with the class word (rows paired). Each prompt is pooled to one vector (entmap uses the
EOS token's output, CLIP's own pooled vector; the public TEA code used the last padding position).

* mean pairwise Euclidean: mean_{i,j} ||x_i - y_j||;
* Hausdorff: max(h(X, Y), h(Y, X)), h(X, Y) = max_i min_j ||x_i - y_j||;
* Mahalanobis: between the set means under the pseudo-inverse of the pooled covariance,
  sqrt((mu_X - mu_Y)^T pinv(S) (mu_X - mu_Y));
* KL: mean_i KL(P_i || Q_i) between the row-softmaxed cosine-similarity matrices of X and Y;
* intra-set: mean pairwise Euclidean distance between distinct members of one set.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist
from scipy.special import softmax


def mean_pairwise(x: np.ndarray, y: np.ndarray) -> float:
    return float(cdist(x, y).mean())


def intra_set(x: np.ndarray) -> float:
    d = cdist(x, x)
    n = len(x)
    return float(d.sum() / (n * (n - 1))) if n > 1 else 0.0


def hausdorff(x: np.ndarray, y: np.ndarray) -> float:
    d = cdist(x, y)
    return float(max(d.min(axis=1).max(), d.min(axis=0).max()))


def mahalanobis_means(x: np.ndarray, y: np.ndarray) -> float:
    pooled = np.cov(np.vstack([x - x.mean(0), y - y.mean(0)]), rowvar=False)
    diff = x.mean(0) - y.mean(0)
    return float(np.sqrt(max(diff @ np.linalg.pinv(pooled) @ diff, 0.0)))


def similarity_kl(x: np.ndarray, y: np.ndarray) -> float:
    """Mean row KL between softmax(cos-sim(X)) and softmax(cos-sim(Y)); X and Y are paired rows."""

    def rows(m: np.ndarray) -> np.ndarray:
        unit = m / np.linalg.norm(m, axis=1, keepdims=True)
        return softmax(unit @ unit.T, axis=1)

    p, q = rows(x), rows(y)
    return float(np.mean(np.sum(p * np.log(p / q), axis=1)))


def set_distances(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Every distance between two paired prompt sets, plus their intra-set spreads."""
    return {
        "mean_pairwise": mean_pairwise(x, y),
        "hausdorff": hausdorff(x, y),
        "mahalanobis": mahalanobis_means(x, y),
        "kl": similarity_kl(x, y),
        "intra_x": intra_set(x),
        "intra_y": intra_set(y),
    }


def trajectory_diagnostics(
    steps: list[int], trajectory: np.ndarray, vocabulary: np.ndarray, anchor: np.ndarray
) -> list[dict[str, float]]:
    """Drift of a Textual Inversion embedding over training, one row per kept step.

    norm: ||M_V||; norm_percentile: the share (in %) of vocabulary rows with a smaller or equal
    norm (scipy's ``percentileofscore`` with kind="weak"); norm_ratio: ||M_V|| / ||M_c||;
    cos_anchor: cos(M_V, M_c). ``trajectory`` is (steps, d) as train_ti saves it, ``vocabulary``
    the base model's embedding matrix, ``anchor`` the class word's row.
    """
    vocab_norms = np.sort(np.linalg.norm(vocabulary, axis=1))
    anchor_norm = float(np.linalg.norm(anchor))
    rows = []
    for step, vector in zip(steps, trajectory, strict=True):
        norm = float(np.linalg.norm(vector))
        rows.append(
            {
                "step": int(step),
                "norm": norm,
                "norm_percentile": 100.0 * np.searchsorted(vocab_norms, norm, side="right") / len(vocab_norms),
                "norm_ratio": norm / anchor_norm,
                "cos_anchor": float(vector @ anchor / (norm * anchor_norm)),
            }
        )
    return rows
