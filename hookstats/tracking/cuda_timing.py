"""Per-call latency on CUDA for :func:`hookstats.track`: kernels run asynchronously, so a
pre-hook to post-hook wall-clock time measures only their launch.

Two ways, chosen with ``track(cuda_timing=...)``:

* ``"sync"`` (default): :func:`add_sync_hooks` puts a ``torch.cuda.synchronize()`` just before
  the recorder reads its clock, in the pre-hook and in the post-hook of every tracked module.
  Exact, but it serialises the GPU with the host at every hook point.
* ``"events"``: :class:`CudaEventTimer` records a CUDA event pair per call and reads the elapsed
  time when the events have completed (without waiting, except when the block exits).

And on every device, :func:`warm_up_dispatch` pays the one-time cost of the first dispatch mode
in a process when a block opens, not inside the first tracked forward.

On CPU neither is used: the recorder's ``time.perf_counter()`` pair is the latency.

May import: torch, :mod:`hookstats.points`, :mod:`hookstats.counting`, :mod:`hookstats.instrument`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from ..instrument import PointStats
from ..points import HookPoint

__all__ = ["CudaEventTimer", "add_sync_hooks", "warm_up_dispatch"]


@functools.cache
def warm_up_dispatch() -> None:
    """Enter a MAC counter once per process: the first dispatch mode imports ``torch._dynamo``
    (seconds), which must not land in the first tracked forward's latency."""
    from ..counting import MacCounter
    from ..instrument import CallRecorder

    with MacCounter(CallRecorder(nn.Module(), [])):
        torch.zeros(1) + 1


def _synchronize(*_: Any, **__: Any) -> None:
    torch.cuda.synchronize()


def add_sync_hooks(modules: Iterable[nn.Module]) -> list[RemovableHandle]:
    """Synchronize CUDA before every hook of ``modules`` that reads a clock.

    The hooks are *prepended*, so they run before the recorder's own pre- and post-hooks.
    """
    handles = []
    for module in modules:
        handles.append(module.register_forward_pre_hook(_synchronize, prepend=True))
        handles.append(module.register_forward_hook(_synchronize, prepend=True))
    return handles


def _timing_event() -> Any:
    return torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]


class CudaEventTimer:
    """Time each call of the tracked modules with a pair of CUDA events.

    Events of the forward in progress are *open*; :meth:`commit` makes them pending when the
    forward completes (:meth:`discard_open` drops them when it raised), and :meth:`resolve`
    adds the elapsed time of every completed pending pair to the hook point's totals.

    Args:
        event_factory: makes an event; ``torch.cuda.Event(enable_timing=True)`` by default
            (tests inject a fake).
    """

    def __init__(self, event_factory: Callable[[], Any] | None = None) -> None:
        self._make = event_factory or _timing_event
        self._names: dict[int, str] = {}
        self._starts: dict[int, list[Any]] = {}
        self._open: list[tuple[str, Any, Any]] = []
        self._pending: list[tuple[str, Any, Any]] = []

    def add_hooks(self, points: list[HookPoint]) -> list[RemovableHandle]:
        """Register the event hooks on every tracked module; returns their handles."""
        handles = []
        for point in points:
            self._names[id(point.module)] = point.name
            handles.append(point.module.register_forward_pre_hook(self._before))
            handles.append(point.module.register_forward_hook(self._after))
        return handles

    def _before(self, module: nn.Module, args: Any) -> None:
        event = self._make()
        event.record()
        self._starts.setdefault(id(module), []).append(event)

    def _after(self, module: nn.Module, args: Any, output: Any) -> None:
        starts = self._starts.get(id(module))
        if not starts:
            return
        end = self._make()
        end.record()
        self._open.append((self._names[id(module)], starts.pop(), end))

    def commit(self) -> None:
        """The forward completed: its event pairs become pending."""
        self._pending.extend(self._open)
        self._open.clear()

    def discard_open(self) -> None:
        """The forward raised: forget its event pairs and any call left open."""
        self._open.clear()
        self._starts.clear()

    def resolve(self, stats: dict[str, PointStats], *, wait: bool) -> None:
        """Add the latency of completed pending pairs to ``stats`` (all of them if ``wait``)."""
        still = []
        for name, start, end in self._pending:
            if wait:
                end.synchronize()
            elif not end.query():
                still.append((name, start, end))
                continue
            stats[name].latency_s += start.elapsed_time(end) / 1e3  # elapsed_time is in ms
        self._pending = still
