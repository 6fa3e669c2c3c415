"""The options of :func:`hookstats.track` checked when the block is set up, not after the
inference: table order, rows, CUDA timing, and weight metrics that need no task.

May import: :mod:`hookstats.errors`, :mod:`hookstats.metrics`.
"""

from __future__ import annotations

from typing import Literal

from ..errors import TrackError
from ..metrics import MetricNames, metric_registry

__all__ = ["CudaTiming", "SortKey", "check_metrics", "check_options"]

SortKey = Literal["latency", "macs"]
CudaTiming = Literal["sync", "events"]


def check_metrics(metrics: MetricNames) -> None:
    """Unknown metric names (and metrics that need a task) fail when the block is set up.

    >>> check_metrics(None)
    """
    if metrics is None:
        return
    needs_task = [spec.name for spec in metric_registry.resolve(metrics) if spec.category == 2]
    if needs_task:
        raise TrackError(
            f"track(metrics=) computes weight metrics; {', '.join(needs_task)} need(s) a task: "
            "call hs.compute_metrics(model, points, metrics, task=...) after the block instead."
        )


def check_options(sort_by: str, top: int, cuda_timing: str) -> None:
    """The table order, the rows shown and the CUDA timing method are valid.

    >>> check_options("macs", 10, "events")
    """
    if sort_by not in ("latency", "macs"):
        raise TrackError(f"sort_by must be 'latency' or 'macs', got {sort_by!r}.")
    if not isinstance(top, int) or isinstance(top, bool) or top < 1:
        raise TrackError(f"top must be a positive int (rows shown in the table), got {top!r}.")
    if cuda_timing not in ("sync", "events"):
        raise TrackError(f"cuda_timing must be 'sync' or 'events', got {cuda_timing!r}.")
