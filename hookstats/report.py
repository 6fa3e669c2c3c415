"""The result of a profile: :class:`Report`, with per-point and per-call frames and totals.

Totals never double count: MACs sum each op once (the ``self`` MACs of every call);
activation, output and input sizes sum the calls of the innermost selected hook points (a
container's output is its last child's); parameters count a tied or shared tensor once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from os import PathLike
from typing import Any

import pandas as pd

from .records import CallRecord, PointInfo, UncountedOp

__all__ = ["Report"]

FRAME_COLUMNS = [
    "hook_point", "module_type", "depth", "is_leaf", "calls", "output_shape", "output_elements",
    "activation_bytes", "input_bytes", "parameters", "parameter_bytes", "macs", "self_macs",
]
_PER_CALL_SUMS = ("output_elements", "activation_bytes", "input_bytes", "macs", "self_macs")
_INNERMOST_TOTALS = ("output_elements", "activation_bytes", "input_bytes")


def _shape_cell(shapes: list[tuple[int, ...]]) -> tuple[Any, ...]:
    if len(shapes) == 1:
        return shapes[0]
    return tuple(shapes)


@dataclass(slots=True)
class Report:
    """Per-hook-point costs of one forward pass. Made by :func:`hookstats.profile`.

    Attributes:
        points: static facts per selected hook point, in module order.
        calls: one record per call, in call order.
        uncounted_ops: ops that did matrix-like work without a MAC formula (op -> record).
        device, dtype: where and in what precision the forward ran.
        unattributed_macs: MACs of ops that ran outside every selected hook point.
        fallback: ``"fake tensors"`` when the meta device failed and fake tensors were used.

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
    parameter_sizes: dict[int, tuple[int, int]] = field(default_factory=dict)

    def calls_frame(self) -> pd.DataFrame:
        """One row per call: hook point, call index, shapes, sizes, MACs (and latency)."""
        rows = [
            {
                "hook_point": c.hook_point, "call_index": c.call_index, "order": c.order,
                "output_shape": _shape_cell(c.output_shapes), "output_elements": c.output_elements,
                "activation_bytes": c.activation_bytes, "input_bytes": c.input_bytes,
                "macs": c.macs, "self_macs": c.self_macs,
                "latency_ms": None if c.latency_s is None else c.latency_s * 1e3,
            }
            for c in self.calls
        ]
        frame = pd.DataFrame(rows, columns=[
            "hook_point", "call_index", "order", "output_shape", "output_elements",
            "activation_bytes", "input_bytes", "macs", "self_macs", "latency_ms"])
        if frame["latency_ms"].isna().all():
            frame = frame.drop(columns="latency_ms")
        return frame

    def to_frame(self) -> pd.DataFrame:
        """One row per hook point in execution order (never-called points last).

        Per-call columns are sums over the point's calls; ``output_shape`` is the first call's.
        """
        by_point: dict[str, list[CallRecord]] = {}
        for call in self.calls:
            by_point.setdefault(call.hook_point, []).append(call)
        first_seen = {name: calls[0].order for name, calls in by_point.items()}
        ordered = sorted(
            enumerate(self.points),
            key=lambda item: (first_seen.get(item[1].name, len(self.calls) + item[0]), item[0]),
        )
        rows = []
        for _, info in ordered:
            calls = by_point.get(info.name, [])
            row: dict[str, Any] = {
                "hook_point": info.name, "module_type": info.module_type, "depth": info.depth,
                "is_leaf": info.is_leaf, "calls": len(calls),
                "output_shape": _shape_cell(calls[0].output_shapes) if calls else None,
                "parameters": info.parameters, "parameter_bytes": info.parameter_bytes,
            }
            for column in _PER_CALL_SUMS:
                row[column] = sum(getattr(c, column) for c in calls)
            rows.append(row)
        return pd.DataFrame(rows, columns=FRAME_COLUMNS)

    def total(self, column: str) -> int:
        """Model total of ``column`` without double counting (see the module docstring).

        Raises:
            KeyError: ``column`` has no total; the message lists those that do.
        """
        if column in ("macs", "self_macs"):
            return sum(c.self_macs for c in self.calls)
        if column == "calls":
            return len(self.calls)
        if column in ("parameters", "parameter_bytes"):
            ids = set().union(*(p.parameter_ids for p in self.points)) if self.points else set()
            index = 0 if column == "parameters" else 1
            return sum(self.parameter_sizes[i][index] for i in ids)
        if column in _INNERMOST_TOTALS:
            innermost = {p.name for p in self.points if p.innermost}
            return sum(getattr(c, column) for c in self.calls if c.hook_point in innermost)
        raise KeyError(
            f"no total for column {column!r}; totals exist for: macs, self_macs, calls, "
            f"parameters, parameter_bytes, {', '.join(_INNERMOST_TOTALS)}."
        )

    def to_csv(self, path: str | PathLike[str], *, per_call: bool = False) -> None:
        """Write :meth:`to_frame` (or :meth:`calls_frame` with ``per_call=True``) as CSV."""
        frame = self.calls_frame() if per_call else self.to_frame()
        frame.to_csv(path, index=False)

    def __rich__(self) -> Any:
        from .render import ReportView

        return ReportView(self)
