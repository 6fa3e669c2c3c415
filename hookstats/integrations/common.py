"""What every integration shares: metric keys and their sanitising, optional imports with the
``pip install hookstats[extra]`` message, tidy rows as one dict of values per step, and
:class:`StepLogger` (each training step logged once, the store opened on first use).

Keys: a value of metric ``m`` at hook point ``p`` is ``hookstats/<m>/<p>`` everywhere. Where a
backend restricts names (MLflow accepts only letters, digits, ``_ - . / :`` and space; W&B keys
and Lightning loggers follow), :func:`sanitize` replaces every other character of ``m`` and
``p`` (and a ``/`` inside them) by ``_``: ``(model)`` becomes ``_model_``. Two names that
sanitise alike raise instead of overwriting each other.

May import: pandas, :mod:`hookstats.errors`, :mod:`hookstats.metrics`, :mod:`hookstats.points`
and :mod:`hookstats.runs`.

Example:
    >>> metric_key("l2", "(model)"), metric_key("l2", "(model)", sanitized=True)
    ('hookstats/l2/(model)', 'hookstats/l2/_model_')
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from types import ModuleType
from typing import Any

import pandas as pd
from torch import nn

from ..errors import HookstatsError, StoreError
from ..metrics import MetricNames
from ..points import PointSpec
from ..runs import CheckpointLogger, MetricStore
from ..runs.logger import StoreLike, check_logger_options
from ..runs.probe import ProbeLike
from ..runs.store import IfExists

__all__ = [
    "IF_EXISTS",
    "KEY_PREFIX",
    "StepLogger",
    "checkpoint_times",
    "import_extra",
    "metric_key",
    "metric_keys",
    "positive_int",
    "sanitize",
    "step_values",
]

KEY_PREFIX = "hookstats"
IF_EXISTS = ("error", "skip", "replace")
_UNSAFE = re.compile(r"[^\w.\- ]")


def import_extra(module: str, extra: str, what: str, *, package: str | None = None) -> ModuleType:
    """Import an optional dependency, or raise the error that says which extra to install.

    ``package`` names what is missing when it is not ``module``'s top-level package (e.g.
    ``torch.utils.tensorboard`` needs ``tensorboard``).

    Raises:
        HookstatsError: ``module`` is not installed.

    Example:
        >>> import_extra("no_such_module_xyz", "tensorboard", "export_tensorboard")
        Traceback (most recent call last):
        ...
        hookstats.errors.HookstatsError: export_tensorboard needs no_such_module_xyz: pip install hookstats[tensorboard]
    """  # noqa: E501
    try:
        return importlib.import_module(module)
    except ImportError:
        missing = package or module.split(".")[0]
        raise HookstatsError(f"{what} needs {missing}: pip install hookstats[{extra}]") from None


def sanitize(name: str) -> str:
    """``name`` with every character but letters, digits, ``_ - .`` and space replaced by ``_``.

    Example:
        >>> sanitize("(model)"), sanitize("blocks.0.attn"), sanitize("a/b")
        ('_model_', 'blocks.0.attn', 'a_b')
    """
    return _UNSAFE.sub("_", name)


def metric_key(metric: str, hook_point: str, *, sanitized: bool = False) -> str:
    """The key of one metric at one hook point: ``hookstats/<metric>/<hook_point>``."""
    if sanitized:
        metric, hook_point = sanitize(metric), sanitize(hook_point)
    return f"{KEY_PREFIX}/{metric}/{hook_point}"


def metric_keys(
    pairs: Iterable[tuple[str, str]], *, sanitized: bool = False
) -> dict[tuple[str, str], str]:
    """The key of each ``(metric, hook_point)`` pair, checked to be distinct.

    Raises:
        HookstatsError: two pairs get the same key once sanitised (hook points whose names
            differ only in characters a backend refuses).

    Example:
        >>> metric_keys([("l2", "a(b"), ("l2", "a)b")], sanitized=True)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        hookstats.errors.HookstatsError: hook points 'a(b' and 'a)b' both become ...
    """
    keys: dict[tuple[str, str], str] = {}
    owners: dict[str, tuple[str, str]] = {}
    for pair in pairs:
        if pair in keys:
            continue
        key = metric_key(*pair, sanitized=sanitized)
        if key in owners:
            other = owners[key]
            raise HookstatsError(
                f"hook points {other[1]!r} and {pair[1]!r} both become {key!r} once "
                "sanitised for this backend (letters, digits, _ - . and space only). Rename "
                "one module, or export them separately with hook_point=."
            )
        keys[pair], owners[key] = key, pair
    return keys


def step_values(
    frame: pd.DataFrame, *, sanitized: bool = False
) -> Iterator[tuple[int, dict[str, float]]]:
    """Tidy rows (``step, hook_point, metric, value``) as ``(step, {key: value})``, by step.

    NaN values (undefined metrics, see the ``note`` column) are left out.

    Example:
        >>> rows = pd.DataFrame({"step": [2, 2, 4], "hook_point": ["(model)", "fc", "fc"],
        ...                      "metric": ["l2", "l2", "l2"], "value": [1.0, float("nan"), 3.0]})
        >>> list(step_values(rows))
        [(2, {'hookstats/l2/(model)': 1.0}), (4, {'hookstats/l2/fc': 3.0})]
    """
    keys = metric_keys(zip(frame["metric"], frame["hook_point"], strict=True), sanitized=sanitized)
    by_step: dict[int, dict[str, float]] = {}
    for step, point, metric, value in zip(
        frame["step"], frame["hook_point"], frame["metric"], frame["value"], strict=True
    ):
        if not math.isnan(value):
            by_step.setdefault(int(step), {})[keys[(metric, point)]] = float(value)
    yield from sorted(by_step.items())


class StepLogger:
    """Metrics into a store from a training loop's callbacks, each step at most once: weight
    metrics, and with ``probe=`` the activation metrics of one forward on the probe batch.

    The store is opened (and the run created) on the first :meth:`log`, so processes that never
    log (other ranks under DDP) never touch it; metric names, options and the probe are checked
    at once.

    Args:
        store, run, points, metrics, task, precision, config, probe: as for
            :class:`hookstats.CheckpointLogger`.
        if_exists: what a step already in the store gets: ``"replace"`` (default: a rerun
            writes over its earlier rows), ``"skip"`` or ``"error"``.

    Raises:
        MetricError: unknown metric names, activation metrics without ``probe=``, a malformed
            probe.
        StoreError: a bad ``if_exists`` or run name.
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
        if_exists: IfExists = "replace",
        probe: ProbeLike = None,
    ) -> None:
        self.probe = check_logger_options(
            run, points, metrics, task=task, precision=precision, probe=probe
        )
        if if_exists not in IF_EXISTS:
            raise StoreError(f"if_exists must be one of {IF_EXISTS}, got {if_exists!r}.")
        self.store, self.run, self.points, self.metrics = store, run, points, metrics
        self.task, self.precision, self.config, self.if_exists = task, precision, config, if_exists
        self.logged: list[int] = []
        self._logger: CheckpointLogger | None = None

    @property
    def logger(self) -> CheckpointLogger:
        """The :class:`CheckpointLogger` (created, with its store, on first use)."""
        if self._logger is None:
            self._logger = CheckpointLogger(
                self.store,
                self.run,
                self.points,
                self.metrics,
                task=self.task,
                precision=self.precision,
                config=self.config,
                probe=self.probe,
            )
        return self._logger

    def log(
        self,
        model: nn.Module,
        step: int,
        *,
        checkpoint: str | None = None,
        identity: str | None = None,
    ) -> pd.DataFrame | None:
        """Log ``model``'s metrics at ``step`` (as ``checkpoint``, default ``"step:<step>"``,
        keyed by ``identity``, default the name); None when this step was already logged by
        this logger."""
        if step in self.logged:
            return None
        frame = self.logger.log(
            model, step, checkpoint=checkpoint, if_exists=self.if_exists, identity=identity
        )
        self.logged.append(step)
        frame["step"] = step
        return frame


def checkpoint_times(store: MetricStore, run: str) -> dict[str, float]:
    """When each checkpoint of ``run`` was written, in seconds since the epoch (wall times).

    Example:
        >>> store = MetricStore(":memory:")
        >>> rows = pd.DataFrame({"hook_point": ["fc"], "metric": ["l1"], "value": [2.0]})
        >>> _ = store.write_checkpoint("r", "step:1", 1, rows)
        >>> list(checkpoint_times(store, "r"))
        ['step:1']
    """
    done = store.checkpoints(run)
    return {
        str(c): datetime.fromisoformat(str(t)).timestamp()
        for c, t in zip(done["checkpoint"], done["completed"], strict=True)
    }


def positive_int(value: Any, name: str) -> int:
    """``value`` when it is a positive int, else an error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise HookstatsError(f"{name} must be a positive int (training steps), got {value!r}.")
    return value
