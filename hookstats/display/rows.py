"""What every tree table shares: the ``depth=`` and ``columns=`` options, the names of rows (a
tree label or a full path), the notes that say what is folded, and the cells of extra numeric
columns that a report gains (``backward_macs``, ``saved_bytes``, metric columns, ...).

Extra columns are formatted by their name: ``*macs*``/``*flops*`` as counts (K/M/G),
``*bytes`` as sizes (KiB/MiB), ``*_ms`` as durations; they are summed over a collapsed group.
Any other number (a metric) is shown with 4 significant digits, as the mean over a group.

May import: :mod:`hookstats.units`, :mod:`hookstats.errors` and its own package.

Example:
    >>> extra_kind("backward_macs"), extra_kind("saved_bytes"), extra_kind("act_rms")
    ('count', 'bytes', 'metric')
    >>> extra_cell("saved_bytes", [1024, 1024]), extra_cell("act_rms", [1.0, 2.0])
    ('2.00 KiB', '1.5')
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from ..errors import TableError
from ..units import format_bytes, format_count, format_number, format_seconds, is_missing
from .layout import Column
from .tree import Node, auto_depth, count_rows, max_level

__all__ = [
    "AUTO_ROWS",
    "Depth",
    "extra_cell",
    "extra_header",
    "extra_kind",
    "pick_columns",
    "resolve_depth",
    "short_names",
    "total_of",
    "tree_label",
]

Depth = int | Literal["all"] | None
"""A ``depth=`` option: levels below the top shown, ``"all"``, or None (fit ``AUTO_ROWS``)."""

AUTO_ROWS = 50
"""With ``depth=None`` a tree shows the deepest level that keeps it within this many rows."""

ExtraKind = Literal["count", "bytes", "ms", "metric"]


def tree_label(node: Node, level: int) -> str:
    """The name shown in a tree: indented by level, ``×n`` after a collapsed group."""
    suffix = f" ×{node.repeat}" if node.repeat > 1 else ""
    return f"{'  ' * level}{node.label}{suffix}"


def short_names(nodes: Iterable[Node], *, segments: int = 2) -> dict[Node, str]:
    """A name per node for a flat list: the shortest ending of its path (at least
    ``segments`` dotted segments, never starting at a number) that no other node's path ends
    with, and ``×n`` for n modules. ``transformer.h.0–11.mlp.c_fc`` -> ``mlp.c_fc ×12``.
    """
    listed = list(nodes)
    parts = {node: node.path.split(".") for node in listed}
    endings: dict[tuple[str, ...], int] = {}
    for split in parts.values():
        for start in range(len(split)):
            key = tuple(split[start:])
            endings[key] = endings.get(key, 0) + 1
    names = {}
    for node, split in parts.items():
        start = max(len(split) - segments, 0)
        while start > 0 and (endings[tuple(split[start:])] > 1 or _is_index(split[start])):
            start -= 1
        name = ".".join(split[start:])
        names[node] = f"{name} ×{node.count}" if node.count > 1 else name
    return names


def _is_index(segment: str) -> bool:
    return segment[:1].isdigit()


def resolve_depth(roots: Sequence[Node], depth: Depth) -> tuple[int, list[str]]:
    """The depth to show for ``depth=`` and a note on the rows it hides (if any).

    Raises:
        TableError: ``depth`` is not a non-negative int, ``"all"`` or None.
    """
    deepest = max_level(roots)
    if depth is None:
        chosen = auto_depth(roots, AUTO_ROWS)
    elif depth == "all":
        chosen = deepest
    elif isinstance(depth, int) and not isinstance(depth, bool) and depth >= 0:
        chosen = depth
    else:
        raise TableError(
            f"depth must be a non-negative int (levels below the top), 'all' or None (as "
            f"many levels as fit {AUTO_ROWS} rows); got {depth!r}."
        )
    hidden = count_rows(roots) - count_rows(roots, chosen)
    if hidden <= 0:
        return chosen, []
    return chosen, [
        f"depth {chosen} of {deepest} shown · {hidden} deeper rows are counted in their "
        f"parents · depth='all' (--depth all) shows them"
    ]


def pick_columns(columns: list[Column], wanted: Iterable[str] | None) -> list[Column]:
    """``columns`` narrowed to ``wanted`` (keys or headers; the first column always stays).

    Raises:
        TableError: a wanted name is not a column; the message lists them.
    """
    if wanted is None:
        return columns
    names = [wanted] if isinstance(wanted, str) else list(wanted)
    known = {c.key: c for c in columns} | {c.header: c for c in columns}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise TableError(
            f"columns={unknown!r} are not columns of this table; it has: "
            f"{', '.join(c.key for c in columns[1:])}."
        )
    chosen = {known[n].key for n in names}
    return [c for i, c in enumerate(columns) if i == 0 or c.key in chosen]


def extra_kind(name: str) -> ExtraKind:
    """How an extra numeric column is shown and combined, from its name."""
    lowered = name.lower()
    if "macs" in lowered or "flops" in lowered:
        return "count"
    if lowered.endswith("bytes"):
        return "bytes"
    if lowered.endswith("_ms"):
        return "ms"
    return "metric"


def extra_header(name: str) -> str:
    """``backward_macs`` -> ``backward MACs``; ``saved_bytes`` -> ``saved bytes``."""
    words = name.replace("_ms", " ms").split("_")
    return " ".join("MACs" if w == "macs" else "FLOPs" if w == "flops" else w for w in words)


def extra_cell(name: str, values: Sequence[Any]) -> str:
    """The cell of an extra column over a node's rows (a sum, or a metric's mean)."""
    present = [float(v) for v in values if not is_missing(v) and _is_number(v)]
    if not present:
        return "-"
    kind = extra_kind(name)
    if kind == "metric":
        return format_number(sum(present) / len(present), ".4g")
    total = sum(present)
    if kind == "count":
        return format_count(total)
    if kind == "bytes":
        return format_bytes(total)
    return format_seconds(total / 1e3)


def _is_number(value: Any) -> bool:
    try:
        return not math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def total_of(total: Any, column: str) -> str:
    """The totals-row cell of an extra column: ``total(column)`` when the report has one."""
    try:
        value = total(column)
    except (KeyError, ValueError, TypeError):
        return ""
    return extra_cell(column, [value]) if extra_kind(column) != "metric" else ""
