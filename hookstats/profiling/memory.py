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

The optimizer's state and the peak of its temporaries are measured on meta stand-ins by
:mod:`hookstats.profiling.optimizer`; they come into the timeline as :meth:`LiveBytes.add` and
:meth:`LiveBytes.add_transient`.

May import: torch.

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
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

__all__ = ["LiveBytes", "MemoryEstimate", "StorageSet", "Where", "storage_bytes", "storage_of"]

Where = tuple[str, str | None]


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
