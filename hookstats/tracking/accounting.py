"""The running totals of a ``track()`` block: :class:`TrackAccounts`.

The tracker's hooks decide *how* a forward runs (counted, recorded, or steady); this module owns
*what is added up*: per-hook-point stats, the per-signature cost cache, uncounted ops, forwards,
samples and time. Every change happens under one lock, so a snapshot (:meth:`snapshot`) can be
taken from another thread (the live view's) at any moment.

May import: :mod:`hookstats.counting`, :mod:`hookstats.instrument`, and the
:mod:`hookstats.tracking` siblings ``cost_cache`` and ``report``.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..counting import MacCounter, UncountedOp, merge_uncounted
from ..instrument import CallRecord, ParameterSizes, PointInfo, PointStats
from .cost_cache import Pending, SignatureCosts, forward_structure
from .report import TrackReport

__all__ = ["ReportContext", "TrackAccounts"]


@dataclass(frozen=True, slots=True)
class ReportContext:
    """What a snapshot needs besides the totals: the points and how the block was set up."""

    points: list[PointInfo]
    parameter_sizes: ParameterSizes
    timing: bool
    device: str
    dtype: str


class TrackAccounts:
    """Totals of one ``track()`` block, changed only under :attr:`lock`."""

    def __init__(self, names: list[str]) -> None:
        self.lock = threading.Lock()
        self.stats = {name: PointStats() for name in names}
        self.costs: dict[tuple[Any, ...], SignatureCosts] = {}
        self.uncounted: dict[str, UncountedOp] = {}
        self._seen = 0
        self.forwards = self.failed = self.samples = self.unattributed = 0
        self.busy_s = 0.0

    def add_steady(self, pending: Pending, elapsed: float) -> None:
        """A forward run without hooks: bookkeeping only, its totals are added at snapshots."""
        costs = pending.costs
        assert costs is not None  # a steady forward always has a cache entry
        costs.steady += 1
        costs.forwards += 1
        self._count_forward(pending, elapsed)

    def add_recorded(
        self,
        pending: Pending,
        calls: list[CallRecord],
        counter: MacCounter | None,
        unattributed: int,
        elapsed: float,
    ) -> None:
        """A forward run with hooks: fold its calls, and its MACs (counted now or cached)."""
        costs = self.costs.get(pending.signature)
        if counter is not None:
            merge_uncounted(self.uncounted, counter.uncounted)
            if costs is None:
                costs = self.costs[pending.signature] = SignatureCosts(calls, unattributed)
            self._fold(calls, with_macs=True)
            self.unattributed += unattributed
        else:
            assert costs is not None  # a recorded forward without the counter has a cache
            if forward_structure(calls) == costs.structure:
                costs.add_macs_to(self.stats)
            else:  # values steer the control flow: estimate this one, count the next ones
                costs.dynamic = True
                costs.add_macs_to(self.stats, Counter(c.hook_point for c in calls))
            self._fold(calls, with_macs=False)
            self.unattributed += costs.unattributed
        costs.forwards += 1
        self._count_forward(pending, elapsed)

    def add_failure(self) -> None:
        """A forward raised: it is not counted."""
        self.failed += 1

    def _count_forward(self, pending: Pending, elapsed: float) -> None:
        self.forwards += 1
        self.samples += pending.samples
        self.busy_s += elapsed

    def _fold(self, calls: list[CallRecord], *, with_macs: bool) -> None:
        for call in calls:
            stats = self.stats[call.hook_point]
            if stats.first_seen < 0:
                stats.first_seen = self._seen
                self._seen += 1
            stats.add_call(call, with_macs=with_macs)

    def snapshot(
        self, context: ReportContext, wall_s: float, metrics: pd.DataFrame | None
    ) -> TrackReport:
        """A :class:`TrackReport` of everything so far (takes the lock)."""
        with self.lock:
            stats = {name: s.copy() for name, s in self.stats.items()}
            unattributed = self.unattributed
            for costs in self.costs.values():
                costs.add_to(stats, costs.steady)
                unattributed += costs.unattributed * costs.steady
            return TrackReport(
                points=context.points,
                stats=stats,
                forwards=self.forwards,
                failed_forwards=self.failed,
                samples=self.samples,
                busy_s=self.busy_s,
                wall_s=wall_s,
                timing=context.timing,
                signatures=len(self.costs),
                device=context.device,
                dtype=context.dtype,
                uncounted_ops={k: v.copy() for k, v in self.uncounted.items()},
                unattributed_macs=unattributed,
                parameter_sizes=context.parameter_sizes,
                metrics=metrics,
            )
