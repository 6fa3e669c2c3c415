"""Metrics as plugins: one registry, per hook point and for the whole model.

    >>> import hookstats.metrics as hm
    >>> from torch import nn
    >>> df = hm.compute_metrics(nn.Linear(4, 3), metrics=["l1", "bias_mean"])
    >>> list(df.columns)
    ['hook_point', 'metric', 'value', 'note']

Modules: :mod:`.registry` (MetricSpec, MetricRegistry, register_metric), :mod:`.context`
(MetricContext, MetricUndefined), :mod:`.params` (per-call parameter store), :mod:`.spectrum`
(Gram/Lanczos singular values), :mod:`.order` (pooled medians), :mod:`.blocks` (blockwise
float64 sums), :mod:`.parallel` (one matrix per worker thread), :mod:`.weight`,
:mod:`.spectral` and :mod:`.modular` (the built-in metrics), :mod:`.compute` (compute_metrics).

May import: torch, numpy, pandas, :mod:`hookstats.errors`, :mod:`hookstats.points` and
:mod:`hookstats.instrument` (model state).
"""

from importlib import import_module

from .compute import MetricNames, compute_metrics
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
    "MetricNames",
    "MetricRegistry",
    "MetricSpec",
    "MetricUndefined",
    "ModularAdditionTask",
    "compute_metrics",
    "distance_irrelevance",
    "gradient_symmetricity",
    "metric_registry",
    "register_metric",
    "unregister_metric",
]

for _builtin in ("weight", "spectral", "modular"):  # the built-ins, in the seed's table order
    import_module(f"{__name__}.{_builtin}")

from .modular import (  # noqa: E402  (registered above, after the weight metrics)
    ModularAdditionTask,
    distance_irrelevance,
    gradient_symmetricity,
)
