"""The table of a :class:`~hookstats.tracking.report.TrackReport`: where the time and the work
of a ``track()`` block went.

By default a flat list of the ``top`` hook points by the time spent *in* them (self time:
nested hook points excluded, so the ``% time`` column adds up to 100% and containers no longer
crowd the top); repeated blocks are collapsed first (``model.layers.0–31.mlp ×32``, costs
summed), then a totals row per forward and the throughput below. ``sort_by=None`` shows the
hook points as a tree instead, like :meth:`Report.table`. Columns fit the console as in every
hookstats table: numbers keep their units; whole columns are dropped (type, output shape,
act./call, calls, extra columns, time/call, % MACs, MACs/call, total time) and a note says which.

Self time needs a ``self_latency_ms`` column in ``TrackReport.to_frame()``; without it the
table shows inclusive time and says so.

May import: rich, :mod:`hookstats.units`, :mod:`hookstats.display`; the report type for
annotations only.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from rich.cells import cell_len
from rich.text import Text

from ..display import Column, FittedTable, Grid, build_tree, walk
from ..display.layout import SHRINK_MIN
from ..display.rows import (
    Depth,
    extra_cell,
    extra_header,
    pick_columns,
    resolve_depth,
    short_names,
    tree_label,
)
from ..display.tree import Node
from ..errors import TableError
from ..units import format_bytes, format_count, format_percent, format_seconds, format_shape

if TYPE_CHECKING:
    from .report import TrackReport

__all__ = ["SORT_KEYS", "track_table"]

SORT_KEYS = ("latency", "self_time", "total_time", "macs", None)
"""``sort_by=`` values: self time (``"latency"``, ``"self_time"``; inclusive time when self
time is not recorded), inclusive time (``"total_time"``), self MACs (``"macs"``), or None for
the tree."""

_KNOWN = {
    "hook_point", "module_type", "depth", "is_leaf", "calls", "output_shape", "output_shapes",
    "output_elements", "activation_bytes", "input_bytes", "parameters", "parameter_bytes",
    "macs", "self_macs", "latency_ms", "mean_latency_ms", "self_latency_ms",
}  # fmt: skip


def _signature(row: Mapping[str, Any]) -> Hashable:
    return (row.get("module_type"), row.get("parameters"), str(row.get("output_shape")))


def _sum(rows: Iterable[Mapping[str, Any]], key: str) -> float:
    values = [float(row[key]) for row in rows if key in row]
    return math.nan if not values or any(math.isnan(v) for v in values) else sum(values)


def _shape(rows: Sequence[Mapping[str, Any]]) -> str:
    seen: dict[str, int] = {}
    for row in rows:
        for shape, calls in (row.get("output_shapes") or {}).items():
            text = format_shape(shape)
            seen[text] = seen.get(text, 0) + calls
    if not seen:
        return "-"
    common = max(seen, key=lambda text: seen[text])
    return f"{common} (+{len(seen) - 1})" if len(seen) > 1 else common


class _Basis:
    """What the shares are taken of: the block's time in forward and its MACs."""

    def __init__(self, report: TrackReport, has_self: bool) -> None:
        self.busy_ms = report.busy_s * 1e3
        self.macs = float(report.total("macs"))
        self.has_self = has_self
        self.timing = report.timing


def _cells(node: Node, label: str, basis: _Basis, extras: list[str]) -> dict[str, Any]:
    rows = node.rows
    calls = _sum(rows, "calls")
    per_call = max(calls, 1.0)
    latency = _sum(rows, "latency_ms")
    own = _sum(rows, "self_latency_ms") if basis.has_self else latency
    cells: dict[str, Any] = {
        "name": label,
        "type": str(rows[0]["module_type"]),
        "calls": f"{calls:.0f}",
        "output": _shape(rows),
        "act_per_call": format_bytes(_sum(rows, "activation_bytes") / per_call),
        "macs_per_call": format_count(_sum(rows, "macs") / per_call),
        "pct_macs": _share(_sum(rows, "self_macs"), basis.macs),
        "time_per_call": format_seconds(latency / per_call / 1e3) if calls else "-",
        "self_time": format_seconds(own / 1e3),
        "total_time": format_seconds(latency / 1e3),
        "pct_time": _share(own, basis.busy_ms),
    }
    for name in extras:
        cells[name] = extra_cell(name, [row.get(name) for row in rows])
    return cells


def _share(part: float, whole: float) -> str:
    return format_percent(part / whole) if whole > 0 and not math.isnan(part) else "-"


def _columns(basis: _Basis, extras: list[str], tree: bool, steady: int) -> list[Column]:
    cut: Literal["left", "right"] = "right" if tree else "left"
    columns = [
        Column("name", "hook point", "left", shrink=True, cut=cut, min_width=steady),
        Column("type", "type", "left", drop=0),
        Column("calls", "calls", drop=3),
        Column("output", "output shape", "left", drop=1),
        Column("act_per_call", "act./call", drop=2),
        Column("macs_per_call", "MACs/call", drop=6),
        Column("pct_macs", "% MACs", drop=5),
    ]
    columns += [
        Column(name, extra_header(name), drop=3.5 + i / 100) for i, name in enumerate(extras)
    ]
    if basis.timing:
        columns.append(Column("time_per_call", "time/call", drop=4))
        if basis.has_self:
            columns.append(Column("self_time", "self time"))
        columns.append(Column("total_time", "total time", drop=7 if basis.has_self else None))
        columns.append(Column("pct_time", "% time"))
    return columns


def _sort_key(sort_by: str, basis: _Basis) -> tuple[str, ...]:
    if sort_by in ("latency", "self_time") and basis.timing:
        return ("self_latency_ms", "latency_ms") if basis.has_self else ("latency_ms",)
    if sort_by == "total_time" and basis.timing:
        return ("latency_ms",)
    return ("self_macs", "macs")


def _ordered(
    roots: list[Node], sort_by: str | None, basis: _Basis, depth: Depth, top: int
) -> tuple[list[tuple[Node, str]], int, list[str], int]:
    """The rows shown with their labels, how many more there are, notes on depth, and the
    widest name of all the rows that could be shown (capped at ``SHRINK_MIN``), so that a
    live table keeps its columns in place while rows change places. A sorted list leaves
    out hook points that were never called (the tree shows them)."""
    if sort_by is None:
        shown_depth, notes = resolve_depth(roots, depth)
        nodes = [(node, tree_label(node, level)) for node, level in walk(roots, shown_depth)]
        return nodes, 0, notes, 0
    limit = None if depth is None else resolve_depth(roots, depth)[0]
    keys = _sort_key(sort_by, basis)
    flat = [node for node, _ in walk(roots, limit) if _sum(node.rows, "calls") > 0]
    names = short_names(flat)
    flat.sort(key=lambda node: tuple(-_nan_low(_sum(node.rows, k)) for k in keys))
    steady = min(max((cell_len(name) for name in names.values()), default=0), SHRINK_MIN)
    return [(node, names[node]) for node in flat[:top]], max(len(flat) - top, 0), [], steady


def _nan_low(value: float) -> float:
    return -math.inf if math.isnan(value) else value


def _check(sort_by: Any, top: Any) -> None:
    if sort_by not in SORT_KEYS:
        raise TableError(
            f"sort_by must be one of {', '.join(repr(k) for k in SORT_KEYS)}; got {sort_by!r}."
        )
    if not isinstance(top, int) or isinstance(top, bool) or top < 1:
        raise TableError(f"top must be a positive int (rows shown), got {top!r}.")


def track_table(
    report: TrackReport,
    *,
    sort_by: str | None = "latency",
    top: int = 15,
    depth: Depth = None,
    collapse: bool = True,
    columns: Iterable[str] | None = None,
) -> FittedTable:
    """The table of ``report`` (see the module docstring and :meth:`TrackReport.table`)."""
    _check(sort_by, top)
    frame = report.to_frame()
    has_self = "self_latency_ms" in frame.columns and report.timing
    extras = [str(c) for c in frame.columns if c not in _KNOWN and frame[c].dtype.kind in "iuf"]
    basis = _Basis(report, has_self)
    roots = build_tree(frame.to_dict("records"), signature=_signature, collapse=collapse)
    shown, more, notes, steady = _ordered(roots, sort_by, basis, depth, top)
    body = [_cells(node, label, basis, extras) for node, label in shown]
    styles: list[str | None] = [
        "dim" if _sum(node.rows, "calls") == 0 else None for node, _ in shown
    ]
    if more:
        body.append({"name": Text(f"… {more} more", style="dim")})
        styles.append(None)
    grid = Grid(
        title=f"hookstats track ({report.device}, {report.dtype})",
        columns=pick_columns(_columns(basis, extras, sort_by is None, steady), columns),
        rows=body,
        totals=[_totals(report, basis)],
        notes=[*notes, *_notes(report, basis, shown, sort_by)],
        styles=styles,
    )
    return FittedTable(grid)


def _totals(report: TrackReport, basis: _Basis) -> dict[str, Any]:
    forwards = max(report.forwards, 1)
    return {
        "name": Text("total / forward", style="bold"),
        "calls": str(int(report.total("calls"))),
        "act_per_call": format_bytes(report.total("activation_bytes") / forwards),
        "macs_per_call": format_count(report.total("macs") / forwards),
        "pct_macs": format_percent(1.0) if basis.macs else "-",
        "time_per_call": format_seconds(report.busy_s / forwards) if report.forwards else "-",
        "self_time": format_seconds(report.busy_s),
        "total_time": format_seconds(report.busy_s),
        "pct_time": format_percent(1.0) if basis.busy_ms > 0 else "-",
    }


def _notes(
    report: TrackReport, basis: _Basis, shown: list[tuple[Node, str]], sort_by: str | None
) -> list[str]:
    notes = [_throughput(report)]
    if any(node.count > 1 for node, _ in shown):
        notes.append(
            "×n: n identical modules in one row, costs summed · collapse=False "
            "(--no-collapse) shows each"
        )
    if not basis.timing:
        notes.append("timing=False: no time per hook point")
    elif basis.has_self:
        notes.append("% time, % MACs: spent in the hook point itself (nested ones excluded)")
    else:
        notes.append(
            "% time includes nested hook points (self time was not recorded) · % MACs: the "
            "hook point's own"
        )
    if sort_by is not None:
        order = {"macs": "own MACs", "total_time": "total time"}.get(sort_by, "time")
        notes.append(f"sorted by {order if basis.timing else 'own MACs'}")
    if report.uncounted_ops:
        notes.append("uncounted ops: " + ", ".join(sorted(report.uncounted_ops)))
    return notes


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def _throughput(report: TrackReport) -> str:
    rates = report.throughput()
    clock = "in forward" if report.timing else "wall"
    parts = [
        _plural(report.forwards, "forward"),
        _plural(report.samples, "sample"),
        f"{format_seconds(rates['seconds'])} {clock}",
    ]
    if report.forwards:
        parts += [
            f"{rates['calls_per_s']:,.1f} forwards/s",
            f"{rates['samples_per_s']:,.1f} samples/s",
            f"{format_count(rates['gmacs_per_s'] * 1e9)}MAC/s",
        ]
    if report.failed_forwards:
        parts.append(f"{report.failed_forwards} failed")
    return " · ".join(parts)
