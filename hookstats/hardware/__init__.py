"""Hardware views of a cost profile: the roofline summary (:func:`summarize_hardware`), the
precision what-if (:func:`precision_tradeoffs`), a training step's rows and MFU
(:mod:`~hookstats.hardware.training`), hardware presets with their sources, and the summary's
table.

May import: numpy, pandas, torch, :mod:`hookstats.errors`, :mod:`hookstats.points`,
:mod:`hookstats.units`, :mod:`hookstats.display`, :mod:`hookstats.profiling` and
:mod:`hookstats.tracking`.
"""

from .presets import (
    HARDWARE_PRESETS,
    PRECISION_BITS,
    HardwareSpec,
    canonical_precision,
    hardware_spec,
    measure_cpu,
)
from .roofline import LAYER_COLUMNS, TOTAL_ROW, HardwareSummary, summarize_hardware
from .table import hardware_table, precision_table
from .tradeoffs import precision_tradeoffs
from .training import model_flops

__all__ = [
    "HARDWARE_PRESETS",
    "LAYER_COLUMNS",
    "PRECISION_BITS",
    "TOTAL_ROW",
    "HardwareSpec",
    "HardwareSummary",
    "canonical_precision",
    "hardware_spec",
    "hardware_table",
    "measure_cpu",
    "model_flops",
    "precision_table",
    "precision_tradeoffs",
    "summarize_hardware",
]
