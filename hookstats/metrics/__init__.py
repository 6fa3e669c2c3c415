"""Weight metrics as plugins: one registry, per hook point and for the whole model.

    >>> import hookstats.metrics as hm
    >>> from torch import nn
    >>> df = hm.compute_metrics(nn.Linear(4, 3), ["l1", "bias_mean"])
    >>> list(df.columns)
    ['hook_point', 'metric', 'value', 'note']

Modules: :mod:`.registry` (MetricSpec, MetricRegistry, register_metric), :mod:`.context`
(MetricContext, MetricUndefined), :mod:`.cache` (per-call tensor store), :mod:`.spectrum`
(Gram/Lanczos singular values), :mod:`.order` (pooled medians), :mod:`.weight` and
:mod:`.spectral` (the built-in metrics), :mod:`.compute` (compute_metrics).
"""

from importlib import import_module

from .compute import compute_metrics
from .context import MetricContext, MetricUndefined
from .registry import (
    MetricRegistry,
    MetricSpec,
    metric_registry,
    register_metric,
    unregister_metric,
)

__all__ = [
    "MetricContext",
    "MetricRegistry",
    "MetricSpec",
    "MetricUndefined",
    "compute_metrics",
    "metric_registry",
    "register_metric",
    "unregister_metric",
]

for _builtin in ("weight", "spectral"):  # register the built-ins, in the seed's table order
    import_module(f"{__name__}.{_builtin}")
