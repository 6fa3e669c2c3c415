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
:mod:`.spectral` and :mod:`.modular` (the built-in metrics), :mod:`.compute` (compute_metrics),
:mod:`.moments` (streamed float64 moments), :mod:`.outputs` (what a call's outputs are, and
their moments) and :mod:`.activation` (activation metrics, the category-3 built-ins,
ActivationMonitor and activation_stats).

May import: torch, numpy, pandas, :mod:`hookstats.errors`, :mod:`hookstats.points` and
:mod:`hookstats.instrument` (model state; the tensor walker for activation metrics).
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
    "ActivationContext",
    "ActivationMonitor",
    "MetricContext",
    "MetricNames",
    "MetricRegistry",
    "MetricSpec",
    "MetricUndefined",
    "ModularAdditionTask",
    "Moments",
    "activation_stats",
    "compute_metrics",
    "distance_irrelevance",
    "gradient_symmetricity",
    "metric_registry",
    "register_metric",
    "unregister_metric",
]

for _builtin in ("weight", "spectral", "modular", "activation"):  # built-ins, in table order
    import_module(f"{__name__}.{_builtin}")

from .activation import (  # noqa: E402  (registered above, after the modular metrics)
    ActivationContext,
    ActivationMonitor,
    activation_stats,
)
from .modular import (  # noqa: E402  (registered above, after the weight metrics)
    ModularAdditionTask,
    distance_irrelevance,
    gradient_symmetricity,
)
from .moments import Moments  # noqa: E402
