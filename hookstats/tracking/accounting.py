"""The running totals of a ``track()`` block and the decision of how each forward runs:
:class:`TrackAccounts`.

The tracker's hooks ask :meth:`TrackAccounts.decide` how to run a forward and hand back what
was recorded; this module owns *what is added up*: per-hook-point stats, the bounded cost
cache and its families, uncounted ops, value reads, forwards, samples and time. Every change
happens under one lock, so a snapshot (:meth:`TrackAccounts.snapshot`) can be taken from
another thread (the live view's) at any moment, and several threads may run forwards.

How a forward runs (``decide``):

* ``count`` -- under the MAC counter, with the recorder: exact. A new signature that no cost
  model covers, every forward of a model that reads tensor values into Python (its control
  flow may depend on them), and the check forwards 8, 16, 32, ... of each family.
* ``steady`` -- a signature seen before (or predicted by the family's cost model): no hook,
  no counter; its cached costs are added at the next snapshot.
* ``record`` -- the same with ``timing=True``: the recorder's hooks measure latency and see the
  calls and shapes; MACs come from the cache.

May import: :mod:`hookstats.counting`, :mod:`hookstats.instrument`, and the
:mod:`hookstats.tracking` siblings ``cost_cache``, ``cost_model``, ``signature``, ``report``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pandas as pd

from ..counting import OUTSIDE_POINTS, MacCounter, UncountedOp, merge_uncounted
from ..instrument import CallRecord, ParameterSizes, PointInfo, PointStats
from .cost_cache import CostCache, Pending, SignatureCosts, per_point_stats, should_verify
from .report import TrackReport
from .signature import Signature

__all__ = ["COUNT", "RECORD", "STEADY", "ReportContext", "TrackAccounts"]

COUNT, RECORD, STEADY = "count", "record", "steady"


@dataclass(frozen=True, slots=True)
class ReportContext:
    """What a snapshot needs besides the totals: the points and how the block was set up."""

    points: list[PointInfo]
    parameter_sizes: ParameterSizes
    timing: bool
    device: str
    dtype: str
    outside_row: bool  # the model itself is not a tracked point: work outside gets a row


class TrackAccounts:
    """Totals of one ``track()`` block, changed only under :attr:`lock`."""

    def __init__(self, names: list[str], *, outside_row: bool) -> None:
        self.lock = threading.Lock()
        self.stats = {name: PointStats() for name in names}
        self.cache = CostCache(points=len(names))
        self.uncounted: dict[str, UncountedOp] = {}
        self.value_reads: dict[str, UncountedOp] = {}
        self.value_dependent = False
        self._outside_row = outside_row
        self._seen = 0
        self.forwards = self.failed = self.samples = self.unattributed = 0
        self.counted = self.predicted = self.estimated = self.signatures = 0
        self.busy_s = 0.0
        self.dtype: str | None = None

    # --- deciding -------------------------------------------------------------------------

    def decide(
        self, signature: Signature, *, timing: bool
    ) -> tuple[str, SignatureCosts | None, bool]:
        """How to run a forward with ``signature``: ``(mode, entry, predicted)`` (see the
        module docstring); for a counted check forward, ``entry`` is what is expected."""
        reuse = RECORD if timing else STEADY
        if self.value_dependent:
            return COUNT, None, False
        family = self.cache.family(signature.skeleton)
        entry = self.cache.get(signature)
        if entry is not None:
            family.forwards += 1
            return (COUNT if should_verify(family.forwards) else reuse), entry, False
        self.signatures += 1
        prediction = family.predict(signature.dims)
        if prediction is None:
            return COUNT, None, False
        entry = SignatureCosts(*prediction)
        family.forwards += 1
        if should_verify(family.forwards):
            return COUNT, entry, True
        self.predicted += 1
        self._cache(signature, entry)
        return reuse, entry, True

    def _cache(self, signature: Signature, entry: SignatureCosts) -> None:
        for gone in self.cache.put(signature, entry):
            self._settle(gone)

    def _settle(self, entry: SignatureCosts) -> None:
        """Add an entry's reuses to the running totals (it left the cache)."""
        if entry.steady:
            self._add_reuses(entry, entry.steady)
            entry.steady = 0

    def _add_reuses(self, entry: SignatureCosts, times: int) -> None:
        per_point, unattributed, uncounted = entry.expand()
        for name, one in per_point.items():
            self.stats[name].add_scaled(one, times)
        for _ in range(times if uncounted else 0):
            merge_uncounted(self.uncounted, uncounted)
        self.unattributed += unattributed * times

    # --- adding forwards ------------------------------------------------------------------

    def add_steady(self, pending: Pending, elapsed: float) -> None:
        """A forward that reused cached costs without hooks."""
        entry = pending.entry
        assert entry is not None
        if entry.evicted:
            self._add_reuses(entry, 1)
        else:
            entry.steady += 1
        self._count_forward(pending, elapsed)

    def add_counted(
        self,
        pending: Pending,
        calls: list[CallRecord],
        counter: MacCounter,
        unattributed: int,
        elapsed: float,
    ) -> None:
        """A forward run under the counter: exact. It becomes a sample of its family, its costs
        the cache entry of its signature; a check forward is compared with what was expected."""
        merge_uncounted(self.uncounted, counter.uncounted)
        merge_uncounted(self.value_reads, counter.value_reads)
        if counter.value_reads:
            self.value_dependent = True
        self._fold(calls, with_macs=True)
        self.unattributed += unattributed
        self.counted += 1
        entry = SignatureCosts.of(per_point_stats(calls), unattributed, counter.uncounted)
        expected = pending.entry
        if expected is not None and not pending.predicted and not expected.same_costs(entry):
            self.value_dependent = True  # same signature, other costs: not a function of shapes
        signature = pending.signature
        self.cache.family(signature.skeleton).add(signature.dims, entry.template, entry.values)
        if not self.value_dependent:
            self._cache(signature, entry)
        self._count_forward(pending, elapsed)

    def add_recorded(self, pending: Pending, calls: list[CallRecord], elapsed: float) -> None:
        """A forward recorded with hooks (``timing=True``) whose MACs come from the cache. If
        its calls differ from the cached ones, its MACs are estimated (calls x MACs per call)
        and every later forward is counted."""
        entry = pending.entry
        assert entry is not None
        per_point, unattributed, uncounted = entry.expand()
        self._fold(calls, with_macs=False)
        seen = per_point_stats(calls)
        same = all(
            seen.get(name, PointStats()).calls == one.calls for name, one in per_point.items()
        ) and set(seen) <= set(per_point)
        for name, one in per_point.items():
            share = 1.0 if same else seen.get(name, PointStats()).calls / max(one.calls, 1)
            self.stats[name].macs += round(one.macs * share)
            self.stats[name].self_macs += round(one.self_macs * share)
        if uncounted:
            merge_uncounted(self.uncounted, uncounted)
        self.unattributed += unattributed
        if not same:
            self.estimated += 1
            self.value_dependent = True
        self._count_forward(pending, elapsed)

    def add_failure(self) -> None:
        """A forward raised (or was interrupted): it is not counted."""
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

    # --- reading --------------------------------------------------------------------------

    def snapshot(
        self, context: ReportContext, wall_s: float, metrics: pd.DataFrame | None
    ) -> TrackReport:
        """A :class:`TrackReport` of everything so far (takes the lock)."""
        with self.lock:
            stats = {name: s.copy() for name, s in self.stats.items()}
            unattributed = self.unattributed
            uncounted = {k: v.copy() for k, v in self.uncounted.items()}
            for entry in self.cache.entries.values():
                if entry.steady:
                    per_point, outside, ops = entry.expand()
                    for name, one in per_point.items():
                        stats[name].add_scaled(one, entry.steady)
                    unattributed += outside * entry.steady
                    for _ in range(entry.steady if ops else 0):
                        merge_uncounted(uncounted, ops)
            if context.outside_row:
                stats[OUTSIDE_POINTS] = PointStats(
                    first_seen=len(stats) + 1, macs=unattributed, self_macs=unattributed
                )
            return TrackReport(
                points=context.points,
                stats=stats,
                forwards=self.forwards,
                failed_forwards=self.failed,
                samples=self.samples,
                busy_s=self.busy_s,
                wall_s=wall_s,
                timing=context.timing,
                signatures=self.signatures,
                device=context.device,
                dtype=self.dtype or context.dtype,
                uncounted_ops=uncounted,
                unattributed_macs=unattributed,
                parameter_sizes=context.parameter_sizes,
                metrics=metrics,
                counted_forwards=self.counted,
                predicted_forwards=self.predicted,
                estimated_forwards=self.estimated,
                value_reads={k: v.copy() for k, v in self.value_reads.items()},
            )
