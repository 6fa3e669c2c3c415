"""``profile()``: one instrumented forward pass -> :class:`~hookstats.profiling.report.Report`.

A profile runs the model in eval mode under ``torch.no_grad()`` (inference costs) and gives it
back as it was: hooks removed, training flags restored, parameters untouched, whether the
forward returns or raises. The arguments are copied first (:meth:`Placement.isolate`), so a
forward that extends a KV cache or writes into its inputs never changes what the caller
passed in. On meta it falls back to fake tensors when the model creates CPU tensors inside
``forward`` (torch's own error log of the failed attempt is silenced); when both fail, the
error quotes both causes. A ``torch.compile``'d model is profiled through its eager module:
MACs are a property of the model's math, not of how it was compiled.

May import: torch, :mod:`hookstats.errors`, :mod:`hookstats.points`,
:mod:`hookstats.counting`, :mod:`hookstats.instrument` and its own package.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ..counting import MacCounter
from ..errors import ForwardError, InputSpecError, MetaDeviceError
from ..instrument import CallRecorder, dtype_name, eval_mode, model_float_dtype, observe_forward
from ..instrument.inputs import build_inputs
from ..instrument.placement import (
    ModelLike,
    Placement,
    autocast_dtype,
    fake_placement,
    plan_placement,
    resolve_model,
)
from ..instrument.point_info import point_infos
from ..instrument.recorder import scripted_module
from ..instrument.uncounted import warn_uncounted
from ..points import HookPoint, PointSpec, select_points
from .optimizer import OptimizerSpec
from .report import Report
from .training import LossFn, profile_training

__all__ = ["profile"]

_QUIET_LOGGERS = ("torch._subclasses.fake_tensor", "torch._subclasses.meta_utils")
_VALUE_ERRORS = (
    "DataDependentOutput",
    "DynamicOutputShape",
    "GuardOnDataDependent",
    "Cannot copy out of meta tensor",
    "data-dependent",
)


@contextmanager
def _quiet_torch_logs() -> Iterator[None]:
    """Silence the ERROR log torch writes for each op that fails on fake tensors."""
    loggers = [logging.getLogger(name) for name in _QUIET_LOGGERS]
    before = [logger.disabled for logger in loggers]
    for logger in loggers:
        logger.disabled = True
    try:
        yield
    finally:
        for logger, disabled in zip(loggers, before, strict=True):
            logger.disabled = disabled


def _needs_values(error: BaseException) -> bool:
    text = f"{type(error).__name__}: {error}"
    cause = error.__cause__
    if cause is not None:
        text += f" {type(cause).__name__}: {cause}"
    return any(marker in text for marker in _VALUE_ERRORS)


def _meta_error(meta_error: ForwardError, fake_error: ForwardError) -> MetaDeviceError:
    if _needs_values(fake_error) or _needs_values(meta_error):
        advice = (
            "The model reads tensor values (.item(), if tensor.any(), boolean masks, "
            "nonzero), which meta and fake tensors do not have: profile on device='cpu' (a "
            "smaller config or batch gives the same per-layer formulas)."
        )
    else:
        advice = "Fix the error above, or profile on device='cpu'."
    if "expert" in (fake_error.hook_point or ""):
        advice += (
            " A mixture-of-experts loop over experts reads the routing; the grouped experts "
            "path (transformers' default experts implementation, aten._grouped_mm) counts "
            "routed tokens x top-k without values and profiles on meta."
        )
    return MetaDeviceError(
        f"the model cannot be profiled without real data. On the meta device: {meta_error} "
        f"With fake tensors: {fake_error} {advice}",
        hook_point=fake_error.hook_point,
    )


def _forward_on_meta(
    model: nn.Module, points: list[HookPoint], placement: Placement, args: Any, kwargs: Any
) -> tuple[CallRecorder, MacCounter, str | None]:
    """``args``/``kwargs`` as given (converted, not yet copied): each attempt copies them."""
    try:
        recorder, counter = observe_forward(
            model, points, placement, *placement.isolate(args, kwargs)
        )
        return recorder, counter, None
    except ForwardError as meta_error:
        try:
            with _quiet_torch_logs():
                fake = fake_placement(model, placement.dtype)
                recorder, counter = observe_forward(
                    model, points, fake, *fake.isolate(args, kwargs)
                )
        except ForwardError as fake_error:
            raise _meta_error(meta_error, fake_error) from fake_error
        return recorder, counter, "fake tensors"


def _eager(module: nn.Module) -> nn.Module:
    """The eager module of a ``torch.compile`` wrapper (the module itself otherwise)."""
    inner = getattr(module, "_orig_mod", None)
    if isinstance(inner, nn.Module) and type(module).__name__ == "OptimizedModule":
        return inner
    return module


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
        kwargs: keyword arguments for ``forward`` (keyword-only forwards work). Objects among
            them (a KV cache) are copied: the caller's are never changed.
        dtype: run in this floating dtype (parameters and float inputs); default the model's
            (the autocast dtype when called under ``torch.autocast``).
        device: ``"cpu"``, ``"meta"`` (no memory) or ``"cuda"``; default the model's device.
            The model itself is never moved.
        points: which modules to report (glob, class, list, predicate); default all. The
            work outside them is the ``(outside hook points)`` row, so ``total("macs")`` is
            the model's total whatever the selection.
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
        MetaDeviceError: the model needs real data and cannot run on meta or fake tensors,
            or a factory cannot be built on meta (the message quotes the causes).
        PointSelectionError, InputSpecError: bad ``points=`` or inputs.

    Warns:
        UncountedOpsWarning: ops that do work without a MAC formula ran (totals are a lower
            bound); the warning points at the call of ``profile``.

    Example:
        >>> import torch.nn as nn, hookstats as hs
        >>> model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU())
        >>> hs.profile(model, input_shape=(1, 28, 28), batch_size=32).total("macs")
        3612672
    """
    if not isinstance(train, bool):
        raise InputSpecError(f"train= must be True or False, got {train!r:.60}.")
    if train or loss_fn is not None or optimizer is not None:
        report = profile_training(
            model, train=train, loss_fn=loss_fn, optimizer=optimizer, input_shape=input_shape,
            batch_size=batch_size, inputs=inputs, kwargs=kwargs, dtype=dtype, device=device,
            points=points,
        )  # fmt: skip
        warn_uncounted(report.uncounted_ops)
        return report
    module, _ = resolve_model(model, device)
    module = _eager(module)
    selected = select_points(module, points)
    scripted = scripted_module(module)
    if scripted is not None:
        raise InputSpecError(
            f"module '{scripted}' is a TorchScript module (torch.jit.script/trace): scripted "
            "modules cannot take Python forward hooks, so profile() cannot see their calls. "
            "Profile the eager module (before torch.jit.script)."
        )
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
            recorder, counter = observe_forward(
                module, selected, placement, *placement.isolate(args, call_kwargs)
            )
    ran = dtype or autocast_dtype(placement.device.type) or model_float_dtype(module)
    report = Report(
        points=infos,
        calls=recorder.calls,
        uncounted_ops=counter.uncounted,
        device=str(placement.device),
        dtype=dtype_name(ran),
        unattributed_macs=recorder.unattributed_macs,
        fallback=fallback,
        parameter_sizes=sizes,
        value_reads=counter.value_reads,
    )
    warn_uncounted(report.uncounted_ops)
    return report
