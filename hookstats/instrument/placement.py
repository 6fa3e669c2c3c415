"""Where and in what precision a profiled forward runs -- without changing the user's model.

The model is never moved or cast. When the requested device or dtype differs from the model's,
the forward runs through :func:`torch.func.functional_call` with substitute tensors (meta
tensors allocate nothing, so a 70B-parameter model costs no memory), and the originals are back
in place when it returns or raises. A *factory* (a callable returning a module) is built under
``torch.device("meta")`` when profiling on meta, so its weights are never allocated.

Given inputs are moved by :meth:`Placement.convert`; the dummy input of ``input_shape=`` is
made by :mod:`hookstats.instrument.inputs`. :meth:`Placement.isolate` then copies every
argument the forward could change -- tensors, and objects such as a transformers
``DynamicCache`` that a forward extends in place -- so a profile never changes what the caller
passed in, on any device (on meta the copies are meta substitutes, which allocate nothing).

A factory that cannot be built under ``torch.device("meta")`` (its constructor computes with
tensor values, as torchvision's RegNet does) is built a second time with every parameter and
buffer moved to meta as soon as it is registered (:func:`build_with_meta_parameters`); the
constructor's own arithmetic then runs on CPU, one parameter at a time.

May import: torch, :mod:`hookstats.errors`, :mod:`hookstats.instrument.model_state`.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_map

from ..errors import HookstatsError, InputSpecError, MetaDeviceError
from .model_state import model_device
from .tensors import flatten

__all__ = [
    "ModelLike",
    "Placement",
    "autocast_dtype",
    "build_with_meta_parameters",
    "fake_copies",
    "fake_placement",
    "plan_placement",
    "resolve_model",
]

ModelLike = nn.Module | Callable[[], nn.Module]


def _as_device(device: str | torch.device | None) -> torch.device | None:
    if device is None:
        return None
    try:
        return torch.device(device)
    except (RuntimeError, TypeError, ValueError, OverflowError) as exc:
        raise InputSpecError(
            f"device={device!r:.60} is not a torch device: {exc}. Use 'cpu', 'meta' or 'cuda:0'."
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
    built = (
        _build_on_meta(model)
        if target is not None and target.type == "meta"
        else _call_factory(model)
    )
    if not isinstance(built, nn.Module):
        raise InputSpecError(
            f"the model factory returned {type(built).__name__}, not an nn.Module."
        )
    if target is not None and target.type != "meta":
        built = built.to(target)
    return built, True


def _call_factory(factory: Callable[[], Any]) -> Any:
    """``factory()``; a factory that cannot be called without arguments, or raises, gets an
    error that says so (the original exception is its cause)."""
    try:
        return factory()
    except HookstatsError:
        raise
    except Exception as exc:
        name = getattr(factory, "__qualname__", type(factory).__name__)
        raise InputSpecError(
            f"the model factory {name} raised {type(exc).__name__}: {exc}. A factory is "
            "called with no arguments and returns the nn.Module (e.g. lambda: MyModel(cfg))."
        ) from exc


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype ``torch.autocast`` runs matrix work in on ``device_type``, when it is on."""
    try:
        if torch.is_autocast_enabled(device_type):
            return torch.get_autocast_dtype(device_type)
    except (RuntimeError, TypeError):
        return None
    return None


def _build_on_meta(factory: Callable[[], Any]) -> Any:
    try:
        with torch.device("meta"):
            return factory()
    except Exception as meta_error:
        try:
            return build_with_meta_parameters(factory)
        except Exception as error:
            raise MetaDeviceError(
                f"the model factory cannot be built on the meta device: under "
                f"torch.device('meta') its constructor raised {type(meta_error).__name__}: "
                f"{meta_error}; built on CPU with parameters moved to meta it raised "
                f"{type(error).__name__}: {error}. Build the model yourself (on CPU, or on meta "
                "with a constructor that does not compute with tensor values) and pass the "
                "module: profile(model, device='meta') never allocates its weights."
            ) from error


@contextmanager
def _parameters_to_meta() -> Iterator[None]:
    register_parameter = nn.Module.register_parameter
    register_buffer = nn.Module.register_buffer

    def parameter_on_meta(module: nn.Module, name: str, param: Any) -> None:
        register_parameter(module, name, param)
        if param is not None and not param.is_meta:
            kind: Any = type(module._parameters[name])
            module._parameters[name] = kind(param.to("meta"), requires_grad=param.requires_grad)

    def buffer_on_meta(module: nn.Module, name: str, tensor: Any, persistent: bool = True) -> None:
        register_buffer(module, name, tensor, persistent)
        if tensor is not None and not tensor.is_meta:
            module._buffers[name] = tensor.to("meta")

    nn.Module.register_parameter = parameter_on_meta  # type: ignore[method-assign,assignment]
    nn.Module.register_buffer = buffer_on_meta  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        nn.Module.register_parameter = register_parameter  # type: ignore[method-assign]
        nn.Module.register_buffer = register_buffer  # type: ignore[method-assign]


def build_with_meta_parameters(factory: Callable[[], Any]) -> Any:
    """Call ``factory`` on CPU, moving each parameter and buffer to meta as it is registered
    (the constructor's arithmetic runs on real tensors; at most one parameter at a time is
    allocated).

    >>> build_with_meta_parameters(lambda: nn.Linear(4, 2)).weight.device
    device(type='meta')
    """
    with _parameters_to_meta():
        return factory()


def fake_copies(module: nn.Module, mode: Any) -> dict[int, Any]:
    """A ``copy.deepcopy`` memo that replaces every parameter and buffer of ``module`` by a fake
    tensor of ``mode`` (a fake parameter is still an ``nn.Parameter``)."""
    memo: dict[int, Any] = {}
    for tensor in (*module.parameters(), *module.buffers()):
        if id(tensor) not in memo:
            memo[id(tensor)] = mode.from_tensor(tensor)
    return memo


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

    def isolate(self, args: Any, kwargs: Any) -> tuple[Any, Any]:
        """Copies of ``args`` and ``kwargs`` that the forward may change freely: every tensor
        (also those held by objects such as a KV cache) converted to this placement and
        copied, every object around them copied; aliasing between arguments is kept.

        An argument that cannot be deep-copied is passed as it is, with a warning.
        """
        leaves: list[Any] = []
        flatten((args, kwargs), leaves, structure=True, objects=True, seen=set())
        memo: dict[int, Any] = {}
        with torch.no_grad():
            for leaf in leaves:
                if isinstance(leaf, torch.Tensor) and id(leaf) not in memo:
                    converted = self.convert_tensor(leaf)
                    memo[id(leaf)] = converted.clone() if converted is leaf else converted
        try:
            copied: tuple[Any, Any] = copy.deepcopy((args, kwargs), memo)
            return copied
        except Exception as exc:
            warnings.warn(
                f"profile could not copy its arguments ({type(exc).__name__}: {exc}); they are "
                "passed as they are, so a forward that changes them in place (a KV cache) "
                "changes the caller's objects.",
                stacklevel=3,
            )
            return self.convert(args), self.convert(kwargs)

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
