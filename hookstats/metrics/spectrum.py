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
* :func:`top_singular_value` -- sigma_max alone, the fast way: the *direction* comes from
  float32 work (a float32 Gram, half the cost of float64, and float32 Lanczos on it), the
  *value* from a float64 Rayleigh-Ritz step on the original matrix. A Rayleigh quotient's
  error is quadratic in the direction's error where the top is separated (measured: max
  ~5e-10 relative over GPT-2 small's 50 random-init matrices, whose top singular values are
  clustered within 2e-4 of each other) and at worst ``SIGMA_DIRECTION_TOL / 2`` = 5e-7.

Example:
    >>> a = np.diag([3.0, 2.0, 1.0])
    >>> sv, ok = gram_singular_values(gram(a)[None], [3])
    >>> sv[0].round(12).tolist(), bool(ok[0])
    ([3.0, 2.0, 1.0], True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .blocks import float64_blocks

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
    "lanczos_top",
    "singular_values",
    "svd_values",
    "top_eigenvalue",
    "top_singular_value",
]


def gram(a: np.ndarray) -> np.ndarray:
    """The ``r x r`` Gram matrix of 2-D ``a``, ``r = min(a.shape)``, in float64 (symmetric)."""
    a = np.asarray(a, dtype=np.float64)
    product: np.ndarray = a.T @ a if a.shape[0] >= a.shape[1] else a @ a.T
    return product


def gram_singular_values(
    grams: np.ndarray,
    long_sides: Sequence[int],
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


def lanczos_top(
    g: np.ndarray, rel_residual: float, invariant: float, block: int = 1, seed: int = 0
) -> tuple[float, np.ndarray] | None:
    """Top Ritz value and the top ``block`` Ritz vectors (float64 columns) of symmetric ``g``
    by Lanczos with full reorthogonalisation, in ``g``'s dtype.

    Stops when the top Ritz pair's residual ``beta_j |s_j|`` is below ``rel_residual * theta``
    (checked every 4 steps), or when ``beta_j <= invariant * max(alpha)`` (the Krylov space is
    invariant up to rounding); ``None`` if neither happened in ``min(r, LANCZOS_MAX_ITER)``
    steps. One matrix at a time, so ``g`` stays in cache across iterations.
    """
    r = g.shape[0]
    q = np.asarray(np.random.default_rng(seed).standard_normal(r), dtype=g.dtype)
    q /= np.linalg.norm(q)
    steps = min(r, LANCZOS_MAX_ITER)
    basis = np.zeros((steps, r), dtype=g.dtype)
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
        done = beta[-1] <= invariant * max(max(alpha), 0.0)
        if done or (j >= 4 and j % 4 == 0) or j == steps - 1:
            t = np.diag(alpha) + np.diag(beta[:-1], 1) + np.diag(beta[:-1], -1)
            evals, evecs = np.linalg.eigh(t)
            theta = float(evals[-1])
            if done or beta[-1] * abs(evecs[-1, -1]) <= rel_residual * theta:
                top = evecs[:, -min(block, j + 1) :]
                return theta, (top.T @ known.astype(np.float64)).T
        q = w / g.dtype.type(beta[-1])
    return None


def top_eigenvalue(g: np.ndarray, seed: int = 0) -> float:
    """Largest eigenvalue of a symmetric positive semi-definite float64 matrix, by Lanczos.

    Stops when the top Ritz pair's residual is below ``LANCZOS_REL_RESIDUAL * theta`` or the
    Krylov space became invariant; unconverged (or for ``r < LANCZOS_DIRECT_BELOW``) it uses
    ``eigvalsh``.

    Example:
        >>> round(top_eigenvalue(np.diag(np.arange(1.0, 101.0))), 9)
        100.0
    """
    r = g.shape[0]
    if float(np.trace(g)) <= 0.0:
        return 0.0
    found = None
    if r >= LANCZOS_DIRECT_BELOW:
        found = lanczos_top(g, LANCZOS_REL_RESIDUAL, invariant=EPS64 * r, seed=seed)
    theta = found[0] if found is not None else float(np.linalg.eigvalsh(g)[-1])
    return max(theta, 0.0)


SIGMA_DIRECT_BELOW = 192
"""Matrices with a shorter side below this get sigma_max from the float64 Gram's ``eigvalsh``:
measured 2-5x cheaper than the float32 Lanczos route at these sizes."""
RITZ_BLOCK = 4
"""Ritz vectors handed from the float32 Lanczos to the float64 Rayleigh-Ritz step."""
SIGMA_DIRECTION_TOL = 1e-6
"""float32 Lanczos stops when the top Ritz pair's residual is below this fraction of its value.
A residual ``rho * theta`` puts the Rayleigh quotient within ``rho`` (relative) of an eigenvalue
of the Gram, so sigma_max within ``rho / 2``: 5e-7 at worst (a top gap near ``rho``, whose two
vectors the direction mixes); measured errors are ~1e-10 when the top is not that degenerate."""
SIGMA_AGREEMENT = 1e-4
"""The float64 Rayleigh quotient must agree with the float32 Ritz value this well (relatively),
or the matrix is solved again in float64 (a sanity check against float32 range trouble)."""
_FLOAT32_INVARIANT = 1e-6  # a Lanczos beta this small (vs the Ritz scale) is rounding noise
_SAFE_EXPONENT = 40  # |entries| in [2**-40, 2**40]: float32 Grams neither underflow nor overflow


def _rayleigh_ritz_sigma(a: np.ndarray, v: np.ndarray) -> float:
    """The largest singular value of ``a`` restricted to the span of ``v``'s columns (right
    singular side when ``a`` is tall, left when wide), in float64: the best estimate that span
    allows, and never above the true sigma_max. ``a`` is converted a block at a time
    (:func:`~hookstats.metrics.blocks.float64_blocks`), so no float64 copy of it is made.
    Several columns resolve top values closer together than float32 can tell apart (the
    float32 direction is then any mix of their vectors)."""
    v = np.linalg.qr(v)[0]
    h = np.zeros((v.shape[1], v.shape[1]))
    if a.shape[0] >= a.shape[1]:  # row blocks; v spans right singular vectors: (A V)ᵀ (A V)
        for block in float64_blocks(a):
            y = block @ v
            h += y.T @ y
    else:  # column blocks; v spans left singular vectors: (Vᵀ A)(Vᵀ A)ᵀ, summed over columns
        for block in float64_blocks(a):
            z = v.T @ block
            h += z @ z.T
    return math.sqrt(max(float(np.linalg.eigvalsh(h)[-1]), 0.0))


def top_singular_value(a: np.ndarray) -> float:
    """Largest singular value of 2-D ``a`` (float32 or float64), within 5e-7 relative
    (typically ~1e-10); NaN when ``a`` holds NaN/Inf.

    The direction is found in float32 (Gram and Lanczos, after an exact power-of-two scaling
    that keeps squares inside float32's range), the value by a float64 Rayleigh-Ritz step on
    ``a`` itself. Small matrices, and any matrix where float32 and float64 disagree by more than
    ``SIGMA_AGREEMENT``, use the float64 Gram and ``eigvalsh``/Lanczos instead.

    Example:
        >>> round(top_singular_value(np.diag([3.0, 2.0, 1.0])), 12)
        3.0
    """
    if a.size == 0:
        return 0.0
    peak = max(float(a.max()), -float(a.min()))  # no |a| temporary
    if not math.isfinite(peak):
        return math.nan  # NaN/Inf entries: no singular values to speak of
    if peak == 0.0:
        return 0.0
    if min(a.shape) < SIGMA_DIRECT_BELOW:  # exact and cheaper than iterating (measured)
        return math.sqrt(max(float(np.linalg.eigvalsh(gram(a))[-1]), 0.0))
    shift = -math.frexp(peak)[1]  # peak * 2**shift lies in [0.5, 1)
    if abs(shift) < _SAFE_EXPONENT:
        shift = 0  # squares and sums stay far inside float32's range: no scaled copy
    scaled = a.astype(np.float32, copy=False)
    if shift:
        scaled = (a * 2.0**shift).astype(np.float32)
    g = scaled.T @ scaled if a.shape[0] >= a.shape[1] else scaled @ scaled.T
    found = lanczos_top(g, SIGMA_DIRECTION_TOL, _FLOAT32_INVARIANT, block=RITZ_BLOCK)
    if found is not None:
        sigma = _rayleigh_ritz_sigma(a, found[1])
        ritz = math.sqrt(max(found[0], 0.0)) * 2.0**-shift
        if abs(sigma - ritz) <= SIGMA_AGREEMENT * sigma:
            return sigma
    return math.sqrt(top_eigenvalue(gram(a)))
