"""Tables of the hardware views: :func:`hardware_table` for a
:class:`~hookstats.hardware.roofline.HardwareSummary` (hook points as a tree, repeated blocks
collapsed, a total row) and :func:`precision_table` for the frame of
:func:`~hookstats.hardware.tradeoffs.precision_tradeoffs`. Pure presentation; never prints.

Every number has its unit (bytes in KiB/MiB, FLOPs in K/M/G/T, times in ns/µs/ms/s, bandwidth
in GB/s). Columns are dropped whole when space runs out (calls, FLOP/B, roofline, latency,
FLOPs, bytes moved) and a note says which. A row whose achieved bandwidth is above the DRAM
peak keeps its real utilisation (nothing is capped) and its bound says why: ``cache`` (its
working set per call fits the last-level cache), ``overcount`` (it does not: the byte model
counted bytes that were not moved) or ``cache?`` (cache size unknown); see
:mod:`hookstats.hardware.cache`.

May import: rich, pandas, :mod:`hookstats.units`, :mod:`hookstats.display` and its own
package; the summary type for annotations only.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd
from rich.text import Text

from ..display import Column, FittedTable, Grid, build_tree, walk
from ..display.rows import Depth, pick_columns, resolve_depth, tree_label
from ..units import (
    format_bandwidth,
    format_bytes,
    format_count,
    format_number,
    format_percent,
    format_seconds,
    is_missing,
)
from .cache import CACHE_NOTES, cache_label, last_level_cache_bytes

if TYPE_CHECKING:
    from .roofline import HardwareSummary

__all__ = ["hardware_table", "precision_table"]

_COLUMNS = [
    Column("name", "hook point", "left", shrink=True),
    Column("calls", "calls", drop=0),
    Column("bytes_moved", "bytes moved", drop=5),
    Column("flops", "FLOPs", drop=4),
    Column("arithmetic_intensity", "FLOP/B", drop=1),
    Column("latency_ms", "latency", drop=3),
    Column("achieved", "achieved", drop=6),
    Column("bandwidth_utilization", "BW util"),
    Column("roofline_ms", "roofline", drop=2),
    Column("bound", "bound", "left"),
]
_SUMMED = (
    "calls", "bytes_moved", "flops", "latency_ms", "memory_ms", "compute_ms", "roofline_ms",
)  # fmt: skip


def _signature(row: Mapping[str, Any]) -> Hashable:
    return (row.get("calls"), row.get("bytes_moved"), row.get("flops"))


def _combine(rows: Sequence[Mapping[str, Any]], summary: HardwareSummary) -> dict[str, Any]:
    """One row's values, or a group's: sums, and the ratios of the sums."""
    if len(rows) == 1:
        return dict(rows[0])
    values: dict[str, Any] = {key: sum(float(row[key]) for row in rows) for key in _SUMMED}
    moved, seconds = values["bytes_moved"], values["latency_ms"] / 1e3
    values["arithmetic_intensity"] = values["flops"] / moved if moved else math.nan
    achieved = moved / seconds / 1e9 if seconds > 0 else math.nan
    values["achieved_bandwidth_gbps"] = achieved
    values["bandwidth_utilization"] = achieved / summary.memory_bandwidth_gbps
    if summary.peak_tflops:
        values["bound"] = "compute" if values["compute_ms"] > values["memory_ms"] else "memory"
    else:
        values["bound"] = "unknown"
    return values


def _cells(values: Mapping[str, Any], name: Any, cache: int | None) -> dict[str, Any]:
    util = values["bandwidth_utilization"]
    bound = str(values["bound"])
    if not is_missing(util) and util > 1:
        bound = cache_label(float(values["bytes_moved"]) / max(float(values["calls"]), 1), cache)
    return {
        "name": name,
        "calls": f"{float(values['calls']):.0f}",
        "bytes_moved": format_bytes(values["bytes_moved"]),
        "flops": format_count(values["flops"]),
        "arithmetic_intensity": format_number(values["arithmetic_intensity"], ".3g"),
        "latency_ms": format_seconds(values["latency_ms"] / 1e3),
        "achieved": format_bandwidth(values["achieved_bandwidth_gbps"] * 1e9),
        "bandwidth_utilization": format_percent(util),
        "roofline_ms": format_seconds(values["roofline_ms"] / 1e3),
        "bound": bound,
    }


def _title(summary: HardwareSummary) -> str:
    peak = "no peak" if summary.peak_tflops is None else f"{summary.peak_tflops:g} TFLOPS"
    hardware = f"{summary.hardware}, " if summary.hardware else ""
    bandwidth = format_bandwidth(summary.memory_bandwidth_gbps * 1e9)
    return f"hardware summary ({hardware}{summary.precision}, {bandwidth}, {peak})"


def hardware_table(
    summary: HardwareSummary,
    *,
    depth: Depth = None,
    collapse: bool = True,
    columns: Iterable[str] | None = None,
    max_rows: int | None = 30,
) -> FittedTable:
    """A table of ``summary``: its rows as a tree (collapsed), at most ``max_rows`` of them,
    and the total row; notes say how inputs were estimated and why a bound is ``cache``."""
    records = summary.rows.to_dict("records")  # no module types: collapse blocks, not leaves
    roots = build_tree(records, signature=_signature, collapse=collapse, leaves=False)
    shown_depth, notes = resolve_depth(roots, depth)
    shown = list(walk(roots, shown_depth))
    limit = len(shown) if max_rows is None else max(int(max_rows), 0)
    cache = last_level_cache_bytes(summary.hardware)
    body, styles = [], []
    for node, level in shown[:limit]:
        body.append(_cells(_combine(node.rows, summary), tree_label(node, level), cache))
        styles.append(None if all(row["counted"] for row in node.rows) else "dim")
    if len(shown) > limit:
        body.append({"name": Text(f"… {len(shown) - limit} more rows", style="dim")})
        styles.append(None)
    total = _cells(summary.total_row, Text("total", style="bold"), cache)
    labels = [str(row["bound"]) for row in (*body, total)]
    if any(node.repeat > 1 for node, _ in shown):
        notes.append("×n: n identical consecutive modules in one row, costs summed")
    notes += [*summary.notes, *_cache_notes(labels, cache)]
    if "dim" in styles:
        notes.append("dim rows contain other rows: not added again to the total")
    grid = Grid(_title(summary), pick_columns(_COLUMNS, columns), body, [total], notes, styles)
    return FittedTable(grid)


def _cache_notes(labels: Iterable[str], cache: int | None) -> list[str]:
    size = format_bytes(cache) if cache is not None else "?"
    found = [label for label in CACHE_NOTES if label in set(labels)]
    return [CACHE_NOTES[label].format(cache=size) for label in found]


_PRECISION_COLUMNS = [
    Column("precision", "precision", "left"),
    Column("bits", "bits", drop=0),
    Column("bytes_moved", "bytes moved"),
    Column("arithmetic_intensity", "FLOP/B", drop=1),
    Column("memory_ms", "memory roof", drop=3),
    Column("compute_ms", "compute roof", drop=2),
    Column("roofline_ms", "roofline", drop=4),
    Column("bound", "bound", "left", drop=5),
    Column("speedup", "speedup"),
    Column("estimated_latency_ms", "est. latency"),
]


def precision_table(frame: pd.DataFrame, *, title: str = "precision what-if") -> FittedTable:
    """The frame of :func:`~hookstats.hardware.tradeoffs.precision_tradeoffs` as a table.

    ``n/a`` marks a speedup or latency estimate that cannot be made (the device has a peak
    for one of the two precisions only) and a compute roof without a peak; a note says so.

    Example:
        >>> import pandas as pd, hookstats as hs
        >>> seed = pd.DataFrame({"layer": ["fc"], "output_elements": [4],
        ...     "parameter_bytes": [72], "activation_bytes": [16], "macs": [32]})
        >>> frame = hs.precision_tradeoffs(seed, 0.001, 100, input_bytes=32)
        >>> print(hs.display.to_text(precision_table(frame), width=100))  # doctest: +ELLIPSIS
        precision what-if...
    """
    rows = []
    for row in frame.to_dict("records"):
        rows.append(
            {
                "precision": str(row["precision"]),
                "bits": str(row["bits"]),
                "bytes_moved": format_bytes(row["bytes_moved"]),
                "arithmetic_intensity": format_number(row["arithmetic_intensity"], ".3g"),
                "memory_ms": format_seconds(row["memory_ms"] / 1e3),
                "compute_ms": _or_na(row["compute_ms"], lambda v: format_seconds(v / 1e3)),
                "roofline_ms": format_seconds(row["roofline_ms"] / 1e3),
                "bound": str(row["bound"]),
                "speedup": _or_na(row["speedup"], lambda v: f"{v:.2f}×"),
                "estimated_latency_ms": "n/a"
                if is_missing(row["speedup"])
                else format_seconds(row["estimated_latency_ms"] / 1e3),
            }
        )
    notes = ["sizes scaled by bits (weights and activations); MACs unchanged"]
    if any(r["compute_ms"] == "n/a" for r in rows):
        notes.append("compute roof n/a: the device has no peak at that precision")
    missing = [r["precision"] for r in rows if r["speedup"] == "n/a"]
    if missing:
        notes.append(
            f"speedup n/a for {', '.join(missing)}: a peak is known for one of the two "
            "precisions only, so the rooflines are not comparable · pass peak_tflops={'bf16': "
            "...} or a preset such as hardware='a100'"
        )
    return FittedTable(Grid(title, list(_PRECISION_COLUMNS), rows, [], notes))


def _or_na(value: Any, render: Any) -> str:
    return "n/a" if is_missing(value) else str(render(value))
