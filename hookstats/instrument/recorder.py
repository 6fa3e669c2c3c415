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
callbacks (``track``) uses :meth:`CallRecorder.attach` and :meth:`CallRecorder.remove`.

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

import time
from collections import Counter
from types import TracebackType
from typing import Any

from torch import nn
from torch.utils.hooks import RemovableHandle

from ..points import HookPoint, display_name
from .records import CallRecord
from .tensors import summarize_tensors

__all__ = ["CallRecorder"]


class CallRecorder:
    """Own the hooks of one instrumented forward; see the module docstring.

    Args:
        model: the model whose modules are hooked.
        points: the selected hook points; only they get call records.
        timing: record wall-clock latency per call (pre-hook to post-hook).
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
        self._stack: list[tuple[CallRecord, float]] = []
        self._call_counts: Counter[str] = Counter()
        self.calls: list[CallRecord] = []
        self.unattributed_macs = 0
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

    def __enter__(self) -> CallRecorder:
        self.attach()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc is not None:
            self.failed_in = self._raising_module(tb) or (
                self._stack[-1][0].hook_point if self._stack else None
            )
        self.remove()

    def _raising_module(self, tb: TracebackType | None) -> str | None:
        """Name of the innermost module of the model whose code is in the traceback."""
        found = None
        while tb is not None:
            owner = tb.tb_frame.f_locals.get("self")
            if isinstance(owner, nn.Module) and id(owner) in self._module_names:
                found = self._module_names[id(owner)]
            tb = tb.tb_next
        return found

    def remove(self) -> None:
        """Remove every hook this recorder registered (idempotent) and clear the call stack."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._stack.clear()

    def reset(self) -> None:
        """Forget recorded calls (used before a retry on another device)."""
        self.calls.clear()
        self._call_counts.clear()
        self._stack.clear()
        self.unattributed_macs = 0
        self.failed_in = None

    # --- the sink the MAC counter writes to ---------------------------------------------------

    @property
    def current_point(self) -> str | None:
        """Name of the innermost selected hook point now running, if any."""
        return self._stack[-1][0].hook_point if self._stack else None

    def add_macs(self, macs: int) -> None:
        """Attribute ``macs`` to the innermost running hook point."""
        if self._stack:
            self._stack[-1][0].self_macs += macs
        else:
            self.unattributed_macs += macs

    # --- hooks --------------------------------------------------------------------------------

    def _before_call(self, module: nn.Module, args: Any, kwargs: Any) -> None:
        name = self._point_names[id(module)]
        index = self._call_counts[name]
        self._call_counts[name] = index + 1
        record = CallRecord(
            hook_point=name,
            call_index=index,
            order=len(self.calls),
            input_bytes=summarize_tensors(args, kwargs).nbytes,
        )
        self.calls.append(record)
        self._stack.append((record, time.perf_counter() if self._timing else 0.0))

    def _after_call(self, module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        if not self._stack:
            return
        record, started = self._stack.pop()
        if self._timing:
            record.latency_s = time.perf_counter() - started
        summary = summarize_tensors(output)
        record.output_shapes = summary.shapes
        record.output_elements = summary.elements
        record.activation_bytes = summary.nbytes
        record.macs += record.self_macs
        if self._stack:
            self._stack[-1][0].macs += record.macs
