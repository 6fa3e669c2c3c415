"""hookstats: per-layer costs and weight metrics for any PyTorch model, through hooks.

    >>> import hookstats as hs
    >>> from torch import nn
    >>> hs.profile(nn.Linear(8, 4), input_shape=(8,)).total("macs")
    32
"""

from .checkpoints import load_checkpoint
from .devices import DEVICE_PRESETS, DeviceSpec, device_spec
from .errors import (
    CheckpointError,
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
from .hardware import HardwareSummary, precision_tradeoffs, summarize_hardware
from .metrics import (
    MetricContext,
    MetricRegistry,
    MetricUndefined,
    compute_metrics,
    metric_registry,
    register_metric,
    unregister_metric,
)
from .modular import ModularAdditionTask, distance_irrelevance, gradient_symmetricity
from .points import ROOT_NAME, HookPoint, select_points
from .profile import estimate_layerwise_stats, profile
from .report import Report
from .store import MetricStore
from .sweep import CheckpointLogger, SweepSummary, sweep
from .track import Tracker, track
from .track_report import TrackReport

__version__ = "0.1.0"

__all__ = [
    "DEVICE_PRESETS",
    "ROOT_NAME",
    "CheckpointError",
    "CheckpointLogger",
    "DeviceSpec",
    "ForwardError",
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
    "compute_metrics",
    "device_spec",
    "distance_irrelevance",
    "estimate_layerwise_stats",
    "gradient_symmetricity",
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
