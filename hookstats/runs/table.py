"""The view of a :class:`~hookstats.runs.sweeper.SweepSummary`: one row of counts (done,
skipped, failed of the checkpoints, and the time), then each failed checkpoint with its error.
Pure presentation; it never prints.

May import: rich, :mod:`hookstats.units`, :mod:`hookstats.display`; the summary type for
annotations only.

Example:
    >>> import hookstats as hs
    >>> summary = hs.SweepSummary("baseline", total=3, done=2, failed=1, seconds=1.5,
    ...     failures=[("ckpts/3.pt", "CheckpointError: truncated")])
    >>> print(hs.display.to_text(sweep_view(summary), width=60).rstrip())
                  sweep 'baseline'
    checkpoints  done  skipped  failed    time
    ──────────────────────────────────────────
              3     2        0       1  1.50 s
    failed: ckpts/3.pt: CheckpointError: truncated
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group
from rich.text import Text

from ..display import Column, FittedTable, Grid
from ..units import format_seconds

if TYPE_CHECKING:
    from .sweeper import SweepSummary

__all__ = ["sweep_view"]

_COLUMNS = [
    Column("total", "checkpoints"),
    Column("done", "done"),
    Column("skipped", "skipped"),
    Column("failed", "failed"),
    Column("seconds", "time"),
]


def sweep_view(summary: SweepSummary) -> Group:
    """The counts table and one line per failed checkpoint (shown in red)."""
    row = {
        "total": str(summary.total),
        "done": str(summary.done),
        "skipped": str(summary.skipped),
        "failed": str(summary.failed),
        "seconds": format_seconds(summary.seconds),
    }
    table = FittedTable(Grid(f"sweep {summary.run!r}", list(_COLUMNS), [row]))
    failures = [
        Text.assemble(("failed: ", "bold red"), f"{checkpoint}: {error}")
        for checkpoint, error in summary.failures
    ]
    return Group(table, *failures)
