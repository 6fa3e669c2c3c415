"""Exact medians of unions of tensors, shared across nested hook points (radix selection).

``weight_median`` of a container is the median of all its descendants' weights concatenated, so
with every module selected the same elements take part in many medians (a GPT-2 weight sits in
about five). Concatenating and partitioning per hook point would touch ~5x the model; instead:

1. each tensor is visited once: the top 16 bits of its float32 bit patterns are counted into a
   65536-bin histogram (bins of consecutive bit patterns are contiguous value ranges, so the
   histogram is ordered by value after flipping the negative half);
2. a set's histogram is the sum of its members' histograms, which locates the bin holding the
   middle rank(s) and the rank inside that bin, without touching any element;
3. each tensor is visited once more to extract the (few) elements of every bin some set asked
   for, and each median is finished by sorting those elements only.

The result equals ``np.median`` of the concatenation in float64 (mean of the two middle values
for an even count). Values must be exactly representable in float32 (float32, bf16, fp16
parameters); others (float64 parameters) use a concatenate-and-partition fallback.

Example:
    >>> import torch
    >>> m = PooledMedian({0: torch.tensor([3.0, -1.0]), 1: torch.tensor([2.0, 0.5, 7.0])})
    >>> m.median((0, 1))  # sorted: -1, 0.5, 2, 3, 7
    2.0
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch

BINS = 65536
_CHUNK = 1 << 18  # values per histogram/extraction step
_HALF = BINS // 2

__all__ = ["PooledMedian"]


def _ordered_bins(values: np.ndarray) -> np.ndarray:
    """Value-ordered bin index (0..65535) of each float32 value, from its top 16 bits."""
    top = (values.view(np.uint32) >> 16).astype(np.int64)
    return np.where(top >= _HALF, BINS - 1 - top, top + _HALF)


def _histogram(values: np.ndarray) -> np.ndarray:
    """Counts per value-ordered bin, from the signed high 16 bits of each float32.

    ``torch.bincount`` on int32 is ~2.5x faster than ``np.bincount`` (which first casts to
    int64). Shifted by 32768, negative floats land in ``[0, 32768)`` with the largest magnitudes
    last, positive floats in ``[32768, 65536)`` in increasing order. Done ``_CHUNK`` values at a
    time so the int32 keys stay in cache (1.5x faster than one model-sized temporary).
    """
    counts = torch.zeros(BINS, dtype=torch.int64)
    for start in range(0, values.size, _CHUNK):
        part = values[start : start + _CHUNK]
        if sys.byteorder == "little":
            high = torch.from_numpy(part).view(torch.int16)[1::2].to(torch.int32)
        else:  # pragma: no cover - big-endian hosts
            high = torch.from_numpy((part.view(np.int32) >> 16).astype(np.int32))
        counts += torch.bincount(high.add_(_HALF), minlength=BINS)
    flat = counts.numpy()
    return np.concatenate([flat[:_HALF][::-1], flat[_HALF:]])


def _in_range(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The elements of ``values`` within ``[lo, hi]``, ``_CHUNK`` at a time (small masks)."""
    parts = [
        part[(part >= lo) & (part <= hi)]
        for part in (values[s : s + _CHUNK] for s in range(0, values.size, _CHUNK))
    ]
    return np.concatenate(parts) if parts else values[:0]


def _bin_range(position: int) -> tuple[float, float]:
    """Smallest and largest float32 value of value-ordered bin ``position`` (NaN-safe)."""
    top = BINS - 1 - position if position < _HALF else position - _HALF
    edges = np.array([top << 16, (top << 16) | 0xFFFF], dtype=np.uint32).view(np.float32)
    lo, hi = float(edges.min()), float(edges.max())
    return (lo if lo == lo else -np.inf), (hi if hi == hi else np.inf)


class PooledMedian:
    """Medians of unions of 1-D float tensors, keyed by integer ids, with shared work cached.

    Args:
        sources: id -> tensor (any shape; flattened). Tensors whose values are not all exactly
            representable in float32 are handled by a slower concatenation fallback.
    """

    def __init__(self, sources: Mapping[int, torch.Tensor]) -> None:
        self._sources = dict(sources)
        self._values: dict[int, np.ndarray | None] = {}  # None: not exact in float32
        self._hist: dict[int, np.ndarray] = {}
        self._extracted: dict[tuple[int, int], np.ndarray] = {}
        self._medians: dict[tuple[int, ...], float] = {}

    def _f32(self, key: int) -> np.ndarray | None:
        """Tensor ``key``'s values as a flat float32 array, or None if float32 cannot hold them."""
        if key not in self._values:
            t = self._sources[key].detach().reshape(-1).cpu()
            t32 = t.to(torch.float32)
            exact = t.dtype != torch.float64 or torch.equal(t32.to(torch.float64), t)
            self._values[key] = np.ascontiguousarray(t32.numpy()) if exact else None
        return self._values[key]

    def _exact(self, key: int) -> np.ndarray:
        """The float32 values of a tensor already known to be exact in float32."""
        values = self._values[key]
        assert values is not None  # groups with an inexact tensor take the fallback
        return values

    def median(self, keys: Iterable[int]) -> float:
        """Median of the concatenation of tensors ``keys`` (NaN when they hold no element)."""
        group = tuple(sorted(set(keys)))
        self.prefetch([group])
        return self._medians[group]

    def prefetch(self, groups: Sequence[Iterable[int]]) -> None:
        """Compute the medians of many sets at once: one histogram and one extraction pass per
        tensor, however many sets it belongs to."""
        todo = [
            g
            for g in dict.fromkeys(tuple(sorted(set(g))) for g in groups)
            if g not in self._medians
        ]
        radix = []
        for group in todo:
            arrays = [self._f32(k) for k in group]
            exact = [a for a in arrays if a is not None]
            if len(exact) < len(arrays):
                self._medians[group] = self._fallback(group)
            elif sum(a.size for a in exact) == 0:
                self._medians[group] = float("nan")
            else:
                radix.append(group)
        plans = {group: self._locate(group) for group in radix}
        wanted: dict[int, set[int]] = {}
        for group, ((b1, _), (b2, _)) in plans.items():
            for key in group:
                wanted.setdefault(key, set()).update((b1, b2))
        for key, bins in wanted.items():
            self._extract(key, bins)
        for group, plan in plans.items():
            low, high = (self._select(group, b, r) for b, r in plan)
            self._medians[group] = (low + high) / 2.0

    def _locate(self, group: tuple[int, ...]) -> tuple[tuple[int, int], tuple[int, int]]:
        """(bin, rank within bin) of the two middle ranks of ``group``."""
        for key in group:
            if key not in self._hist:
                self._hist[key] = _histogram(self._exact(key))
        total = np.sum([self._hist[k] for k in group], axis=0)
        cumulative = np.cumsum(total)
        n = int(cumulative[-1])
        located = []
        for rank in ((n - 1) // 2, n // 2):
            b = int(np.searchsorted(cumulative, rank, side="right"))
            below = int(cumulative[b - 1]) if b else 0
            located.append((b, rank - below))
        return located[0], located[1]

    def _extract(self, key: int, bins: set[int]) -> None:
        missing = sorted(b for b in bins if (key, b) not in self._extracted)
        if not missing:
            return
        lo = min(_bin_range(b)[0] for b in missing)
        hi = max(_bin_range(b)[1] for b in missing)
        values = self._exact(key)
        candidates = _in_range(values, lo, hi)
        positions = _ordered_bins(candidates)
        for b in missing:
            self._extracted[(key, b)] = candidates[positions == b]

    def _select(self, group: tuple[int, ...], b: int, rank: int) -> float:
        pool = np.concatenate([self._extracted[(k, b)] for k in group])
        return float(np.partition(pool, rank)[rank])

    def _fallback(self, group: tuple[int, ...]) -> float:
        parts = [self._sources[k].detach().reshape(-1).to(torch.float64).cpu() for k in group]
        values = torch.cat(parts).numpy() if parts else np.empty(0)
        return float(np.median(values)) if values.size else float("nan")
