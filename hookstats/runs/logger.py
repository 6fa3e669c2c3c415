"""Metrics per checkpoint during training: :class:`CheckpointLogger` writes a model's metrics into
a :class:`~hookstats.runs.store.MetricStore`, one transaction per checkpoint (weight metrics,
and with a probe batch the activation metrics of one forward, :mod:`hookstats.runs.probe`); and
the settings a run is stored with (:func:`run_settings`, :func:`check_run`), shared with
:func:`hookstats.sweep`.

Nothing is written before the options were checked and a first checkpoint's metrics computed:
the run's settings are stored with its first checkpoint, so a typo (an unknown metric, a
``points=`` that selects nothing) never leaves a run that the corrected call would be refused to
resume.

May import: :mod:`hookstats.metrics`, :mod:`hookstats.profiling`, :mod:`hookstats.points` and
the :mod:`hookstats.runs` store and probe modules.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Mapping
from os import PathLike
from typing import Any

import pandas as pd
from torch import nn

from ..errors import StoreError
from ..metrics import MetricNames
from ..points import PointSpec
from ..profiling import Report, profile
from .probe import Probe, ProbeLike, as_probe, check_plan, measure
from .rows import check_if_exists, check_name, check_step
from .store import IfExists, MetricStore

__all__ = [
    "CheckpointLogger",
    "StoreLike",
    "as_store",
    "check_logger_options",
    "check_run",
    "describe",
    "run_settings",
]

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


def run_settings(
    metrics: Any, points: Any, task: Any, precision: str, probe: Probe | None = None
) -> dict[str, Any]:
    """The settings a run is stored with (and resumed only with). A probe is described by its
    shapes, dtypes and a hash of its contents (:attr:`Probe.description`); a run without one
    has no ``probe`` entry (as before probes existed)."""
    settings = {
        "metrics": describe(metrics),
        "points": describe(points),
        "task": describe(task),
        "precision": precision,
    }
    if probe is not None:
        settings["probe"] = probe.description
    return settings


def _probe_text(description: Any) -> str:
    if description is None:
        return "no probe batch"
    shapes = [_shape_text(d) for d in description.get("inputs", [])]
    shapes += [f"{k}={_shape_text(d)}" for k, d in description.get("kwargs", {}).items()]
    return f"a probe batch ({', '.join(shapes)}; content hash {description.get('hash')})"


def _shape_text(description: Any) -> str:
    if isinstance(description, dict) and set(description) == {"shape", "dtype"}:
        return f"{description['dtype']}{tuple(description['shape'])}"
    return repr(description)


def check_run(
    store: MetricStore,
    run: str,
    settings: Mapping[str, Any],
    config: Mapping[str, Any] | None = None,
) -> bool:
    """:meth:`MetricStore.check_run` (whether ``run`` exists, refusing other settings), with a
    message naming the probe when that is what differs.

    Raises:
        StoreError: ``run`` exists with other settings or config.
    """
    try:
        return store.check_run(run, config=config, settings=settings)
    except StoreError as exc:
        runs = store.runs()
        stored = runs[runs["run"] == run]["settings"]
        old = dict(stored.iloc[0]) if len(stored) else {}
        new = json.loads(json.dumps(dict(settings), default=str))
        old_probe, new_probe = old.pop("probe", None), new.pop("probe", None)
        if old == new and old_probe != new_probe:
            raise StoreError(
                f"run {run!r} was logged with {_probe_text(old_probe)}, and this call has "
                f"{_probe_text(new_probe)}: activation metrics of different batches are not "
                "comparable. Pass the same probe= to resume the run, or use a new run name."
            ) from exc
        raise


def check_logger_options(
    run: str,
    points: PointSpec,
    metrics: MetricNames,
    *,
    task: Any,
    precision: str,
    probe: ProbeLike,
) -> Probe | None:
    """Check a logger's options without a model or a store; returns the probe (copied).

    Raises:
        StoreError: a bad run name.
        MetricError, PointSelectionError: see :func:`hookstats.runs.probe.check_plan`.
    """
    check_name(run, "run")
    checked = as_probe(probe)
    check_plan(points, metrics, task, precision, checked)
    return checked


class CheckpointLogger:
    """Log a model's metrics into a store during training: one transaction per checkpoint.

    Args:
        store: a :class:`MetricStore` or the path of one.
        run: the run's name; created on first use, with ``config`` and versions.
        points, metrics: passed to :func:`hookstats.compute_metrics` (default: all).
        task: for category-2 metrics (e.g. modular addition); passed through.
        precision: the precision metrics are computed in.
        config: your run metadata (JSON-able), kept with the run.
        probe: ``(inputs, kwargs)``, a batch run once per :meth:`log` (eval mode, no grad)
            for the activation metrics in ``metrics`` (``None``: all of them); copied when the
            logger is made. The run is stored with its description (shapes, dtypes, a hash of
            its contents), and resuming the run with another probe is refused.

    Raises:
        MetricError: unknown metrics, activation metrics without ``probe=``, a probe with no
            activation metric, a malformed probe.
        StoreError: the run exists with other settings (another probe) or config.

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
        probe: ProbeLike = None,
    ) -> None:
        self.probe = check_logger_options(
            run, points, metrics, task=task, precision=precision, probe=probe
        )
        self.store = as_store(store)
        self.run = run
        self.points, self.metrics, self.task, self.precision = points, metrics, task, precision
        self.config = config
        self.settings = run_settings(metrics, points, task, precision, self.probe)
        self._added = check_run(self.store, run, self.settings, config)

    def log(
        self,
        model: nn.Module,
        step: int,
        *,
        checkpoint: str | None = None,
        if_exists: IfExists = "error",
        identity: str | None = None,
    ) -> pd.DataFrame:
        """Compute ``model``'s metrics (and the probe's activation metrics) and write them as
        checkpoint ``checkpoint`` (default ``"step:<step>"``) in one transaction, all rows or
        none. Returns the rows written.

        ``identity`` keys the checkpoint in the store (default: its name); a checkpoint saved
        to a file can be keyed as :func:`hookstats.sweep` keys that file
        (:func:`~hookstats.runs.sweeper.checkpoint_identity`), so that a later sweep skips it.
        ``if_exists`` then applies to both: a checkpoint with this identity or this name.

        Raises:
            StoreError: that checkpoint is already logged (pass ``if_exists="replace"`` or
                ``"skip"``), a step that is not an integer (1.5, True) or does not fit in 64
                bits, an unknown ``if_exists``, or the store cannot be written.
            ForwardError: the forward on the probe raised (nothing is written).
        """
        step = check_step(step)
        check_if_exists(if_exists)
        if checkpoint is not None:
            check_name(checkpoint, "checkpoint")
        name = checkpoint or f"step:{step}"
        if identity is not None:
            check_name(identity, "identity")
        taken = identity not in (None, name) and self._name_taken(name, if_exists)
        start = time.perf_counter()
        frame = measure(
            model,
            self.points,
            self.metrics,
            probe=self.probe,
            task=self.task,
            precision=self.precision,
        )
        if taken:  # if_exists="skip": this name is logged already, under another identity
            return frame
        if not self._added:  # the run's settings go in with its first checkpoint
            self.store.add_run(self.run, config=self.config, settings=self.settings)
            self._added = True
        self.store.write_checkpoint(
            self.run,
            name,
            step,
            frame,
            if_exists=if_exists,
            seconds=time.perf_counter() - start,
            identity=identity,
        )
        return frame

    def _name_taken(self, name: str, if_exists: IfExists) -> bool:
        """Whether a checkpoint named ``name`` is in the run already (under another identity:
        a file saved again at the same path) and must be skipped; raises for
        ``if_exists="error"``. ``"replace"`` is the store's: it replaces both."""
        if if_exists == "replace" or not self.store.check_run(self.run):
            return False
        if name not in set(self.store.checkpoints(self.run)["checkpoint"]):
            return False
        if if_exists == "error":
            raise StoreError(
                f"checkpoint {name!r} of run {self.run!r} is already in the store. Pass "
                "if_exists='replace' to overwrite it, or use another run name."
            )
        return True

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
