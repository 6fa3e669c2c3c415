"""``compute_metrics``: run registered metrics per hook point and for the whole model.

The flow of one call:

1. resolve ``metrics=`` against the registry (``None`` = every category-1 metric) and
   ``points=`` with :func:`hookstats.points.select_points` (``None`` = every module);
2. build one :class:`~hookstats.metrics.params.ParamStore` (unique parameters, tied once; meta
   and non-float tensors refused);
3. prefetch in bulk what the requested metrics declare in ``needs``: all spectra (float64 Gram
   eigenvalues) or only sigma_max (a float32 Lanczos direction, a float64 value), one matrix
   per worker thread (:mod:`~hookstats.metrics.parallel`), and meanwhile all pooled medians
   (one radix pass per tensor) on one more thread;
4. evaluate each metric on a :class:`~hookstats.metrics.context.MetricContext` per hook point;
   undefined cases and plugin exceptions become NaN with a note, never a failed run.

The model is never modified: no hooks, no attribute, ``requires_grad`` or device changes; metrics
read detached tensors and plugins get copies.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..errors import HookstatsError, MetricError, PointSelectionError
from ..points import ROOT_NAME, PointSpec, compile_selection, select_points
from .context import MetricContext, MetricUndefined
from .params import ParamStore
from .registry import MetricSpec, metric_registry

COLUMNS = ["hook_point", "metric", "value", "note"]
PRECISIONS = {"float32": torch.float32, "float64": torch.float64}

__all__ = ["COLUMNS", "MetricNames", "check_options", "compute_metrics"]

MetricNames = str | Sequence[str] | None
"""A ``metrics=`` argument: one name, several names, or None (every category-1 metric)."""


def _dtype(precision: str | torch.dtype) -> torch.dtype:
    if isinstance(precision, torch.dtype) and precision in PRECISIONS.values():
        return precision
    if isinstance(precision, str) and precision in PRECISIONS:
        return PRECISIONS[precision]
    raise MetricError(
        f"precision must be 'float32' (default; bf16/fp16 weights are upcast) or 'float64', "
        f"got {precision!r}."
    )


def _check_task(specs: list[MetricSpec], task: Any) -> None:
    if task is not None:
        return
    for spec in specs:
        if spec.category == 2:
            hint = spec.task_hint or "the task object this metric's plugin documents"
            raise MetricError(
                f"metric {spec.name!r} is category 2: it needs the model's task. Pass "
                f"task={hint} to compute_metrics, or leave {spec.name!r} out of metrics=."
            )


def check_options(
    points: PointSpec, metrics: MetricNames, task: Any = None, precision: str = "float32"
) -> list[MetricSpec]:
    """Check :func:`compute_metrics`' options without a model and return the metric specs:
    metric names, the form of ``points=`` (a glob, a class, a list of those, a predicate), a
    category-2 metric's ``task=``, ``precision``. Sweeps and loggers call it before they write
    anything, so that a typo never leaves a run stored with its settings.

    Raises:
        MetricError: unknown or malformed metric names, a missing task, a bad precision.
        PointSelectionError: a malformed ``points=``.

    Example:
        >>> [s.name for s in check_options("fc*", ["l2"])]
        ['l2']
    """
    if not (metrics is None or isinstance(metrics, str | Iterable)) or isinstance(
        metrics, bytes | Mapping
    ):
        raise MetricError(
            f"metrics= must be a metric name, a list of names or None (all), got "
            f"{type(metrics).__name__} {metrics!r}."
        )
    _dtype(precision)
    specs = metric_registry.resolve(metrics)
    _check_task(specs, task)
    compile_selection(points)
    return specs


def _check_not_metric_names(model: nn.Module, points: PointSpec) -> None:
    """Metric names given where points go (the 0.1 argument order) get an error saying so."""
    entries = [points] if isinstance(points, str) else points
    if not isinstance(entries, list | tuple) or not entries:
        return
    names = {name for name, _ in model.named_modules()}
    if all(isinstance(e, str) and e in metric_registry and e not in names for e in entries):
        raise MetricError(
            f"points={points!r} names metrics, not modules: the arguments are "
            "compute_metrics(model, points, metrics) since hookstats 0.2. Pass "
            f"metrics={points!r}."
        )


def _hook_points(model: nn.Module, points: PointSpec) -> list[tuple[str, nn.Module]]:
    """``(model)`` first, then the selected hook points except the root (which it already is)."""
    _check_not_metric_names(model, points)
    try:
        selected = select_points(model, points)
    except HookstatsError:
        raise
    except Exception as exc:  # a points= predicate that raises
        if not callable(points) or isinstance(points, type):
            raise
        raise PointSelectionError(
            f"the points= predicate {points!r} raised {type(exc).__name__}: {exc}. A predicate "
            "is called as f(name, module) -> bool."
        ) from exc
    return [(ROOT_NAME, model)] + [(p.name, p.module) for p in selected if p.module is not model]


def _kinds(spec: MetricSpec) -> Iterable[str]:
    declared = [k for k in ("weights", "biases") if k in spec.needs]
    return declared or ["weights", "biases"]


def _prefetch_medians(
    store: ParamStore, specs: list[MetricSpec], members: dict[str, list[int]]
) -> None:
    """Pooled medians of every hook point's weights/biases (finite tensors only)."""
    kinds = {k for s in specs if "median" in s.needs for k in _kinds(s)}
    groups = []
    for indices in members.values():
        for kind in kinds:
            group = [i for i in indices if store.params[i].is_bias == (kind == "biases")]
            if group and all(store.finite(i) for i in group):
                groups.append(group)
    if groups:
        store.prefetch_medians(groups)


def _prefetch(store: ParamStore, specs: list[MetricSpec], members: dict[str, list[int]]) -> None:
    """Bulk-compute what the category-1 metrics declare, once for every hook point: spectra
    (or sigma_max) on the parallel workers, medians meanwhile on one more thread."""
    specs = [s for s in specs if s.category == 1]
    needs = set().union(*(s.needs for s in specs)) if specs else set()
    matrices = [p.index for p in store.params if p.is_matrix]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hookstats-medians") as side:
        medians = side.submit(_prefetch_medians, store, specs, members)
        if "spectrum" in needs:
            store.prefetch_spectra(matrices)
        elif "sigma_max" in needs:
            store.prefetch_sigma_max(matrices)
        medians.result()


def _evaluate(spec: MetricSpec, ctx: MetricContext) -> tuple[float, str]:
    """Run one metric: (value, note); never raises for a plugin's own failure."""
    try:
        result = spec.fn(ctx)
    except MetricUndefined as exc:
        return math.nan, str(exc)
    except Exception as exc:  # a broken plugin must not fail the run
        return math.nan, f"error: {type(exc).__name__}: {exc}"
    value = _as_number(result)
    if value is None:
        shown = repr(result) if len(repr(result)) <= 40 else type(result).__name__
        return math.nan, f"error: metric returned {shown}, expected a real number (a float)"
    return value, ("" if value == value else "metric returned NaN")


def _as_number(result: object) -> float | None:
    """A plugin's result as a float: a real number, a numpy scalar or a one-element real
    tensor; None for anything else (text such as "3.5", a bool, a complex number...)."""
    if isinstance(result, torch.Tensor):
        if result.numel() != 1 or result.is_complex() or result.dtype == torch.bool:
            return None
        return float(result.item())
    if isinstance(result, bool | np.bool_) or not isinstance(result, int | float | np.number):
        return None
    if isinstance(result, complex | np.complexfloating):
        return None
    return float(result)


def compute_metrics(
    model: nn.Module,
    points: PointSpec = None,
    metrics: MetricNames = None,
    *,
    task: Any = None,
    precision: str = "float32",
) -> pd.DataFrame:
    """Compute registered metrics for the whole model and for each selected hook point.

    Args:
        model: any ``nn.Module`` with real (non-meta) floating-point parameters; not modified.
        points: hook point selection as in :func:`hookstats.select_points` (``None`` = every
            module). A container's metrics pool all its descendants' parameters.
        metrics: a name, a list of names, or ``None`` for every category-1 metric.
        task: what category-2 metrics (e.g. the modular-addition ones) need; required when one
            is requested.
        precision: ``"float32"`` (default) or ``"float64"``: the dtype plugins see; bf16/fp16
            weights are upcast, float64 weights never downcast. Built-in reductions and
            spectra always accumulate in float64.

    Returns:
        A tidy DataFrame with columns ``hook_point, metric, value, note``: one ``(model)`` row
        per metric (all unique weights of the model, tied tensors once), then one row per
        selected hook point per category-1 metric. ``note`` is ``""`` or why ``value`` is NaN
        (``"no bias parameters"``, ``"error: <plugin exception>"``, ...).

    Raises:
        MetricError: unknown metric names (the message lists the available ones), a
            category-2 metric without ``task=``, a bad ``precision``, meta or non-float
            parameters.
        PointSelectionError: a ``points=`` entry that selects nothing.

    Example:
        >>> import torch.nn as nn
        >>> model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
        >>> df = compute_metrics(model, nn.Linear, ["l2", "spectral_norm"])
        >>> df["hook_point"].tolist()
        ['(model)', '(model)', '0', '0', '2', '2']
    """
    if not isinstance(model, nn.Module):
        raise MetricError(f"compute_metrics needs an nn.Module, got {type(model).__name__}.")
    specs = check_options(points, metrics, task, precision)
    dtype = _dtype(precision)
    hook_points = _hook_points(model, points)
    store = ParamStore(model, dtype)
    members = {name: store.indices_of(module) for name, module in hook_points}
    # A bulk failure (e.g. an SVD that does not converge) must not fail the run: the lazy
    # path recomputes per metric and records the error in that metric's note instead.
    with contextlib.suppress(Exception):
        _prefetch(store, specs, members)
    rows = []
    for name, module in hook_points:
        for spec in specs:
            if spec.category == 2 and name != ROOT_NAME:
                continue
            ctx = MetricContext(name, module, store, members[name], task=task)
            rows.append((name, spec.name, *_evaluate(spec, ctx)))
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["value"] = frame["value"].astype("float64")
    return frame
