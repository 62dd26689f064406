"""REML fit of a linear model with crossed random intercepts, from cross-products (docs/analysis.md).

The model of :func:`entmap.analysis.hypothesis_tests.mixed_model`::

    y = X beta + Z_1 u_1 + ... + Z_m u_m + e,   u_k ~ N(0, sigma_k^2 I),   e ~ N(0, sigma^2 I)

where each Z_k is the 0/1 indicator matrix of one grouping factor (prompt, subject). statsmodels'
``MixedLM`` fits it as variance components of one all-encompassing group and keeps n x q dense
matrices for that group (n cells, q levels): 3 GB at 90,000 cells. This fit follows lme4's
formulation (Bates, Maechler, Bolker and Walker 2015, "Fitting linear mixed-effects models using
lme4") and needs only the cross-products Z'Z, Z'X, X'X, Z'y, X'y and y'y: memory O(n + (q + p)^2)
and (q + p)^3 work per likelihood evaluation, whatever n is.

With relative standard deviations theta_k = sigma_k / sigma and Lambda = diag(theta_k on the
columns of Z_k), let

    A = [[Lambda Z'Z Lambda + I, Lambda Z'X], [X'Z Lambda, X'X]],   c = [Lambda Z'y; X'y],
    b = A^-1 c = [u~; beta^],   r^2 = y'y - b'c   (the penalized residual sum of squares).

The profiled REML deviance is

    d(theta) = log det A + (n - p) (1 + log(2 pi r^2 / (n - p))),

minimized over theta >= 0; then sigma^2 = r^2 / (n - p), sigma_k^2 = theta_k^2 sigma^2 and
Cov(beta^) = sigma^2 [A^-1]_XX (the inverse of X' V^-1 X). Tests compare every number with
statsmodels' ``MixedLM`` on data small enough for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg, optimize, sparse

#: Starting points of the relative standard deviations (lme4 starts at 1); the best optimum wins.
STARTS: tuple[float, ...] = (1.0, 0.1, 10.0)
#: A relative standard deviation below this is reported as on the boundary (variance zero).
BOUNDARY = 1e-4


@dataclass(frozen=True)
class CrossedFit:
    """A REML fit: fixed effects, their covariance, variance components, residual variance."""

    beta: np.ndarray
    beta_cov: np.ndarray
    variance_components: dict[str, float]
    residual_variance: float
    deviance: float
    converged: bool
    boundary: tuple[str, ...]

    @property
    def standard_errors(self) -> np.ndarray:
        return np.sqrt(np.diag(self.beta_cov))


def indicator_matrix(codes: np.ndarray, levels: int) -> sparse.csr_array:
    """The n x levels 0/1 matrix with a one in column ``codes[i]`` of row i."""
    rows = np.arange(len(codes))
    return sparse.csr_array((np.ones(len(codes)), (rows, codes)), shape=(len(codes), levels))


class _CrossProducts:
    """Z'Z, Z'X, X'X, Z'y, X'y, y'y of the stacked indicator matrices Z = [Z_1 ... Z_m]."""

    def __init__(self, y: np.ndarray, X: np.ndarray, factors: dict[str, np.ndarray]) -> None:
        mats, self.sizes = [], []
        for codes in factors.values():
            levels = int(codes.max()) + 1
            mats.append(indicator_matrix(codes, levels))
            self.sizes.append(levels)
        Z = sparse.hstack(mats, format="csr")
        self.n, self.p = X.shape
        self.q = Z.shape[1]
        self.ztz = (Z.T @ Z).toarray()
        self.ztx = np.asarray(Z.T @ X)
        self.zty = np.asarray(Z.T @ y)
        self.xtx, self.xty, self.yty = X.T @ X, X.T @ y, float(y @ y)

    def system(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A and c of the penalized least-squares problem at relative standard deviations ``theta``."""
        lam = np.repeat(theta, self.sizes)
        top = np.hstack([lam[:, None] * self.ztz * lam[None, :] + np.eye(self.q), lam[:, None] * self.ztx])
        bottom = np.hstack([(lam[:, None] * self.ztx).T, self.xtx])
        return np.vstack([top, bottom]), np.concatenate([lam * self.zty, self.xty])

    def solve(self, theta: np.ndarray) -> tuple[tuple[np.ndarray, bool], np.ndarray, float]:
        """Cholesky factor of A, b = A^-1 c and the penalized residual sum of squares r^2 at ``theta``."""
        A, c = self.system(theta)
        factor = linalg.cho_factor(A, lower=True)
        b = linalg.cho_solve(factor, c)
        return factor, b, float(self.yty - b @ c)

    def deviance(self, theta: np.ndarray) -> float:
        """The profiled REML deviance d(theta) of the module docstring."""
        factor, _, r2 = self.solve(theta)
        dof = self.n - self.p
        return 2.0 * np.log(np.diag(factor[0])).sum() + dof * (1.0 + np.log(2.0 * np.pi * r2 / dof))


def fit_crossed_intercepts(y: np.ndarray, X: np.ndarray, factors: dict[str, np.ndarray]) -> CrossedFit:
    """REML fit of y = X beta + sum_k Z_k u_k + e; ``factors`` maps a name to each cell's level code (0..L-1).

    Raises ``numpy.linalg.LinAlgError`` when X is rank-deficient (A is then not positive definite).
    """
    y, X = np.asarray(y, dtype=float), np.asarray(X, dtype=float)
    products = _CrossProducts(y, X, factors)
    bounds = [(0.0, None)] * len(factors)
    best = None
    for start in STARTS:
        result = optimize.minimize(products.deviance, np.full(len(factors), start), method="L-BFGS-B", bounds=bounds)
        if best is None or result.fun < best.fun:
            best = result
    theta = np.maximum(best.x, 0.0)
    factor, b, r2 = products.solve(theta)
    sigma2 = r2 / (products.n - products.p)
    q = products.q
    xx_block = linalg.cho_solve(factor, np.eye(len(b))[:, q:])[q:]  # [A^-1]_XX: p columns, not all q + p
    names = list(factors)
    return CrossedFit(
        beta=b[q:],
        beta_cov=sigma2 * xx_block,
        variance_components={name: float(t**2 * sigma2) for name, t in zip(names, theta, strict=True)},
        residual_variance=sigma2,
        deviance=float(best.fun),
        converged=bool(best.success),
        boundary=tuple(name for name, t in zip(names, theta, strict=True) if t < BOUNDARY),
    )
