"""Tracking real inference: :func:`track` returns a :class:`Tracker` (the context manager that
owns every hook), whose snapshots are :class:`TrackReport` objects; the work signatures, the
bounded per-signature cost cache and the exact cost models along lines of shapes, the
per-thread forward state, compiled models' shadow counting, CUDA timing, the running totals,
the table and the live view live here too.

May import: :mod:`hookstats.instrument`, :mod:`hookstats.counting`, :mod:`hookstats.metrics`,
:mod:`hookstats.points`, :mod:`hookstats.units`, :mod:`hookstats.display`,
:mod:`hookstats.errors`.
"""

from .report import TRACK_COLUMNS, TrackReport
from .tracker import Tracker, track

__all__ = ["TRACK_COLUMNS", "TrackReport", "Tracker", "track"]
