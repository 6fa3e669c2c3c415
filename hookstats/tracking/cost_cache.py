"""The bounded cache of per-signature costs that keeps :func:`hookstats.track` cheap.

A :class:`SignatureCosts` is what one forward of a given work signature
(:mod:`hookstats.tracking.signature`) costs, per hook point: counted (a forward run under the
MAC counter) or predicted (:mod:`hookstats.tracking.cost_model`). Forwards that reuse it are
only counted (``steady``); their totals are added when a snapshot is taken.

:class:`CostCache` holds the entries and the families, both bounded: at most
:data:`RECORD_BUDGET` per-point records in all (``max(16, RECORD_BUDGET // points)`` entries)
and :data:`MAX_FAMILIES` families, least recently used first out. An entry that leaves the
cache hands its totals over to the block's running totals (:meth:`CostCache.put` returns it),
so nothing is lost: a block over 10,001 distinct sequence lengths keeps its memory flat.

May import: torch, numpy, :mod:`hookstats.counting`, :mod:`hookstats.instrument` and the
:mod:`hookstats.tracking` siblings ``signature`` and ``cost_model``.

Example:
    >>> from hookstats.instrument import PointStats
    >>> cache = CostCache(points=2)
    >>> cache.max_entries
    8192
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, NamedTuple

import numpy as np

from ..counting import UncountedOp
from ..instrument import CallRecord, PointStats
from .cost_model import Family, Template, devectorize, vectorize
from .signature import Signature

__all__ = [
    "MAX_FAMILIES",
    "RECORD_BUDGET",
    "CostCache",
    "Pending",
    "SignatureCosts",
    "per_point_stats",
    "should_verify",
]

RECORD_BUDGET = 16_384
"""Per-point records the cache may hold in all (a few MiB)."""
MAX_FAMILIES = 64
"""Families (skeletons) with cost models kept at once."""
VERIFY_FROM = 32


def should_verify(forward_number: int) -> bool:
    """Whether the ``forward_number``-th uncounted forward of a family is counted instead, to
    check the cache and the cost models (forwards 32, 64, 128, ...).

    >>> [n for n in range(1, 300) if should_verify(n)]
    [32, 64, 128, 256]
    """
    return forward_number >= VERIFY_FROM and forward_number & (forward_number - 1) == 0


def per_point_stats(calls: list[CallRecord]) -> dict[str, PointStats]:
    """One forward's calls folded per hook point, latency left out (it is not a cost)."""
    stats: dict[str, PointStats] = {}
    for call in calls:
        point = stats.get(call.hook_point)
        if point is None:
            point = stats[call.hook_point] = PointStats()
        point.add_call(call)
    for point in stats.values():
        point.latency_s = point.self_latency_s = 0.0
    return stats


class SignatureCosts:
    """What one forward of a signature costs, and how many forwards reused it.

    Attributes:
        template, values: the costs as :func:`~.cost_model.vectorize` made them.
        steady: forwards that reused these costs and are not yet in the running totals.
        evicted: the entry left the cache; later reuses are added at once.
    """

    __slots__ = ("_expanded", "evicted", "family", "steady", "template", "values")

    def __init__(self, template: Template, values: np.ndarray | list[int]) -> None:
        self.template = template
        self.values = values if isinstance(values, np.ndarray) else _as_array(values)
        self.steady = 0
        self.evicted = False
        self.family: Family | None = None  # set when cached: the family its reuses count in
        self._expanded: tuple[dict[str, PointStats], int, dict[str, UncountedOp]] | None = None

    @classmethod
    def of(
        cls, per_point: dict[str, PointStats], unattributed: int, uncounted: dict[str, UncountedOp]
    ) -> SignatureCosts:
        """The entry of a counted forward."""
        return cls(*vectorize(per_point, unattributed, uncounted))

    def expand(self) -> tuple[dict[str, PointStats], int, dict[str, UncountedOp]]:
        """``(per-point stats, MACs outside points, uncounted ops)`` of one forward."""
        if self._expanded is None:
            self._expanded = devectorize(self.template, self.values)
        return self._expanded

    def same_costs(self, other: SignatureCosts) -> bool:
        """True when two entries describe the same forward."""
        return self.template == other.template and np.array_equal(self.values, other.values)


def _as_array(values: list[int]) -> np.ndarray:
    """int64 when every value fits, else Python ints (exact either way)."""
    if all(-(2**62) < v < 2**62 for v in values):
        return np.asarray(values, dtype=np.int64)
    return np.asarray(values, dtype=object)


class CostCache:
    """Entries per signature and families per skeleton, both bounded (LRU)."""

    def __init__(self, points: int) -> None:
        self.max_entries = max(16, RECORD_BUDGET // max(1, points))
        self.entries: OrderedDict[Signature, SignatureCosts] = OrderedDict()
        self.families: OrderedDict[Any, Family] = OrderedDict()
        self.evictions = 0

    def get(self, signature: Signature) -> SignatureCosts | None:
        """The entry of ``signature`` (now the most recently used), if cached."""
        entry = self.entries.get(signature)
        if entry is not None:
            self.entries.move_to_end(signature)
        return entry

    def put(self, signature: Signature, entry: SignatureCosts) -> list[SignatureCosts]:
        """Cache ``entry``; returns the entries pushed out (their ``steady`` not yet added)."""
        old = self.entries.pop(signature, None)
        self.entries[signature] = entry
        evicted = [old] if old is not None else []
        while len(self.entries) > self.max_entries:
            evicted.append(self.entries.popitem(last=False)[1])
        for gone in evicted:
            gone.evicted = True
        self.evictions += len(evicted)
        return evicted

    def family(self, skeleton: Any) -> Family:
        """The family of ``skeleton`` (made if new; the least recently used one is dropped)."""
        family = self.families.get(skeleton)
        if family is None:
            family = self.families[skeleton] = Family()
            while len(self.families) > MAX_FAMILIES:
                self.families.popitem(last=False)
        else:
            self.families.move_to_end(skeleton)
        return family


class Pending(NamedTuple):
    """A forward in progress: what the model's pre-hook decided and measured."""

    signature: Signature
    mode: str
    entry: SignatureCosts | None  # reused costs, or (when counted to verify) the expectation
    predicted: bool  # the entry comes from a cost model, not from a counted forward
    samples: int
    input_bytes: int
    started: float
