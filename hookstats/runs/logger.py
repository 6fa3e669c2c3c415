"""Metrics per checkpoint during training: :class:`CheckpointLogger` writes a model's metrics into
a :class:`~hookstats.runs.store.MetricStore`, one transaction per checkpoint; and the settings a
run is stored with (:func:`run_settings`), shared with :func:`hookstats.sweep`.

Nothing is written before the options were checked and a first checkpoint's metrics computed:
the run's settings are stored with its first checkpoint, so a typo (an unknown metric, a
``points=`` that selects nothing) never leaves a run that the corrected call would be refused to
resume.

May import: :mod:`hookstats.metrics`, :mod:`hookstats.profiling`, :mod:`hookstats.points` and
the :mod:`hookstats.runs` store.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from os import PathLike
from typing import Any

import pandas as pd
from torch import nn

from ..errors import StoreError
from ..metrics import MetricNames, compute_metrics
from ..metrics.compute import check_options
from ..points import PointSpec
from ..profiling import Report, profile
from .rows import check_if_exists, check_name, check_step
from .store import IfExists, MetricStore

__all__ = ["CheckpointLogger", "StoreLike", "as_store", "describe", "run_settings"]

StoreLike = MetricStore | str | PathLike[str]


def as_store(store: StoreLike, *, closed_after: bool = False) -> MetricStore:
    """``store`` itself, or the store at that path.

    Raises:
        StoreError: a path that cannot be a store; ``":memory:"`` given as a path to a call
            that closes the store when it returns (its rows would vanish with it).
    """
    if isinstance(store, MetricStore):
        return store
    if closed_after and isinstance(store, str) and store == ":memory:":
        raise StoreError(
            "store=':memory:' would keep nothing: the store is closed, and its rows gone, when "
            "the call returns. Pass a file path, or MetricStore(':memory:') to read it after."
        )
    return MetricStore(store)


def describe(value: Any) -> Any:
    """A JSON-able, run-to-run stable description of metrics/points/task settings."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [describe(v) for v in value]
    if isinstance(value, functools.partial):
        return {"partial": describe(value.func), "args": describe(list(value.args))}
    if hasattr(value, "__qualname__"):  # a class or a function: by name
        return f"{getattr(value, '__module__', '?')}.{value.__qualname__}"
    text = repr(value)  # an object (a task): its repr, unless it is only an address
    return text if " at 0x" not in text and len(text) <= 200 else type(value).__qualname__


def run_settings(metrics: Any, points: Any, task: Any, precision: str) -> dict[str, Any]:
    """The settings a run is stored with (and resumed only with)."""
    return {
        "metrics": describe(metrics),
        "points": describe(points),
        "task": describe(task),
        "precision": precision,
    }


class CheckpointLogger:
    """Log a model's metrics into a store during training: one transaction per checkpoint.

    Args:
        store: a :class:`MetricStore` or the path of one.
        run: the run's name; created on first use, with ``config`` and versions.
        points, metrics: passed to :func:`hookstats.compute_metrics` (default: all).
        task: for category-2 metrics (e.g. modular addition); passed through.
        precision: the precision metrics are computed in.
        config: your run metadata (JSON-able), kept with the run.

    Example:
        >>> logger = CheckpointLogger("runs/metrics.sqlite", run="baseline")  # doctest: +SKIP
        >>> for step in range(1, 10_001):  # doctest: +SKIP
        ...     train_step(model)
        ...     if step % 1000 == 0:
        ...         logger.log(model, step)
    """

    def __init__(
        self,
        store: StoreLike,
        run: str,
        points: PointSpec = None,
        metrics: MetricNames = None,
        *,
        task: Any = None,
        precision: str = "float32",
        config: Mapping[str, Any] | None = None,
    ) -> None:
        check_name(run, "run")
        check_options(points, metrics, task, precision)
        self.store = as_store(store)
        self.run = run
        self.points, self.metrics, self.task, self.precision = points, metrics, task, precision
        self.config = config
        self.settings = run_settings(metrics, points, task, precision)
        self._added = self.store.check_run(run, config=config, settings=self.settings)

    def log(
        self,
        model: nn.Module,
        step: int,
        *,
        checkpoint: str | None = None,
        if_exists: IfExists = "error",
    ) -> pd.DataFrame:
        """Compute ``model``'s metrics and write them as checkpoint ``checkpoint`` (default
        ``"step:<step>"``), all rows or none. Returns the rows written.

        Raises:
            StoreError: that checkpoint is already logged (pass ``if_exists="replace"`` or
                ``"skip"``), a step that is not an integer (1.5, True) or does not fit in 64
                bits, an unknown ``if_exists``, or the store cannot be written.
        """
        step = check_step(step)
        check_if_exists(if_exists)
        if checkpoint is not None:
            check_name(checkpoint, "checkpoint")
        start = time.perf_counter()
        frame = compute_metrics(
            model, self.points, self.metrics, task=self.task, precision=self.precision
        )
        if not self._added:  # the run's settings go in with its first checkpoint
            self.store.add_run(self.run, config=self.config, settings=self.settings)
            self._added = True
        self.store.write_checkpoint(
            self.run,
            checkpoint or f"step:{step}",
            step,
            frame,
            if_exists=if_exists,
            seconds=time.perf_counter() - start,
        )
        return frame

    def log_profile(
        self,
        model: nn.Module,
        *,
        input_shape: tuple[int, ...] | None = None,
        batch_size: int = 1,
        **profile_kwargs: Any,
    ) -> Report:
        """Profile ``model`` once (:func:`hookstats.profile`) and keep its layer costs with the
        run (a later call replaces them). Returns the :class:`~hookstats.Report`.

        Example:
            >>> logger.log_profile(model, input_shape=(1, 28, 28), batch_size=32)  # doctest: +SKIP
        """
        report = profile(model, input_shape=input_shape, batch_size=batch_size, **profile_kwargs)
        if not self._added:
            self.store.add_run(self.run, config=self.config, settings=self.settings)
            self._added = True
        self.store.write_profile(self.run, report, input_shape=input_shape, batch_size=batch_size)
        return report
