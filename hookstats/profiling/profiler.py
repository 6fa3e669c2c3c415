"""``profile()``: one instrumented forward pass -> :class:`~hookstats.profiling.report.Report`.

A profile runs the model in eval mode under ``torch.no_grad()`` (inference costs) and gives it
back as it was: hooks removed, training flags restored, parameters untouched, whether the
forward returns or raises. On meta it falls back to fake tensors when the model creates CPU
tensors inside ``forward``.

May import: torch, :mod:`hookstats.errors`, :mod:`hookstats.points`,
:mod:`hookstats.counting`, :mod:`hookstats.instrument` and its own package.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..counting import MacCounter
from ..errors import ForwardError, MetaDeviceError, UncountedOpsWarning
from ..instrument import CallRecorder, dtype_name, eval_mode, model_float_dtype, observe_forward
from ..instrument.inputs import build_inputs
from ..instrument.placement import (
    ModelLike,
    Placement,
    fake_placement,
    plan_placement,
    resolve_model,
)
from ..instrument.point_info import point_infos
from ..points import HookPoint, PointSpec, select_points
from .optimizer import OptimizerSpec
from .report import Report
from .training import LossFn, profile_training

__all__ = ["profile"]


def _forward_on_meta(
    model: nn.Module, points: list[HookPoint], placement: Placement, args: Any, kwargs: Any
) -> tuple[CallRecorder, MacCounter, str | None]:
    try:
        recorder, counter = observe_forward(model, points, placement, args, kwargs)
        return recorder, counter, None
    except ForwardError as meta_error:
        fake = fake_placement(model, placement.dtype)
        try:
            recorder, counter = observe_forward(
                model, points, fake, fake.convert(args), fake.convert(kwargs)
            )
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
    warnings.warn(
        UncountedOpsWarning(
            f"ops with matrix work but no MAC formula ran, so MAC totals are a lower bound: "
            f"{listed}. Register one with hookstats.counting.register_mac_formula."
        ),
        stacklevel=3,
    )


def profile(
    model: ModelLike,
    *,
    input_shape: tuple[int, ...] | None = None,
    batch_size: int = 1,
    inputs: Any = None,
    kwargs: Mapping[str, Any] | None = None,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    points: PointSpec = None,
    train: bool = False,
    loss_fn: LossFn | None = None,
    optimizer: OptimizerSpec = None,
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
        train: profile one training step instead (docs/training.md): forward in training
            mode, ``loss_fn(output)``, backward, and the optimizer's step -- backward MACs and
            bytes saved for backward per hook point, and ``Report.memory`` (gradients,
            optimizer state, the peak of live tensor bytes). On meta nothing is allocated.
        loss_fn: ``output -> one-element tensor`` for ``train=True``; default the mean of the
            output's first floating-point tensor.
        optimizer: for ``train=True``: a name (``"sgd"``, ``"sgd_momentum"``, ``"adam"``,
            ``"adamw"``, ...), a ``torch.optim.Optimizer`` class, or a factory of the
            parameters; its state is counted (never applied to the model).

    Returns:
        A :class:`~hookstats.profiling.report.Report`.

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
    if train or loss_fn is not None or optimizer is not None:
        report = profile_training(
            model, train=train, loss_fn=loss_fn, optimizer=optimizer, input_shape=input_shape,
            batch_size=batch_size, inputs=inputs, kwargs=kwargs, dtype=dtype, device=device,
            points=points,
        )  # fmt: skip
        _warn_uncounted(report)
        return report
    module, _ = resolve_model(model, device)
    selected = select_points(module, points)
    placement = plan_placement(module, device, dtype)
    args, call_kwargs = build_inputs(
        module,
        placement,
        input_shape=input_shape,
        batch_size=batch_size,
        inputs=inputs,
        kwargs=kwargs,
    )
    infos, sizes = point_infos(selected, dtype)
    fallback = None
    with eval_mode(module, restore_buffers=True):  # buffers a forward updates go back
        if placement.device.type == "meta":
            recorder, counter, fallback = _forward_on_meta(
                module, selected, placement, args, call_kwargs
            )
        else:
            recorder, counter = observe_forward(module, selected, placement, args, call_kwargs)
    report = Report(
        points=infos,
        calls=recorder.calls,
        uncounted_ops=counter.uncounted,
        device=str(placement.device),
        dtype=dtype_name(dtype or model_float_dtype(module)),
        unattributed_macs=recorder.unattributed_macs,
        fallback=fallback,
        parameter_sizes=sizes,
    )
    _warn_uncounted(report)
    return report
