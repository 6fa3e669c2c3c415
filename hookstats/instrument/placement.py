"""Where and in what precision a profiled forward runs -- without changing the user's model.

The model is never moved or cast. When the requested device or dtype differs from the model's,
the forward runs through :func:`torch.func.functional_call` with substitute tensors (meta
tensors allocate nothing, so a 70B-parameter model costs no memory), and the originals are back
in place when it returns or raises. A *factory* (a callable returning a module) is built under
``torch.device("meta")`` when profiling on meta, so its weights are never allocated.

Given inputs are moved by :meth:`Placement.convert`; the dummy input of ``input_shape=`` is
made by :mod:`hookstats.instrument.inputs`.

May import: torch, :mod:`hookstats.errors`, :mod:`hookstats.instrument.model_state`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_map

from ..errors import InputSpecError
from .model_state import model_device

__all__ = ["ModelLike", "Placement", "fake_placement", "plan_placement", "resolve_model"]

ModelLike = nn.Module | Callable[[], nn.Module]


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
        return tree_map(self.convert_tensor, value)

    def convert_tensor(self, value: Any) -> Any:
        """One value of :meth:`convert`: a tensor moved and cast, anything else as it is."""
        if not isinstance(value, torch.Tensor):
            return value
        if self.substitute is not None:
            return self.substitute(value)
        dtype = self.dtype if (self.dtype is not None and value.is_floating_point()) else None
        if value.device == self.device and (dtype is None or value.dtype == dtype):
            return value
        return value.to(device=self.device, dtype=dtype or value.dtype)


def _substitute_state(model: nn.Module, placement: Placement) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = dict(model.named_parameters())
    tensors.update(model.named_buffers())
    with torch.no_grad():
        return {name: placement.convert_tensor(t) for name, t in tensors.items()}


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

    placement = Placement(
        device=torch.device("cpu"), dtype=dtype, context=lambda: mode, substitute=fake
    )
    placement.state = _substitute_state(model, placement)
    return placement
