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
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..counting import OUTSIDE_POINTS, UncountedOp
from ..display import NotebookDisplay
from ..instrument import CallRecord, ParameterSizes, PointInfo, PointStats, fold_calls
from ..instrument.totals import model_total
from ..points import ROOT_NAME
from ..units import shape_cell

if TYPE_CHECKING:
    from .memory import MemoryEstimate
    from .step_recorder import TrainingCosts

__all__ = ["CALL_COLUMNS", "FRAME_COLUMNS", "OUTSIDE_POINTS", "TRAINING_COLUMNS", "Report"]

FRAME_COLUMNS = [
    "hook_point", "module_type", "depth", "is_leaf", "calls", "output_shape", "output_elements",
    "activation_bytes", "input_bytes", "parameters", "parameter_bytes", "macs", "self_macs",
]  # fmt: skip
TRAINING_COLUMNS = (
    "backward_macs", "self_backward_macs", "saved_bytes", "self_saved_bytes", "gradient_bytes",
)  # fmt: skip
"""Columns a ``train=True`` report adds to ``to_frame()`` (``macs``-like: with nested points
and ``self_`` without; ``gradient_bytes`` like ``parameter_bytes``); their totals count the
whole step (the loss function's ops too) and each gradient once."""
CALL_COLUMNS = [
    "hook_point", "call_index", "order", "output_shape", "output_elements", "activation_bytes",
    "input_bytes", "macs", "self_macs", "latency_ms", "self_latency_ms",
]  # fmt: skip


@dataclass(slots=True)
class Report(NotebookDisplay):
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
        training: per-point backward MACs and saved bytes of a ``train=True`` profile (None
            otherwise); ``to_frame()`` then has the columns of ``TRAINING_COLUMNS``.
        memory: the training step's memory (parameters, gradients, optimizer state, saved
            activations, peak and when it happens), or None.

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
    training: TrainingCosts | None = None
    memory: MemoryEstimate | None = None
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
        frame = pd.DataFrame(rows, columns=FRAME_COLUMNS)
        if self.training is not None:
            self._add_training_columns(frame)
        return frame

    def _add_training_columns(self, frame: pd.DataFrame) -> None:
        """The ``TRAINING_COLUMNS`` of a ``train=True`` report (the outside row: the work
        outside every selected point, the loss function's included)."""
        assert self.training is not None
        names = list(frame["hook_point"])
        for column in TRAINING_COLUMNS:
            values = self.training.column(column, names)
            if self.has_outside_row and column != "gradient_bytes":
                own = "self_" + column.removeprefix("self_")
                values[-1] = int(getattr(self.training.outside, own))
            frame[column] = values

    def total(self, column: str) -> int:
        """Model total of ``column`` without double counting (see
        :mod:`hookstats.instrument.totals`).

        Raises:
            KeyError: ``column`` has no total; the message lists those that do.
        """
        if self.training is not None and column in TRAINING_COLUMNS:
            return self.training.total(column)
        also = TRAINING_COLUMNS if self.training is not None else ()
        return model_total(column, self.points, self.stats, self.parameter_sizes, also=also)

    def to_csv(self, path: str | PathLike[str], *, per_call: bool = False) -> None:
        """Write :meth:`to_frame` (or :meth:`calls_frame` with ``per_call=True``) as CSV."""
        frame = self.calls_frame() if per_call else self.to_frame()
        frame.to_csv(path, index=False)

    def __rich__(self) -> Any:
        from .table import ReportView

        return ReportView(self)

    def table(
        self,
        *,
        depth: int | str | None = None,
        collapse: bool = True,
        columns: Any = None,
        max_rows: int | None = None,
    ) -> Any:
        """The report as a rich table that fits the console it is printed on.

        Args:
            depth: levels of the tree below the top: an int, ``"all"``, or None (the deepest
                level that keeps the table within 50 rows).
            collapse: put consecutive identical blocks in one row (``h.0–11 ×12``, costs
                summed); False shows each.
            columns: the columns to show (keys or headers, e.g. ``["params", "MACs"]``);
                default all that fit.
            max_rows: show at most this many rows (a "… n more rows" row follows).

        Returns:
            A renderable for ``rich.print`` or ``console.print`` (HTML in Jupyter).

        Example:
            >>> import rich, torch.nn as nn, hookstats as hs
            >>> report = hs.profile(nn.Sequential(nn.Linear(8, 4)), input_shape=(8,))
            >>> rich.print(report.table(depth=1))  # doctest: +SKIP
        """
        from .table import report_table

        return report_table(
            self,
            depth=depth,  # type: ignore[arg-type]
            collapse=collapse,
            columns=columns,
            max_rows=max_rows,
        )
