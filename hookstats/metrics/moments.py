"""Streaming float64 moments of tensors, mergeable, with no tensor kept: the math of the
activation metrics.

The statistics of a stream of tensors ``x`` (all their elements pooled) are held as eight
float64 numbers, a *part*:

``count, mean, m2, m3, m4, min, max, zeros``

with ``m_p = sum((x - mean)**p)`` the central sums, ``min``/``max`` the extremes and ``zeros``
the number of elements equal to 0. A tensor's part is computed in two passes over a float64
copy of one chunk at a time (:data:`CHUNK` elements, so a large output never needs a float64
copy of itself): the chunk's mean, then the central sums of ``d = x - mean`` as dot products.
Parts are pooled exactly (in exact arithmetic) by the shifted-moment identities: with
``N = sum(n_i)``, ``mean = sum(n_i mean_i) / N`` and ``delta_i = mean_i - mean``,

* ``m2 = sum(m2_i + n_i delta_i**2)``
* ``m3 = sum(m3_i + 3 delta_i m2_i + n_i delta_i**3)``
* ``m4 = sum(m4_i + 4 delta_i m3_i + 6 delta_i**2 m2_i + n_i delta_i**4)``

(the binomial expansion of ``sum((x - mean_i + delta_i)**p)`` with ``sum(x - mean_i) = 0``).
Each term is a sum of squares or a product of small corrections, so no large numbers cancel,
unlike raw power sums ``sum(x**p)``; this is the many-part form of Chan et al.'s and Pébay's
pairwise updates. A part stays a tensor on the device of the values it describes, so streaming
never waits for the device (:class:`MomentAccumulator` folds every :data:`FOLD` parts there);
:meth:`Moments.of` reads one back once, at the end.

A NaN or Inf in the input makes ``mean`` non-finite, which :attr:`Moments.finite` reports.

May import: torch.

Example:
    >>> part = tensor_moments(torch.tensor([0.0, 1.0, 2.0, 3.0]))
    >>> m = Moments.of(part)
    >>> m.count, m.mean, m.variance, m.zeros, m.absmax
    (4, 1.5, 1.25, 1, 3.0)
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass

import torch

__all__ = [
    "CHUNK",
    "FIELDS",
    "FOLD",
    "MomentAccumulator",
    "Moments",
    "pool_moments",
    "tensor_moments",
]

FIELDS = ("count", "mean", "m2", "m3", "m4", "min", "max", "zeros")
"""The eight numbers of a part, in order."""
CHUNK = 1 << 21
"""Elements converted to float64 at a time (16 MiB of float64, about 3 such buffers live)."""
FOLD = 64
"""Parts an accumulator keeps before pooling them into one (on their device, no wait)."""


def _chunk_moments(x: torch.Tensor) -> torch.Tensor:
    """The part of a flat, non-empty chunk: two passes over its float64 copy."""
    low, high = torch.aminmax(x)
    nonzero = torch.count_nonzero(x)
    d = x.to(torch.float64, copy=True)  # a copy even when x is float64: it is shifted in place
    mean = d.mean()
    d.sub_(mean)
    d2 = d * d
    count = torch.full((), float(x.numel()), dtype=torch.float64, device=x.device)
    return torch.stack(
        [
            count,
            mean,
            d2.sum(),
            torch.dot(d2, d),
            torch.dot(d2, d2),
            low.to(torch.float64),
            high.to(torch.float64),
            count - nonzero,
        ]
    )


def tensor_moments(tensor: torch.Tensor) -> torch.Tensor:
    """The part ``(count, mean, m2, m3, m4, min, max, zeros)`` of a non-empty real tensor, as a
    float64 tensor of 8 on the tensor's device (nothing is read back to the host).

    Example:
        >>> tensor_moments(torch.tensor([[1.0, -1.0]])).tolist()
        [2.0, 0.0, 2.0, 0.0, 2.0, -1.0, 1.0, 0.0]
    """
    flat = tensor.detach().reshape(-1)
    if flat.numel() <= CHUNK:
        return _chunk_moments(flat)
    parts = [_chunk_moments(flat[i : i + CHUNK]) for i in range(0, flat.numel(), CHUNK)]
    return pool_moments(torch.stack(parts))


def pool_moments(parts: torch.Tensor) -> torch.Tensor:
    """Pool parts ``(k, 8)`` (each with ``count > 0``) into one part ``(8,)``, on their device.

    Example:
        >>> a, b = tensor_moments(torch.tensor([0.0, 2.0])), tensor_moments(torch.tensor([4.0]))
        >>> pool_moments(torch.stack([a, b])).tolist() == tensor_moments(
        ...     torch.tensor([0.0, 2.0, 4.0])).tolist()
        True
    """
    n, means, m2, m3 = parts[:, 0], parts[:, 1], parts[:, 2], parts[:, 3]
    total = n.sum()
    mean = (n * means).sum() / total
    delta = means - mean
    delta2 = delta * delta
    return torch.stack(
        [
            total,
            mean,
            (m2 + n * delta2).sum(),
            (m3 + 3 * delta * m2 + n * delta2 * delta).sum(),
            (parts[:, 4] + 4 * delta * m3 + 6 * delta2 * m2 + n * delta2 * delta2).sum(),
            parts[:, 5].min(),
            parts[:, 6].max(),
            parts[:, 7].sum(),
        ]
    )


@dataclass(frozen=True, slots=True)
class Moments:
    """The pooled statistics of every element seen, read back as Python floats.

    Attributes:
        count: elements seen.
        mean: their mean.
        m2, m3, m4: central sums ``sum((x - mean)**p)``.
        min, max: the extremes.
        zeros: elements equal to 0 (``-0.0`` included).
    """

    count: int
    mean: float
    m2: float
    m3: float
    m4: float
    min: float
    max: float
    zeros: int

    @classmethod
    def of(cls, part: torch.Tensor) -> Moments:
        """Read a part back (one transfer from its device)."""
        count, mean, m2, m3, m4, low, high, zeros = part.tolist()
        return cls(int(count), mean, m2, m3, m4, low, high, int(zeros))

    @classmethod
    def pooled(cls, parts: Iterable[Moments]) -> Moments:
        """Pool several results into one (the same formulas as :func:`pool_moments`).

        Example:
            >>> a = Moments.of(tensor_moments(torch.tensor([1.0, 3.0])))
            >>> Moments.pooled([a, a]).variance
            1.0
        """
        rows = [[getattr(m, f) for f in FIELDS] for m in parts if m.count]
        if not rows:
            return cls(0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, 0)
        return cls.of(pool_moments(torch.tensor(rows, dtype=torch.float64)))

    @property
    def finite(self) -> bool:
        """False when a NaN or Inf was among the elements (every moment is then undefined)."""
        return math.isfinite(self.mean) and math.isfinite(self.m4)

    @property
    def variance(self) -> float:
        """Population variance ``m2 / count`` (no Bessel correction)."""
        return self.m2 / self.count

    @property
    def absmax(self) -> float:
        """The largest absolute value."""
        return max(-self.min, self.max)


class MomentAccumulator:
    """Running :class:`Moments` of a stream of tensors; thread-safe; keeps no tensor it sees.

    Example:
        >>> acc = MomentAccumulator()
        >>> for batch in (torch.ones(3), torch.zeros(1)):
        ...     acc.add(batch)
        >>> acc.result().mean, acc.result().zeros
        (0.75, 1)
    """

    def __init__(self) -> None:
        self._parts: list[torch.Tensor] = []
        self._lock = threading.Lock()

    def add(self, tensor: torch.Tensor) -> None:
        """Fold in every element of a real tensor (an empty one changes nothing)."""
        if tensor.numel() == 0:
            return
        part = tensor_moments(tensor)
        with self._lock:
            self._parts.append(part)
            if len(self._parts) >= FOLD:
                self._fold()

    def _fold(self) -> None:
        device = self._parts[0].device
        parts = torch.stack([p.to(device) for p in self._parts])
        self._parts = [pool_moments(parts)]

    def result(self) -> Moments:
        """Everything added so far (``count == 0`` when nothing was)."""
        with self._lock:
            if not self._parts:
                return Moments.pooled([])
            if len(self._parts) > 1:
                self._fold()
            return Moments.of(self._parts[0])

    def reset(self) -> None:
        """Forget everything added."""
        with self._lock:
            self._parts = []
