"""Rich rendering of a :class:`~hookstats.hardware.HardwareSummary`: one row per layer and a
total row. Pure presentation; it never prints.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from .render import format_bytes, format_count

if TYPE_CHECKING:
    from .hardware import HardwareSummary

__all__ = ["hardware_table"]

_COLUMNS = ("layer", "calls", "bytes moved", "MACs", "FLOP/B", "latency ms", "GB/s", "BW util",
            "roofline ms", "bound")


def _num(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, fmt)


def _cells(row: dict[str, Any]) -> list[Any]:
    util = row["bandwidth_utilization"]
    return [
        str(row["layer"]), str(row["calls"]), format_bytes(row["bytes_moved"]),
        format_count(row["macs"]), _num(row["arithmetic_intensity"], ".3g"),
        _num(row["latency_ms"], ".4g"), _num(row["achieved_bandwidth_gbps"], ".4g"),
        "-" if util is None or math.isnan(util) else f"{util:.1%}",
        _num(row["roofline_ms"], ".3g"), str(row["bound"]),
    ]


def hardware_table(summary: HardwareSummary, *, max_rows: int = 30) -> Table:
    """A rich table of ``summary``: the first ``max_rows`` layers and the total row."""
    peak = "no peak" if summary.peak_tflops is None else f"{summary.peak_tflops:g} TFLOPS"
    device = f"{summary.device}, " if summary.device else ""
    table = Table(
        title=f"hardware summary ({device}{summary.precision}, "
              f"{summary.memory_bandwidth_gbps:g} GB/s, {peak})",
        caption="; ".join(summary.notes) or None, header_style="bold")
    for name in _COLUMNS:
        table.add_column(name, justify="left" if name in ("layer", "bound") else "right")
    layers = summary.layers
    for row in layers.head(max_rows).to_dict("records"):
        table.add_row(*_cells(row), style=None if row["counted"] else "dim")
    if len(layers) > max_rows:
        table.add_row(Text(f"… {len(layers) - max_rows} more", style="dim"),
                      *[""] * (len(_COLUMNS) - 1))
    table.add_section()
    total = _cells(summary.total)
    total[0] = Text("total", style="bold")
    table.add_row(*total)
    return table
