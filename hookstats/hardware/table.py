"""Rich rendering of a :class:`~hookstats.hardware.roofline.HardwareSummary`: one row per hook
point and a total row. Pure presentation; it never prints.

May import: rich, :mod:`hookstats.units`; the summary type for annotations only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from ..units import format_bytes, format_count, format_number

if TYPE_CHECKING:
    from .roofline import HardwareSummary

__all__ = ["hardware_table"]

_COLUMNS = (
    "hook point",
    "calls",
    "bytes moved",
    "MACs",
    "FLOP/B",
    "latency ms",
    "GB/s",
    "BW util",
    "roofline ms",
    "bound",
)


def _cells(row: dict[str, Any]) -> list[Any]:
    util = row["bandwidth_utilization"]
    return [
        str(row["hook_point"]),
        str(row["calls"]),
        format_bytes(row["bytes_moved"]),
        format_count(row["macs"]),
        format_number(row["arithmetic_intensity"], ".3g"),
        format_number(row["latency_ms"], ".4g"),
        format_number(row["achieved_bandwidth_gbps"], ".4g"),
        format_number(util, ".1%"),
        format_number(row["roofline_ms"], ".3g"),
        str(row["bound"]),
    ]


def hardware_table(summary: HardwareSummary, *, max_rows: int = 30) -> Table:
    """A rich table of ``summary``: the first ``max_rows`` layers and the total row."""
    peak = "no peak" if summary.peak_tflops is None else f"{summary.peak_tflops:g} TFLOPS"
    hardware = f"{summary.hardware}, " if summary.hardware else ""
    table = Table(
        title=f"hardware summary ({hardware}{summary.precision}, "
        f"{summary.memory_bandwidth_gbps:g} GB/s, {peak})",
        caption="; ".join(summary.notes) or None,
        header_style="bold",
    )
    for name in _COLUMNS:
        table.add_column(name, justify="left" if name in ("hook point", "bound") else "right")
    layers = summary.rows
    for row in layers.head(max_rows).to_dict("records"):
        table.add_row(*_cells(row), style=None if row["counted"] else "dim")
    if len(layers) > max_rows:
        table.add_row(
            Text(f"… {len(layers) - max_rows} more", style="dim"), *[""] * (len(_COLUMNS) - 1)
        )
    table.add_section()
    total = _cells(summary.total_row)
    total[0] = Text("total", style="bold")
    table.add_row(*total)
    return table
