"""``profile()``: one instrumented forward pass -> :class:`~hookstats.report.Report`; and the
seed's table, :func:`estimate_layerwise_stats`, for any model.

A profile runs the model in eval mode under ``torch.no_grad()`` (inference costs) and gives it
back as it was: hooks removed, training flags restored, parameters untouched, whether the
forward returns or raises.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import pandas as pd
import torch
from torch import nn

from .counting import MacCounter
from .errors import ForwardError, HookstatsError, MetaDeviceError, UncountedOpsWarning
from .placement import (
    ModelLike,
    Placement,
    build_inputs,
    eval_mode,
    fake_placement,
    plan_placement,
    resolve_model,
)
from .points import ROOT_NAME, HookPoint, PointSpec, select_points
from .recorder import CallRecorder
from .records import PointInfo
from .report import Report

__all__ = ["estimate_layerwise_stats", "profile"]

SEED_COLUMNS = ["layer", "output_elements", "parameter_bytes", "activation_bytes", "macs"]


def _nested_names(points: list[HookPoint]) -> set[str]:
    """Names of selected points that have a selected descendant (found via name prefixes)."""
    selected = {p.name for p in points}
    nested = set()
    for point in points:
        if point.name == ROOT_NAME:
            continue
        parts = point.name.split(".")
        ancestors = [".".join(parts[:i]) for i in range(1, len(parts))] + [ROOT_NAME]
        nested.update(a for a in ancestors if a in selected)
    return nested


def _bytes_of(param: torch.Tensor, dtype: torch.dtype | None) -> int:
    cast = dtype is not None and param.is_floating_point()
    return param.numel() * (dtype.itemsize if cast else param.element_size())  # type: ignore[union-attr]


def _point_infos(
    points: list[HookPoint], dtype: torch.dtype | None
) -> tuple[list[PointInfo], dict[int, tuple[int, int]]]:
    sizes: dict[int, tuple[int, int]] = {}
    nested = _nested_names(points)
    infos = []
    for point in points:
        ids = []
        for param in point.module.parameters():
            if id(param) not in sizes:
                sizes[id(param)] = (param.numel(), _bytes_of(param, dtype))
            ids.append(id(param))
        own = [_bytes_of(p, dtype) for p in point.module.parameters(recurse=False)]
        infos.append(PointInfo(
            name=point.name, module_type=point.type_name, depth=point.depth,
            is_leaf=point.is_leaf, parameters=sum(sizes[i][0] for i in ids),
            parameter_bytes=sum(sizes[i][1] for i in ids), owns_parameters=bool(own),
            own_parameter_bytes=sum(own), innermost=point.name not in nested,
            parameter_ids=frozenset(ids),
        ))
    return infos, sizes


def _forward(
    model: nn.Module, points: list[HookPoint], placement: Placement, args: Any, kwargs: Any
) -> tuple[CallRecorder, MacCounter]:
    recorder = CallRecorder(model, points)
    counter = MacCounter(recorder)
    try:
        with placement.context(), recorder, torch.no_grad(), counter:
            placement.call(model, args, kwargs)
    except HookstatsError:
        raise
    except Exception as exc:
        where = recorder.failed_in or "(model)"
        raise ForwardError(
            f"forward raised {type(exc).__name__} in module '{where}' "
            f"(on {placement.device}): {exc}",
            hook_point=where,
        ) from exc
    return recorder, counter


def _forward_on_meta(
    model: nn.Module, points: list[HookPoint], placement: Placement, args: Any, kwargs: Any
) -> tuple[CallRecorder, MacCounter, str | None]:
    try:
        recorder, counter = _forward(model, points, placement, args, kwargs)
        return recorder, counter, None
    except ForwardError as meta_error:
        fake = fake_placement(model, placement.dtype)
        try:
            recorder, counter = _forward(model, points, fake, fake.convert(args),
                                         fake.convert(kwargs))
        except ForwardError as fake_error:
            raise MetaDeviceError(
                f"the model cannot be profiled without real data. On the meta device: "
                f"{meta_error} With fake tensors: {fake_error} Data-dependent code (.item(), "
                "if tensor.any(), boolean masks) needs values: profile on device='cpu' (a "
                "smaller config or batch gives the same per-layer formulas), or fix the error.",
                hook_point=fake_error.hook_point,
            ) from fake_error
        return recorder, counter, "fake tensors"


def _warn_uncounted(report: Report) -> None:
    if not report.uncounted_ops:
        return
    listed = "; ".join(
        f"{op} x{u.calls} in {', '.join(sorted(u.hook_points))}"
        for op, u in sorted(report.uncounted_ops.items())
    )
    warnings.warn(UncountedOpsWarning(
        f"ops with matrix work but no MAC formula ran, so MAC totals are a lower bound: "
        f"{listed}. Register one with hookstats.counting.register_mac_formula."
    ), stacklevel=3)


def profile(
    model: ModelLike,
    input_shape: tuple[int, ...] | None = None,
    batch_size: int = 1,
    *,
    inputs: Any = None,
    kwargs: Mapping[str, Any] | None = None,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    points: PointSpec = None,
) -> Report:
    """Run one instrumented forward pass and return per-hook-point costs.

    Args:
        model: an ``nn.Module``, or a factory returning one (built on meta when
            ``device="meta"``, so its weights are never allocated).
        input_shape: shape of one sample, without the batch dimension; a random float tensor
            of shape ``(batch_size, *input_shape)`` is made. Or give ``inputs``/``kwargs``.
        batch_size: leading dimension of the dummy input.
        inputs: a tensor or a tuple of positional arguments for ``forward``.
        kwargs: keyword arguments for ``forward`` (keyword-only forwards work).
        dtype: run in this floating dtype (parameters and float inputs); default the model's.
        device: ``"cpu"``, ``"meta"`` (no memory) or ``"cuda"``; default the model's device.
            The model itself is never moved.
        points: which modules to report (glob, class, list, predicate); default all.

    Returns:
        A :class:`~hookstats.report.Report`.

    Raises:
        ForwardError: the forward raised; the message names the hook point it raised in.
        MetaDeviceError: the model needs real data and cannot run on meta or fake tensors.
        PointSelectionError, InputSpecError: bad ``points=`` or inputs.

    Example:
        >>> import torch.nn as nn, hookstats as hs
        >>> model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU())
        >>> hs.profile(model, input_shape=(1, 28, 28), batch_size=32).total("macs")
        3612672
    """
    module, _ = resolve_model(model, device)
    selected = select_points(module, points)
    placement = plan_placement(module, device, dtype)
    args, call_kwargs = build_inputs(module, placement, input_shape=input_shape,
                                     batch_size=batch_size, inputs=inputs, kwargs=kwargs)
    infos, sizes = _point_infos(selected, dtype)
    fallback = None
    with eval_mode(module):
        if placement.device.type == "meta":
            recorder, counter, fallback = _forward_on_meta(module, selected, placement, args,
                                                           call_kwargs)
        else:
            recorder, counter = _forward(module, selected, placement, args, call_kwargs)
    float_dtype = dtype or next((p.dtype for p in module.parameters() if p.is_floating_point()),
                                torch.float32)
    report = Report(
        points=infos, calls=recorder.calls, uncounted_ops=counter.uncounted,
        device=str(placement.device), dtype=str(float_dtype).replace("torch.", ""),
        unattributed_macs=recorder.unattributed_macs, fallback=fallback, parameter_sizes=sizes,
    )
    _warn_uncounted(report)
    return report


def estimate_layerwise_stats(
    model: ModelLike,
    batch_size: int = 1,
    input_shape: tuple[int, ...] = (1, 28, 28),
    **profile_kwargs: Any,
) -> pd.DataFrame:
    """The seed's per-layer table for any model.

    One row per layer that owns parameters and ran, in execution order, with exactly the
    columns ``layer, output_elements, parameter_bytes, activation_bytes, macs``.
    ``parameter_bytes`` and ``macs`` are the layer's own (a module's children have their own
    rows), so both columns sum without double counting. Bytes follow each tensor's real
    element size.

    Example:
        >>> import hookstats as hs
        >>> from torch import nn
        >>> df = hs.estimate_layerwise_stats(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), 32)
        >>> df.loc[0, "macs"]  # 32 * 784 * 10
        250880
    """
    report = profile(model, input_shape=input_shape, batch_size=batch_size, **profile_kwargs)
    own_bytes = {p.name: p.own_parameter_bytes for p in report.points if p.owns_parameters}
    frame = report.to_frame()
    rows = frame[(frame["calls"] > 0) & frame["hook_point"].isin(own_bytes)]
    table = pd.DataFrame({
        "layer": rows["hook_point"], "output_elements": rows["output_elements"],
        "parameter_bytes": rows["hook_point"].map(own_bytes),
        "activation_bytes": rows["activation_bytes"], "macs": rows["self_macs"],
    })
    return table.reset_index(drop=True)[SEED_COLUMNS]
