"""Cost profiles: :func:`profile` (one instrumented forward, or with ``train=True`` one training
step: :class:`TrainingCosts` per hook point and the step's :class:`MemoryEstimate`),
:class:`Report` (per-point and per-call frames, totals, its table) and the seed's
:func:`estimate_layerwise_stats`.

May import: :mod:`hookstats.instrument`, :mod:`hookstats.counting`, :mod:`hookstats.points`,
:mod:`hookstats.units`, :mod:`hookstats.display`, :mod:`hookstats.errors`.
"""

from .layerwise import SEED_COLUMNS, estimate_layerwise_stats
from .memory import MemoryEstimate
from .optimizer import OPTIMIZERS
from .profiler import profile
from .report import TRAINING_COLUMNS, Report
from .step_recorder import PointTraining, TrainingCosts

__all__ = [
    "OPTIMIZERS",
    "SEED_COLUMNS",
    "TRAINING_COLUMNS",
    "MemoryEstimate",
    "PointTraining",
    "Report",
    "TrainingCosts",
    "estimate_layerwise_stats",
    "profile",
]
