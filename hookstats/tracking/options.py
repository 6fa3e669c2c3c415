"""The options of :func:`hookstats.track` checked when the block is set up, not after the
inference: table order, rows, CUDA timing, the console, on/off flags, and ``metrics=`` split
into weight metrics (computed on exit; none may need a task) and activation metrics (streamed).

May import: rich, :mod:`hookstats.errors`, :mod:`hookstats.metrics` and the tracking table.
"""

from __future__ import annotations

from typing import Literal

from rich.console import Console

from ..errors import TrackError
from ..metrics import MetricNames, metric_registry
from ..metrics.registry import ACTIVATION, TASK, WEIGHTS
from .table import SORT_KEYS

__all__ = ["CudaTiming", "SortKey", "check_metrics", "check_options"]

SortKey = Literal["latency", "self_time", "total_time", "macs"] | None
CudaTiming = Literal["sync", "events"]


def check_metrics(metrics: MetricNames) -> tuple[list[str], list[str]]:
    """``metrics=`` as ``(weight metrics, activation metrics)``, each in the order given.
    Unknown names and metrics that need a task fail when the block is set up.

    >>> check_metrics(["act_rms", "l2"]), check_metrics(None)
    ((['l2'], ['act_rms']), ([], []))
    """
    if metrics is None:
        return [], []
    specs = metric_registry.resolve(metrics, categories=(WEIGHTS, TASK, ACTIVATION))
    needs_task = [spec.name for spec in specs if spec.category == TASK]
    if needs_task:
        raise TrackError(
            f"track(metrics=) computes weight and activation metrics; {', '.join(needs_task)} "
            "need(s) a task: call hs.compute_metrics(model, points, metrics, task=...) after "
            "the block instead."
        )
    weights = [spec.name for spec in specs if spec.category == WEIGHTS]
    return weights, [spec.name for spec in specs if spec.category == ACTIVATION]


def check_options(
    sort_by: object, top: object, cuda_timing: object, console: object = None, **flags: object
) -> None:
    """The table order, the rows shown, the CUDA timing method, the console and the on/off
    ``flags`` (``live=``, ``timing=``) are valid.

    >>> check_options("macs", 10, "events", live=False, timing=True)
    """
    if console is not None and not isinstance(console, Console):
        raise TrackError(
            f"console= must be a rich.console.Console (or None), got {type(console).__name__}."
        )
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise TrackError(f"{name}= must be True or False, got {value!r:.60}.")
    if not isinstance(sort_by, str | None) or sort_by not in SORT_KEYS:
        keys = ", ".join(repr(k) for k in SORT_KEYS)
        raise TrackError(f"sort_by must be one of {keys}; got {sort_by!r:.60}.")
    if not isinstance(top, int) or isinstance(top, bool) or top < 1:
        raise TrackError(f"top must be a positive int (rows shown in the table), got {top!r}.")
    if not isinstance(cuda_timing, str) or cuda_timing not in ("sync", "events"):
        raise TrackError(f"cuda_timing must be 'sync' or 'events', got {cuda_timing!r:.60}.")
