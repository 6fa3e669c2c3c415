"""What :func:`hookstats.track` saw: per-hook-point running totals (:class:`PointStats`) and the
snapshot object users read (:class:`TrackReport`, with ``to_frame()``, ``total()``, ``__rich__``).

A :class:`TrackReport` is a copy taken under the tracker's lock, so it can be rendered (by the
live view's thread, say) while inference goes on. Sums follow :class:`~hookstats.report.Report`:
per-call columns are summed over every call in the block; model totals never double count
(MACs sum each op once, sizes sum the innermost selected hook points, tied parameters count once).

Example:
    >>> import torch, hookstats as hs
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(8, 4), nn.ReLU())
    >>> with hs.track(model, timing=False) as t:
    ...     _ = model(torch.zeros(2, 8))
    ...     _ = model(torch.zeros(2, 8))
    >>> t.report.total("macs")  # 2 forwards * 2 * 8 * 4
    128
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .records import CallRecord, PointInfo, UncountedOp

__all__ = ["TRACK_COLUMNS", "PointStats", "TrackReport"]

TRACK_COLUMNS = [
    "hook_point", "module_type", "depth", "is_leaf", "calls", "output_shape", "output_shapes",
    "output_elements", "activation_bytes", "input_bytes", "parameters", "parameter_bytes",
    "macs", "self_macs", "latency_ms", "mean_latency_ms",
]
_SUMMED = ("output_elements", "activation_bytes", "input_bytes")

Shapes = tuple[tuple[int, ...], ...]


@dataclass(slots=True)
class PointStats:
    """Running totals of one hook point over every call inside a ``track()`` block.

    ``shapes`` counts the calls per distinct output signature (the tuple of output shapes).
    ``latency_s`` is the summed pre-hook to post-hook time (0 when timing is off).
    """

    first_seen: int = -1
    calls: int = 0
    shapes: Counter[Shapes] = field(default_factory=Counter)
    output_elements: int = 0
    activation_bytes: int = 0
    input_bytes: int = 0
    macs: int = 0
    self_macs: int = 0
    latency_s: float = 0.0

    def add_call(self, record: CallRecord) -> None:
        """Fold one call record in (its MACs are added separately, from the signature cache)."""
        self.calls += 1
        self.shapes[tuple(record.output_shapes)] += 1
        self.output_elements += record.output_elements
        self.activation_bytes += record.activation_bytes
        self.input_bytes += record.input_bytes
        if record.latency_s is not None:
            self.latency_s += record.latency_s

    def copy(self) -> PointStats:
        """An independent copy (the counter of shapes too)."""
        return PointStats(self.first_seen, self.calls, Counter(self.shapes), self.output_elements,
                          self.activation_bytes, self.input_bytes, self.macs, self.self_macs,
                          self.latency_s)


def _shape_cell(shapes: Shapes) -> Any:
    return shapes[0] if len(shapes) == 1 else shapes


@dataclass(slots=True)
class TrackReport:
    """A snapshot of a ``track()`` block. Made by :attr:`hookstats.track.Tracker.report`.

    Attributes:
        points: static facts per tracked hook point, in module order.
        stats: running totals per hook point name.
        forwards: completed forward calls of the tracked model (failed ones are not counted).
        failed_forwards: forward calls that raised inside the block.
        samples: sum of the leading dimension of each forward's first tensor argument.
        busy_s: time spent inside the model's forward calls (always measured).
        wall_s: time since the block was entered (until it exited).
        timing: whether per-hook-point latency was measured.
        signatures: distinct input signatures seen (each one was counted with the MAC counter).
        device, dtype: where the model's parameters live and their floating dtype.
        uncounted_ops: ops with matrix work but no MAC formula (MAC totals are a lower bound).
        unattributed_macs: MACs of ops that ran outside every tracked hook point.
        metrics: long frame ``hook_point, metric, value, note`` from ``metrics=``, or None.
    """

    points: list[PointInfo]
    stats: dict[str, PointStats]
    forwards: int = 0
    failed_forwards: int = 0
    samples: int = 0
    busy_s: float = 0.0
    wall_s: float = 0.0
    timing: bool = True
    signatures: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    uncounted_ops: dict[str, UncountedOp] = field(default_factory=dict)
    unattributed_macs: int = 0
    parameter_sizes: dict[int, tuple[int, int]] = field(default_factory=dict)
    metrics: pd.DataFrame | None = None

    def _ordered(self) -> list[PointInfo]:
        never = len(self.points) + 1_000_000_000
        return [info for _, info in sorted(
            enumerate(self.points),
            key=lambda item: (self._first_seen(item[1].name, never + item[0]), item[0]))]

    def _first_seen(self, name: str, default: int) -> int:
        stats = self.stats.get(name)
        return stats.first_seen if stats is not None and stats.calls else default

    def to_frame(self) -> pd.DataFrame:
        """One row per hook point, in execution order (never-called points last).

        Columns: ``TRACK_COLUMNS`` -- ``output_shape`` is the most frequent output shape,
        ``output_shapes`` maps each distinct shape to its number of calls, per-call columns are
        sums over the block, ``latency_ms`` is the summed latency (NaN with ``timing=False``)
        and ``mean_latency_ms`` the latency per call -- then one column per metric of
        ``metrics=`` (prefixed ``metric_`` if the name clashes with a column above).
        """
        rows = []
        for info in self._ordered():
            stats = self.stats.get(info.name) or PointStats()
            latency_ms = stats.latency_s * 1e3 if self.timing else math.nan
            common = stats.shapes.most_common(1)
            rows.append({
                "hook_point": info.name, "module_type": info.module_type, "depth": info.depth,
                "is_leaf": info.is_leaf, "calls": stats.calls,
                "output_shape": _shape_cell(common[0][0]) if common else None,
                "output_shapes": {_shape_cell(s): n for s, n in stats.shapes.items()},
                "output_elements": stats.output_elements,
                "activation_bytes": stats.activation_bytes, "input_bytes": stats.input_bytes,
                "parameters": info.parameters, "parameter_bytes": info.parameter_bytes,
                "macs": stats.macs, "self_macs": stats.self_macs, "latency_ms": latency_ms,
                "mean_latency_ms": latency_ms / stats.calls if stats.calls else math.nan,
            })
        frame = pd.DataFrame(rows, columns=TRACK_COLUMNS)
        return self._with_metrics(frame)

    def _with_metrics(self, frame: pd.DataFrame) -> pd.DataFrame:
        if self.metrics is None or self.metrics.empty:
            return frame
        wide = self.metrics.pivot_table(index="hook_point", columns="metric", values="value",
                                        aggfunc="first")
        wide.columns = [f"metric_{c}" if c in TRACK_COLUMNS else str(c) for c in wide.columns]
        return frame.merge(wide, how="left", left_on="hook_point", right_index=True)

    @property
    def metric_columns(self) -> list[str]:
        """Names of the metric columns :meth:`to_frame` adds (empty without ``metrics=``)."""
        return [c for c in self.to_frame().columns if c not in TRACK_COLUMNS]

    def total(self, column: str) -> float:
        """Block total of ``column`` without double counting.

        ``macs``/``self_macs`` sum every op once; ``calls`` sums the calls of all hook points;
        ``forwards``/``samples`` count forward calls and samples; ``parameters``/
        ``parameter_bytes`` count each tensor once (per model, not per call); sizes sum the
        innermost hook points; ``latency_ms`` is the time spent inside the model's forwards.

        Raises:
            KeyError: ``column`` has no total; the message lists those that do.
        """
        if column in ("macs", "self_macs"):
            return sum(s.self_macs for s in self.stats.values())
        if column == "calls":
            return sum(s.calls for s in self.stats.values())
        if column in ("forwards", "samples"):
            return getattr(self, column)
        if column == "latency_ms":
            return self.busy_s * 1e3
        if column in ("parameters", "parameter_bytes"):
            ids = set().union(*(p.parameter_ids for p in self.points))
            return sum(self.parameter_sizes[i][0 if column == "parameters" else 1] for i in ids)
        if column in _SUMMED:
            innermost = {p.name for p in self.points if p.innermost}
            return sum(getattr(s, column) for n, s in self.stats.items() if n in innermost)
        raise KeyError(
            f"no total for column {column!r}; totals exist for: macs, self_macs, calls, "
            f"forwards, samples, latency_ms, parameters, parameter_bytes, {', '.join(_SUMMED)}."
        )

    def throughput(self) -> dict[str, float]:
        """Rates over the block: ``calls_per_s`` (forwards), ``samples_per_s``, ``gmacs_per_s``.

        The clock is the time inside the model's forwards when timing is on, else the wall
        time of the block (which includes whatever the loop does between forwards).
        """
        seconds = self.busy_s if self.timing else self.wall_s
        if seconds <= 0:
            return {"seconds": 0.0, "calls_per_s": math.nan, "samples_per_s": math.nan,
                    "gmacs_per_s": math.nan}
        return {"seconds": seconds, "calls_per_s": self.forwards / seconds,
                "samples_per_s": self.samples / seconds,
                "gmacs_per_s": self.total("macs") / seconds / 1e9}

    def __rich__(self) -> Any:
        from .live import track_table

        return track_table(self)
