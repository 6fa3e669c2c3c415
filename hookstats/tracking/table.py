"""The rich table of a :class:`~hookstats.tracking.report.TrackReport`: the top hook points by
latency (or MACs), a totals row per forward, and throughput in the caption. Pure presentation.

May import: rich, :mod:`hookstats.units`, :mod:`hookstats.tracking.report`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from ..units import format_bytes, format_count, format_number, format_shape
from .report import TRACK_COLUMNS

if TYPE_CHECKING:
    from .report import TrackReport

__all__ = ["track_table"]

_COLUMNS = (
    ("hook point", "left"),
    ("type", "left"),
    ("calls", "right"),
    ("output shape", "left"),
    ("act./call", "right"),
    ("MACs/call", "right"),
    ("ms/call", "right"),
    ("total ms", "right"),
    ("% time", "right"),
)


def _ms(value: float | None) -> str:
    return format_number(value, ".3f")


def _shape_text(row: dict[str, Any]) -> str:
    text = format_shape(row["output_shape"])
    extra = len(row["output_shapes"]) - 1
    return f"{text} (+{extra})" if extra > 0 else text


def _metric_text(value: Any) -> str:
    return format_number(value, ".4g")


def _sorted_rows(frame: Any, sort_by: str, timing: bool) -> Any:
    key = "latency_ms" if sort_by == "latency" and timing else "macs"
    return frame.sort_values([key, "macs"], ascending=False, kind="stable")


def _caption(report: TrackReport) -> str:
    rates = report.throughput()
    clock = "in forward" if report.timing else "wall"
    parts = [
        f"{report.forwards} forwards",
        f"{report.samples} samples",
        f"{rates['seconds']:.2f} s {clock}",
    ]
    if report.forwards:
        parts += [
            f"{rates['calls_per_s']:,.1f} calls/s",
            f"{rates['samples_per_s']:,.1f} samples/s",
            f"{rates['gmacs_per_s']:.3g} GMAC/s",
        ]
    if report.failed_forwards:
        parts.append(f"{report.failed_forwards} failed")
    if report.uncounted_ops:
        parts.append("uncounted ops: " + ", ".join(sorted(report.uncounted_ops)))
    return " · ".join(parts)


def track_table(report: TrackReport, *, sort_by: str = "latency", top: int = 15) -> Table:
    """A rich table of a track report: the ``top`` hook points by total latency (or MACs),
    a totals row (per forward, over the whole model), and throughput in the caption.

    Per-call columns divide a point's sums by its calls; ``total ms`` is its summed latency
    and ``% time`` that as a share of the time spent inside the model's forwards.
    """
    frame = report.to_frame()
    metric_columns = [c for c in frame.columns if c not in TRACK_COLUMNS]
    table = Table(
        title=f"hookstats track ({report.device}, {report.dtype})",
        caption=_caption(report),
        header_style="bold",
    )
    for name, justify in _COLUMNS:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for name in metric_columns:
        table.add_column(name, justify="right")
    busy_ms = report.busy_s * 1e3
    ordered = _sorted_rows(frame, sort_by, report.timing)
    for row in ordered.head(top).to_dict("records"):
        calls = max(row["calls"], 1)
        share = row["latency_ms"] / busy_ms * 100 if busy_ms > 0 else math.nan
        table.add_row(
            str(row["hook_point"]),
            str(row["module_type"]),
            str(row["calls"]),
            _shape_text(row),
            format_bytes(row["activation_bytes"] / calls),
            format_count(row["macs"] / calls),
            _ms(row["mean_latency_ms"]),
            _ms(row["latency_ms"]),
            format_number(share, ".1f"),
            *[_metric_text(row[c]) for c in metric_columns],
        )
    if len(frame) > top:
        table.add_row(
            Text(f"… {len(frame) - top} more", style="dim"),
            *[""] * (len(_COLUMNS) - 1 + len(metric_columns)),
        )
    table.add_section()
    table.add_row(*_totals_cells(report, busy_ms), *[""] * len(metric_columns))
    return table


def _totals_cells(report: TrackReport, busy_ms: float) -> list[Any]:
    forwards = max(report.forwards, 1)
    return [
        Text("total / forward", style="bold"),
        "",
        str(report.total("calls")),
        "",
        format_bytes(report.total("activation_bytes") / forwards),
        format_count(report.total("macs") / forwards),
        _ms(busy_ms / forwards if report.forwards else math.nan),
        _ms(busy_ms),
        "100.0" if busy_ms > 0 else "-",
    ]
