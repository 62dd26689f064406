"""Prompt-set distances of the semantic-collapse diagnostics (docs/tea-and-collapse.md).

P_V* holds the text-encoder vectors of context prompts with the learned token, P_c the same
prompts with the class word (rows paired). Each prompt is pooled to one vector (entmap uses the
EOS token's output, CLIP's own pooled vector; the public TEA code used the last padding position).

* mean pairwise Euclidean: mean_{i,j} ||x_i - y_j||;
* Hausdorff: max(h(X, Y), h(Y, X)), h(X, Y) = max_i min_j ||x_i - y_j||;
* Mahalanobis and KL in two definitions (config ``tea.collapse_distances``):

  - ``paper`` (the default, the TEA paper's and its public notebook's): Mahalanobis is the mean
    over the anchor prompts y_i of their distance to the V* set's distribution,
    mean_i sqrt((y_i - mu_X)^T pinv(S_X) (y_i - mu_X)), S_X the unbiased covariance of X (n_X - 1);
    KL is KL(P_c || P_V*) = mean_i sum_j q_ij log(q_ij / p_ij), with p_i = softmax(cos(x_i, X) / T)
    and q_i = softmax(cos(y_i, Y) / T) the rows of the temperature-scaled similarity matrices;
  - ``entmap`` (the variant entmap used first): Mahalanobis between the set means under the
    pooled covariance, sqrt((mu_X - mu_Y)^T pinv(S) (mu_X - mu_Y)),
    S = (sum_i (x_i - mu_X)(x_i - mu_X)^T + sum_j (y_j - mu_Y)(y_j - mu_Y)^T) / (n_X + n_Y - 2);
    KL in the other direction, KL(P_V* || P_c).

  T is ``tea.kl_temperature`` (1.0, the public notebook's default).
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


DEFINITIONS = ("paper", "entmap")


def mahalanobis_to_set(points: np.ndarray, reference: np.ndarray) -> float:
    """mean_i sqrt((p_i - mu_R)^T pinv(S_R) (p_i - mu_R)), S_R the unbiased covariance of ``reference``."""
    centre = reference.mean(0)
    inverse = np.linalg.pinv(np.cov(reference, rowvar=False, ddof=1))
    diff = points - centre
    return float(np.mean(np.sqrt(np.maximum(np.einsum("id,de,ie->i", diff, inverse, diff), 0.0))))


def mahalanobis_means(x: np.ndarray, y: np.ndarray) -> float:
    """sqrt((mu_X - mu_Y)^T pinv(S) (mu_X - mu_Y)), S the pooled covariance over n_X + n_Y - 2."""
    dx, dy = x - x.mean(0), y - y.mean(0)
    pooled = (dx.T @ dx + dy.T @ dy) / (len(x) + len(y) - 2)
    diff = x.mean(0) - y.mean(0)
    return float(np.sqrt(max(diff @ np.linalg.pinv(pooled) @ diff, 0.0)))


def similarity_kl(x: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """KL(P_X || P_Y) = mean_i sum_j p_ij log(p_ij / q_ij), rows of softmax(cos-sim / T); rows paired."""

    def rows(m: np.ndarray) -> np.ndarray:
        unit = m / np.linalg.norm(m, axis=1, keepdims=True)
        return softmax(unit @ unit.T / temperature, axis=1)

    p, q = rows(x), rows(y)
    return float(np.mean(np.sum(p * np.log(p / q), axis=1)))


def set_distances(
    x: np.ndarray, y: np.ndarray, definition: str = "paper", temperature: float = 1.0
) -> dict[str, float]:
    """Every distance between the V* set ``x`` and the anchor set ``y`` (rows paired), and their spreads.

    ``definition`` picks the Mahalanobis and KL forms (see the module docstring).
    """
    if definition == "paper":
        mahalanobis, kl = mahalanobis_to_set(y, x), similarity_kl(y, x, temperature)
    elif definition == "entmap":
        mahalanobis, kl = mahalanobis_means(x, y), similarity_kl(x, y, temperature)
    else:
        raise ValueError(f"unknown collapse distance definition {definition!r}; use one of {DEFINITIONS}")
    return {
        "mean_pairwise": mean_pairwise(x, y),
        "hausdorff": hausdorff(x, y),
        "mahalanobis": mahalanobis,
        "kl": kl,
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
