"""Cost profiles: :func:`profile` (one instrumented forward), :class:`Report` (per-point and
per-call frames, totals, its table) and the seed's :func:`estimate_layerwise_stats`.

May import: :mod:`hookstats.instrument`, :mod:`hookstats.counting`, :mod:`hookstats.points`,
:mod:`hookstats.units`, :mod:`hookstats.display`, :mod:`hookstats.errors`.
"""

from .layerwise import SEED_COLUMNS, estimate_layerwise_stats
from .profiler import profile
from .report import Report

__all__ = ["SEED_COLUMNS", "Report", "estimate_layerwise_stats", "profile"]
