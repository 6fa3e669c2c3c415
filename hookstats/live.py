"""Rendering for :func:`hookstats.track`: the table of a :class:`~hookstats.track_report.
TrackReport` (:func:`track_table`) and the live view that refreshes it (:class:`LiveView`).

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
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .render import format_bytes, format_count, format_shape
from .track_report import TRACK_COLUMNS

if TYPE_CHECKING:
    from .track_report import TrackReport

__all__ = ["LiveView", "track_table"]

_COLUMNS = (("hook point", "left"), ("type", "left"), ("calls", "right"), ("output shape", "left"),
            ("act./call", "right"), ("MACs/call", "right"), ("ms/call", "right"),
            ("total ms", "right"), ("% time", "right"))


def _ms(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.3f}"


def _shape_text(row: dict[str, Any]) -> str:
    text = format_shape(row["output_shape"])
    extra = len(row["output_shapes"]) - 1
    return f"{text} (+{extra})" if extra > 0 else text


def _metric_text(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.4g}"


def _sorted_rows(frame: Any, sort_by: str, timing: bool) -> Any:
    key = "latency_ms" if sort_by == "latency" and timing else "macs"
    return frame.sort_values([key, "macs"], ascending=False, kind="stable")


def _caption(report: TrackReport) -> str:
    rates = report.throughput()
    clock = "in forward" if report.timing else "wall"
    parts = [f"{report.forwards} forwards", f"{report.samples} samples",
             f"{rates['seconds']:.2f} s {clock}"]
    if report.forwards:
        parts += [f"{rates['calls_per_s']:,.1f} calls/s",
                  f"{rates['samples_per_s']:,.1f} samples/s",
                  f"{rates['gmacs_per_s']:.3g} GMAC/s"]
    if report.failed_forwards:
        parts.append(f"{report.failed_forwards} failed")
    if report.uncounted_ops:
        parts.append("uncounted ops: " + ", ".join(sorted(report.uncounted_ops)))
    return " · ".join(parts)


def track_table(report: TrackReport, *, sort_by: str = "latency", top: int = 15) -> Table:
    """A rich table of a track report: the ``top`` hook points by total latency (or MACs),
    a totals row (per forward, over the whole model), and throughput in the caption.

    Per-call columns divide a point's sums by its calls; ``total ms`` is its summed latency
    and ``% time`` that as a share of the time spent inside the model's forwards.
    """
    frame = report.to_frame()
    metric_columns = [c for c in frame.columns if c not in TRACK_COLUMNS]
    table = Table(title=f"hookstats track ({report.device}, {report.dtype})",
                  caption=_caption(report), header_style="bold")
    for name, justify in _COLUMNS:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for name in metric_columns:
        table.add_column(name, justify="right")
    busy_ms = report.busy_s * 1e3
    ordered = _sorted_rows(frame, sort_by, report.timing)
    for row in ordered.head(top).to_dict("records"):
        calls = max(row["calls"], 1)
        share = row["latency_ms"] / busy_ms * 100 if busy_ms > 0 else math.nan
        table.add_row(
            str(row["hook_point"]), str(row["module_type"]), str(row["calls"]), _shape_text(row),
            format_bytes(row["activation_bytes"] / calls), format_count(row["macs"] / calls),
            _ms(row["mean_latency_ms"]), _ms(row["latency_ms"]),
            "-" if math.isnan(share) else f"{share:.1f}",
            *[_metric_text(row[c]) for c in metric_columns],
        )
    if len(frame) > top:
        table.add_row(Text(f"… {len(frame) - top} more", style="dim"),
                      *[""] * (len(_COLUMNS) - 1 + len(metric_columns)))
    table.add_section()
    table.add_row(*_totals_cells(report, busy_ms), *[""] * len(metric_columns))
    return table


def _totals_cells(report: TrackReport, busy_ms: float) -> list[Any]:
    forwards = max(report.forwards, 1)
    return [
        Text("total / forward", style="bold"), "", str(report.total("calls")), "",
        format_bytes(report.total("activation_bytes") / forwards),
        format_count(report.total("macs") / forwards),
        _ms(busy_ms / forwards if report.forwards else math.nan), _ms(busy_ms),
        "100.0" if busy_ms > 0 else "-",
    ]


class LiveView:
    """Show a track report live in a rich console, or print it once at the end.

    Args:
        snapshot: returns the current :class:`~hookstats.track_report.TrackReport`.
        console: where to render; a default ``Console()`` when ``live`` and none is given.
        live: refresh a table while the block runs (terminals and Jupyter only).
        sort_by, top: passed to :func:`track_table`.
        refresh_per_second: the most refreshes per second (4).

    Output happens only when ``live`` is true or a console is given: live in a terminal or
    Jupyter, otherwise one final table.
    """

    def __init__(self, snapshot: Callable[[], TrackReport], *, console: Console | None,
                 live: bool, sort_by: str = "latency", top: int = 15,
                 refresh_per_second: float = 4) -> None:
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

    def render(self) -> Table:
        """The table of a fresh snapshot."""
        return track_table(self._snapshot(), sort_by=self._sort_by, top=self._top)

    def start(self) -> None:
        """Start the live display when asked for and the console can show one."""
        console = self._console
        if not self._want_live or console is None:
            return
        if not (console.is_terminal or console.is_jupyter) or console.is_dumb_terminal:
            return
        self._live = Live(get_renderable=self.render, console=console,
                          refresh_per_second=self._refresh, transient=False)
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
