"""The optimizer's share of a training step, measured without touching the model:
:func:`optimizer_memory` builds the optimizer on meta stand-ins of the trainable parameters
(with meta gradients) and runs one step. The state it creates is measured (dtype-aware: AdamW
keeps two tensors like each parameter, SGD with momentum one), and the peak of its temporaries
with the state left out -- what every later step allocates on top of the parameters, gradients
and state.

May import: torch, :mod:`hookstats.errors` and :mod:`hookstats.profiling.memory`.

Example:
    >>> w = torch.empty(10, 10, device="meta")
    >>> optimizer_memory("adamw", [w], count_cpu=False).state_bytes  # 2 * 100 * 4
    800
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ..errors import InputSpecError
from .memory import LiveBytes, storage_bytes, storage_of

__all__ = ["OPTIMIZERS", "OptimizerMemory", "OptimizerSpec", "optimizer_memory", "optimizer_name"]

OptimizerSpec = str | type | Callable[[list[torch.Tensor]], torch.optim.Optimizer] | None


def _optimizers() -> dict[str, tuple[type[torch.optim.Optimizer], dict[str, Any]]]:
    optim = torch.optim
    table: dict[str, tuple[type[torch.optim.Optimizer], dict[str, Any]]] = {
        "sgd": (optim.SGD, {}),
        "sgd_momentum": (optim.SGD, {"momentum": 0.9}),
        "adam": (optim.Adam, {}),
        "adamw": (optim.AdamW, {}),
        "adagrad": (optim.Adagrad, {}),
        "adamax": (optim.Adamax, {}),
        "adadelta": (optim.Adadelta, {}),
        "nadam": (optim.NAdam, {}),
        "radam": (optim.RAdam, {}),
        "rmsprop": (optim.RMSprop, {}),
    }
    return table


OPTIMIZERS = tuple(sorted(_optimizers()))
"""The optimizer names ``optimizer=`` takes (torch.optim with its defaults; ``sgd`` has no
momentum, ``sgd_momentum`` momentum 0.9)."""


def optimizer_name(spec: OptimizerSpec) -> str | None:
    """A readable name for ``spec`` (checked: an unknown name raises ``InputSpecError``)."""
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec.lower() not in _optimizers():
            raise InputSpecError(
                f"optimizer={spec!r} is not a known optimizer name; use one of "
                f"{', '.join(OPTIMIZERS)}, a torch.optim.Optimizer subclass, or a factory "
                "taking the parameters, e.g. lambda params: torch.optim.SGD(params, lr=0.1, "
                "momentum=0.9)."
            )
        return spec.lower()
    if isinstance(spec, type) and issubclass(spec, torch.optim.Optimizer):
        return spec.__name__
    if callable(spec):
        return getattr(spec, "__name__", type(spec).__name__)
    raise InputSpecError(
        f"optimizer= takes a name ({', '.join(OPTIMIZERS)}), an optimizer class or a factory "
        f"of the parameters; got {type(spec).__name__}."
    )


class _AllocationTrace(LiveBytes):
    """Live bytes that also log every allocation and release, so that the peak of some
    storages alone (the temporaries) can be replayed afterwards."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[int, int]] = []  # (allocation number, +bytes or -bytes)
        self._numbers: dict[int, int] = {}

    def _track(self, storage: torch.UntypedStorage, nbytes: int) -> None:
        super()._track(storage, nbytes)
        self._numbers[id(storage)] = number = len(self.events)
        self.events.append((number, nbytes))

    def _release(self, key: int, _ref: Any) -> None:
        nbytes = self._sizes.get(key, 0)
        super()._release(key, _ref)
        number = self._numbers.pop(key, None)
        if number is not None:
            self.events.append((number, -nbytes))

    def peak_without(self, kept: Iterable[torch.Tensor]) -> int:
        """The peak of the traced bytes, leaving out the storages of ``kept``."""
        left_out = {self._numbers.get(id(s)) for s in map(storage_of, kept) if s is not None}
        live = peak = 0
        for number, delta in self.events:
            if number not in left_out:
                live += delta
                peak = max(peak, live)
        return peak


class _NoteResults(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """Hands every op's result to a :class:`LiveBytes`."""

    def __init__(self, live: LiveBytes) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._live = live

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        self._live.note(out)
        return out


@dataclass(frozen=True, slots=True)
class OptimizerMemory:
    """What the optimizer adds to a step: ``state_bytes`` (kept between steps) and
    ``transient_bytes`` (the peak of its temporaries inside a step), for optimizer ``name``."""

    name: str | None
    state_bytes: int = 0
    transient_bytes: int = 0


Signature = tuple[tuple[tuple[int, ...], torch.dtype], ...]


def optimizer_memory(
    spec: OptimizerSpec, params: Sequence[torch.Tensor], *, count_cpu: bool
) -> OptimizerMemory:
    """Run the optimizer ``spec`` once on meta stand-ins of ``params``; see the module doc.

    The step creates the state (``state_bytes``: on meta, and on the CPU for a CPU step --
    Adam's step counters) and its temporaries are traced: ``transient_bytes`` is their peak
    with the state left out -- what every later step allocates on top of the parameters,
    gradients and state (torch's optimizers run the same code in every step once the state
    exists). A name or class gives the same answer for the same shapes and dtypes, so it is
    cached (profiles over batch sizes run it once); a factory runs every time.

    Args:
        spec: a name of :data:`OPTIMIZERS`, an optimizer class, or a factory of a list of
            parameters.
        params: the trainable parameters as the step uses them (shapes and dtypes).
        count_cpu: count state kept on the CPU (a CPU step).

    """
    name = optimizer_name(spec)
    if spec is None or not params:
        return OptimizerMemory(name)
    signature: Signature = tuple((tuple(p.shape), p.dtype) for p in params)
    if isinstance(spec, str | type):
        key = spec.lower() if isinstance(spec, str) else spec
        state, transient = _measure_cached(key, signature, count_cpu)
    else:
        state, transient = _measure(spec, signature, count_cpu)
    return OptimizerMemory(name, state, transient)


@functools.lru_cache(maxsize=16)
def _measure_cached(spec: str | type, signature: Signature, count_cpu: bool) -> tuple[int, int]:
    return _measure(spec, signature, count_cpu)


def _measure(spec: OptimizerSpec, signature: Signature, count_cpu: bool) -> tuple[int, int]:
    shadows = [
        torch.empty(shape, dtype=dtype, device="meta").requires_grad_()
        for shape, dtype in signature
    ]
    for shadow in shadows:
        shadow.grad = torch.empty_like(shadow)
    optimizer = _build(spec, shadows)
    trace = _AllocationTrace()
    trace.ignore([*shadows, *(s.grad for s in shadows if s.grad is not None)])
    try:
        try:
            with _NoteResults(trace):
                optimizer.step()
        except Exception as exc:
            raise InputSpecError(
                f"optimizer={type(optimizer).__name__} could not step on stand-in parameters "
                f"(meta tensors, no values): {type(exc).__name__}: {exc}. Optimizers that read "
                "values (Adafactor's .item(), closures) cannot be measured; pick one of "
                f"{', '.join(OPTIMIZERS)} or leave optimizer= out."
            ) from exc
        state = [
            value
            for per_param in optimizer.state.values()
            for value in per_param.values()
            if isinstance(value, torch.Tensor)
        ]
        kinds = ("meta", "cpu") if count_cpu else ("meta",)
        return storage_bytes(t for t in state if t.device.type in kinds), trace.peak_without(state)
    finally:
        trace.close()


def _build(spec: OptimizerSpec, shadows: list[torch.Tensor]) -> torch.optim.Optimizer:
    if isinstance(spec, str):
        cls, options = _optimizers()[spec.lower()]
        optimizer = cls(shadows, **options)
    else:
        assert spec is not None
        try:
            optimizer = spec(shadows)
        except Exception as exc:
            raise InputSpecError(
                f"optimizer= could not be built on the parameters: {type(exc).__name__}: "
                f"{exc}. A factory takes a list of parameters, e.g. lambda params: "
                "torch.optim.AdamW(params, lr=1e-4)."
            ) from exc
    groups = getattr(optimizer, "param_groups", [])
    given = {id(p) for group in groups for p in group["params"]}
    if not isinstance(optimizer, torch.optim.Optimizer) or given - {id(s) for s in shadows}:
        raise InputSpecError(
            "optimizer= must build a torch.optim.Optimizer on the parameters it is given "
            "(hookstats passes meta stand-ins, so the model's own parameters are never "
            f"stepped); got {type(optimizer).__name__} holding other tensors."
        )
    return optimizer
