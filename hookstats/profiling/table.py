"""The rich table of a :class:`~hookstats.profiling.report.Report`. Pure presentation: it reads
the report and never changes it, and it never prints (callers hand the table to a console).

May import: rich, :mod:`hookstats.units`; the report type for annotations only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich import box
from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text

from ..units import format_bytes, format_count, format_shape

if TYPE_CHECKING:
    from .report import Report

__all__ = ["ReportView", "report_table"]


_WIDE = 100  # below this console width, the type and parameter-count columns are left out


def report_table(
    report: Report,
    *,
    max_rows: int | None = None,
    title: str | None = None,
    compact: bool = False,
) -> Table:
    """A rich table of a report: one row per hook point (indented by depth) and a totals row.

    ``compact`` leaves out the module type and parameter count, for narrow consoles.
    """
    frame = report.to_frame()
    table = Table(
        title=title or f"hookstats profile ({report.device}, {report.dtype})",
        header_style="bold",
        box=box.SIMPLE_HEAD,
    )
    columns = ["hook point", "calls", "output", "param mem", "act. mem", "MACs"]
    if not compact:
        columns[1:1] = ["type"]
        columns[4:4] = ["params"]
    for name in columns:
        left = name in ("hook point", "type", "output")
        table.add_column(
            name,
            justify="left" if left else "right",
            no_wrap=True,
            overflow="ellipsis",
            max_width=16 if name == "type" else None,
        )
    rows = frame if max_rows is None else frame.head(max_rows)
    for row in rows.to_dict("records"):
        cells: dict[str, str | Text] = {
            "hook point": "  " * int(row["depth"]) + str(row["hook_point"]),
            "type": str(row["module_type"]),
            "calls": str(row["calls"]),
            "output": format_shape(row["output_shape"]),
            "params": format_count(row["parameters"]),
            "param mem": format_bytes(row["parameter_bytes"]),
            "act. mem": format_bytes(row["activation_bytes"]),
            "MACs": format_count(row["macs"]),
        }
        table.add_row(*(cells[c] for c in columns))
    if max_rows is not None and len(frame) > max_rows:
        table.add_row(Text(f"… {len(frame) - max_rows} more", style="dim"))
    totals: dict[str, str | Text] = {
        "hook point": Text("total", style="bold"),
        "calls": str(report.total("calls")),
        "params": format_count(report.total("parameters")),
        "param mem": format_bytes(report.total("parameter_bytes")),
        "act. mem": format_bytes(report.total("activation_bytes")),
        "MACs": format_count(report.total("macs")),
    }
    table.add_section()
    table.add_row(*(totals.get(c, "") for c in columns))
    if report.uncounted_ops:
        table.caption = "uncounted ops (no MAC formula): " + ", ".join(sorted(report.uncounted_ops))
    return table


class ReportView:
    """What ``Report.__rich__`` returns: the table, compact on consoles under 100 columns."""

    def __init__(self, report: Report) -> None:
        self.report = report

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield report_table(self.report, compact=options.max_width < _WIDE)
