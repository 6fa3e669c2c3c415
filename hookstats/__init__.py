"""hookstats: per-layer costs and weight metrics for any PyTorch model, through hooks.

    >>> import hookstats as hs
    >>> from torch import nn
    >>> hs.profile(nn.Linear(8, 4), input_shape=(8,)).total("macs")
    32
"""

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
from .points import ROOT_NAME, HookPoint, select_points
from .profile import estimate_layerwise_stats, profile
from .report import Report

__version__ = "0.1.0"

__all__ = [
    "ROOT_NAME",
    "CheckpointError",
    "ForwardError",
    "HookPoint",
    "HookstatsError",
    "InputSpecError",
    "MetaDeviceError",
    "MetricError",
    "PointSelectionError",
    "Report",
    "StoreError",
    "TrackError",
    "UncountedOpsWarning",
    "UnsafeCheckpointError",
    "__version__",
    "estimate_layerwise_stats",
    "profile",
    "select_points",
]
