"""Probe batches: activation metrics in a run. A logger or a sweep given ``probe=(inputs,
kwargs)`` runs ``model(*inputs, **kwargs)`` once per checkpoint (eval mode, no grad) and stores
the activation metrics of that forward beside the weight metrics, in the same tidy frame.

This module owns what a probe is (:class:`Probe`: the tensors, copied once, and a JSON
*description* -- shapes, dtypes, plain values and a BLAKE2b hash of the contents, never the
tensors -- that a run is stored with, so that a run resumed with another probe is refused),
how ``metrics=`` splits into weight and activation metrics (:class:`MetricPlan`), and the one
function that computes a checkpoint's rows, :func:`measure`, shared by
:class:`~hookstats.runs.logger.CheckpointLogger` and the sweep's workers.

May import: torch, pandas, :mod:`hookstats.errors`, :mod:`hookstats.metrics`,
:mod:`hookstats.points` and :func:`hookstats.instrument.model_state.model_device`.

Example:
    >>> import torch
    >>> probe = as_probe((torch.zeros(2, 3), {"scale": 2}))
    >>> probe.description["inputs"], probe.description["kwargs"]
    ([{'shape': [2, 3], 'dtype': 'float32'}], {'scale': 2})
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from torch import nn

from ..errors import MetricError
from ..instrument.model_state import model_device
from ..metrics import MetricNames, activation_stats, compute_metrics, metric_registry
from ..metrics.compute import check_options
from ..metrics.registry import ACTIVATION
from ..points import PointSpec

__all__ = ["MetricPlan", "Probe", "ProbeLike", "as_probe", "check_plan", "measure", "plan"]

ProbeLike = Any
"""A ``probe=`` argument: ``(inputs, kwargs)``, a tensor (one positional input), a
:class:`Probe` or None."""

_PLAIN = (type(None), bool, int, float, str)


@dataclass(frozen=True)
class Probe:
    """A probe batch: positional ``inputs``, keyword ``kwargs`` (this probe's own copies of
    the tensors) and their JSON ``description`` (what a run is stored with). Picklable: a sweep
    sends it to its workers."""

    inputs: tuple[Any, ...]
    kwargs: dict[str, Any]
    description: dict[str, Any]

    def on(self, device: torch.device) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """``(inputs, kwargs)`` with every tensor on ``device`` (the same tensors when they
        are there already)."""
        return _moved(self.inputs, device), _moved(self.kwargs, device)


def _moved(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, tuple | list):
        return type(value)(_moved(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _moved(v, device) for k, v in value.items()}
    return value


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    flat = tensor.detach().cpu().resolve_conj().resolve_neg().contiguous().reshape(-1)
    return bytes(flat.view(torch.uint8).numpy()) if flat.numel() else b""


class _Copier:
    """Walks a probe once: copies its tensors, describes it and hashes its contents."""

    def __init__(self) -> None:
        self.digest = hashlib.blake2b(digest_size=16)

    def copy(self, value: Any, where: str) -> tuple[Any, Any]:
        """``(own copy, description)`` of ``value``, found at ``where``."""
        if isinstance(value, torch.Tensor):
            return self._tensor(value, where)
        if isinstance(value, _PLAIN):
            self.digest.update(f"{where}={value!r};".encode())
            return value, value
        if type(value) in (tuple, list):
            self.digest.update(f"{where}:{type(value).__name__}[{len(value)}];".encode())
            pairs = [self.copy(v, f"{where}[{i}]") for i, v in enumerate(value)]
            return type(value)(p[0] for p in pairs), [p[1] for p in pairs]
        if isinstance(value, Mapping):
            if not all(isinstance(k, str) for k in value):
                raise _bad(f"{where} has a key that is not a string ({list(value)!r})")
            keys = sorted(value)
            self.digest.update(f"{where}:dict{keys!r};".encode())
            pairs = [self.copy(value[k], f"{where}[{k!r}]") for k in keys]
            return dict(zip(keys, (p[0] for p in pairs), strict=True)), dict(
                zip(keys, (p[1] for p in pairs), strict=True)
            )
        raise _bad(f"{where} is a {type(value).__name__}")

    def _tensor(self, tensor: torch.Tensor, where: str) -> tuple[torch.Tensor, Any]:
        if tensor.layout != torch.strided or tensor.is_meta or tensor.is_nested:
            raise _bad(f"{where} is a {tensor.layout} {tensor.device.type} tensor without data")
        if tensor.is_quantized:
            raise _bad(f"{where} is a quantized tensor")
        dtype = str(tensor.dtype).replace("torch.", "")
        shape = list(tensor.shape)
        self.digest.update(f"{where}:tensor{shape}{dtype};".encode())
        self.digest.update(_tensor_bytes(tensor))
        return tensor.detach().clone(), {"shape": shape, "dtype": dtype}


def _bad(what: str) -> MetricError:
    return MetricError(
        f"probe= may hold tensors, None, bools, numbers and strings, in tuples, lists and dicts "
        f"with string keys; {what}. Pass the batch as probe=(inputs, kwargs)."
    )


def as_probe(probe: ProbeLike) -> Probe | None:
    """Check a ``probe=`` argument and copy it: ``(inputs, kwargs)`` -- ``inputs`` a tensor or
    a tuple of positional inputs (anything else is one positional input), ``kwargs`` a dict or
    None -- or a tensor alone (one positional input). Its tensors are copied (detached clones),
    so changing yours afterwards changes nothing.

    Raises:
        MetricError: any other form, or a value a probe cannot hold (a module, a numpy array,
            a cache object, a meta or sparse tensor).

    Example:
        >>> as_probe(torch.ones(1)).inputs
        (tensor([1.]),)
    """
    if probe is None or isinstance(probe, Probe):
        return probe
    if isinstance(probe, torch.Tensor):
        probe = ((probe,), None)
    if not isinstance(probe, tuple) or len(probe) != 2:
        raise MetricError(
            f"probe= must be (inputs, kwargs) -- e.g. probe=(input_ids, None) or probe=((x,), "
            f"{{'attention_mask': mask}}) -- or a tensor, got {type(probe).__name__}."
        )
    inputs, kwargs = probe
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise MetricError(
            f"probe= is (inputs, kwargs) and kwargs must be a dict or None, got "
            f"{type(kwargs).__name__}. For two positional inputs write probe=((a, b), None)."
        )
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    copier = _Copier()
    own_inputs, inputs_text = copier.copy(inputs, "inputs")
    own_kwargs, kwargs_text = copier.copy(dict(kwargs or {}), "kwargs")
    description = {"inputs": inputs_text, "kwargs": kwargs_text, "hash": copier.digest.hexdigest()}
    return Probe(own_inputs, own_kwargs, description)


@dataclass(frozen=True, slots=True)
class MetricPlan:
    """What a checkpoint computes: ``weights`` for :func:`hookstats.compute_metrics` and
    ``activations`` for :func:`hookstats.activation_stats` on the probe. ``None`` means every
    metric of that kind, an empty tuple none."""

    weights: tuple[str, ...] | None
    activations: tuple[str, ...] | None

    @property
    def has_weights(self) -> bool:
        return self.weights is None or bool(self.weights)

    @property
    def has_activations(self) -> bool:
        return self.activations is None or bool(self.activations)


def _activation_names(metrics: MetricNames) -> list[str]:
    if isinstance(metrics, str):
        metrics = [metrics]
    if not isinstance(metrics, Iterable) or isinstance(metrics, bytes | Mapping):
        return []  # a malformed metrics= is compute_metrics' error to report
    return [
        n
        for n in dict.fromkeys(m for m in metrics if isinstance(m, str))
        if n in metric_registry and metric_registry.get(n).category == ACTIVATION
    ]


def plan(metrics: MetricNames, probe: Probe | None) -> MetricPlan:
    """Split ``metrics=`` into weight and activation metrics (``None``: every weight metric,
    and every activation metric when there is a probe). Names are checked by
    :func:`check_plan`, which callers run first.

    Example:
        >>> plan(["l2", "act_rms"], as_probe(torch.ones(1)))
        MetricPlan(weights=('l2',), activations=('act_rms',))
    """
    if metrics is None:
        return MetricPlan(None, None if probe is not None else ())
    activations = _activation_names(metrics)
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    return MetricPlan(tuple(n for n in names if n not in activations), tuple(activations))


def check_plan(
    points: PointSpec, metrics: MetricNames, task: Any, precision: str, probe: Probe | None
) -> MetricPlan:
    """Check a logger's or a sweep's ``points/metrics/task/precision`` and probe together,
    without a model, before anything is written.

    Raises:
        MetricError: activation metrics without a probe (the message names ``probe=``), a probe
            with no activation metric to compute, or what :func:`check_options` refuses.
        PointSelectionError: a malformed ``points=``.
    """
    found = _activation_names(metrics)
    if found and probe is None:
        names = ", ".join(map(repr, found))
        raise MetricError(
            f"{names}: activation metric(s) (category 3), computed from a forward, not from "
            "weights, and there is no probe batch to run. Pass probe=(inputs, kwargs) -- a "
            "batch the model runs once per checkpoint, in eval mode without grad -- or leave "
            "them out of metrics=."
        )
    if not found:
        check_options(points, metrics, task, precision)
    result = plan(metrics, probe)
    if found:  # the weight metrics, or None to check points= and precision alone
        check_options(points, list(result.weights or ()) or None, task, precision)
    if probe is not None and not result.has_activations:
        raise MetricError(
            f"probe= is given but metrics={metrics!r} names no activation metric: add some "
            f"({', '.join(metric_registry.names(ACTIVATION))}), or leave probe= out."
        )
    return result


def measure(
    model: nn.Module,
    points: PointSpec,
    metrics: MetricNames,
    *,
    probe: Probe | None,
    task: Any = None,
    precision: str = "float32",
) -> pd.DataFrame:
    """One checkpoint's rows ``hook_point, metric, value, note``: the weight metrics
    (:func:`hookstats.compute_metrics`), then, with a probe, the activation metrics of one
    forward on it (:func:`hookstats.activation_stats`; the probe is moved to the model's device).

    Raises:
        ForwardError: the model's forward on the probe raised.

    Example:
        >>> frame = measure(nn.Linear(2, 2), None, ["l2", "act_absmax"],
        ...                 probe=as_probe(torch.ones(1, 2)))
        >>> frame["metric"].tolist()
        ['l2', 'act_absmax']
    """
    todo = plan(metrics, probe)
    frames = []
    if todo.has_weights:
        weights = None if todo.weights is None else list(todo.weights)
        frames.append(compute_metrics(model, points, weights, task=task, precision=precision))
    if probe is not None and todo.has_activations:
        inputs, kwargs = probe.on(model_device(model))
        names = None if todo.activations is None else list(todo.activations)
        frames.append(activation_stats(model, points, names, inputs=inputs, kwargs=kwargs))
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
