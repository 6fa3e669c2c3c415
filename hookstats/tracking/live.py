"""The live view of :func:`hookstats.track`: :class:`LiveView` refreshes the table of
:mod:`hookstats.tracking.table` while the block runs.

Rendering is separate from state: the live view *pulls* a snapshot through a callable from
rich's refresh thread, at most ``refresh_per_second`` times a second; hooks never render. When
the console is neither a terminal nor Jupyter (a file, a pipe, a CI log), nothing is rendered
while the block runs and one final table is printed when it exits.

Example:
    >>> import io, torch, hookstats as hs
    >>> from rich.console import Console
    >>> from torch import nn
    >>> console = Console(file=io.StringIO(), width=120, color_system=None)
    >>> model = nn.Sequential(nn.Linear(8, 4))
    >>> with hs.track(model, live=True, console=console) as t:
    ...     _ = model(torch.zeros(1, 8))
    >>> "hookstats track" in console.file.getvalue()
    True

May import: rich, :mod:`hookstats.display` and :mod:`hookstats.tracking` siblings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.live import Live

from ..display import FittedTable
from .table import track_table

if TYPE_CHECKING:
    from .report import TrackReport

__all__ = ["LiveView"]


class LiveView:
    """Show a track report live in a rich console, or print it once at the end.

    Args:
        snapshot: returns the current :class:`~hookstats.tracking.report.TrackReport`.
        console: where to render; a default ``Console()`` when ``live`` and none is given.
        live: refresh a table while the block runs (terminals and Jupyter only).
        sort_by, top: the table's defaults (see :func:`track_table`); ``rich.print(tracker)``
            and ``tracker.table()`` use them too.
        refresh_per_second: the most refreshes per second (4).

    Output happens only when ``live`` is true or a console is given: live in a terminal or
    Jupyter, otherwise one final table.
    """

    def __init__(
        self,
        snapshot: Callable[[], TrackReport],
        *,
        console: Console | None,
        live: bool,
        sort_by: str | None = "latency",
        top: int = 15,
        refresh_per_second: float = 4,
    ) -> None:
        self._snapshot = snapshot
        self._enabled = live or console is not None
        self._console = console if console is not None else (Console() if live else None)
        self._want_live = live
        self._sort_by = sort_by
        self._top = top
        self._refresh = refresh_per_second
        self._live: Live | None = None

    @property
    def is_live(self) -> bool:
        """True while a rich ``Live`` display is running."""
        return self._live is not None

    def table(self, **options: Any) -> FittedTable:
        """The table of a fresh snapshot, with this view's ``sort_by``/``top`` unless given."""
        options.setdefault("sort_by", self._sort_by)
        options.setdefault("top", self._top)
        return track_table(self._snapshot(), **options)

    def render(self) -> FittedTable:
        """The table of a fresh snapshot."""
        return self.table()

    def start(self) -> None:
        """Start the live display when asked for and the console can show one."""
        console = self._console
        if not self._want_live or console is None:
            return
        if not (console.is_terminal or console.is_jupyter) or console.is_dumb_terminal:
            return
        self._live = Live(
            get_renderable=self.render,
            console=console,
            refresh_per_second=self._refresh,
            transient=False,
        )
        self._live.start()

    def stop(self) -> None:
        """Stop the live display with a last refresh, or print the final table once."""
        if self._live is not None:
            live, self._live = self._live, None
            if live.console.is_jupyter:  # Live.stop() re-renders in terminals, not in notebooks
                live.refresh()
            live.stop()
        elif self._enabled and self._console is not None:
            self._console.print(self.render())
