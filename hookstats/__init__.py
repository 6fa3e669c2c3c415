"""hookstats: per-layer costs and weight metrics for any PyTorch model, through hooks.

    >>> import hookstats as hs
    >>> from torch import nn
    >>> hs.profile(nn.Linear(8, 4), input_shape=(8,)).total("macs")
    32

This module holds public names only; the subpackages are the architecture (see
docs/architecture.md).
"""

from .counting import OUTSIDE_POINTS
from .errors import (
    CheckpointError,
    FormulaError,
    ForwardError,
    HookstatsError,
    InputSpecError,
    MetaDeviceError,
    MetricError,
    PointSelectionError,
    StoreError,
    TrackError,
    UncountedOpsWarning,
    UnsafeCheckpointError,
)
from .hardware import (
    HARDWARE_PRESETS,
    HardwareSpec,
    HardwareSummary,
    hardware_spec,
    precision_tradeoffs,
    summarize_hardware,
)
from .metrics import (
    ActivationContext,
    ActivationMonitor,
    MetricContext,
    MetricRegistry,
    MetricUndefined,
    ModularAdditionTask,
    activation_stats,
    compute_metrics,
    distance_irrelevance,
    gradient_symmetricity,
    metric_registry,
    register_metric,
    unregister_metric,
)
from .points import ROOT_NAME, HookPoint, select_points
from .profiling import Report, estimate_layerwise_stats, profile
from .runs import CheckpointLogger, MetricStore, SweepSummary, load_checkpoint, sweep
from .tracking import Tracker, TrackReport, track

__version__ = "0.2.0.dev0"

__all__ = [
    "HARDWARE_PRESETS",
    "OUTSIDE_POINTS",
    "ROOT_NAME",
    "ActivationContext",
    "ActivationMonitor",
    "CheckpointError",
    "CheckpointLogger",
    "FormulaError",
    "ForwardError",
    "HardwareSpec",
    "HardwareSummary",
    "HookPoint",
    "HookstatsError",
    "InputSpecError",
    "MetaDeviceError",
    "MetricContext",
    "MetricError",
    "MetricRegistry",
    "MetricStore",
    "MetricUndefined",
    "ModularAdditionTask",
    "PointSelectionError",
    "Report",
    "StoreError",
    "SweepSummary",
    "TrackError",
    "TrackReport",
    "Tracker",
    "UncountedOpsWarning",
    "UnsafeCheckpointError",
    "__version__",
    "activation_stats",
    "compute_metrics",
    "distance_irrelevance",
    "estimate_layerwise_stats",
    "gradient_symmetricity",
    "hardware_spec",
    "load_checkpoint",
    "metric_registry",
    "precision_tradeoffs",
    "profile",
    "register_metric",
    "select_points",
    "summarize_hardware",
    "sweep",
    "track",
    "unregister_metric",
]
