"""Singular values without U/V: the Gram route, its accuracy guard, and Lanczos for sigma_max.

Everything here is float64 numpy (OpenBLAS: a true ``syrk`` for the Gram, and it degrades far
less than multi-threaded MKL LAPACK on a busy CPU); nothing here knows about models or caches.

* :func:`gram` -- the smaller Gram matrix ``AᵀA`` or ``AAᵀ`` (``r x r``, ``r = min(m, n)``);
  numpy sees ``a.T @ a`` and calls ``syrk``, half the work of a general product.
* :func:`gram_singular_values` -- ``sqrt(eigvalsh(G))`` for a batch of same-sized Grams, plus a
  per-matrix flag saying whether the result is provably within ``GRAM_REL_TOL`` of the SVD.
  Squaring a matrix squares its condition number: eigenvalues of ``G`` carry an absolute error
  of about ``eps * (sqrt(k) + r) * lambda_max``, negligible for the large singular values but
  not for tiny ones (rank-deficient matrices). The flag bounds the resulting error of the *sum*
  of singular values; flagged matrices are recomputed with float64 SVD (:func:`svd_values`).
* :func:`top_eigenvalue` -- Lanczos with full reorthogonalisation on a Gram, stopped when the
  top Ritz pair's residual is below ``LANCZOS_REL_RESIDUAL * theta`` (Weyl: an eigenvalue lies
  that close, so sigma_max is within half of that, relatively); falls back to ``eigvalsh``.

Example:
    >>> a = np.diag([3.0, 2.0, 1.0])
    >>> sv, ok = gram_singular_values(gram(a)[None], [3])
    >>> sv[0].round(12).tolist(), bool(ok[0])
    ([3.0, 2.0, 1.0], True)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

EPS64 = float(np.finfo(np.float64).eps)
GRAM_REL_TOL = 1e-9
"""A Gram spectrum is accepted when its bounded error in the sum of singular values is below
this fraction of that sum (1000x inside the 1e-6 accuracy promise)."""
GRAM_SAFETY = 8.0
LANCZOS_REL_RESIDUAL = 1e-9
LANCZOS_MAX_ITER = 300
LANCZOS_DIRECT_BELOW = 64
"""Grams smaller than this go straight to ``eigvalsh`` (cheaper than iterating)."""

__all__ = [
    "gram",
    "gram_singular_values",
    "singular_values",
    "svd_values",
    "top_eigenvalue",
]


def gram(a: np.ndarray) -> np.ndarray:
    """The ``r x r`` Gram matrix of 2-D ``a``, ``r = min(a.shape)``, in float64 (symmetric)."""
    a = np.asarray(a, dtype=np.float64)
    return a.T @ a if a.shape[0] >= a.shape[1] else a @ a.T


def gram_singular_values(grams: np.ndarray, long_sides: Sequence[int],
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Singular values (descending) of a batch of matrices from their Grams ``(B, r, r)``.

    Args:
        grams: Grams of ``B`` matrices with the same ``r``.
        long_sides: each matrix's longer side ``k`` (the inner dimension of its Gram).

    Returns:
        ``(sv, ok)``: ``sv`` of shape ``(B, r)``; ``ok[b]`` is False when the Gram route cannot
        guarantee ``GRAM_REL_TOL`` on the sum of ``b``'s singular values (use :func:`svd_values`).
    """
    lam = np.clip(np.linalg.eigvalsh(grams), 0.0, None)
    sv = np.sqrt(lam)[:, ::-1]
    r = grams.shape[-1]
    k = np.asarray(long_sides, dtype=np.float64)
    dlam = GRAM_SAFETY * EPS64 * (np.sqrt(k) + r) * lam[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        bound = np.nan_to_num(dlam[:, None] / (sv + np.sqrt(dlam)[:, None])).sum(-1)
    ok = bound <= GRAM_REL_TOL * sv.sum(-1)
    return sv, ok


def svd_values(a: np.ndarray) -> np.ndarray:
    """Float64 singular values of a 2-D array by SVD (no U/V): the accurate fallback."""
    return np.linalg.svd(np.asarray(a, dtype=np.float64), compute_uv=False)


def singular_values(a: np.ndarray) -> np.ndarray:
    """Descending float64 singular values of one 2-D array: Gram route, SVD when unsafe.

    Example:
        >>> bool(singular_values(np.ones((2, 3)))[1] < 1e-7)  # rank 1: second value is zero
        True
    """
    sv, ok = gram_singular_values(gram(a)[None], [max(np.shape(a))])
    return sv[0] if ok[0] else svd_values(a)


def _top_ritz(alpha: list[float], beta: list[float]) -> tuple[float, float]:
    """Top Ritz value of the Lanczos tridiagonal and its residual norm ``beta_j * |s_j|``."""
    t = np.diag(alpha) + np.diag(beta[:-1], 1) + np.diag(beta[:-1], -1)
    evals, evecs = np.linalg.eigh(t)
    return float(evals[-1]), beta[-1] * abs(float(evecs[-1, -1]))


def top_eigenvalue(g: np.ndarray, seed: int = 0) -> float:
    """Largest eigenvalue of a symmetric positive semi-definite float64 matrix, by Lanczos.

    Stops when the top Ritz pair's residual is below ``LANCZOS_REL_RESIDUAL * theta`` or the
    Krylov space became invariant; unconverged after ``min(r, LANCZOS_MAX_ITER)`` steps (or for
    ``r < LANCZOS_DIRECT_BELOW``) it uses ``eigvalsh``. One matrix at a time, so the Gram stays
    in cache across iterations.

    Example:
        >>> round(top_eigenvalue(np.diag(np.arange(1.0, 101.0))), 9)
        100.0
    """
    r = g.shape[0]
    scale = float(np.trace(g))  # >= lambda_max >= trace / r
    if scale <= 0.0:
        return 0.0
    if r < LANCZOS_DIRECT_BELOW:
        return max(float(np.linalg.eigvalsh(g)[-1]), 0.0)
    q = np.random.default_rng(seed).standard_normal(r)
    q /= np.linalg.norm(q)
    steps = min(r, LANCZOS_MAX_ITER)
    basis = np.zeros((steps, r))
    alpha: list[float] = []
    beta: list[float] = []
    for j in range(steps):
        basis[j] = q
        w = g @ q
        alpha.append(float(w @ q))
        known = basis[: j + 1]
        for _ in range(2):  # full reorthogonalisation, twice is enough
            w -= known.T @ (known @ w)
        beta.append(float(np.linalg.norm(w)))
        if j >= 4 and (j % 3 == 0 or j == steps - 1):
            theta, resid = _top_ritz(alpha, beta)
            if resid <= LANCZOS_REL_RESIDUAL * theta or beta[-1] <= EPS64 * scale:
                return max(theta, 0.0)
        if beta[-1] <= EPS64 * scale:  # invariant subspace before a check: finish now
            return max(_top_ritz(alpha, beta)[0], 0.0)
        q = w / beta[-1]
    return max(float(np.linalg.eigvalsh(g)[-1]), 0.0)
