"""The table of a :class:`~hookstats.profiling.report.Report`: hook points as a tree (each
name is what it adds to its parent's, indented), repeated blocks collapsed into one row
(``h.0–11 ×12``, costs summed), a totals row, and columns that fit the console: every number
keeps its unit; whole columns are dropped when space runs out, in this order -- type,
param mem, calls, output, extra columns, % params, act. mem, params, % MACs -- and a note
says which (a training report's self columns and gradient bytes go first, its backward MACs
and saved bytes last). Pure presentation: it reads the report and never changes it, and
never prints.

May import: rich, :mod:`hookstats.units`, :mod:`hookstats.display`; the report type for
annotations only.

Example:
    >>> import torch.nn as nn, hookstats as hs
    >>> model = nn.Sequential(*[nn.Linear(8, 8) for _ in range(4)])
    >>> report = hs.profile(model, input_shape=(8,), batch_size=2)
    >>> print(hs.display.to_text(report.table(columns=["MACs", "% MACs"]), width=50).rstrip())
    hookstats profile (cpu, float32)
    hook point  MACs  % MACs
    ────────────────────────
    (model)      512  100.0%
      0–3 ×4     512  100.0%
    <BLANKLINE>
    total        512  100.0%
    ×n: n identical consecutive modules in one row,
    costs summed
    collapse=False (--no-collapse) shows each
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.text import Text

from ..display import Column, FittedTable, Grid, build_tree, walk
from ..display.rows import (
    Depth,
    extra_cell,
    extra_header,
    pick_columns,
    resolve_depth,
    total_of,
    tree_label,
)
from ..display.tree import Node
from ..units import format_bytes, format_count, format_percent, format_shape

if TYPE_CHECKING:
    from .report import Report

__all__ = ["COLLAPSE_NOTE", "ReportView", "report_table"]

COLLAPSE_NOTE = (
    "×n: n identical consecutive modules in one row, costs summed · collapse=False "
    "(--no-collapse) shows each"
)

_COLUMNS = [
    Column("name", "hook point", "left", shrink=True),
    Column("type", "type", "left", drop=0),
    Column("calls", "calls", drop=2),
    Column("output", "output", "left", drop=3),
    Column("parameters", "params", drop=6),
    Column("pct_parameters", "% params", drop=5),
    Column("parameter_bytes", "param mem", drop=1),
    Column("activation_bytes", "act. mem", drop=5.5),
    Column("macs", "MACs"),
    Column("pct_macs", "% MACs", drop=7),
]
_SUMMED = ("calls", "parameters", "parameter_bytes", "activation_bytes", "macs")
# Where known extra columns stand in the drop order (others drop after `output`): a training
# report keeps backward MACs and saved bytes longest, and drops the self columns first.
_EXTRA_DROP = {
    "self_backward_macs": -0.6,
    "self_saved_bytes": -0.5,
    "gradient_bytes": 0.5,
    "saved_bytes": 5.8,
    "backward_macs": 6.5,
}
_NOT_SHOWN = {
    "hook_point", "module_type", "depth", "is_leaf", "output_shape", "output_elements",
    "input_bytes", "self_macs", *_SUMMED,
}  # fmt: skip


def signature(row: Mapping[str, Any]) -> Hashable:
    """What two modules share to collapse: type, parameter count and output shape."""
    return (row.get("module_type"), row.get("parameters"), str(row.get("output_shape")))


def shape_of(rows: Sequence[Mapping[str, Any]], key: str = "output_shape") -> str:
    """The output shape of a node: the rows' shape when they agree, else ``varies``."""
    shapes = {format_shape(row.get(key)) for row in rows}
    return shapes.pop() if len(shapes) == 1 else "varies"


def _sum(rows: Iterable[Mapping[str, Any]], key: str) -> int:
    return sum(int(row[key]) for row in rows)


def _cells(node: Node, level: int, extras: list[str], totals: Mapping[str, int]) -> dict[str, Any]:
    rows = node.rows
    sums = {key: _sum(rows, key) for key in _SUMMED}
    cells: dict[str, Any] = {
        "name": tree_label(node, level),
        "type": str(rows[0]["module_type"]),
        "calls": str(sums["calls"]),
        "output": shape_of(rows),
        "parameters": format_count(sums["parameters"]),
        "pct_parameters": _share(sums["parameters"], totals["parameters"]),
        "parameter_bytes": format_bytes(sums["parameter_bytes"]),
        "activation_bytes": format_bytes(sums["activation_bytes"]),
        "macs": format_count(sums["macs"]),
        "pct_macs": _share(sums["macs"], totals["macs"]),
    }
    for name in extras:
        cells[name] = extra_cell(name, [row[name] for row in rows])
    return cells


def _share(part: float, whole: float) -> str:
    return format_percent(part / whole) if whole else "-"


def _notes(report: Report, shown: list[tuple[Node, int]], depth_notes: list[str]) -> list[str]:
    notes = list(depth_notes)
    if any(node.repeat > 1 for node, _ in shown):
        notes.append(COLLAPSE_NOTE)
    if report.fallback:
        notes.append(f"ran on {report.fallback} (the meta device failed)")
    if report.unattributed_macs:
        notes.append(
            f"{format_count(report.unattributed_macs)} MACs ran outside every selected hook "
            "point: in no row and not in the total"
        )
    if report.uncounted_ops:
        notes.append("uncounted ops (no MAC formula): " + ", ".join(sorted(report.uncounted_ops)))
    return notes


def report_table(
    report: Report,
    *,
    depth: Depth = None,
    collapse: bool = True,
    columns: Iterable[str] | None = None,
    max_rows: int | None = None,
    title: str | None = None,
) -> FittedTable:
    """The table of ``report`` (see the module docstring and :meth:`Report.table`)."""
    frame = report.to_frame()
    records = frame.to_dict("records")
    extras = [
        str(c)
        for c in frame.columns
        if c not in _NOT_SHOWN and frame[c].dtype.kind in "iuf" and not frame[c].isna().all()
    ]
    extra_columns = [
        Column(name, extra_header(name), drop=_EXTRA_DROP.get(name, 3.5 + i / 100))
        for i, name in enumerate(extras)
    ]
    roots = build_tree(records, signature=signature, collapse=collapse)
    shown_depth, depth_notes = resolve_depth(roots, depth)
    shown = list(walk(roots, shown_depth))
    totals = {key: report.total(key) for key in _SUMMED}  # each total folds every call
    limit = len(shown) if max_rows is None else max(int(max_rows), 0)
    body = [_cells(node, level, extras, totals) for node, level in shown[:limit]]
    styles = ["dim" if _sum(node.rows, "calls") == 0 else None for node, _ in shown[:limit]]
    if len(shown) > limit:
        body.append({"name": Text(f"… {len(shown) - limit} more rows", style="dim")})
        styles.append(None)
    all_columns = [*_COLUMNS[:-2], *extra_columns, *_COLUMNS[-2:]]
    grid = Grid(
        title=title or f"hookstats profile ({report.device}, {report.dtype})",
        columns=pick_columns(all_columns, columns),
        rows=body,
        totals=[_totals(report, totals, extras)],
        notes=_notes(report, shown, depth_notes),
        styles=styles,
    )
    return FittedTable(grid)


def _totals(report: Report, totals: Mapping[str, int], extras: list[str]) -> dict[str, Any]:
    cells: dict[str, Any] = {
        "name": Text("total", style="bold"),
        "calls": str(totals["calls"]),
        "parameters": format_count(totals["parameters"]),
        "pct_parameters": format_percent(1.0) if totals["parameters"] else "-",
        "parameter_bytes": format_bytes(totals["parameter_bytes"]),
        "activation_bytes": format_bytes(totals["activation_bytes"]),
        "macs": format_count(totals["macs"]),
        "pct_macs": format_percent(1.0) if totals["macs"] else "-",
    }
    for name in extras:
        cells[name] = total_of(report.total, name)
    return cells


class ReportView:
    """What ``Report.__rich__`` returns: :func:`report_table` with its defaults, fitted to the
    console it is printed on."""

    def __init__(self, report: Report) -> None:
        self.report = report

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield report_table(self.report)
