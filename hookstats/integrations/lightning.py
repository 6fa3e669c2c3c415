"""Lightning callback (extra ``hookstats[lightning]``): weight metrics into a
:class:`~hookstats.MetricStore` every N optimizer steps, also sent to the Trainer's loggers.

``HookstatsCallback(store, run=..., points=..., metrics=..., every_n_steps=N)`` logs at
``on_train_batch_end`` when ``trainer.global_step`` (optimizer steps, so gradient accumulation
is counted once per step) is a positive multiple of N, each step once, keyed ``step:<N>``. The
model is the ``LightningModule``: hook points are its module names (``model.fc`` for a
``self.model`` attribute). Only global rank zero logs (``trainer.is_global_zero``); the other
ranks never open the store. The values also go to every logger of the Trainer
(``trainer.loggers``: TensorBoard, CSV, W&B, MLflow...) through ``log_metrics(values, step)``,
keyed ``hookstats/<metric>/<hook_point>`` sanitised (``(model)`` becomes ``_model_``), NaN
values left out; ``log_to_loggers=False`` turns that off. ``probe=(inputs, kwargs)`` adds the
activation metrics in ``metrics`` (``None``: all of them) of one forward on that batch per log
(eval mode, no grad, moved to the module's device; training flags restored).

The class is built on ``lightning.pytorch.Callback`` (or ``pytorch_lightning.Callback`` when
only that package is installed) on first use; importing this module needs neither.
:class:`LightningHooks` holds its behaviour.

May import: :mod:`hookstats.integrations.common`, :mod:`hookstats.metrics`,
:mod:`hookstats.points`, :mod:`hookstats.runs`, :mod:`hookstats.errors` (lightning lazily).

Example:
    >>> import lightning.pytorch as pl  # doctest: +SKIP
    >>> from hookstats.integrations.lightning import HookstatsCallback  # doctest: +SKIP
    >>> callback = HookstatsCallback("m.sqlite", run="pl", every_n_steps=50)  # doctest: +SKIP
    >>> pl.Trainer(callbacks=[callback]).fit(module, data)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

import pandas as pd
from torch import nn

from ..metrics import MetricNames
from ..points import PointSpec
from ..runs.logger import StoreLike
from ..runs.probe import ProbeLike
from ..runs.store import IfExists
from .common import StepLogger, import_extra, positive_int, step_values

__all__ = ["LightningHooks"]


class LightningHooks:
    """What :class:`HookstatsCallback` does, without its Lightning ``Callback`` base (see the
    module docstring; ``store, run, points, metrics, task, precision, config, if_exists,
    probe`` as for :class:`~.common.StepLogger`)."""

    def __init__(
        self,
        store: StoreLike,
        run: str,
        points: PointSpec = None,
        metrics: MetricNames = None,
        *,
        every_n_steps: int = 50,
        log_to_loggers: bool = True,
        task: Any = None,
        precision: str = "float32",
        config: Mapping[str, Any] | None = None,
        if_exists: IfExists = "replace",
        probe: ProbeLike = None,
    ) -> None:
        super().__init__()
        self.every_n_steps = positive_int(every_n_steps, "every_n_steps")
        self.log_to_loggers = log_to_loggers
        self.steps = StepLogger(
            store,
            run,
            points,
            metrics,
            task=task,
            precision=precision,
            config=config,
            if_exists=if_exists,
            probe=probe,
        )
        self.last: pd.DataFrame | None = None
        """The rows the latest log wrote (with a ``step`` column); None before any."""

    def on_train_batch_end(
        self, trainer: Any, pl_module: nn.Module, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Log at every ``every_n_steps``-th optimizer step, on global rank zero only."""
        step = int(trainer.global_step)
        if step == 0 or step % self.every_n_steps or not trainer.is_global_zero:
            return
        frame = self.steps.log(pl_module, step)
        if frame is None:
            return
        self.last = frame
        if self.log_to_loggers:
            for _, values in step_values(frame, sanitized=True):
                for logger in trainer.loggers:
                    logger.log_metrics(values, step=step)


def _callback_base() -> Any:
    """``lightning.pytorch.Callback``, else ``pytorch_lightning.Callback``."""
    if importlib.util.find_spec("lightning") is None and importlib.util.find_spec(
        "pytorch_lightning"
    ):
        return import_extra("pytorch_lightning", "lightning", "HookstatsCallback").Callback
    return import_extra("lightning.pytorch", "lightning", "HookstatsCallback").Callback


def _build() -> type:
    return type(
        "HookstatsCallback",
        (LightningHooks, _callback_base()),
        {"__module__": __name__, "__doc__": __doc__},
    )


_BUILT: dict[str, type] = {}


def __getattr__(name: str) -> Any:
    """``HookstatsCallback``, built on Lightning's ``Callback`` on first access."""
    if name == "HookstatsCallback":
        if name not in _BUILT:
            _BUILT[name] = _build()
        return _BUILT[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
