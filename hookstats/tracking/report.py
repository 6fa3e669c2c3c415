"""What :func:`hookstats.track` saw: :class:`TrackReport`, the snapshot users read (with
``to_frame()``, ``total()``, ``__rich__``).

A :class:`TrackReport` is a copy taken under the tracker's lock, so it can be rendered (by the
live view's thread, say) while inference goes on. Per-call columns are summed over every call in
the block; model totals follow the one rule of :func:`~hookstats.instrument.totals.model_total`,
as ``Report.total`` does.

May import: pandas, :mod:`hookstats.counting`, :mod:`hookstats.instrument`,
:mod:`hookstats.units`; its table lives in :mod:`hookstats.tracking.table`.

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
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..counting import OUTSIDE_POINTS, UncountedOp
from ..display import NotebookDisplay
from ..instrument import ParameterSizes, PointInfo, PointStats
from ..instrument.records import OTHER_SHAPES, Shapes
from ..instrument.totals import model_total
from ..units import shape_cell

__all__ = ["TRACK_COLUMNS", "TrackReport"]

TRACK_COLUMNS = [
    "hook_point",
    "module_type",
    "depth",
    "is_leaf",
    "calls",
    "output_shape",
    "output_shapes",
    "output_elements",
    "activation_bytes",
    "input_bytes",
    "parameters",
    "parameter_bytes",
    "macs",
    "self_macs",
    "latency_ms",
    "mean_latency_ms",
    "self_latency_ms",
]
_OWN_TOTALS = ("forwards", "samples", "latency_ms")


def _shape_key(shapes: Shapes) -> Any:
    return "other" if shapes == OTHER_SHAPES else shape_cell(shapes)


@dataclass(slots=True)
class TrackReport(NotebookDisplay):
    """A snapshot of a ``track()`` block. Made by :attr:`hookstats.Tracker.report`.

    Attributes:
        points: static facts per tracked hook point, in module order.
        stats: running totals per hook point name.
        forwards: completed forward calls of the tracked model (failed ones are not counted).
        failed_forwards: forward calls that raised inside the block.
        samples: sum of the leading dimension of each forward's first tensor argument.
        busy_s: time spent inside the model's forward calls (always measured).
        wall_s: time since the block was entered (until it exited).
        timing: whether per-hook-point latency was measured.
        signatures: distinct work signatures met (shapes of every tensor given, cache
            objects' included, and plain scalars).
        device, dtype: where the model's parameters live, and the floating dtype that ran
            (the autocast dtype under ``torch.autocast``, else the parameters').
        uncounted_ops: ops whose MACs could not be counted (MAC totals are a lower bound; an
            op's ``bound_macs`` bounds what it did when a formula can).
        unattributed_macs: MACs of ops that ran outside every tracked hook point (the
            ``(outside hook points)`` row when the model itself is not tracked).
        metrics: long frame ``hook_point, metric, value, note`` from ``metrics=``, or None:
            weight metrics (computed on exit), then activation metrics (their values so far).
        counted_forwards: forwards run under the MAC counter (new work signatures, models
            that read tensor values, and the check forwards 32, 64, 128, ... of each family).
        predicted_forwards: forwards with a new signature whose costs came from a cost model
            fitted and checked on counted forwards (see docs/track.md).
        estimated_forwards: forwards whose MACs could only be estimated (their calls differed
            from the cached ones for the same signature; every later forward is counted).
        value_reads: ops that read tensor values into Python (``.item()``, ``bool(t)``,
            ``nonzero``): control flow may depend on data, so every forward is counted.
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
    parameter_sizes: ParameterSizes = field(default_factory=dict)
    metrics: pd.DataFrame | None = None
    counted_forwards: int = 0
    predicted_forwards: int = 0
    estimated_forwards: int = 0
    value_reads: dict[str, UncountedOp] = field(default_factory=dict)

    def _ordered(self) -> list[PointInfo]:
        never = len(self.points) + 1_000_000_000
        return [
            info
            for _, info in sorted(
                enumerate(self.points),
                key=lambda item: (self._first_seen(item[1].name, never + item[0]), item[0]),
            )
        ]

    def _first_seen(self, name: str, default: int) -> int:
        stats = self.stats.get(name)
        return stats.first_seen if stats is not None and stats.calls else default

    def to_frame(self) -> pd.DataFrame:
        """One row per hook point, in execution order (never-called points last).

        Columns: ``TRACK_COLUMNS`` -- ``output_shape`` is the most frequent output shape,
        ``output_shapes`` maps each distinct shape to its number of calls (at most 64 shapes,
        the calls with further ones under ``"other"``), per-call columns are
        sums over the block, ``latency_ms`` is the summed latency (NaN with ``timing=False``),
        ``mean_latency_ms`` the latency per call and ``self_latency_ms`` the summed self time
        (latency less that of the nested tracked points' calls) -- then one column per metric
        of ``metrics=``, weight metrics then activation metrics, each in the order given
        (prefixed ``metric_`` if the name clashes with a column above). When
        the model itself is not tracked, a last row ``(outside hook points)``
        (:data:`~hookstats.counting.OUTSIDE_POINTS`) holds the MACs of the work outside every
        tracked point, so ``macs`` sums to the model's total.
        """
        rows = [
            self._row(info, self.stats.get(info.name) or PointStats()) for info in self._ordered()
        ]
        outside = self.stats.get(OUTSIDE_POINTS)
        if outside is not None:
            info = PointInfo(OUTSIDE_POINTS, "", 0, False, 0, 0, False, innermost=True)
            rows.append(self._row(info, outside, timed=False))
        frame = pd.DataFrame(rows, columns=TRACK_COLUMNS)
        return self._with_metrics(frame)

    def _row(self, info: PointInfo, stats: PointStats, *, timed: bool = True) -> dict[str, Any]:
        latency_ms = stats.latency_s * 1e3 if self.timing and timed else math.nan
        self_ms = stats.self_latency_s * 1e3 if self.timing and timed else math.nan
        common = [item for item in stats.shapes.most_common(2) if item[0] != OTHER_SHAPES][:1]
        return {
            "hook_point": info.name,
            "module_type": info.module_type,
            "depth": info.depth,
            "is_leaf": info.is_leaf,
            "calls": stats.calls,
            "output_shape": shape_cell(common[0][0]) if common else None,
            "output_shapes": {_shape_key(s): n for s, n in stats.shapes.items()},
            "output_elements": stats.output_elements,
            "activation_bytes": stats.activation_bytes,
            "input_bytes": stats.input_bytes,
            "parameters": info.parameters,
            "parameter_bytes": info.parameter_bytes,
            "macs": stats.macs,
            "self_macs": stats.self_macs,
            "latency_ms": latency_ms,
            "mean_latency_ms": latency_ms / stats.calls if stats.calls else math.nan,
            "self_latency_ms": self_ms,
        }

    def _with_metrics(self, frame: pd.DataFrame) -> pd.DataFrame:
        if self.metrics is None or self.metrics.empty:
            return frame
        long = self.metrics.drop_duplicates(["hook_point", "metric"])
        wide = long.pivot(index="hook_point", columns="metric", values="value")
        wide = wide.reindex(columns=list(dict.fromkeys(long["metric"])))  # the order given
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
        if column in ("forwards", "samples"):
            return int(getattr(self, column))
        if column == "latency_ms":
            return self.busy_s * 1e3
        return model_total(column, self.points, self.stats, self.parameter_sizes, also=_OWN_TOTALS)

    def throughput(self) -> dict[str, float]:
        """Rates over the block: ``calls_per_s`` (forwards), ``samples_per_s``, ``gmacs_per_s``.

        The clock is the time inside the model's forwards when timing is on, else the wall
        time of the block (which includes whatever the loop does between forwards).
        """
        seconds = self.busy_s if self.timing else self.wall_s
        if seconds <= 0:
            return {
                "seconds": 0.0,
                "calls_per_s": math.nan,
                "samples_per_s": math.nan,
                "gmacs_per_s": math.nan,
            }
        return {
            "seconds": seconds,
            "calls_per_s": self.forwards / seconds,
            "samples_per_s": self.samples / seconds,
            "gmacs_per_s": self.total("macs") / seconds / 1e9,
        }

    def __rich__(self) -> Any:
        from .table import track_table

        return track_table(self)

    def table(
        self,
        *,
        sort_by: str | None = "latency",
        top: int = 15,
        depth: int | str | None = None,
        collapse: bool = True,
        columns: Any = None,
    ) -> Any:
        """The report as a rich table that fits the console it is printed on.

        Args:
            sort_by: ``"latency"`` or ``"self_time"`` (time in the hook point itself, nested
                ones excluded; inclusive time when self time is not recorded),
                ``"total_time"`` (inclusive), ``"macs"`` (its own MACs), or None: every hook
                point as a tree, in module order.
            top: rows shown when sorted (a "… n more" row follows).
            depth: levels below the top: an int, ``"all"``, or None (sorted: all; tree: the
                deepest level that keeps it within 50 rows).
            collapse: put consecutive identical blocks in one row (``layers.0–31 ×32``, costs
                summed); False shows each.
            columns: the columns to show (keys or headers); default all that fit.

        Returns:
            A renderable for ``rich.print`` or ``console.print`` (HTML in Jupyter).
        """
        from .table import track_table

        return track_table(
            self,
            sort_by=sort_by,
            top=top,
            depth=depth,  # type: ignore[arg-type]
            collapse=collapse,
            columns=columns,
        )
