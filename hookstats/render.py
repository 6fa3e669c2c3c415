"""Rich rendering of reports: human units and tables. Pure presentation -- it reads records
and never changes them, and it never prints (callers hand the table to a console).

    >>> format_count(3_612_672), format_bytes(1_605_632)
    ('3.61 M', '1.53 MiB')
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from .report import Report

__all__ = ["format_bytes", "format_count", "format_shape", "report_table"]

_COUNT_UNITS = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K"))
_BYTE_UNITS = ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB"))


def format_count(value: float) -> str:
    """``1234567`` -> ``'1.23 M'`` (K, M, G, T; plain below 1000)."""
    for scale, unit in _COUNT_UNITS:
        if abs(value) >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:.3g}"


def format_bytes(value: float) -> str:
    """``1605632`` -> ``'1.53 MiB'`` (binary units; plain bytes below 1 KiB)."""
    for scale, unit in _BYTE_UNITS:
        if abs(value) >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:,.0f} B"


def format_shape(shape: object) -> str:
    """``(32, 16, 28, 28)`` -> ``'32×16×28×28'``; several outputs are joined by commas."""
    if not shape:
        return "-"
    if isinstance(shape, tuple) and shape and isinstance(shape[0], tuple):
        return ", ".join(format_shape(s) for s in shape)
    return "×".join(str(s) for s in shape)  # type: ignore[union-attr]


def report_table(report: Report, *, max_rows: int | None = None, title: str | None = None) -> Table:
    """A rich table of a report: one row per hook point (indented by depth) and a totals row."""
    frame = report.to_frame()
    table = Table(title=title or f"hookstats profile ({report.device}, {report.dtype})",
                  show_footer=False, header_style="bold")
    for name, justify in (("hook point", "left"), ("type", "left"), ("calls", "right"),
                          ("output shape", "left"), ("params", "right"),
                          ("param bytes", "right"), ("act. bytes", "right"), ("MACs", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    rows = frame if max_rows is None else frame.head(max_rows)
    for row in rows.itertuples(index=False):
        table.add_row(
            "  " * int(row.depth) + str(row.hook_point), str(row.module_type), str(row.calls),
            format_shape(row.output_shape), format_count(row.parameters),
            format_bytes(row.parameter_bytes), format_bytes(row.activation_bytes),
            format_count(row.macs),
        )
    if max_rows is not None and len(frame) > max_rows:
        table.add_row(Text(f"… {len(frame) - max_rows} more", style="dim"), *[""] * 7)
    table.add_section()
    table.add_row(
        Text("total", style="bold"), "", str(report.total("calls")), "",
        format_count(report.total("parameters")), format_bytes(report.total("parameter_bytes")),
        format_bytes(report.total("activation_bytes")), format_count(report.total("macs")),
    )
    if report.uncounted_ops:
        table.caption = "uncounted ops (no MAC formula): " + ", ".join(sorted(report.uncounted_ops))
    return table
