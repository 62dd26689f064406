"""The two numbers of embedding geometry, as SAGE's training code defines them.

Each prompt's embedding (a text encoder's output, or the keys or values a cross-attention layer
makes of it) is flattened and L2-normalized: z_i = vec(E_i) / ||vec(E_i)||. For a set Z of B
prompts:

* spread(Z) = sum_i ||z_i - mean(z)||^2 / (B - 1), how far the prompts lie apart;
* local structure: S = Z Z^T, the cosine similarities; each prompt's K nearest neighbours under
  the base model's S_0 (the diagonal excluded; K = 15 by default, at most B - 1), and
  r = Pearson correlation between S_theta and S_0 over exactly those (i, neighbour) entries.
  distortion = 1 - r: 0 when the neighbourhoods keep their similarities (up to an affine map),
  up to 2 when they are reversed.

A personalized model against its base: spread ratio = spread(Z_theta) / spread(Z_0) (< 1: the
prompts contract towards each other) and distortion. The functions work on torch tensors, so the
same code gives the diagnostics (float64, no gradients) and the training regularizer
(:func:`geometry_penalty`, differentiable in Z_theta).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: SAGE's neighbourhood size
NEIGHBOURS = 15


def normalized_rows(features: torch.Tensor) -> torch.Tensor:
    """z_i: each prompt's features (B, ...) flattened to one row and scaled to unit length."""
    rows = features.reshape(features.shape[0], -1)
    return rows / rows.norm(dim=1, keepdim=True).clamp_min(torch.finfo(rows.dtype).tiny)


def spread(z: torch.Tensor) -> torch.Tensor:
    """sum_i ||z_i - mean(z)||^2 / (B - 1) of unit rows z (B, D)."""
    if z.shape[0] < 2:
        raise ValueError(f"spread needs at least 2 prompts, got {z.shape[0]}")
    return ((z - z.mean(dim=0, keepdim=True)) ** 2).sum() / (z.shape[0] - 1)


def neighbour_mask(s_base: torch.Tensor, k: int = NEIGHBOURS) -> torch.Tensor:
    """(B, B) boolean mask of each row's k most similar other prompts under the base similarities."""
    b = s_base.shape[0]
    k = min(k, b - 1)
    if k < 1:
        raise ValueError(f"local structure needs at least 2 prompts, got {b}")
    masked = s_base.clone()
    masked.fill_diagonal_(float("-inf"))
    top = masked.topk(k, dim=1).indices
    mask = torch.zeros_like(s_base, dtype=torch.bool)
    mask.scatter_(1, top, True)
    return mask


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of two equally long vectors (0 when either is constant)."""
    a, b = a - a.mean(), b - b.mean()
    denominator = a.norm() * b.norm()
    return (a * b).sum() / denominator if denominator > 0 else torch.zeros((), dtype=a.dtype)


def local_structure_correlation(z_model: torch.Tensor, z_base: torch.Tensor, k: int = NEIGHBOURS) -> torch.Tensor:
    """r: Pearson correlation of S_model and S_base over each prompt's k base neighbours."""
    s_base = z_base @ z_base.T
    mask = neighbour_mask(s_base, k)
    return pearson((z_model @ z_model.T)[mask], s_base[mask])


@dataclass(frozen=True)
class GeometryChange:
    """A model's prompt geometry against its base's, over the same prompts."""

    spread_base: float
    spread_model: float
    spread_ratio: float
    distortion: float


def geometry_change(model_features: torch.Tensor, base_features: torch.Tensor, k: int = NEIGHBOURS) -> GeometryChange:
    """Spread ratio and distortion (1 - r) of a model's features against the base's, in float64.

    Features equal to the base's bit for bit give exactly ratio 1 and distortion 0 (rather than a
    correlation of identical vectors that rounds to 1 - 1e-16), so "unchanged" stays exact.
    """
    z_model = normalized_rows(model_features.detach().double())
    z_base = normalized_rows(base_features.detach().double())
    s_model, s_base = spread(z_model).item(), spread(z_base).item()
    if torch.equal(model_features, base_features):
        return GeometryChange(s_base, s_base, 1.0, 0.0)
    r = local_structure_correlation(z_model, z_base, k).item()
    return GeometryChange(s_base, s_model, s_model / s_base, 1.0 - r)


def geometry_penalty(
    model_features: torch.Tensor,
    base_features: torch.Tensor,
    lambda_spread: float,
    lambda_structure: float,
    k: int = NEIGHBOURS,
) -> torch.Tensor:
    """SAGE's regularizer: lambda_spread * max(0, spread_0 - spread_theta) + lambda_structure * (1 - r).

    Differentiable in ``model_features``; the base features are constants (the frozen base model's).
    """
    z_model = normalized_rows(model_features)
    z_base = normalized_rows(base_features.detach())
    contraction = (spread(z_base) - spread(z_model)).clamp_min(0)
    return lambda_spread * contraction + lambda_structure * (1 - local_structure_correlation(z_model, z_base, k))
