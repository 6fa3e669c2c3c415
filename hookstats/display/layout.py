"""Tables that fit the console without cutting a number: :class:`FittedTable` picks its
columns when it is rendered, from the width it is given.

The rule: every column gets its natural width (its widest cell or header), so a number and its
unit are never cut or wrapped. When the columns do not fit, whole columns are dropped, lowest
``drop`` first (a column with ``drop=None`` is always shown), and a note under the table says
which. Only a ``shrink`` column (a name) may be shortened, with an ellipsis, and only down to
:data:`SHRINK_MIN` characters. Notes are laid out at the console's width and broken only
between sentences or `` · ``-separated parts, never inside ``4.20 ms``.

May import: rich.

Example:
    >>> import io
    >>> from rich.console import Console
    >>> grid = Grid("demo", [Column("name", "name", "left"), Column("n", "MACs"),
    ...     Column("t", "type", "left", drop=0)], [{"name": "fc", "n": "1.23 M", "t": "Linear"}])
    >>> table = FittedTable(grid)
    >>> table.dropped(14), table.dropped(40)  # name 4 + MACs 6 + type 6 + 2 gaps of 2 = 20
    (['type'], [])
    >>> console = Console(file=io.StringIO(), width=40, color_system=None)
    >>> console.print(table)
    >>> print(console.file.getvalue().rstrip())
            demo
    name    MACs  type
    ────────────────────
    fc    1.23 M  Linear
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from .html import NotebookDisplay

__all__ = ["SHRINK_MIN", "Cell", "Column", "FittedTable", "Grid", "layout_notes"]

SHRINK_MIN = 20
"""The narrowest a ``shrink`` column (the names) becomes before other columns are dropped."""
_GAP = 2  # spaces between two columns (SIMPLE_HEAD box, collapsed padding, no edge)

Cell = str | Text


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a :class:`Grid`.

    Attributes:
        key: the key of the cell in each row.
        header: the header text.
        justify: ``"left"`` for names and types, ``"right"`` for numbers.
        drop: columns are dropped in increasing ``drop`` when space runs out; None: never.
        shrink: text that may be shortened with an ellipsis (never a number).
        cut: where a shortened text loses characters: ``"right"`` (a tree label keeps its
            start) or ``"left"`` (a full path keeps its end, ``…layers.0–31.mlp``).
        min_width: the narrowest it is when it fits (a live table keeps its layout steady
            while rows come and go).
    """

    key: str
    header: str
    justify: Literal["left", "right"] = "right"
    drop: float | None = None
    shrink: bool = False
    cut: Literal["left", "right"] = "right"
    min_width: int = 0


@dataclass(slots=True)
class Grid:
    """A table's content before it meets a console: title, columns, rows, totals and notes.

    ``styles`` gives a rich style per body row (``"dim"`` for rows not counted in totals).
    Each note is a sentence of the caption; `` · `` separates parts that may go on separate
    lines.
    """

    title: str
    columns: list[Column]
    rows: Sequence[Mapping[str, Cell]]
    totals: Sequence[Mapping[str, Cell]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    styles: Sequence[str | None] = field(default_factory=list)


def _plain(cell: Cell) -> str:
    return cell.plain if isinstance(cell, Text) else cell


def _natural(column: Column, grid: Grid) -> int:
    cells = [row.get(column.key, "") for row in (*grid.rows, *grid.totals)]
    widest = max([cell_len(column.header), *(cell_len(_plain(c)) for c in cells)])
    return max(widest, column.min_width)


def _floor(column: Column, natural: int) -> int:
    return min(natural, SHRINK_MIN) if column.shrink else natural


def _span(widths: Iterable[int]) -> int:
    values = list(widths)
    return sum(values) + _GAP * max(len(values) - 1, 0)


def choose_columns(grid: Grid, width: int) -> tuple[list[Column], dict[str, int], list[Column]]:
    """The columns shown at ``width``, their widths, and the columns dropped (in order)."""
    natural = {c.key: _natural(c, grid) for c in grid.columns}
    kept = list(grid.columns)
    droppable = sorted((c for c in kept if c.drop is not None), key=lambda c: c.drop or 0.0)
    dropped: list[Column] = []
    while _span(_floor(c, natural[c.key]) for c in kept) > width and droppable:
        column = droppable.pop(0)
        kept.remove(column)
        dropped.append(column)
    widths = {c.key: natural[c.key] for c in kept}
    excess = _span(widths.values()) - width
    for column in kept:
        if excess <= 0:
            break
        if column.shrink:
            cut = min(excess, natural[column.key] - _floor(column, natural[column.key]))
            widths[column.key] -= cut
            excess -= cut
    return kept, widths, dropped


def layout_notes(notes: Iterable[str], width: int) -> list[str]:
    """Lines of at most ``width`` cells, broken between `` · `` parts (or words of a part
    longer than a line, the only place a line may break inside a note)."""
    lines: list[str] = []
    for note in notes:
        line = ""
        for part in note.split(" · "):
            candidate = f"{line} · {part}" if line else part
            if cell_len(candidate) <= width or not line:
                line = candidate
            else:
                lines.append(line)
                line = part
        lines.append(line)
    return lines


def _table(grid: Grid, kept: list[Column], widths: dict[str, int]) -> Table:
    inside = cell_len(grid.title) <= _span(widths.values())  # else printed above, unwrapped
    table = Table(
        title=grid.title if inside else None,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
        header_style="bold",
    )
    for column in kept:
        table.add_column(
            column.header,
            justify=column.justify,
            no_wrap=True,
            overflow="ellipsis",
            width=widths[column.key],
        )
    styles = grid.styles or [None] * len(grid.rows)
    for row, style in zip(grid.rows, styles, strict=True):
        table.add_row(*(_cut(row.get(c.key, ""), c, widths[c.key]) for c in kept), style=style)
    if grid.totals:
        table.add_section()
        for row in grid.totals:
            table.add_row(*(_cut(row.get(c.key, ""), c, widths[c.key]) for c in kept))
    return table


def _cut(cell: Cell, column: Column, width: int) -> Cell:
    """A cell shortened from the left for ``cut="left"`` columns (rich cuts on the right)."""
    if column.cut != "left" or isinstance(cell, Text) or cell_len(cell) <= width:
        return cell
    tail = cell
    while cell_len(tail) > width - 1:
        tail = tail[1:]
    return f"…{tail}"


class FittedTable(NotebookDisplay):
    """A rich renderable: the :class:`Grid` as a table that fits the width it is rendered at,
    with its notes below. In Jupyter it displays as HTML (see :mod:`hookstats.display.html`).

    Use :meth:`to_table` for a plain ``rich.table.Table`` at a given width.
    """

    def __init__(self, grid: Grid) -> None:
        self.grid = grid

    def dropped(self, width: int) -> list[str]:
        """Headers of the columns left out at ``width`` columns, in the order dropped."""
        return [c.header for c in choose_columns(self.grid, width)[2]]

    def to_table(self, width: int) -> Table:
        """The table (without the notes) as it is shown at ``width`` columns."""
        kept, widths, _ = choose_columns(self.grid, width)
        return _table(self.grid, kept, widths)

    def notes(self, width: int) -> list[str]:
        """The caption lines at ``width`` columns, the dropped columns' note included."""
        notes = list(self.grid.notes)
        dropped = self.dropped(width)
        if dropped:
            notes.append(
                f"not shown at {width} columns: {', '.join(dropped)} · (a wider console shows them)"
            )
        return layout_notes(notes, width)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        table = self.to_table(width)
        if table.title is None and self.grid.title:
            yield Text(self.grid.title, style="table.title")
        yield table
        lines = self.notes(width)
        if lines:
            yield Text("\n".join(lines), style="dim", no_wrap=False)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        natural = {c.key: _natural(c, self.grid) for c in self.grid.columns}
        widest = _span(natural.values())
        fixed = [_floor(c, natural[c.key]) for c in self.grid.columns if c.drop is None]
        return Measurement(min(_span(fixed), widest), widest).clamp(max_width=options.max_width)
