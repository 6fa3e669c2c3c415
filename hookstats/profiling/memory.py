"""The memory model of a training step: live tensor bytes over the step, and the optimizer state.

What is counted (docs/training.md has the whole model): every tensor *storage* that the step
holds -- parameters, buffers, inputs, the optimizer's state (present from the start: the step is
a steady-state step, after the first one created it), every storage an op allocates in the
forward, the loss, the backward (activation gradients, parameter gradients) and the optimizer
step (its temporaries) -- from the moment the op returns it until its last reference dies.
:class:`LiveBytes` follows them by identity with weak references (a view shares its base's
storage and costs nothing more), on real, meta and fake tensors alike, and keeps the peak and
when it happened. What is not counted: allocator rounding and fragmentation, kernel workspaces
(cuBLAS, cuDNN, oneDNN scratch), the CUDA context, and memory outside tensors.

The optimizer never touches the model: :func:`optimizer_memory` builds it on meta stand-ins of
the trainable parameters (with meta gradients) and runs one step: the state it creates is
measured (dtype-aware: AdamW keeps two tensors like each parameter, SGD with momentum one) and
the peak of its temporaries is added on top of what is live when the step's optimizer runs.

May import: torch and :mod:`hookstats.errors`.

Example:
    >>> live = LiveBytes()
    >>> a = torch.empty(256, device="meta")  # 1 KiB
    >>> live.note(a); live.note(a[:10]); live.live  # a view adds nothing
    1024
    >>> del a; live.live, live.peak
    (0, 1024)
"""

from __future__ import annotations

import dataclasses
import functools
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ..errors import InputSpecError

__all__ = [
    "OPTIMIZERS",
    "LiveBytes",
    "MemoryEstimate",
    "OptimizerMemory",
    "OptimizerSpec",
    "StorageSet",
    "optimizer_memory",
    "optimizer_name",
    "storage_bytes",
    "storage_of",
]

Where = tuple[str, str | None]
OptimizerSpec = str | type | Callable[[list[torch.Tensor]], torch.optim.Optimizer] | None


def _tensors(value: Any) -> Iterable[torch.Tensor]:
    """The tensors of an op's result: a tensor, or a (nested) tuple/list of them."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _tensors(item)


def storage_of(tensor: torch.Tensor) -> torch.UntypedStorage | None:
    """The storage behind ``tensor``; None for a layout without one (sparse tensors), whose
    bytes are not counted."""
    if tensor.layout != torch.strided:
        return None
    try:
        return tensor.untyped_storage()
    except (RuntimeError, NotImplementedError):  # a subclass without storage
        return None


def storage_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind ``tensors`` (a tied or aliased tensor counts once).

    >>> w = torch.zeros(4, 4)
    >>> storage_bytes([w, w.t(), torch.zeros(2)])  # 16 * 4 + 2 * 4
    72
    """
    seen: dict[int, int] = {}
    for tensor in tensors:
        storage = storage_of(tensor)
        if storage is not None:
            seen[id(storage)] = storage.nbytes()
    return sum(seen.values())


class StorageSet:
    """A set of tensor storages by identity that forgets a storage when it dies."""

    def __init__(self) -> None:
        self._refs: dict[int, weakref.ref[Any]] = {}

    def add(self, storage: torch.UntypedStorage) -> bool:
        """Add ``storage``; True when it was not in the set."""
        key = id(storage)
        if key in self._refs:
            return False
        self._refs[key] = weakref.ref(storage, partial(self._forget, key))
        return True

    def _forget(self, key: int, _ref: Any) -> None:
        self._refs.pop(key, None)

    def clear(self) -> None:
        """Drop every weak reference (their callbacks never run)."""
        self._refs.clear()


class LiveBytes:
    """Bytes of the tensor storages alive now, the peak, and where the step was at the peak.

    ``where`` returns ``(phase, hook point)`` for the peak; :meth:`note` is called with every
    op's result, :meth:`hold` with what exists before the step, :meth:`ignore` with stand-ins
    whose bytes are already counted (the optimizer's meta shadows).
    """

    def __init__(self, where: Callable[[], Where] | None = None) -> None:
        self._where = where or (lambda: ("step", None))
        self._sizes: dict[int, int] = {}
        self._refs: dict[int, weakref.ref[Any]] = {}
        self.live = 0
        self.peak = 0
        self.peak_where: Where = ("start", None)

    def _track(self, storage: torch.UntypedStorage, nbytes: int) -> None:
        key = id(storage)
        self._sizes[key] = nbytes
        self._refs[key] = weakref.ref(storage, partial(self._release, key))
        self.live += nbytes

    def _release(self, key: int, _ref: Any) -> None:
        self._refs.pop(key, None)
        self.live -= self._sizes.pop(key, 0)

    def _update_peak(self) -> None:
        if self.live > self.peak:
            self.peak = self.live
            self.peak_where = self._where()

    def note(self, value: Any) -> None:
        """Count the storages of ``value`` (an op's result) not seen before; a seen storage
        whose size changed (``resize_``) is counted at its new size."""
        sizes = self._sizes
        for tensor in _tensors(value):
            storage = storage_of(tensor)
            if storage is None:
                continue
            known = sizes.get(id(storage))
            if known is None:
                self._track(storage, storage.nbytes())
            elif known:
                nbytes = storage.nbytes()
                if nbytes != known:
                    sizes[id(storage)] = nbytes
                    self.live += nbytes - known
        self._update_peak()

    def hold(self, tensors: Iterable[torch.Tensor]) -> None:
        """Count tensors that exist before the step (parameters, buffers, inputs)."""
        self.note(list(tensors))

    def ignore(self, tensors: Iterable[torch.Tensor]) -> None:
        """Know ``tensors`` without counting them (their bytes are counted elsewhere)."""
        for tensor in tensors:
            storage = storage_of(tensor)
            if storage is not None and id(storage) not in self._sizes:
                self._track(storage, 0)

    def add(self, nbytes: int) -> None:
        """Count ``nbytes`` that live through the whole step (the optimizer state)."""
        self.live += nbytes
        self._update_peak()

    def add_transient(self, nbytes: int) -> None:
        """Count ``nbytes`` allocated and freed again now (the optimizer's temporaries)."""
        self.live += nbytes
        self._update_peak()
        self.live -= nbytes

    def close(self) -> None:
        """Drop every weak reference: nothing of this tracker stays on the tensors."""
        self._refs.clear()
        self._sizes.clear()


@dataclass(slots=True)
class MemoryEstimate:
    """The memory of one training step, in bytes (see docs/training.md for the model).

    Attributes:
        parameters, buffers, inputs: what exists before the step (distinct storages).
        gradients: the parameters' gradients after backward (trainable parameters only).
        optimizer_state: the optimizer's state (0 without an optimizer).
        saved_activations: bytes saved for backward (distinct storages, parameters excluded).
        peak: the most live tensor bytes at any moment of the step.
        peak_phase: ``"forward"``, ``"loss"``, ``"backward"`` or ``"optimizer"``.
        peak_hook_point: the hook point running at the peak (None outside every one).
        optimizer: the optimizer's name, or None.
    """

    parameters: int
    buffers: int
    inputs: int
    gradients: int
    optimizer_state: int
    saved_activations: int
    peak: int
    peak_phase: str
    peak_hook_point: str | None
    optimizer: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict (for a frame or JSON)."""
        return dataclasses.asdict(self)


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

    Example:
        >>> w = torch.empty(10, 10, device="meta")
        >>> optimizer_memory("adamw", [w], count_cpu=False).state_bytes  # 2 * 100 * 4
        800
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
