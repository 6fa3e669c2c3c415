"""Where and in what precision a profiled forward runs -- without changing the user's model.

The model is never moved or cast. When the requested device or dtype differs from the model's,
the forward runs through :func:`torch.func.functional_call` with substitute tensors (meta
tensors allocate nothing, so a 70B-parameter model costs no memory), and the originals are back
in place when it returns or raises. A *factory* (a callable returning a module) is built under
``torch.device("meta")`` when profiling on meta, so its weights are never allocated.

This module also builds the dummy input of ``input_shape=`` and moves given inputs.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_map

from .errors import InputSpecError

__all__ = ["Placement", "build_inputs", "eval_mode", "fake_placement", "resolve_model"]

ModelLike = nn.Module | Callable[[], nn.Module]


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the duration; every module's own training flag is restored afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield
    finally:
        for module, training in flags:
            module.training = training


def _as_device(device: str | torch.device | None) -> torch.device | None:
    if device is None:
        return None
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputSpecError(
            f"device={device!r} is not a torch device: {exc}. Use 'cpu', 'meta' or 'cuda:0'."
        ) from None


def _check_dtype(dtype: torch.dtype | None) -> None:
    if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
        raise InputSpecError(
            f"dtype={dtype!r} is not a floating torch dtype. Profile in torch.float32, "
            "torch.bfloat16 or torch.float16; for int8/int4 estimates use "
            "summarize_hardware's precision what-if, which scales element sizes."
        )


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (cpu for a model with none)."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device
    return torch.device("cpu")


def resolve_model(model: ModelLike, device: str | torch.device | None) -> tuple[nn.Module, bool]:
    """Return ``(module, built_here)``; a factory is called (on meta when ``device="meta"``)."""
    target = _as_device(device)
    if isinstance(model, nn.Module):
        return model, False
    if not callable(model):
        raise InputSpecError(
            f"expected an nn.Module or a factory returning one, got {type(model).__name__}."
        )
    context: AbstractContextManager[Any] = (
        torch.device("meta") if target is not None and target.type == "meta" else nullcontext()
    )
    with context:
        built = model()
    if not isinstance(built, nn.Module):
        raise InputSpecError(
            f"the model factory returned {type(built).__name__}, not an nn.Module."
        )
    if target is not None and target.type != "meta":
        built = built.to(target)
    return built, True


@dataclass(slots=True)
class Placement:
    """How to run one forward: on which device, in which dtype, with which substitute state."""

    device: torch.device
    dtype: torch.dtype | None
    state: dict[str, torch.Tensor] | None = None
    context: Callable[[], AbstractContextManager[Any]] = field(default=nullcontext)
    substitute: Callable[[torch.Tensor], torch.Tensor] | None = None

    def call(self, model: nn.Module, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        """Run ``model(*args, **kwargs)``, through ``functional_call`` when state is swapped."""
        if self.state is None:
            return model(*args, **kwargs)
        return torch.func.functional_call(model, self.state, args, dict(kwargs), strict=False)

    def convert(self, value: Any) -> Any:
        """Move (and for floating tensors, cast) every tensor in ``value`` to this placement."""
        return tree_map(self._convert_tensor, value)

    def _convert_tensor(self, value: Any) -> Any:
        if not isinstance(value, torch.Tensor):
            return value
        if self.substitute is not None:
            return self.substitute(value)
        dtype = self.dtype if (self.dtype is not None and value.is_floating_point()) else None
        if value.device == self.device and (dtype is None or value.dtype == dtype):
            return value
        return value.to(device=self.device, dtype=dtype or value.dtype)


def _substitute_state(model: nn.Module, placement: Placement) -> dict[str, torch.Tensor]:
    tensors = dict(model.named_parameters())
    tensors.update(model.named_buffers())
    with torch.no_grad():
        return {name: placement._convert_tensor(t) for name, t in tensors.items()}


def plan_placement(
    model: nn.Module, device: str | torch.device | None, dtype: torch.dtype | None
) -> Placement:
    """Decide how to run ``model`` on ``device`` in ``dtype`` without modifying it."""
    _check_dtype(dtype)
    current = model_device(model)
    target = _as_device(device) or current
    placement = Placement(device=target, dtype=dtype)
    casts = dtype is not None and any(
        t.is_floating_point() and t.dtype != dtype for t in model.parameters()
    )
    if target != current or casts:
        placement.state = _substitute_state(model, placement)
    return placement


def fake_placement(model: nn.Module, dtype: torch.dtype | None) -> Placement:
    """A placement on fake CPU tensors: no memory, but code that creates CPU tensors works."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    mode = FakeTensorMode(allow_non_fake_inputs=True)

    def fake(value: torch.Tensor) -> torch.Tensor:
        cast = dtype if (dtype is not None and value.is_floating_point()) else value.dtype
        with mode:
            return torch.empty(tuple(value.shape), dtype=cast, device="cpu")

    placement = Placement(device=torch.device("cpu"), dtype=dtype, context=lambda: mode,
                          substitute=fake)
    placement.state = _substitute_state(model, placement)
    return placement


def _model_float_dtype(model: nn.Module) -> torch.dtype:
    for tensor in model.parameters():
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def build_inputs(
    model: nn.Module,
    placement: Placement,
    *,
    input_shape: tuple[int, ...] | None,
    batch_size: int,
    inputs: Any,
    kwargs: Mapping[str, Any] | None,
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Turn ``input_shape``/``batch_size`` or ``inputs``/``kwargs`` into forward arguments."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise InputSpecError(f"batch_size must be a positive int, got {batch_size!r}.")
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise InputSpecError(f"kwargs= must be a dict of keyword arguments, got {kwargs!r}.")
    if input_shape is not None and inputs is not None:
        raise InputSpecError(
            "give either input_shape= (a dummy input is made) or inputs=, not both.")
    if input_shape is not None:
        shape = tuple(input_shape) if isinstance(input_shape, list | tuple) else (input_shape,)
        if not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
            raise InputSpecError(
                f"input_shape must be positive ints without the batch dimension, e.g. "
                f"(1, 28, 28); got {input_shape!r}."
            )
        dtype = placement.dtype or _model_float_dtype(model)
        with placement.context():
            dummy = torch.randn((batch_size, *shape), dtype=dtype, device=placement.device)
        args: tuple[Any, ...] = (dummy,)
    elif inputs is not None:
        args = inputs if isinstance(inputs, tuple) else (inputs,)
    elif kwargs:
        args = ()
    else:
        raise InputSpecError(
            "no input: pass input_shape=(C, H, W) with batch_size=, or inputs=(tensor, ...) "
            "and/or kwargs={...} for the forward call."
        )
    return placement.convert(args), placement.convert(dict(kwargs or {}))
