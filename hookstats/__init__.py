"""hookstats: per-layer costs and weight metrics for any PyTorch model, through hooks.

    >>> import hookstats as hs
    >>> from torch import nn
    >>> hs.profile(nn.Linear(8, 4), input_shape=(8,)).total("macs")
    32
"""

from .errors import (
    ForwardError,
    HookstatsError,
    InputSpecError,
    MetaDeviceError,
    PointSelectionError,
    UncountedOpsWarning,
)
from .points import ROOT_NAME, HookPoint, select_points
from .profile import estimate_layerwise_stats, profile
from .report import Report

__version__ = "0.1.0"

__all__ = [
    "ROOT_NAME",
    "ForwardError",
    "HookPoint",
    "HookstatsError",
    "InputSpecError",
    "MetaDeviceError",
    "PointSelectionError",
    "Report",
    "UncountedOpsWarning",
    "__version__",
    "estimate_layerwise_stats",
    "profile",
    "select_points",
]
