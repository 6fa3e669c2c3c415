"""The training step, ``profile(..., train=True)``: forward, loss, backward and the optimizer's
step, counted per hook point -- on any device, meta included -- with the model given back
exactly as it was.

How the step runs without touching the model: the forward goes through
:func:`torch.func.functional_call` on *stand-ins* -- detached aliases of the parameters (same
storage, so nothing is copied; ``requires_grad`` as the parameter's), clones of the buffers
(batch norm updates its running statistics in training mode), or the placement's meta/fake/cast
substitutes -- so the gradients land on the stand-ins, never on the parameters' ``.grad``. The
optimizer is built on meta shadows of the trainable parameters
(:func:`~hookstats.profiling.optimizer.optimizer_memory`). The training flags are set for the
step and restored, the RNG state is forked (dropout draws from it), every hook is removed in
``finally``, also when the forward, the loss function or the backward raises.

One dispatch mode (a :class:`~hookstats.counting.MacCounter` that also feeds
:class:`~hookstats.profiling.memory.LiveBytes`) sees every op of the step: forward MACs go to
the call records, backward MACs and saved bytes to the hook points of
:class:`~hookstats.profiling.step_recorder.StepRecorder`. On meta the step runs on fake CPU
tensors: they allocate nothing either, and the kernels are the ones the CPU picks -- the fused
attention kernel (meta's math path would hold the ``L x S`` attention matrix, which no fused
kernel does), oneDNN's LSTM -- so a meta step is the CPU step, op for op.

May import: torch, :mod:`hookstats.errors`, :mod:`hookstats.points`, :mod:`hookstats.counting`,
:mod:`hookstats.instrument` and its own package.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_map

from ..counting import MacCounter
from ..errors import ForwardError, HookstatsError, InputSpecError, MetaDeviceError
from ..instrument import CallRecorder, dtype_name, forward_error, model_float_dtype
from ..instrument.inputs import build_inputs
from ..instrument.model_state import train_mode
from ..instrument.placement import (
    ModelLike,
    Placement,
    fake_placement,
    plan_placement,
    resolve_model,
)
from ..instrument.point_info import point_infos
from ..instrument.tensors import flatten
from ..points import HookPoint, PointSpec, select_points
from .memory import LiveBytes, MemoryEstimate, storage_bytes
from .optimizer import OptimizerSpec, optimizer_memory, optimizer_name
from .report import Report
from .step_recorder import StepRecorder, TrainingCosts

__all__ = ["LossFn", "profile_training"]

LossFn = Callable[[Any], torch.Tensor]


def _fork_rng(device: torch.device) -> AbstractContextManager[Any]:
    devices = [device.index or 0] if device.type == "cuda" else []
    return torch.random.fork_rng(devices=devices)


def _grad_state(
    model: nn.Module, placement: Placement
) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    """Stand-ins for every parameter (grad-enabled leaves) and buffer; and the trainable ones."""
    base = placement.state or {}
    state: dict[str, torch.Tensor] = {}
    trainable = []
    with torch.no_grad():
        for name, param in model.named_parameters():
            leaf = base.get(name, param).detach().requires_grad_(param.requires_grad)
            state[name] = leaf
            if param.requires_grad:
                trainable.append(leaf)
        for name, buffer in model.named_buffers():
            substitute = base.get(name, buffer)
            state[name] = substitute.clone() if substitute is buffer else substitute
    return state, trainable


def _detach_input(value: Any) -> Any:
    """An input that requires grad becomes a leaf alias: its gradient never reaches the caller.
    An inference tensor (made under ``inference_mode``) is copied: autograd cannot save it."""
    if not isinstance(value, torch.Tensor):
        return value
    if value.is_inference():
        return value.clone().requires_grad_(value.requires_grad)
    if value.requires_grad:
        return value.detach().requires_grad_()
    return value


class _StepCounter(MacCounter):  # type: ignore[no-untyped-call]
    """The MAC counter that also hands every op's result to the live-bytes tracker."""

    def __init__(self, sink: StepRecorder, live: LiveBytes) -> None:
        super().__init__(sink)
        self._live = live

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = super().__torch_dispatch__(func, types, args, kwargs)
        self._live.note(out)
        return out


def _default_loss(output: Any) -> torch.Tensor:
    """The mean of the output's first floating-point tensor that needs a gradient (or, when
    none does, of its first floating-point tensor: the loss check then says why)."""
    leaves: list[Any] = []
    flatten(output, leaves)
    floats = [t for t in leaves if isinstance(t, torch.Tensor) and t.is_floating_point()]
    for tensor in [t for t in floats if t.requires_grad] or floats:
        return tensor.mean()
    raise InputSpecError(
        "train=True: the model's output holds no floating-point tensor to make a loss of; "
        "pass loss_fn=, e.g. loss_fn=lambda out: out.logits.mean()."
    )


def _check_loss(loss: Any) -> torch.Tensor:
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        got = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise InputSpecError(
            f"loss_fn must return a one-element tensor, got {got}. Reduce it, e.g. "
            "loss_fn=lambda out: out.logits.mean()."
        )
    if not loss.requires_grad:
        raise InputSpecError(
            "the loss needs no gradient: no parameter took part in it (all frozen, or "
            "loss_fn detached the output). Check requires_grad and loss_fn."
        )
    return loss


class _WholeStep(nn.Module):
    """Holds the model (as ``model``) and runs the whole step as its forward."""

    def __init__(self, model: nn.Module, run: Callable[..., None]) -> None:
        super().__init__()
        self.model = model
        self._run = run

    def forward(self, *args: Any, **kwargs: Any) -> None:
        self._run(*args, **kwargs)


class _Step:
    """One training step of ``model`` on a placement; :meth:`run` returns what it counted."""

    def __init__(
        self,
        model: nn.Module,
        points: list[HookPoint],
        loss_fn: LossFn | None,
        spec: OptimizerSpec,
        count_cpu: bool,
    ) -> None:
        self.model, self.points, self.loss_fn, self.spec = model, points, loss_fn, spec
        self.count_cpu = count_cpu  # a CPU step: state kept on the CPU is on the device
        self._held: tuple[Any, ...] = ()

    def run(
        self, placement: Placement, args: Any, kwargs: Any
    ) -> tuple[CallRecorder, MacCounter, TrainingCosts, MemoryEstimate]:
        state, trainable = _grad_state(self.model, placement)
        placement = dataclasses.replace(placement, state=state)
        args, kwargs = tree_map(_detach_input, args), tree_map(_detach_input, kwargs)
        optimizer = optimizer_memory(self.spec, trainable, count_cpu=self.count_cpu)
        recorder = CallRecorder(self.model, self.points)
        parameters = [state[name] for name, _ in self.model.named_parameters()]
        steps = StepRecorder(self.points, recorder, parameters)
        live = LiveBytes(steps.where)
        counter = _StepCounter(steps, live)
        inputs: list[Any] = []
        flatten((args, kwargs), inputs)
        inputs = [t for t in inputs if isinstance(t, torch.Tensor)]
        live.hold([*state.values(), *inputs])
        live.add(optimizer.state_bytes)
        steps.attach()
        try:
            with placement.context(), counter:
                self._forward_and_backward(placement, recorder, steps, args, kwargs)
            steps.phase = "optimizer"
            live.add_transient(optimizer.transient_bytes)
            gradients = storage_bytes(t.grad for t in trainable if t.grad is not None)
            costs = steps.costs(
                optimizer.name, self._gradient_bytes(state), gradients, counter.total_macs
            )
            memory = MemoryEstimate(
                parameters=storage_bytes(state[n] for n, _ in self.model.named_parameters()),
                buffers=storage_bytes(state[n] for n, _ in self.model.named_buffers()),
                inputs=storage_bytes(inputs),
                gradients=gradients,
                optimizer_state=optimizer.state_bytes,
                saved_activations=costs.total("saved_bytes"),
                peak=live.peak,
                peak_phase=live.peak_where[0],
                peak_hook_point=live.peak_where[1],
                optimizer=optimizer.name,
            )
            return recorder, counter, costs, memory
        finally:
            self._held = ()
            steps.close()
            live.close()

    def _gradient_bytes(self, state: dict[str, torch.Tensor]) -> dict[str, int]:
        """Per hook point: bytes of its trainable parameters' gradients (as the stand-ins)."""
        stand_in = {id(p): state[name] for name, p in self.model.named_parameters()}
        return {
            point.name: storage_bytes(
                stand_in[id(p)] for p in point.module.parameters() if p.requires_grad
            )
            for point in self.points
        }

    def _forward_and_backward(
        self,
        placement: Placement,
        recorder: CallRecorder,
        steps: StepRecorder,
        args: Any,
        kwargs: Any,
    ) -> None:
        """Forward, loss and backward in one ``functional_call``, so that the stand-ins stay in
        place while the backward recomputes checkpointed regions."""

        def whole_step(*args: Any, **kwargs: Any) -> None:
            with torch.autograd.graph.saved_tensors_hooks(steps.pack, steps.unpack):
                try:
                    with recorder:
                        output = self.model(*args, **kwargs)
                except HookstatsError:
                    raise
                except Exception as exc:
                    raise forward_error(exc, recorder, placement.device) from exc
                steps.phase = "loss"
                loss = _check_loss(self._loss(output, placement.device))
            steps.claim_outside(loss)
            self._held = (output, loss)  # a training loop holds both until the next step
            steps.phase = "backward"
            try:
                loss.backward()  # type: ignore[no-untyped-call]
            except Exception as exc:
                where = steps.current_point
                raise ForwardError(
                    f"backward raised {type(exc).__name__} in hook point '{where}' (on "
                    f"{placement.device}): {exc}",
                    hook_point=where,
                ) from exc

        state = {f"model.{name}": tensor for name, tensor in (placement.state or {}).items()}
        torch.func.functional_call(_WholeStep(self.model, whole_step), state, args, kwargs)

    def _loss(self, output: Any, device: torch.device) -> Any:
        if self.loss_fn is None:
            return _default_loss(output)
        try:
            return self.loss_fn(output)
        except HookstatsError:
            raise
        except Exception as exc:
            raise ForwardError(
                f"loss_fn raised {type(exc).__name__} (on {device}): {exc}. loss_fn gets the "
                f"model's output ({type(output).__name__}) and returns a one-element tensor."
            ) from exc


def _fake_inputs(fake: Placement, value: Any) -> Any:
    """``value`` on fake tensors; a tensor that needs a gradient still does."""

    def convert(tensor: Any) -> Any:
        converted = fake.convert_tensor(tensor)
        if isinstance(tensor, torch.Tensor) and tensor.requires_grad:
            converted.requires_grad_()
        return converted

    return tree_map(convert, value)


def _run(
    step: _Step, placement: Placement, args: Any, kwargs: Any, dtype: torch.dtype | None
) -> tuple[CallRecorder, MacCounter, TrainingCosts, MemoryEstimate]:
    """Run the step; on meta, on fake CPU tensors (they allocate nothing either, and the kernels
    chosen are the CPU's: fused attention, oneDNN's LSTM)."""
    if placement.device.type != "meta":
        return step.run(placement, args, kwargs)
    fake = fake_placement(step.model, dtype)
    try:
        return step.run(fake, _fake_inputs(fake, args), _fake_inputs(fake, kwargs))
    except ForwardError as error:
        raise MetaDeviceError(
            f"the training step cannot run without real data (on meta it runs on fake "
            f"tensors): {error} Data-dependent code (.item(), boolean masks) needs values: "
            "profile on device='cpu' with a smaller config, or fix the error.",
            hook_point=error.hook_point,
        ) from error


def profile_training(
    model: ModelLike,
    *,
    train: bool = True,
    loss_fn: LossFn | None = None,
    optimizer: OptimizerSpec = None,
    input_shape: tuple[int, ...] | None = None,
    batch_size: int = 1,
    inputs: Any = None,
    kwargs: Mapping[str, Any] | None = None,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    points: PointSpec = None,
) -> Report:
    """The ``train=True`` path of :func:`hookstats.profile` (same arguments; see there).

    Raises:
        InputSpecError: ``loss_fn``/``optimizer`` without ``train=True``, a bad ``loss_fn``
            result or ``optimizer``.
        ForwardError: the forward, the loss function or the backward raised.
        MetaDeviceError: the step needs real data and cannot run on meta or fake tensors.

    Example:
        >>> import torch.nn as nn, hookstats as hs
        >>> r = hs.profile(nn.Linear(8, 4), input_shape=(8,), batch_size=2, train=True)
        >>> r.total("macs"), r.total("backward_macs")  # 2*8*4; the input needs no gradient
        (64, 64)
    """
    if not train:
        raise InputSpecError(
            "loss_fn= and optimizer= describe a training step: pass train=True with them."
        )
    if loss_fn is not None and not callable(loss_fn):
        raise InputSpecError(f"loss_fn must be callable (output -> loss), got {loss_fn!r}.")
    optimizer_name(optimizer)  # check the name before running anything
    module, _ = resolve_model(model, device)
    selected = select_points(module, points)
    requested = plan_placement(module, device, dtype)
    step = _Step(module, selected, loss_fn, optimizer, requested.device.type == "cpu")
    with (
        torch.inference_mode(False),
        torch.enable_grad(),
        _fork_rng(requested.device),
        train_mode(module),
    ):
        args, call_kwargs = build_inputs(
            module,
            requested,
            input_shape=input_shape,
            batch_size=batch_size,
            inputs=inputs,
            kwargs=kwargs,
        )
        recorder, counter, costs, memory = _run(step, requested, args, call_kwargs, dtype)
    infos, sizes = point_infos(selected, dtype)
    return Report(
        points=infos,
        calls=recorder.calls,
        uncounted_ops=counter.uncounted,
        device=str(requested.device),
        dtype=dtype_name(dtype or model_float_dtype(module)),
        unattributed_macs=recorder.unattributed_macs,
        parameter_sizes=sizes,
        training=costs,
        memory=memory,
    )
