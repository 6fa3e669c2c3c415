"""What a metric plugin sees: :class:`MetricContext`, one per (hook point, call).

Definitions, stated once for every metric:

* a hook point's **weights** are the parameters it owns (recursively) whose name does not end
  in ``bias``; its **weight matrices** ``W_1..W_K`` are the weights with ``ndim >= 2``, conv
  kernels reshaped to ``(out_channels, -1)``; its **biases** are the parameters named ``*bias``;
* tied tensors (one Parameter reachable under several names, or views of the same storage)
  count once.

The accessors enforce the undefined cases so plugins never see them: reading ``weights``,
``matrices`` or ``biases`` when there are none, or when one of them holds NaN/Inf, raises
:class:`MetricUndefined`, which ``compute_metrics`` turns into a NaN value with that reason in
the ``note`` column. A plugin may raise :class:`MetricUndefined` itself for its own cases.

Expensive values are cached per tensor for the whole ``compute_metrics`` call and shared by all
hook points containing that tensor: singular values, sigma_max, float64 reductions, medians and
anything a plugin computes through :meth:`MetricContext.per_matrix`.

Example:
    >>> import hookstats.metrics as hm
    >>> @hm.register_metric("frob_max", needs=("matrices",))
    ... def frob_max(ctx: hm.MetricContext) -> float:
    ...     "Largest Frobenius norm among the hook point's matrices."
    ...     return max(ctx.per_matrix("fro", lambda w: float(w.norm())))
    >>> hm.unregister_metric("frob_max")
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from .params import ParamStore, TensorStats

__all__ = ["MetricContext", "MetricUndefined"]


class MetricUndefined(Exception):
    """Raised to say "this metric is undefined here"; becomes NaN with the message as note.

    Example:
        >>> raise MetricUndefined("no bias parameters")
        Traceback (most recent call last):
        ...
        hookstats.metrics.context.MetricUndefined: no bias parameters
    """


def combine_moments(parts: Sequence[tuple[int, float, float]]) -> tuple[int, float, float]:
    """Pool ``(count, mean, m2)`` triples (``m2`` = sum of squared deviations), exactly.

    Returns ``(count, mean, variance)`` with variance = m2 / count (no Bessel correction).

    Example:
        >>> combine_moments([(2, 1.0, 2.0), (2, 3.0, 2.0)])  # [0, 2] and [2, 4]: mean 2, var 2
        (4, 2.0, 2.0)
    """
    count = sum(n for n, _, _ in parts)
    if count == 0:
        return 0, math.nan, math.nan
    mean = sum(n * m for n, m, _ in parts if n) / count
    m2 = sum(s + n * (m - mean) ** 2 for n, m, s in parts if n)
    return count, mean, m2 / count


class MetricContext:
    """The inputs of one metric at one hook point.

    Attributes:
        point: the hook point's name (``"(model)"`` for the whole model).
        module: the hook point's module (the model itself for ``"(model)"``).
        model: the whole model (category-2 metrics run it; never modify it).
        task: the ``task=`` given to ``compute_metrics`` (None if not given).
        dtype: dtype of the tensors returned by ``weights``/``matrices``/``biases``.

    Example:
        >>> from torch import nn
        >>> from hookstats.metrics.params import ParamStore
        >>> store = ParamStore(nn.Linear(3, 2), torch.float32)
        >>> ctx = MetricContext("(model)", store.model, store, [0, 1])
        >>> [tuple(m.shape) for m in ctx.matrices], ctx.bias_names, len(ctx.singular_values())
        ([(2, 3)], ['bias'], 1)
    """

    def __init__(
        self,
        point: str,
        module: nn.Module,
        store: ParamStore,
        indices: Sequence[int],
        task: Any = None,
    ) -> None:
        self.point = point
        self.module = module
        self.model = store.model
        self.task = task
        self.dtype = store.dtype
        self._store = store
        params = [store.params[i] for i in indices]
        self._weights = [p.index for p in params if not p.is_bias]
        self._matrices = [p.index for p in params if p.is_matrix]
        self._biases = [p.index for p in params if p.is_bias]

    # --- names (never raise) -----------------------------------------------------------------

    def _names(self, indices: list[int]) -> list[str]:
        return [self._store.params[i].name for i in indices]

    @property
    def weight_names(self) -> list[str]:
        """Names of the weights (first qualified name of each unique tensor)."""
        return self._names(self._weights)

    @property
    def matrix_names(self) -> list[str]:
        """Names of the weight matrices, in the order of :attr:`matrices`."""
        return self._names(self._matrices)

    @property
    def bias_names(self) -> list[str]:
        """Names of the biases."""
        return self._names(self._biases)

    # --- checked indices ---------------------------------------------------------------------

    def _checked(self, indices: list[int], what: str) -> list[int]:
        if not indices:
            raise MetricUndefined(f"no {what}")
        for i in indices:
            if not self._store.finite(i):
                name = self._store.params[i].name
                raise MetricUndefined(f"non-finite values (NaN/Inf) in {name!r}")
        return indices

    def _weight_idx(self) -> list[int]:
        return self._checked(self._weights, "weight parameters")

    def _matrix_idx(self) -> list[int]:
        return self._checked(self._matrices, "weight matrices (weights with ndim >= 2)")

    def _bias_idx(self) -> list[int]:
        return self._checked(self._biases, "bias parameters")

    # --- tensors -----------------------------------------------------------------------------

    @property
    def weights(self) -> list[torch.Tensor]:
        """The weights, as detached CPU copies in :attr:`dtype`, original shapes."""
        return [self._store.tensor(i) for i in self._weight_idx()]

    @property
    def matrices(self) -> list[torch.Tensor]:
        """The weight matrices ``W_1..W_K``, 2-D (conv kernels as ``(out_channels, -1)``)."""
        store = self._store
        return [store.tensor(i).reshape(store.params[i].matrix_shape) for i in self._matrix_idx()]

    @property
    def biases(self) -> list[torch.Tensor]:
        """The biases, as detached CPU copies in :attr:`dtype`."""
        return [self._store.tensor(i) for i in self._bias_idx()]

    # --- cached derived values ---------------------------------------------------------------

    def singular_values(self) -> list[torch.Tensor]:
        """Each matrix's singular values, descending, float64 (computed once per call)."""
        return [torch.from_numpy(self._store.singular_values(i).copy()) for i in self._matrix_idx()]

    def sigma_max(self) -> torch.Tensor:
        """Each matrix's largest singular value, float64 ``(K,)`` (no full spectrum needed)."""
        values = [self._store.sigma_max(i) for i in self._matrix_idx()]
        return torch.tensor(values, dtype=torch.float64)

    def matrix_stats(self) -> list[TensorStats]:
        """Float64 reductions of each matrix: ``l1``, ``fro``, ``trace``, ``mean``, ..."""
        return [self._store.stats(i) for i in self._matrix_idx()]

    def per_matrix(self, key: str, fn: Callable[[torch.Tensor], float]) -> list[float]:
        """``fn(W_k)`` for every matrix, cached per tensor under ``key`` for the whole call, so
        containers reuse the values computed for their children. ``key`` names the quantity:
        plugins using the same key share the cached values, so make it specific."""
        return [self._store.custom(i, key, fn) for i in self._matrix_idx()]

    def moments(self, kind: str = "weights") -> tuple[int, float, float]:
        """``(count, mean, variance)`` of all weights (or ``"biases"``) concatenated; variance
        without Bessel correction, pooled exactly in float64."""
        stats = [self._store.stats(i) for i in self._kind(kind)]
        return combine_moments([(s.count, s.mean, s.m2) for s in stats])

    def median(self, kind: str = "weights") -> float:
        """Median of all weights (or ``"biases"``) concatenated, as ``np.median`` defines it."""
        return self._store.median(self._kind(kind))

    def _kind(self, kind: str) -> list[int]:
        if kind == "weights":
            return self._weight_idx()
        if kind == "biases":
            return self._bias_idx()
        raise ValueError(f"kind must be 'weights' or 'biases', got {kind!r}")

    def __repr__(self) -> str:
        return (
            f"MetricContext(point={self.point!r}, weights={len(self._weights)}, "
            f"matrices={len(self._matrices)}, biases={len(self._biases)})"
        )
