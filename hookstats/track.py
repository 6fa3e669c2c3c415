"""``track()``: instrument real inference inside a ``with`` block, with low overhead.

:class:`Tracker` owns every hook it adds. Two hooks on the model itself see each forward: the
pre-hook reads the input signature (:mod:`hookstats.track_cache`) and decides how to run it;
the post-hook folds what was recorded into per-hook-point totals under a lock, so a live view
can take a snapshot from another thread at any time. Hooks never render.

* A forward with a **new signature** runs with a :class:`~hookstats.recorder.CallRecorder` on
  the tracked modules and a :class:`~hookstats.counting.MacCounter`; its totals are cached.
* A forward with a **seen signature** reuses the cached MACs. With ``timing=True`` the recorder
  stays on every tracked module (latency per call); with ``timing=False`` the forward runs with
  no per-module hook at all and cached totals are added in bulk -- except forwards 2, 4, 8, ...
  of each signature, recorded again to check the cache.

Decisions: nested ``track()`` blocks on the *same* model raise
:class:`~hookstats.errors.TrackError` (a block on a submodule composes: each tracker owns its
hooks). A forward that raises is not counted (``failed_forwards``); the counter is exited and
tracking goes on; every hook is removed when the block exits, normally or not. Only calls made
through ``model(...)`` are tracked. The model is not put in eval mode or under no_grad. The root
module, when selected, is recorded by the model hooks (its latency is the whole forward). On
CUDA, latency is taken after a ``torch.cuda.synchronize()`` (``cuda_timing="sync"``) or from
CUDA events (``"events"``), see :mod:`hookstats.track_timing`.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import Counter
from time import perf_counter
from typing import Any, Literal

import pandas as pd
import torch
from rich.console import Console
from torch import nn
from torch.utils.hooks import RemovableHandle

from .counting import MacCounter
from .errors import TrackError
from .live import LiveView
from .placement import model_device
from .points import PointSpec, select_points
from .profile import _point_infos
from .recorder import CallRecorder
from .records import CallRecord, UncountedOp, summarize_tensors
from .track_cache import (
    Pending,
    SignatureCosts,
    forward_structure,
    input_signature,
    leading_dim,
    merge_uncounted,
    root_call_record,
    should_verify,
)
from .track_report import PointStats, TrackReport
from .track_timing import CudaEventTimer, add_sync_hooks, warm_up_dispatch

__all__ = ["Tracker", "track"]

_ACTIVE: weakref.WeakSet[nn.Module] = weakref.WeakSet()
_COUNT, _RECORD, _STEADY = "count", "record", "steady"
SortKey = Literal["latency", "macs"]


class Tracker:
    """The context manager returned by :func:`track`; see the module docstring.

    Read results with :attr:`report` (a snapshot), :meth:`to_frame`, or ``rich.print(tracker)``
    -- during the block or after it.
    """

    def __init__(self, model: nn.Module, points: PointSpec = None, metrics: Any = None, *,
                 live: bool = False, timing: bool = True, console: Console | None = None,
                 sort_by: SortKey = "latency", top: int = 15,
                 cuda_timing: Literal["sync", "events"] = "sync") -> None:
        _check_options(sort_by, top, cuda_timing)
        _check_metrics(metrics)
        selected = select_points(model, points)  # also rejects a non-module
        self._model, self._points = model, selected
        self._points_spec, self._metrics = points, metrics
        self._infos, self._sizes = _point_infos(selected, None)
        self._root_name = next((p.name for p in selected if p.module is model), None)
        inner = [p for p in selected if p.module is not model]
        self._device = model_device(model)
        self._dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()),
                           torch.float32)
        self._timing = timing
        on_cuda = timing and self._device.type == "cuda"
        self._events = CudaEventTimer() if on_cuda and cuda_timing == "events" else None
        self._sync = on_cuda and cuda_timing == "sync"
        self._inner_modules = [p.module for p in inner]
        self._recorder = CallRecorder(model, inner, timing=timing and self._events is None)
        self._permanent = timing  # timing needs hooks on every forward
        self._view = LiveView(lambda: self.report, console=console, live=live,
                              sort_by=sort_by, top=top)
        self._lock = threading.Lock()
        self._handles: list[RemovableHandle] = []
        self._stats = {p.name: PointStats() for p in selected}
        self._costs: dict[tuple[Any, ...], SignatureCosts] = {}
        self._uncounted: dict[str, UncountedOp] = {}
        self._counter: MacCounter | None = None
        self._pending: Pending | None = None
        self._finished_ok = False
        self._depth = self._seen = 0
        self._forwards = self._failed = self._samples = self._unattributed = 0
        self._busy_s = self._started = self._stopped = 0.0
        self._state = "new"
        self._metric_frame: pd.DataFrame | None = None

    def __enter__(self) -> Tracker:
        if self._state != "new":
            raise TrackError("this tracker was already used: a tracker is single-use; "
                             "open a new block with hs.track(model).")
        if self._model in _ACTIVE:
            raise TrackError(
                f"track() is already active on this {type(self._model).__name__}: nested "
                "track() blocks on the same model are not supported. Use the outer tracker, "
                "or track a submodule in the inner block (hs.track(model.encoder)).")
        _ACTIVE.add(self._model)
        self._state = "active"
        try:
            warm_up_dispatch()
            self._register_hooks()
        except BaseException:
            self._remove_hooks()
            _ACTIVE.discard(self._model)
            raise
        self._started = time.perf_counter()
        self._view.start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            self._remove_hooks()
            with self._lock:
                self._exit_counter()  # still active if a KeyboardInterrupt stopped a forward
                self._recorder.reset()
                self._depth, self._pending = 0, None
                if self._events is not None:
                    self._events.discard_open()
                    self._events.resolve(self._stats, wait=True)
                self._stopped = time.perf_counter()
            if exc is None and self._metrics is not None:
                self._metric_frame = self._compute_metrics()
        finally:
            _ACTIVE.discard(self._model)
            self._state = "done"
            self._view.stop()

    def _register_hooks(self) -> None:
        root = self._model
        if self._permanent:
            self._recorder.__enter__()
        if self._sync:
            self._handles.extend(add_sync_hooks(self._inner_modules))
        if self._events is not None:
            self._handles.extend(self._events.add_hooks(self._points))
        self._handles.append(root.register_forward_pre_hook(
            self._root_pre, with_kwargs=True, prepend=True))
        self._handles.append(root.register_forward_hook(self._root_done, with_kwargs=True))
        self._handles.append(root.register_forward_hook(
            self._root_cleanup, with_kwargs=True, always_call=True))

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._recorder.remove()

    def _exit_counter(self) -> None:
        counter, self._counter = self._counter, None
        if counter is not None:
            counter.__exit__(None, None, None)

    def _mode(self, costs: SignatureCosts | None) -> str:
        if costs is None or costs.dynamic:
            return _COUNT
        if self._permanent or should_verify(costs.forwards + 1):
            return _RECORD
        return _STEADY

    def _root_pre(self, module: nn.Module, args: Any, kwargs: Any) -> None:
        self._depth += 1
        if self._depth > 1:
            return
        self._finished_ok = False
        signature = input_signature(args, kwargs)
        costs = self._costs.get(signature)
        mode = self._mode(costs)
        if mode == _STEADY:  # the hot path: no hook, no counter
            self._pending = Pending(signature, costs, mode, leading_dim(args, kwargs), 0,
                                     perf_counter())
            return
        if self._recorder.calls:  # submodules called directly, outside a forward: not tracked
            self._recorder.reset()
        if self._events is not None:
            self._events.discard_open()
        if not self._permanent:
            self._recorder.__enter__()
        input_bytes = summarize_tensors(args, kwargs).nbytes if self._root_name else 0
        if mode == _COUNT:
            self._counter = MacCounter(self._recorder)
            self._counter.__enter__()
        if self._sync:
            torch.cuda.synchronize()
        self._pending = Pending(signature, costs, mode, leading_dim(args, kwargs), input_bytes,
                                 perf_counter())

    def _root_done(self, module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        pending = self._pending
        if self._depth > 1 or pending is None:
            return
        if self._sync:
            torch.cuda.synchronize()
        elapsed = perf_counter() - pending.started
        if pending.mode == _STEADY:
            costs = pending.costs
            with self._lock:  # a steady forward: bookkeeping only, totals added at snapshots
                costs.steady += 1  # type: ignore[union-attr]
                costs.forwards += 1  # type: ignore[union-attr]
                self._count_forward(pending, elapsed)
        else:
            counter = self._counter
            self._exit_counter()
            if not self._permanent:
                self._recorder.remove()
            calls = self._recorder.calls
            if self._root_name is not None:
                calls.insert(0, root_call_record(
                    self._root_name, pending, output, counter, self._recorder.unattributed_macs,
                    elapsed if self._timing and self._events is None else None))
            with self._lock:
                self._finish(pending, calls, counter, elapsed)
            self._recorder.reset()
        self._finished_ok = True

    def _root_cleanup(self, module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        self._depth -= 1
        if self._depth > 0:
            return
        self._pending = None
        if self._finished_ok:
            return
        # The forward raised: leave the counter, drop its partial calls, keep going.
        with self._lock:
            self._exit_counter()
            self._failed += 1
        if not self._permanent:
            self._recorder.remove()
        self._recorder.reset()
        if self._events is not None:
            self._events.discard_open()

    def _finish(self, pending: Pending, calls: list[CallRecord], counter: MacCounter | None,
                elapsed: float) -> None:
        costs = self._costs.get(pending.signature)
        if counter is not None:
            merge_uncounted(self._uncounted, counter.uncounted)
            unattributed = 0 if self._root_name else self._recorder.unattributed_macs
            if costs is None:
                costs = self._costs[pending.signature] = SignatureCosts(calls, unattributed)
            self._fold(calls, with_macs=True)
            self._unattributed += unattributed
        else:
            assert costs is not None  # a recorded forward without the counter has a cache
            if forward_structure(calls) == costs.structure:
                costs.add_macs_to(self._stats)
            else:  # values steer the control flow: estimate this one, count the next ones
                costs.dynamic = True
                costs.add_macs_to(self._stats, Counter(c.hook_point for c in calls))
            self._fold(calls, with_macs=False)
            self._unattributed += costs.unattributed
        costs.forwards += 1
        self._count_forward(pending, elapsed)
        if self._events is not None:
            self._events.commit()
            self._events.resolve(self._stats, wait=False)

    def _count_forward(self, pending: Pending, elapsed: float) -> None:
        self._forwards += 1
        self._samples += pending.samples
        self._busy_s += elapsed

    def _fold(self, calls: list[CallRecord], *, with_macs: bool) -> None:
        for call in calls:
            stats = self._stats[call.hook_point]
            if stats.first_seen < 0:
                stats.first_seen = self._seen
                self._seen += 1
            stats.add_call(call)
            if with_macs:
                stats.macs += call.macs
                stats.self_macs += call.self_macs

    def _compute_metrics(self) -> pd.DataFrame:
        from .metrics import compute_metrics

        return compute_metrics(self._model, metrics=self._metrics, points=self._points_spec)

    @property
    def report(self) -> TrackReport:
        """A snapshot of everything recorded so far (safe to take from another thread)."""
        with self._lock:
            stats = {name: s.copy() for name, s in self._stats.items()}
            unattributed = self._unattributed
            for costs in self._costs.values():
                costs.add_to(stats, costs.steady)
                unattributed += costs.unattributed * costs.steady
            end = self._stopped if self._state == "done" else time.perf_counter()
            return TrackReport(
                points=self._infos, stats=stats, forwards=self._forwards,
                failed_forwards=self._failed, samples=self._samples, busy_s=self._busy_s,
                wall_s=end - self._started if self._started else 0.0, timing=self._timing,
                signatures=len(self._costs), device=str(self._device),
                dtype=str(self._dtype).replace("torch.", ""),
                uncounted_ops={k: UncountedOp(v.op, v.calls, set(v.hook_points))
                               for k, v in self._uncounted.items()},
                unattributed_macs=unattributed, parameter_sizes=self._sizes,
                metrics=self._metric_frame,
            )

    def to_frame(self) -> pd.DataFrame:
        """One row per tracked hook point; see :meth:`TrackReport.to_frame`."""
        return self.report.to_frame()

    def __rich__(self) -> Any:
        return self.report.__rich__()


def _check_metrics(metrics: Any) -> None:
    """Unknown metric names fail when the block is set up, not after the inference."""
    if metrics is None:
        return
    from .metrics import metric_registry

    needs_task = [spec.name for spec in metric_registry.resolve(metrics) if spec.category == 2]
    if needs_task:
        raise TrackError(
            f"track(metrics=) computes weight metrics; {', '.join(needs_task)} need(s) a task: "
            "call hs.compute_metrics(model, metrics, task=...) after the block instead.")


def _check_options(sort_by: str, top: int, cuda_timing: str) -> None:
    if sort_by not in ("latency", "macs"):
        raise TrackError(f"sort_by must be 'latency' or 'macs', got {sort_by!r}.")
    if not isinstance(top, int) or isinstance(top, bool) or top < 1:
        raise TrackError(f"top must be a positive int (rows shown in the table), got {top!r}.")
    if cuda_timing not in ("sync", "events"):
        raise TrackError(f"cuda_timing must be 'sync' or 'events', got {cuda_timing!r}.")


def track(model: nn.Module, points: PointSpec = None, metrics: Any = None, live: bool = False,
          timing: bool = True, console: Console | None = None, *,
          sort_by: SortKey = "latency", top: int = 15,
          cuda_timing: Literal["sync", "events"] = "sync") -> Tracker:
    """Record calls, output shapes, bytes, MACs and latency of real inference in a block.

    Args:
        model: the model whose forward calls are tracked (it is not changed, moved or put in
            eval mode).
        points: which modules to track (glob, class, list, predicate); default all.
        metrics: weight metrics computed once on exit for the tracked points and added as
            columns, e.g. ``["l1"]`` (see ``hookstats.compute_metrics``); default none.
        live: show a live table (refreshed at most 4 times a second from a snapshot) while the
            block runs; when the console is not a terminal or Jupyter, print a final table.
        timing: measure per-hook-point latency (pre-hook to post-hook). Off, a forward with a
            seen input signature runs without per-module hooks (lowest overhead).
        console: the rich console to render to. Giving one (or ``live=True``) asks for output;
            otherwise nothing is printed.
        sort_by: order of the rendered table: ``"latency"`` (total time) or ``"macs"``.
        top: rows shown in the rendered table (a totals row follows).
        cuda_timing: on CUDA, ``"sync"`` (synchronize around each call) or ``"events"``.

    Returns:
        A :class:`Tracker`; use it as a context manager.

    Raises:
        TrackError: bad options, or a nested ``track()`` on a model already tracked.
        PointSelectionError: ``points=`` selects nothing or is malformed.

    Example:
        >>> import torch, hookstats as hs
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(8, 4))
        >>> with hs.track(model, points=nn.Linear) as t:
        ...     for _ in range(3):
        ...         _ = model(torch.zeros(5, 8))
        >>> row = t.to_frame().iloc[0]
        >>> row["hook_point"], int(row["calls"]), int(row["macs"])  # MACs: 3 * 5 * 8 * 4
        ('0', 3, 480)
    """
    return Tracker(model, points, metrics, live=live, timing=timing, console=console,
                   sort_by=sort_by, top=top, cuda_timing=cuda_timing)
