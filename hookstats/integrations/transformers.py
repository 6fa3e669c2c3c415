"""Hugging Face ``Trainer`` callback (extra ``hookstats[transformers]``): weight metrics (and,
with a probe batch, activation metrics) into a :class:`~hookstats.MetricStore` at each
checkpoint save, or every N optimizer steps.

``HookstatsCallback(store, run=..., points=..., metrics=..., every="save" | N, probe=...)``:

* ``every="save"`` (default) logs at each ``on_save``, right after the Trainer wrote
  ``<output_dir>/checkpoint-<global_step>/``, with the model's weights as they were saved. The
  checkpoint is keyed as :func:`hookstats.sweep` keys that checkpoint's weights file -- its
  content identity (:func:`sweep_key`) -- and named by the file's resolved path, so a later
  ``hs.sweep("<output_dir>/checkpoint-*/model.safetensors", ...)`` into the same run, with the
  same ``points``/``metrics``/``probe``, skips it instead of computing it again (also after the
  output folder was moved). A rerun that saves again to the same path replaces the row of that
  path (``if_exists="replace"``).
* ``every=N`` logs at ``on_step_end`` when ``global_step`` is a multiple of N, keyed
  ``step:<global_step>`` (as :meth:`CheckpointLogger.log` keys a step).
* ``probe=(inputs, kwargs)`` runs one forward per log on that batch (eval mode, no grad, moved
  to the model's device) for the activation metrics in ``metrics`` (``None``: all of them).

Each step is logged at most once per callback. Only the main process logs (under DDP,
``state.is_world_process_zero``); the other ranks never open the store. The model is the
Trainer's unwrapped ``model``, so hook-point names are those of your model (no ``module.``
prefix). Not supported: FSDP and DeepSpeed ZeRO-3 (rank 0 holds a shard of each weight; the
metrics would describe the shard) and hyper-parameter search trials (their checkpoints live in
``<output_dir>/run-<id>/``).

The class is built on ``transformers.TrainerCallback`` when first used (importing this module
needs no transformers); :class:`TrainerHooks` holds its behaviour.

May import: :mod:`hookstats.integrations.common`, :mod:`hookstats.metrics`,
:mod:`hookstats.points`, :mod:`hookstats.runs`, :mod:`hookstats.errors` (transformers lazily).

Example:
    >>> from hookstats.integrations.transformers import HookstatsCallback  # doctest: +SKIP
    >>> callback = HookstatsCallback("m.sqlite", run="ft", metrics=["l2"])  # doctest: +SKIP
    >>> Trainer(model, args, train_dataset=data, callbacks=[callback]).train()  # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import pandas as pd
from torch import nn

from ..errors import HookstatsError
from ..metrics import MetricNames
from ..points import PointSpec
from ..runs.logger import StoreLike
from ..runs.probe import ProbeLike
from ..runs.store import IfExists
from ..runs.sweeper import checkpoint_identity, display_name
from .common import StepLogger, import_extra, positive_int

__all__ = [
    "CHECKPOINT_PREFIX",
    "WEIGHT_FILES",
    "TrainerHooks",
    "checkpoint_folder",
    "sweep_key",
    "weights_file",
]

CHECKPOINT_PREFIX = "checkpoint"
"""The Trainer's checkpoint folder prefix (``transformers.trainer_utils.PREFIX_CHECKPOINT_DIR``)."""
WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)
"""The weights file of a Trainer checkpoint, in the order the Trainer prefers them."""


def checkpoint_folder(output_dir: str | PathLike[str], step: int) -> Path:
    """Where the Trainer saved the checkpoint of ``step``: ``<output_dir>/checkpoint-<step>``.

    Example:
        >>> checkpoint_folder("out", 40).as_posix()
        'out/checkpoint-40'
    """
    return Path(output_dir) / f"{CHECKPOINT_PREFIX}-{step}"


def weights_file(folder: str | PathLike[str]) -> Path | None:
    """The weights file of a Trainer checkpoint folder: ``model.safetensors``, else
    ``pytorch_model.bin``, else a sharded checkpoint's index (the file :func:`hookstats.sweep`
    loads); None when the folder holds none of them (an adapter-only save).

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp()) / "checkpoint-5"
        >>> folder.mkdir(); (folder / "model.safetensors").touch()
        >>> weights_file(folder).name
        'model.safetensors'
    """
    folder = Path(folder)
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    return None


def sweep_key(folder: str | PathLike[str]) -> str:
    """The key :func:`hookstats.sweep` gives a Trainer checkpoint: the identity
    (:func:`hookstats.runs.sweeper.checkpoint_identity`, the very function the sweep calls) of
    its :func:`weights_file`. A folder holding no weights file is keyed by its resolved path
    (no sweep finds a checkpoint there).

    Example:
        >>> import tempfile
        >>> from hookstats.runs.sweeper import checkpoint_identity
        >>> folder = Path(tempfile.mkdtemp()) / "checkpoint-5"
        >>> folder.mkdir(); _ = (folder / "model.safetensors").write_bytes(b"{}")
        >>> sweep_key(folder) == checkpoint_identity(folder / "model.safetensors")
        True
    """
    found = weights_file(folder)
    return str(Path(folder).resolve()) if found is None else checkpoint_identity(found)


class TrainerHooks:
    """What :class:`HookstatsCallback` does, without its ``TrainerCallback`` base (see the module
    docstring for the arguments; ``if_exists`` as for :class:`~.common.StepLogger`)."""

    def __init__(
        self,
        store: StoreLike,
        run: str,
        points: PointSpec = None,
        metrics: MetricNames = None,
        *,
        every: str | int = "save",
        task: Any = None,
        precision: str = "float32",
        config: Mapping[str, Any] | None = None,
        if_exists: IfExists = "replace",
        probe: ProbeLike = None,
    ) -> None:
        super().__init__()
        if every != "save":
            every = positive_int(every, 'every= ("save" or a number of steps)')
        self.every = every
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

    def _log(
        self,
        state: Any,
        model: nn.Module | None,
        checkpoint: str | None = None,
        identity: str | None = None,
    ) -> None:
        if model is None:
            raise HookstatsError("the Trainer passed no model= to the callback; cannot log.")
        self.last = self.steps.log(
            model, int(state.global_step), checkpoint=checkpoint, identity=identity
        )

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Warn when nothing would ever be logged (``every="save"`` without saves)."""
        strategy = getattr(args, "save_strategy", None)
        if self.every == "save" and getattr(strategy, "value", strategy) == "no":
            warnings.warn(
                "HookstatsCallback(every='save') logs at checkpoint saves, and save_strategy is "
                "'no': nothing will be logged. Pass every=<steps>, or save checkpoints.",
                stacklevel=2,
            )

    def on_save(
        self, args: Any, state: Any, control: Any, model: nn.Module | None = None, **kwargs: Any
    ) -> None:
        """Log the checkpoint just saved (``every="save"``, main process only)."""
        if self.every == "save" and state.is_world_process_zero:
            folder = checkpoint_folder(args.output_dir, state.global_step)
            found = weights_file(folder)
            name = display_name(found if found is not None else folder)
            self._log(state, model, name, sweep_key(folder))

    def on_step_end(
        self, args: Any, state: Any, control: Any, model: nn.Module | None = None, **kwargs: Any
    ) -> None:
        """Log every ``every`` optimizer steps (main process only)."""
        step, every = state.global_step, self.every
        if (
            isinstance(every, int)
            and state.is_world_process_zero
            and step > 0
            and step % every == 0
        ):
            self._log(state, model)


def _build() -> type:
    transformers = import_extra("transformers", "transformers", "HookstatsCallback")
    return type(
        "HookstatsCallback",
        (TrainerHooks, transformers.TrainerCallback),
        {"__module__": __name__, "__doc__": __doc__},
    )


_BUILT: dict[str, type] = {}


def __getattr__(name: str) -> Any:
    """``HookstatsCallback``, built on ``transformers.TrainerCallback`` on first access."""
    if name == "HookstatsCallback":
        if name not in _BUILT:
            _BUILT[name] = _build()
        return _BUILT[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
