"""Runs: metrics per checkpoint in a durable store. Safe checkpoint loading, the SQLite
:class:`MetricStore`, :class:`CheckpointLogger` (during training) and :func:`sweep` (over saved
files, in this process or on an executor), both with optional probe batches for activation
metrics (:mod:`hookstats.runs.probe`).

May import: :mod:`hookstats.metrics`, :mod:`hookstats.profiling`, :mod:`hookstats.points`,
:mod:`hookstats.display`, :mod:`hookstats.errors`, :mod:`hookstats.instrument.model_state`
(:mod:`hookstats.integrations` only inside :meth:`MetricStore.to_tensorboard`).
"""

from .checkpoints import LoadedCheckpoint, find_checkpoints, load_checkpoint, load_into
from .logger import CheckpointLogger
from .slurm import SubmititExecutor
from .steps import CheckpointStepWarning
from .store import RECORD_COLUMNS, SCHEMA_VERSION, MetricStore
from .sweeper import SweepSummary, sweep

__all__ = [
    "RECORD_COLUMNS",
    "SCHEMA_VERSION",
    "CheckpointLogger",
    "CheckpointStepWarning",
    "LoadedCheckpoint",
    "MetricStore",
    "SubmititExecutor",
    "SweepSummary",
    "find_checkpoints",
    "load_checkpoint",
    "load_into",
    "sweep",
]
