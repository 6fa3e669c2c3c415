"""Runs: metrics per checkpoint in a durable store. Safe checkpoint loading, the SQLite
:class:`MetricStore`, :class:`CheckpointLogger` (during training) and :func:`sweep` (over saved
files, in this process or on an executor).

May import: :mod:`hookstats.metrics`, :mod:`hookstats.profiling`, :mod:`hookstats.points`,
:mod:`hookstats.display`, :mod:`hookstats.errors`.
"""

from .checkpoints import LoadedCheckpoint, find_checkpoints, load_checkpoint, load_into
from .logger import CheckpointLogger
from .store import RECORD_COLUMNS, SCHEMA_VERSION, MetricStore
from .sweeper import SweepSummary, sweep

__all__ = [
    "RECORD_COLUMNS",
    "SCHEMA_VERSION",
    "CheckpointLogger",
    "LoadedCheckpoint",
    "MetricStore",
    "SweepSummary",
    "find_checkpoints",
    "load_checkpoint",
    "load_into",
    "sweep",
]
