"""Activation metrics (category 3): statistics of what flows out of each hook point, streamed
over every forward call, and :class:`ActivationMonitor`, the one owner of their hooks.

A hook point's **outputs** are every floating-point tensor its module returns (walked by
:func:`hookstats.instrument.tensors.flatten`: tuples, dicts, ``ModelOutput``; a tensor returned
twice counts once; integer, bool, complex, sparse, nested, meta and fake tensors are left out),
all elements of all calls pooled. Each call is reduced at once to eight float64 numbers
(:mod:`hookstats.metrics.moments`); no output tensor is kept and the hook never waits for the
device. The built-ins (``x`` = every output element seen):

* ``act_mean`` = mean(x); ``act_rms`` = sqrt(mean(x**2)); ``act_absmax`` = max(|x|)
* ``act_std`` = sqrt(mean((x - mean)**2))   (population, no Bessel correction)
* ``act_zero_frac`` = count(x == 0) / count(x)    (dead units after ReLU-like layers)
* ``act_kurtosis`` = mean((x - mean)**4) / mean((x - mean)**2)**2 - 3   (excess kurtosis: 0
  for a Gaussian, large for outlier features; undefined for constant outputs)

A metric is NaN with a note where the hook point produced no floating-point output, or a
NaN/Inf. Plugins register with ``category="activation"`` and read an :class:`ActivationContext`.

Use :func:`activation_stats` for one forward, :class:`ActivationMonitor` around your own
forwards, or ``hs.track(model, points, metrics=["act_rms"])`` (its hooks reduce each call with
:func:`output_moments` and hand completed forwards to :meth:`ActivationMonitor.add`). The
monitor's hooks are removed on exit, also when a forward raises; statistics are computed on
detached tensors under ``no_grad``, so no autograd graph is kept or extended. Every call counts,
also a forward that activation checkpointing re-runs during backward.

May import: torch, pandas, :mod:`hookstats.points`, :mod:`hookstats.errors`, and from
:mod:`hookstats.instrument` the tensor walker and model state.

Example:
    >>> import torch, hookstats as hs
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
    >>> df = hs.activation_stats(model, "1", ["act_zero_frac"], inputs=torch.randn(16, 4))
    >>> df.columns.tolist(), 0.0 < df["value"].item() < 1.0
    (['hook_point', 'metric', 'value', 'note'], True)
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from ..errors import ForwardError, MetricError
from ..instrument.model_state import eval_mode
from ..points import PointSpec, select_points
from .compute import MetricNames
from .context import MetricUndefined
from .moments import MEASURES, MomentAccumulator, Moments, read_parts
from .outputs import output_moments, output_tensors
from .registry import ACTIVATION, MetricSpec, evaluate, metric_registry, register_metric

__all__ = [
    "ActivationContext",
    "ActivationMonitor",
    "act_absmax",
    "act_kurtosis",
    "act_mean",
    "act_rms",
    "act_std",
    "act_zero_frac",
    "activation_stats",
    "output_moments",
    "output_tensors",
]

COLUMNS = ["hook_point", "metric", "value", "note"]


class ActivationContext:
    """What an activation metric sees at one hook point: the pooled statistics of its outputs.

    Every value is over all output elements of all calls. Reading any of them raises
    :class:`MetricUndefined` when no floating-point output was seen or one held NaN/Inf.

    Attributes:
        point: the hook point's name.
        calls: how many times the hook point ran.
        moments: the raw :class:`~hookstats.metrics.moments.Moments` (never raises).

    Example:
        >>> from hookstats.metrics.moments import Moments, tensor_moments
        >>> ctx = ActivationContext("fc", 1, Moments.of(tensor_moments(torch.tensor([1.0, 3.0]))))
        >>> ctx.mean, ctx.variance, ctx.central_moment(4)
        (2.0, 1.0, 1.0)
    """

    def __init__(self, point: str, calls: int, moments: Moments) -> None:
        self.point = point
        self.calls = calls
        self.moments = moments

    def _checked(self) -> Moments:
        m = self.moments
        if m.count == 0:
            ran = "never ran" if self.calls == 0 else "returned no floating-point tensor"
            raise MetricUndefined(f"no outputs to measure: the hook point {ran}")
        if not m.finite:
            raise MetricUndefined("non-finite values (NaN/Inf) in the outputs")
        return m

    def _measured(self, value: float | None, what: str) -> float:
        if value is None or value != value:  # a part leaves out what no metric asked for
            raise MetricUndefined(f"{what} not measured: no metric of this run needs it")
        return value

    @property
    def count(self) -> int:
        """Output elements seen."""
        return self._checked().count

    @property
    def mean(self) -> float:
        """Mean of the output elements."""
        return self._checked().mean

    @property
    def variance(self) -> float:
        """Population variance of the output elements (no Bessel correction)."""
        return self._checked().variance

    def central_moment(self, order: int) -> float:
        """``mean((x - mean)**order)`` for ``order`` 2, 3 or 4."""
        m = self._checked()
        sums = {2: m.m2, 3: m.m3, 4: m.m4}
        if order not in sums:
            raise ValueError(f"order must be 2, 3 or 4, got {order!r}")
        return self._measured(sums[order], f"m{order}") / m.count

    @property
    def min(self) -> float:
        """Smallest output element."""
        return self._measured(self._checked().min, "min")

    @property
    def max(self) -> float:
        """Largest output element."""
        return self._measured(self._checked().max, "max")

    @property
    def absmax(self) -> float:
        """Largest absolute output element."""
        return self._measured(self._checked().absmax, "absmax")

    @property
    def zeros(self) -> int:
        """Output elements equal to zero."""
        return int(self._measured(self._checked().zeros, "zeros"))

    def __repr__(self) -> str:
        return f"ActivationContext(point={self.point!r}, calls={self.calls}, {self.moments})"


# --- the built-in activation metrics ---------------------------------------------------------


@register_metric("act_mean", category="activation")
def act_mean(ctx: ActivationContext) -> float:
    """Mean of the hook point's output elements over all calls."""
    return ctx.mean


@register_metric("act_std", category="activation")
def act_std(ctx: ActivationContext) -> float:
    """Standard deviation (population) of the output elements over all calls."""
    return math.sqrt(ctx.variance)


@register_metric("act_rms", category="activation")
def act_rms(ctx: ActivationContext) -> float:
    """Root mean square of the output elements over all calls."""
    return math.sqrt(ctx.mean**2 + ctx.variance)


@register_metric("act_absmax", category="activation")
def act_absmax(ctx: ActivationContext) -> float:
    """Largest absolute output element over all calls."""
    return ctx.absmax


@register_metric("act_zero_frac", category="activation")
def act_zero_frac(ctx: ActivationContext) -> float:
    """Fraction of output elements exactly zero (dead units after ReLU-like layers)."""
    return ctx.zeros / ctx.count


@register_metric("act_kurtosis", category="activation")
def act_kurtosis(ctx: ActivationContext) -> float:
    """Excess kurtosis of the output elements (0 for a Gaussian; outlier features)."""
    m2 = ctx.central_moment(2)
    if m2 == 0.0:
        raise MetricUndefined("constant outputs: variance 0, kurtosis undefined")
    return ctx.central_moment(4) / (m2 * m2) - 3.0


_MEASURES: dict[Any, tuple[str, ...]] = {
    act_mean: (),
    act_std: (),
    act_rms: (),
    act_absmax: ("range",),
    act_zero_frac: ("zeros",),
    act_kurtosis: ("m4",),
}


def measures_for(specs: list[MetricSpec]) -> frozenset[str]:
    """What the parts must measure (:data:`~hookstats.metrics.moments.MEASURES`) for
    ``specs``: a built-in's own needs (``act_rms``: none beyond count, mean, m2), all for a
    plugin.

    >>> sorted(measures_for([metric_registry.get("act_rms"), metric_registry.get("act_absmax")]))
    ['range']
    """
    return frozenset(group for spec in specs for group in _MEASURES.get(spec.fn, MEASURES))


# --- the hook owner --------------------------------------------------------------------------


class ActivationMonitor:
    """Stream activation metrics of selected hook points over every forward inside a block.

    Args:
        model: the model; only forward hooks on the selected modules are added, and removed
            on exit.
        points: hook points as in :func:`hookstats.select_points` (``None`` = every module).
        metrics: activation metric names (``None`` = every registered activation metric).

    Raises:
        MetricError: a name that is not an activation metric, or unknown.
        PointSelectionError: a ``points=`` entry that selects nothing.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
        >>> with ActivationMonitor(model, nn.ReLU, ["act_absmax"]) as monitor:
        ...     for batch in (torch.randn(3, 4), torch.randn(5, 4)):
        ...         _ = model(batch)
        >>> monitor.calls("1"), monitor.moments("1").count, len(model[1]._forward_hooks)
        (2, 64, 0)
    """

    def __init__(
        self, model: nn.Module, points: PointSpec = None, metrics: MetricNames = None
    ) -> None:
        if not isinstance(model, nn.Module):
            raise MetricError(f"ActivationMonitor needs an nn.Module, got {type(model).__name__}.")
        self.specs: list[MetricSpec] = metric_registry.resolve(metrics, categories=[ACTIVATION])
        self.measure = measures_for(self.specs)
        self.points = select_points(model, points)
        self._accumulators = {p.name: MomentAccumulator() for p in self.points}
        self._calls = dict.fromkeys(self._accumulators, 0)
        self._lock = threading.Lock()
        self._handles: list[RemovableHandle] = []

    @property
    def attached(self) -> bool:
        """True while the hooks are registered."""
        return bool(self._handles)

    def attach(self) -> None:
        """Register one forward hook per selected module (all or none)."""
        if self._handles:
            raise MetricError("this ActivationMonitor is already attached: use it once at a time.")
        try:
            for point in self.points:
                self._handles.append(point.module.register_forward_hook(self._hook(point.name)))
        except BaseException:
            self.remove()
            raise

    def remove(self) -> None:
        """Remove every hook this monitor added (idempotent)."""
        handles, self._handles = self._handles, []
        for handle in handles:
            handle.remove()

    def __enter__(self) -> ActivationMonitor:
        self.attach()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()

    def _hook(self, name: str) -> Any:
        return lambda module, args, output: self.observe(name, output)

    def observe(self, point: str, output: Any) -> None:
        """Fold one call's output into ``point``'s statistics (what the hooks call; a caller
        that owns its own hooks calls it directly)."""
        self.add(point, output_moments(output, self.measure))

    def add(self, point: str, parts: list[torch.Tensor]) -> None:
        """Count one call of ``point`` whose outputs were reduced to ``parts`` by
        :func:`output_moments` (a tracker reduces them in its hooks and adds them when the
        forward completes)."""
        with self._lock:
            self._calls[point] += 1
        accumulator = self._accumulators[point]
        for part in parts:
            accumulator.add_part(part)

    def calls(self, point: str) -> int:
        """How many times ``point`` ran while the monitor was attached."""
        return self._calls[point]

    def moments(self, point: str) -> Moments:
        """The pooled statistics of ``point``'s outputs so far (one read from the device);
        what none of the monitor's metrics needs is not measured (NaN, ``zeros`` None)."""
        return self._accumulators[point].result()

    def reset(self) -> None:
        """Forget everything observed (the hooks stay)."""
        for accumulator in self._accumulators.values():
            accumulator.reset()
        with self._lock:
            self._calls = dict.fromkeys(self._calls, 0)

    def snapshot(self) -> dict[str, tuple[int, Moments]]:
        """``{point: (calls, moments)}`` so far, read with one transfer per device; safe from
        another thread while forwards go on (they never wait for it)."""
        names = list(self._accumulators)
        parts = [self._accumulators[name].part() for name in names]
        with self._lock:
            calls = dict(self._calls)
        return {n: (calls[n], m) for n, m in zip(names, read_parts(parts), strict=True)}

    def to_frame(self) -> pd.DataFrame:
        """Tidy rows ``hook_point, metric, value, note``: each selected point, each metric, in
        selection order (the columns of :func:`hookstats.compute_metrics`)."""
        rows: list[tuple[str, str, float, str]] = []
        for name, (calls, moments) in self.snapshot().items():
            ctx = ActivationContext(name, calls, moments)
            rows.extend((name, spec.name, *evaluate(spec, ctx)) for spec in self.specs)
        frame: pd.DataFrame = pd.DataFrame(rows, columns=COLUMNS)
        frame["value"] = frame["value"].astype("float64")
        return frame


def activation_stats(
    model: nn.Module,
    points: PointSpec = None,
    metrics: MetricNames = None,
    *,
    inputs: Any,
    kwargs: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Activation metrics of one forward ``model(*inputs, **kwargs)`` in eval mode, no grad.

    Args:
        model: the model (its training flags are restored afterwards; nothing else changes).
        points: hook points as in :func:`hookstats.select_points` (``None`` = every module).
        metrics: activation metric names (``None`` = all of them: ``act_mean``, ...).
        inputs: the positional inputs: a tensor, or a tuple of them, on the model's device.
        kwargs: keyword inputs (``attention_mask=...``).

    Returns:
        Tidy rows ``hook_point, metric, value, note``. For several batches or your own forward
        calls, use :class:`ActivationMonitor`.

    Raises:
        MetricError: unknown metric names, or a weight metric among them.
        ForwardError: the forward raised (the hooks are removed first).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> df = activation_stats(nn.ReLU(), None, "act_zero_frac",
        ...                       inputs=torch.tensor([-1.0, 0.0, 2.0, 3.0]))
        >>> df["value"].tolist()  # two of four outputs are 0
        [0.5]
    """
    monitor = ActivationMonitor(model, points, metrics)
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    try:
        with eval_mode(model), torch.no_grad(), monitor:
            model(*args, **dict(kwargs or {}))
    except Exception as exc:
        raise ForwardError(
            f"the model's forward raised {type(exc).__name__}: {exc}. Check inputs= and "
            "kwargs=; no hook was left on the model."
        ) from exc
    return monitor.to_frame()
