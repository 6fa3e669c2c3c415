"""The one object that owns forward hooks on a model: :class:`CallRecorder`.

It registers a pre-hook and a post-hook on modules, keeps the stack of modules currently
running, and writes one :class:`~hookstats.instrument.records.CallRecord` per call of a selected
hook point
(a shared module called twice gives two records). It is the sink of
:class:`~hookstats.counting.MacCounter`: MACs go to the innermost running hook point (``self``)
and roll up to the enclosing ones when a call ends (``macs``).

Only selected modules are hooked: PyTorch skips fused fast paths (``TransformerEncoderLayer``)
for modules that carry hooks, so unselected modules are left alone. Every handle is removed in
``__exit__``, also when the forward raised; the traceback then tells which module raised
(:attr:`CallRecorder.failed_in`), hooked or not. A caller that attaches and detaches across
callbacks (``track``) uses :meth:`CallRecorder.attach` and :meth:`CallRecorder.remove`, and
:meth:`CallRecorder.start`/:meth:`CallRecorder.stop` around each recorded forward.

What is being recorded is **per thread**: the call stack, the records and the MACs outside
every point belong to the thread that runs the forward, so several threads calling one hooked
model are each recorded in full; a thread that is not recording passes through the hooks.
With ``timing=True`` each record has its wall time and its *self* time (less the calls of the
nested selected points).

May import: torch, :mod:`hookstats.points`, :mod:`hookstats.instrument.records` and
:mod:`hookstats.instrument.tensors`.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from hookstats.points import select_points
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
    >>> with CallRecorder(model, select_points(model, nn.Linear)) as recorder:
    ...     _ = model(torch.zeros(2, 4))
    >>> [(c.hook_point, c.output_shapes) for c in recorder.calls]
    [('0', [(2, 8)])]
"""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from ..points import HookPoint, display_name
from .records import CallRecord
from .tensors import summarize_tensors

__all__ = ["CallRecorder", "scripted_module"]


def scripted_module(model: nn.Module) -> str | None:
    """The name of the first TorchScript module in ``model`` (itself included), if any:
    scripted modules cannot take Python forward hooks.

    >>> scripted_module(nn.Sequential(nn.Linear(2, 2))) is None
    True
    """
    script_type = getattr(torch.jit, "ScriptModule", None)
    if script_type is None:
        return None
    return next(
        (display_name(name) for name, m in model.named_modules() if isinstance(m, script_type)),
        None,
    )


class _ThreadRecord:
    """What one thread is recording: its call stack, its records, its MACs outside points.

    A *light* record (``start(light=True)``) keeps only calls and times per point
    (:attr:`times`: name -> ``[calls, latency_s, self_latency_s]``): what a forward whose
    sizes and MACs are already known needs.
    """

    __slots__ = (
        "call_counts",
        "calls",
        "light",
        "stack",
        "times",
        "top_latency_s",
        "unattributed_macs",
    )

    def __init__(self, light: bool = False) -> None:
        self.light = light
        self.times: dict[str, list[Any]] = {}
        self.stack: list[list[Any]] = []  # [record, started, child seconds]
        self.calls: list[CallRecord] = []
        self.call_counts: dict[str, int] = {}
        self.unattributed_macs = 0
        self.top_latency_s = 0.0  # time inside the outermost recorded calls


class CallRecorder:
    """Own the hooks of instrumented forwards; see the module docstring.

    Args:
        model: the model whose modules are hooked.
        points: the selected hook points; only they get call records.
        timing: record wall-clock latency (and self time) per call (pre-hook to post-hook).
    """

    def __init__(
        self,
        model: nn.Module,
        points: list[HookPoint],
        *,
        timing: bool = False,
    ) -> None:
        self._model = model
        self._point_names = {id(p.module): p.name for p in points}
        self._module_names = {id(m): display_name(n) for n, m in model.named_modules()}
        self._timing = timing
        self._handles: list[RemovableHandle] = []
        self._local = threading.local()
        self.failed_in: str | None = None

    # --- hook ownership -----------------------------------------------------------------------

    @property
    def attached(self) -> bool:
        """True while the hooks are registered."""
        return bool(self._handles)

    def attach(self) -> None:
        """Register the hooks on every selected module (all or none)."""
        modules = [m for m in self._model.modules() if id(m) in self._point_names]
        try:
            for module in modules:
                self._handles.append(
                    module.register_forward_pre_hook(self._before_call, with_kwargs=True)
                )
                self._handles.append(
                    module.register_forward_hook(self._after_call, with_kwargs=True)
                )
        except BaseException:
            self.remove()
            raise

    def remove(self) -> None:
        """Remove every hook this recorder registered (idempotent)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> CallRecorder:
        self.attach()
        self.start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc is not None:
            state = self._state()
            self.failed_in = self._raising_module(tb) or (
                state.stack[-1][0].hook_point if state is not None and state.stack else None
            )
        self.remove()
        self.stop()

    def _raising_module(self, tb: TracebackType | None) -> str | None:
        """Name of the innermost module of the model whose code is in the traceback."""
        found = None
        while tb is not None:
            owner = tb.tb_frame.f_locals.get("self")
            if isinstance(owner, nn.Module) and id(owner) in self._module_names:
                found = self._module_names[id(owner)]
            tb = tb.tb_next
        return found

    # --- what this thread records -------------------------------------------------------------

    def _state(self) -> _ThreadRecord | None:
        return getattr(self._local, "record", None)

    def start(self, *, light: bool = False) -> None:
        """Record the forwards this thread runs from now on (fresh records); ``light`` keeps
        only calls and times per point (see :meth:`take_times`)."""
        self._local.record = _ThreadRecord(light)

    def stop(self) -> None:
        """Stop recording in this thread (its records are kept until :meth:`start`)."""
        state = self._state()
        if state is not None:
            state.stack.clear()
            self._local.done = state
        self._local.record = None

    @property
    def recording(self) -> bool:
        """True while this thread records."""
        return self._state() is not None

    def _finished(self) -> _ThreadRecord:
        state = self._state()
        if state is None:
            state = getattr(self._local, "done", None) or _ThreadRecord()
        return state

    @property
    def calls(self) -> list[CallRecord]:
        """This thread's call records, in call order."""
        return self._finished().calls

    @property
    def unattributed_macs(self) -> int:
        """MACs this thread ran outside every selected hook point."""
        return self._finished().unattributed_macs

    def take(self) -> tuple[list[CallRecord], int, float]:
        """Stop recording in this thread and hand over its records, its MACs outside every
        point and the time spent inside its outermost recorded calls."""
        state = self._finished()
        self._local.record = None
        self._local.done = None
        return state.calls, state.unattributed_macs, state.top_latency_s

    def take_times(self) -> tuple[dict[str, list[Any]], float]:
        """Stop a light record in this thread and hand over ``(times, top_latency_s)``:
        per point ``[calls, latency_s, self_latency_s]``."""
        state = self._finished()
        self._local.record = None
        self._local.done = None
        return state.times, state.top_latency_s

    def reset(self) -> None:
        """Forget this thread's records and stop recording (used before a retry on another
        device, and after a forward that raised)."""
        self._local.record = None
        self._local.done = None
        self.failed_in = None

    # --- the sink the MAC counter writes to ---------------------------------------------------

    @property
    def current_point(self) -> str | None:
        """Name of the innermost selected hook point now running in this thread, if any."""
        state = self._state()
        return state.stack[-1][0].hook_point if state is not None and state.stack else None

    def add_macs(self, macs: int) -> None:
        """Attribute ``macs`` to this thread's innermost running hook point."""
        state = self._state()
        if state is None:
            return
        if state.stack:
            state.stack[-1][0].self_macs += macs
        else:
            state.unattributed_macs += macs

    def add_outside_macs(self, macs: int) -> None:
        """Add ``macs`` that this thread ran after its recorded forward, outside every hook
        point (a training step's loss function), to its unattributed MACs."""
        self._finished().unattributed_macs += macs

    # --- hooks --------------------------------------------------------------------------------

    def _before_call(self, module: nn.Module, args: Any, kwargs: Any) -> None:
        state = getattr(self._local, "record", None)
        if state is None:
            return
        name = self._point_names[id(module)]
        if state.light:
            state.stack.append([name, time.perf_counter() if self._timing else 0.0, 0.0])
            return
        counts = state.call_counts
        index = counts.get(name, 0)
        counts[name] = index + 1
        if not kwargs and len(args) == 1 and type(args[0]) is torch.Tensor:
            input_bytes = args[0].numel() * args[0].element_size()
        else:
            input_bytes = summarize_tensors(args, kwargs).nbytes
        record = CallRecord(name, index, len(state.calls), input_bytes)
        state.calls.append(record)
        state.stack.append([record, time.perf_counter() if self._timing else 0.0, 0.0])

    def _after_call(self, module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        state = getattr(self._local, "record", None)
        if state is None or not state.stack:
            return
        if state.light:
            self._time_light(state)
            return
        record, started, children = state.stack.pop()
        if self._timing:
            latency = time.perf_counter() - started
            record.latency_s = latency
            record.self_latency_s = max(latency - children, 0.0)
            if state.stack:
                state.stack[-1][2] += latency
            else:
                state.top_latency_s += latency
        summary = summarize_tensors(output)
        record.output_shapes = summary.shapes
        record.output_elements = summary.elements
        record.activation_bytes = summary.nbytes
        record.macs += record.self_macs
        if state.stack:
            state.stack[-1][0].macs += record.macs

    def _time_light(self, state: _ThreadRecord) -> None:
        name, started, children = state.stack.pop()
        latency = time.perf_counter() - started if self._timing else 0.0
        times = state.times.get(name)
        if times is None:
            times = state.times[name] = [0, 0.0, 0.0]
        times[0] += 1
        times[1] += latency
        times[2] += max(latency - children, 0.0)
        if state.stack:
            state.stack[-1][2] += latency
        else:
            state.top_latency_s += latency
