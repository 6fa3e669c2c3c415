"""The result of a profile: :class:`Report`, with per-point and per-call frames and totals.

Per-point rows fold the calls with :class:`~hookstats.instrument.records.PointStats` and
totals follow the one rule of :func:`~hookstats.instrument.totals.model_total` (never double
counting), exactly as ``track`` does.

May import: pandas, :mod:`hookstats.units`, :mod:`hookstats.counting`,
:mod:`hookstats.instrument`; its table lives in :mod:`hookstats.profiling.table`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from os import PathLike
from typing import Any

import pandas as pd

from ..counting import OUTSIDE_POINTS, UncountedOp
from ..instrument import CallRecord, ParameterSizes, PointInfo, PointStats, fold_calls
from ..instrument.totals import model_total
from ..points import ROOT_NAME
from ..units import shape_cell

__all__ = ["CALL_COLUMNS", "FRAME_COLUMNS", "OUTSIDE_POINTS", "Report"]

FRAME_COLUMNS = [
    "hook_point", "module_type", "depth", "is_leaf", "calls", "output_shape", "output_elements",
    "activation_bytes", "input_bytes", "parameters", "parameter_bytes", "macs", "self_macs",
]  # fmt: skip
CALL_COLUMNS = [
    "hook_point", "call_index", "order", "output_shape", "output_elements", "activation_bytes",
    "input_bytes", "macs", "self_macs", "latency_ms", "self_latency_ms",
]  # fmt: skip


@dataclass(slots=True)
class Report:
    """Per-hook-point costs of one forward pass. Made by :func:`hookstats.profile`.

    Attributes:
        points: static facts per selected hook point, in module order.
        calls: one record per call, in call order.
        uncounted_ops: ops that did work without a MAC formula (op -> record; ``bound_macs``
            bounds what one did when a formula can).
        device, dtype: where and in what precision the forward ran (the autocast dtype under
            ``torch.autocast``).
        unattributed_macs: MACs of ops that ran outside every selected hook point; when the
            model itself is not selected they are the ``(outside hook points)`` row
            (:data:`OUTSIDE_POINTS`) of :meth:`to_frame` and part of ``total("macs")``.
        fallback: ``"fake tensors"`` when the meta device failed and fake tensors were used.
        parameter_sizes: ``id(tensor) -> (elements, bytes)`` for parameter totals.
        value_reads: ops that read tensor values into Python during the forward (op -> record).

    Example:
        >>> import torch.nn as nn, hookstats as hs
        >>> report = hs.profile(nn.Linear(8, 4), input_shape=(8,), batch_size=2)
        >>> report.total("macs")  # 2 * 8 * 4
        64
    """

    points: list[PointInfo]
    calls: list[CallRecord]
    uncounted_ops: dict[str, UncountedOp] = field(default_factory=dict)
    device: str = "cpu"
    dtype: str = "float32"
    unattributed_macs: int = 0
    fallback: str | None = None
    parameter_sizes: ParameterSizes = field(default_factory=dict)
    value_reads: dict[str, UncountedOp] = field(default_factory=dict)

    @property
    def has_outside_row(self) -> bool:
        """True when the model itself is not a selected point: work outside the points then
        has its own row, :data:`OUTSIDE_POINTS`."""
        return all(p.name != ROOT_NAME for p in self.points)

    @property
    def stats(self) -> dict[str, PointStats]:
        """Per-hook-point sums over the calls (every selected point, called or not, and the
        :data:`OUTSIDE_POINTS` row when the model itself is not selected)."""
        stats = fold_calls(self.calls, [p.name for p in self.points])
        if self.has_outside_row:
            stats[OUTSIDE_POINTS] = PointStats(
                macs=self.unattributed_macs, self_macs=self.unattributed_macs
            )
        return stats

    def calls_frame(self) -> pd.DataFrame:
        """One row per call: hook point, call index, shapes, sizes, MACs (and latency)."""
        rows = [
            {
                "hook_point": c.hook_point,
                "call_index": c.call_index,
                "order": c.order,
                "output_shape": shape_cell(c.output_shapes),
                "output_elements": c.output_elements,
                "activation_bytes": c.activation_bytes,
                "input_bytes": c.input_bytes,
                "macs": c.macs,
                "self_macs": c.self_macs,
                "latency_ms": None if c.latency_s is None else c.latency_s * 1e3,
                "self_latency_ms": None if c.self_latency_s is None else c.self_latency_s * 1e3,
            }
            for c in self.calls
        ]
        frame = pd.DataFrame(rows, columns=CALL_COLUMNS)
        if frame["latency_ms"].isna().all():
            frame = frame.drop(columns=["latency_ms", "self_latency_ms"])
        return frame

    def to_frame(self) -> pd.DataFrame:
        """One row per hook point in execution order (never-called points last), then the
        ``(outside hook points)`` row (:data:`OUTSIDE_POINTS`) when the model itself is not
        selected: it holds the MACs of the work outside every selected point.

        Per-call columns are sums over the point's calls; ``output_shape`` is the first call's.
        """
        stats = self.stats
        never = len(self.calls)

        def execution_order(item: tuple[int, PointInfo]) -> tuple[int, int]:
            index, info = item
            point = stats[info.name]
            return (point.first_seen if point.calls else never + index, index)

        ordered = sorted(enumerate(self.points), key=execution_order)
        rows = []
        for _, info in ordered:
            point = stats[info.name]
            first = next(iter(point.shapes), None)
            rows.append(
                {
                    "hook_point": info.name,
                    "module_type": info.module_type,
                    "depth": info.depth,
                    "is_leaf": info.is_leaf,
                    "calls": point.calls,
                    "output_shape": shape_cell(first) if first is not None else None,
                    "output_elements": point.output_elements,
                    "activation_bytes": point.activation_bytes,
                    "input_bytes": point.input_bytes,
                    "parameters": info.parameters,
                    "parameter_bytes": info.parameter_bytes,
                    "macs": point.macs,
                    "self_macs": point.self_macs,
                }
            )
        if self.has_outside_row:
            outside: dict[str, Any] = dict.fromkeys(FRAME_COLUMNS, 0)
            outside.update(
                hook_point=OUTSIDE_POINTS,
                module_type="",
                is_leaf=False,
                output_shape=None,
                macs=self.unattributed_macs,
                self_macs=self.unattributed_macs,
            )
            rows.append(outside)
        return pd.DataFrame(rows, columns=FRAME_COLUMNS)

    def total(self, column: str) -> int:
        """Model total of ``column`` without double counting (see
        :mod:`hookstats.instrument.totals`).

        Raises:
            KeyError: ``column`` has no total; the message lists those that do.
        """
        return model_total(column, self.points, self.stats, self.parameter_sizes)

    def to_csv(self, path: str | PathLike[str], *, per_call: bool = False) -> None:
        """Write :meth:`to_frame` (or :meth:`calls_frame` with ``per_call=True``) as CSV."""
        frame = self.calls_frame() if per_call else self.to_frame()
        frame.to_csv(path, index=False)

    def __rich__(self) -> Any:
        from .table import ReportView

        return ReportView(self)
