"""Per-thread state of the forward a tracker is following, and the repair of a forward that
was interrupted (``KeyboardInterrupt``, ``SystemExit``).

PyTorch's always-call hooks run when a forward raises an ``Exception``, not when it is
interrupted by a ``BaseException``: then nothing tells the tracker that the forward ended, and
the MAC counter would stay on the thread's dispatch-mode stack. :class:`ForwardState` keeps the
frame of the model call that started the forward; the next forward in that thread (or the
block's exit) sees that this frame is no longer running and repairs the state
(:meth:`ForwardState.is_stale`, :func:`leave_mode`) -- a call nested inside a running forward
is told apart by its frame being an ancestor. :func:`counters_hidden` takes the counters off the
stack for a moment, so that the tracker's own work inside a forward (activation reductions) is
never counted.

May import: torch, :mod:`hookstats.counting`, :mod:`hookstats.instrument`, and the
:mod:`hookstats.tracking` sibling ``cost_cache``.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from torch._C import _len_torch_dispatch_stack
from torch.utils._python_dispatch import (
    TorchDispatchMode,
    _get_current_dispatch_mode_stack,
    _pop_mode,
    _push_mode,
)

from ..counting import MacCounter
from ..instrument import CallRecord
from ..instrument.tensors import summarize_tensors
from .cost_cache import Pending

__all__ = ["ForwardState", "counters_hidden", "leave_mode", "root_call_record", "thread_state"]


class ForwardState:
    """What one thread's forward through a tracked model is doing."""

    __slots__ = (
        "activations",
        "counter",
        "depth",
        "finished",
        "frame",
        "pending",
        "recording",
        "shadow",
    )

    def __init__(self) -> None:
        self.depth = 0
        self.pending: Pending | None = None
        self.counter: MacCounter | None = None
        self.frame: FrameType | None = None
        self.finished = False
        self.recording = False
        self.shadow: Any = None  # a compiled model's shadow count, while its forward runs
        self.activations: list[tuple[str, list[Any]]] = []  # (point, parts) of this forward

    def is_stale(self) -> bool:
        """True when a forward was started (depth > 0) whose model call is no longer running
        in this thread: it was interrupted by a ``BaseException``."""
        if self.depth == 0:
            return False
        frame: FrameType | None = sys._getframe(1)
        while frame is not None:
            if frame is self.frame:
                return False
            frame = frame.f_back
        return True

    def clear(self) -> None:
        """Back to no forward at all."""
        self.depth = 0
        self.pending = None
        self.counter = None
        self.frame = None
        self.finished = False
        self.recording = False
        self.shadow = None
        self.activations = []


def thread_state(local: threading.local) -> ForwardState:
    """The calling thread's :class:`ForwardState` in ``local`` (made on first use)."""
    state: ForwardState | None = getattr(local, "state", None)
    if state is None:
        state = local.state = ForwardState()
    return state


def leave_mode(mode: TorchDispatchMode) -> None:
    """Take ``mode`` off this thread's dispatch-mode stack, wherever it is in it: modes entered
    above it (by the interrupted forward) are taken off and put back in order."""
    from torch.utils._python_dispatch import _pop_mode, _push_mode

    stack = _get_current_dispatch_mode_stack()
    if not any(m is mode for m in stack):
        return
    above: list[Any] = []
    while stack and stack[-1] is not mode:
        above.append(_pop_mode())
        stack = _get_current_dispatch_mode_stack()
    mode.__exit__(None, None, None)  # type: ignore[no-untyped-call]
    for other in reversed(above):
        _push_mode(other)


@contextmanager
def counters_hidden() -> Iterator[None]:
    """Inside, no :class:`~hookstats.counting.MacCounter` is on this thread's dispatch-mode
    stack (every other mode stays, in order); on leaving, the stack is as it was, also when
    the body raises. Free when no dispatch mode is on.

    Example:
        >>> with MacCounter(None), counters_hidden():  # no op runs: no sink needed
        ...     _get_current_dispatch_mode_stack()
        []
    """
    stack = _get_current_dispatch_mode_stack() if _len_torch_dispatch_stack() else []
    lowest = next((i for i, m in enumerate(stack) if isinstance(m, MacCounter)), len(stack))
    popped = [_pop_mode() for _ in range(len(stack) - lowest)]  # the top first
    kept = [mode for mode in reversed(popped) if not isinstance(mode, MacCounter)]
    for mode in kept:
        _push_mode(mode)
    try:
        yield
    finally:
        for _ in kept:
            _pop_mode()
        for mode in reversed(popped):
            _push_mode(mode)


def root_call_record(
    name: str, pending: Pending, output: Any, counter: MacCounter | None, unattributed: int
) -> CallRecord:
    """The call record of the model itself, when it is a tracked point: its MACs are the
    counter's total, its own MACs those no other tracked point claimed."""
    summary = summarize_tensors(output)
    return CallRecord(
        hook_point=name,
        call_index=0,
        order=-1,
        input_bytes=pending.input_bytes,
        output_shapes=summary.shapes,
        output_elements=summary.elements,
        activation_bytes=summary.nbytes,
        macs=counter.total_macs if counter is not None else 0,
        self_macs=unattributed if counter is not None else 0,
    )
