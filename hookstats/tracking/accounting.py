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
  flow may depend on them), and the check forwards 32, 64, 128, ... of each family.
* ``steady`` -- a signature seen before (or predicted by the family's cost model): no hook,
  no counter; its cached costs are added at the next snapshot.
* ``record`` -- the same with ``timing=True``: the recorder's light hooks measure latency and
  count each point's calls (checked against the cached ones); the costs come from the cache.

May import: :mod:`hookstats.counting`, :mod:`hookstats.instrument`, and the
:mod:`hookstats.tracking` siblings ``cost_cache``, ``cost_model``, ``signature``, ``report``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..counting import OUTSIDE_POINTS, MacCounter, UncountedOp, merge_uncounted
from ..instrument import CallRecord, ParameterSizes, PointInfo, PointStats
from .cost_cache import CostCache, Pending, SignatureCosts, per_point_stats, should_verify
from .cost_model import devectorize, sum_costs
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
        entry = self.cache.get(signature)
        if entry is not None and entry.family is not None:  # the hot path
            family = entry.family
            family.forwards += 1
            return (COUNT if should_verify(family.forwards) else reuse), entry, False
        family = self.cache.family(signature.skeleton)
        if entry is not None:
            entry.family = family
            family.forwards += 1
            return (COUNT if should_verify(family.forwards) else reuse), entry, False
        self.signatures += 1
        prediction = family.predict(signature.dims)
        if prediction is None:
            return COUNT, None, False
        entry = SignatureCosts(*prediction)
        entry.family = family
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
        self.unattributed += _add_summed(
            [(entry.template, entry.values, times)], self.stats, self.uncounted
        )

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

    def add_recorded(
        self,
        pending: Pending,
        times: dict[str, list[Any]],
        root: tuple[str, float, float] | None,
        elapsed: float,
    ) -> None:
        """A forward timed with light hooks (``timing=True``) whose costs come from the cache:
        ``times`` holds per point ``[calls, latency_s, self_latency_s]`` (and ``root`` the
        model's own). If its calls differ from the cached ones, its costs are estimated (per
        call) and every later forward is counted."""
        entry = pending.entry
        assert entry is not None
        per_point, unattributed, uncounted = entry.expand()
        if root is not None:
            times = {**times, root[0]: [1, root[1], root[2]]}
        same = len(times) == len(per_point) and all(
            name in times and times[name][0] == one.calls for name, one in per_point.items()
        )
        if same:  # the usual case: the cached costs once more, and the measured times
            self.add_steady(pending, elapsed)
            for name, (_, latency, self_latency) in times.items():
                stats = self.stats[name]
                stats.latency_s += latency
                stats.self_latency_s += self_latency
            return
        for name, (calls, latency, self_latency) in times.items():
            stats = self.stats[name]
            one = per_point.get(name)
            if stats.first_seen < 0:
                stats.first_seen = self._seen
                self._seen += 1
            if one is not None:  # estimated: the cached costs per call, times the calls
                _add_per_call(stats, one, calls)
            else:
                stats.calls += calls
            stats.latency_s += latency
            stats.self_latency_s += self_latency
        if uncounted:
            merge_uncounted(self.uncounted, uncounted)
        self.unattributed += unattributed
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

    def uncounted_ops(self) -> dict[str, UncountedOp]:
        """The uncounted ops of the block so far, reused forwards included (takes the lock)."""
        with self.lock:
            uncounted = {k: v.copy() for k, v in self.uncounted.items()}
            for entry in self.cache.entries.values():
                if entry.steady and entry.template[1]:
                    ops = entry.expand()[2]
                    for _ in range(entry.steady):
                        merge_uncounted(uncounted, ops)
            return uncounted

    def snapshot(
        self, context: ReportContext, wall_s: float, metrics: pd.DataFrame | None
    ) -> TrackReport:
        """A :class:`TrackReport` of everything so far (takes the lock)."""
        with self.lock:
            stats = {name: s.copy() for name, s in self.stats.items()}
            uncounted = {k: v.copy() for k, v in self.uncounted.items()}
            reused = [
                (entry.template, entry.values, entry.steady)
                for entry in self.cache.entries.values()
                if entry.steady
            ]
            unattributed = self.unattributed + _add_summed(reused, stats, uncounted)
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


def _add_per_call(stats: PointStats, one: PointStats, calls: int) -> None:
    """Add ``calls`` calls at the per-call costs of ``one`` (an estimate)."""
    share = calls / max(one.calls, 1)
    stats.calls += calls
    for name in ("output_elements", "activation_bytes", "input_bytes", "macs", "self_macs"):
        setattr(stats, name, getattr(stats, name) + round(getattr(one, name) * share))
    for shapes, count in one.shapes.items():
        stats.shapes[shapes] += round(count * share)


def _add_summed(
    entries: list[tuple[Any, Any, int]],
    stats: dict[str, PointStats],
    uncounted: dict[str, UncountedOp],
) -> int:
    """Add ``times`` reuses of each ``(template, values, times)`` to ``stats`` and
    ``uncounted``; returns the MACs outside points they add."""
    outside = 0
    for template, values in sum_costs(entries):
        per_point, unattributed, ops = devectorize(template, values)
        for name, one in per_point.items():
            stats[name].add_scaled(one, 1)
        merge_uncounted(uncounted, ops)
        outside += unattributed
    return outside
