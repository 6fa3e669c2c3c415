"""Notebook display: any rich renderable as HTML (and plain text) for Jupyter's
``_repr_mimebundle_``, rendered by rich at a fixed width with inline styles.

``Report``, ``TrackReport``, ``Tracker``, ``HardwareSummary``, ``SweepSummary`` and the tables
they return inherit :class:`NotebookDisplay`, whose ``_repr_mimebundle_``/``_repr_html_`` render
what rich prints for them (``__rich__``), so a bare ``report`` at the end of a cell shows the
table instead of a dataclass repr. The HTML is a
``<pre>`` block that scrolls sideways when the notebook is narrower than the table.

May import: rich.

Example:
    >>> from rich.table import Table
    >>> table = Table("MACs")
    >>> table.add_row("1.23 M")
    >>> bundle = mimebundle(table, width=40)
    >>> sorted(bundle), "1.23 M" in bundle["text/html"], "1.23 M" in bundle["text/plain"]
    (['text/html', 'text/plain'], True, True)
"""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

__all__ = ["NOTEBOOK_WIDTH", "NotebookDisplay", "mimebundle", "to_html", "to_text"]

NOTEBOOK_WIDTH = 120
"""Columns a table is laid out for in a notebook (wider tables scroll)."""

_PRE = (
    '<pre style="white-space:pre;overflow-x:auto;line-height:normal;'
    "font-family:Menlo,'DejaVu Sans Mono',consolas,'Courier New',monospace\">{code}</pre>"
)


def _console(width: int, *, record: bool) -> Console:
    return Console(
        file=io.StringIO(),
        width=width,
        record=record,
        color_system="truecolor" if record else None,
        force_terminal=record,
        force_jupyter=False,
        legacy_windows=False,
        soft_wrap=False,
    )


def to_text(renderable: Any, width: int = NOTEBOOK_WIDTH) -> str:
    """``renderable`` as plain text at ``width`` columns (trailing spaces removed)."""
    console = _console(width, record=False)
    console.print(renderable)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


def to_html(renderable: Any, width: int = NOTEBOOK_WIDTH) -> str:
    """``renderable`` as an HTML ``<pre>`` fragment with inline styles."""
    console = _console(width, record=True)
    console.print(renderable)
    return console.export_html(inline_styles=True, code_format=_PRE)


def mimebundle(renderable: Any, width: int = NOTEBOOK_WIDTH) -> dict[str, str]:
    """``{"text/html": ..., "text/plain": ...}`` for ``_repr_mimebundle_``."""
    return {"text/html": to_html(renderable, width), "text/plain": to_text(renderable, width)}


class NotebookDisplay:
    """Mixin for an object rich can print (``__rich__`` or ``__rich_console__``): Jupyter shows
    it as that rendering, in HTML with a plain-text fallback."""

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return mimebundle(self)

    def _repr_html_(self) -> str:
        return to_html(self)
