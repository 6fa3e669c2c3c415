"""``track()``: instrument real inference inside a ``with`` block -- exact on every forward,
cheap in the steady state.

:class:`Tracker` owns every hook it adds. Two hooks on the model itself see each forward: the
pre-hook reads the forward's *work signature* (:mod:`hookstats.tracking.signature`: the shapes
of every tensor given, those a KV cache holds included, plain scalars, grad/autocast state)
and asks :class:`~.accounting.TrackAccounts` how to run it; the post-hook hands back what was
recorded. How a forward runs:

* **counted** -- a signature no cache entry or cost model covers, every forward of a model that
  reads tensor values into Python, and the check forwards 32, 64, 128, ... of each family: the
  :class:`~hookstats.instrument.recorder.CallRecorder` on the tracked modules and a
  :class:`~hookstats.counting.MacCounter`, exactly as ``profile`` counts.
* **steady** -- a signature seen before, or predicted by the family's cost model
  (:mod:`hookstats.tracking.cost_model`): with ``timing=False`` no per-module hook and no
  counter at all, the cached costs are added at the next snapshot; with ``timing=True`` the
  recorder's hooks measure latency and self time, MACs come from the cache.

Threads: the forward in progress (its depth, its counter, its records) is per thread
(:mod:`hookstats.tracking.forward_state`, and the recorder's records are per thread), the
totals are added under one lock, and the recorder's hooks are attached while any thread counts
(reference-counted); several threads calling one tracked model are each counted in full.

Decisions: nested ``track()`` blocks on the *same* model raise
:class:`~hookstats.errors.TrackError` (a block on a submodule composes). A forward that raises
-- or is interrupted by ``KeyboardInterrupt`` -- is not counted (``failed_forwards``); the
counter leaves the dispatch stack and tracking goes on. Every hook is removed when the block
exits. Only calls made through ``model(...)`` are tracked. The model is not put in eval mode or
under no_grad. A ``torch.compile`` wrapper is hooked on the outside only
(:mod:`hookstats.tracking.compiled`); a TorchScript module is refused. Uncounted ops are
warned about once per block, on exit, at the ``with`` statement. Activation metrics stream
through hooks of their own, for the whole block (:mod:`hookstats.tracking.activations`).

May import: :mod:`hookstats.counting`, :mod:`hookstats.instrument`, :mod:`hookstats.metrics`,
:mod:`hookstats.points`, :mod:`hookstats.errors` and the :mod:`hookstats.tracking` siblings.
"""

from __future__ import annotations

import sys
import threading
import time
import weakref
from time import perf_counter
from typing import Any

import pandas as pd
import torch
from rich.console import Console
from torch import nn
from torch.utils.hooks import RemovableHandle

from ..counting import MacCounter
from ..display import NotebookDisplay
from ..errors import TrackError
from ..instrument import (
    CallRecorder,
    dtype_name,
    model_device,
    model_float_dtype,
    point_infos,
)
from ..instrument.placement import autocast_dtype
from ..instrument.tensors import summarize_tensors
from ..instrument.uncounted import warn_uncounted
from ..metrics import MetricNames, compute_metrics
from ..points import PointSpec, select_points
from .accounting import RECORD, STEADY, ReportContext, TrackAccounts
from .activations import TrackedActivations, metric_frame
from .compiled import ShadowCounter, unwrap_compiled
from .cost_cache import Pending
from .cuda_timing import CudaEventTimer, add_sync_hooks, warm_up_dispatch
from .forward_state import ForwardState, leave_mode, root_call_record, thread_state
from .live import LiveView
from .options import CudaTiming, SortKey, check_metrics, check_options
from .report import TrackReport
from .signature import leading_dim, work_signature

__all__ = ["Tracker", "track"]

_ACTIVE: weakref.WeakSet[nn.Module] = weakref.WeakSet()


class Tracker(NotebookDisplay):
    """The context manager returned by :func:`track`; see the module docstring.

    Read results with :attr:`report` (a snapshot), :meth:`to_frame`, or ``rich.print(tracker)``
    -- during the block or after it.
    """

    def __init__(
        self,
        model: nn.Module,
        points: PointSpec = None,
        metrics: MetricNames = None,
        *,
        live: bool = False,
        timing: bool = True,
        console: Console | None = None,
        sort_by: SortKey = "latency",
        top: int = 15,
        cuda_timing: CudaTiming = "sync",
    ) -> None:
        check_options(sort_by, top, cuda_timing, console, live=live, timing=timing)
        weights, activations = check_metrics(metrics)
        select_points(model, points)  # rejects a non-module and a bad selection first
        eager, compiled = unwrap_compiled(model)
        selected = select_points(eager, points)
        self._hook_root, self._model, self._points = model, eager, selected
        self._points_spec, self._weight_metrics = points, weights
        infos, sizes = point_infos(selected, None)
        device = model_device(eager)
        self._root_name = next((p.name for p in selected if p.module is eager), None)
        self._activations: TrackedActivations | None = None
        if activations:
            self._activations = TrackedActivations(
                eager, model, points, activations, root_name=self._root_name, compiled=compiled
            )
        inner = [p for p in selected if p.module is not eager]
        self._context = ReportContext(
            infos,
            sizes,
            timing,
            str(device),
            dtype_name(model_float_dtype(eager)),
            outside_row=self._root_name is None,
        )
        self._timing = timing
        on_cuda = timing and device.type == "cuda" and not compiled
        self._events = CudaEventTimer() if on_cuda and cuda_timing == "events" else None
        self._sync = on_cuda and cuda_timing == "sync"
        self._inner_modules = [p.module for p in inner]
        self._recorder = CallRecorder(eager, inner, timing=timing and self._events is None)
        self._shadow = ShadowCounter(eager, inner, points) if compiled else None
        self._permanent = timing and not compiled  # timing needs hooks on every forward
        self._view = LiveView(
            lambda: self.report, console=console, live=live, sort_by=sort_by, top=top
        )
        self._accounts = TrackAccounts(
            [p.name for p in selected], outside_row=self._root_name is None
        )
        self._handles: list[RemovableHandle] = []
        self._local = threading.local()
        self._attach_lock = threading.Lock()
        self._attached = self._threads = 0
        self._started = self._stopped = 0.0
        self._state = "new"
        self._metric_frame: pd.DataFrame | None = None

    # --- the block ------------------------------------------------------------------------

    def __enter__(self) -> Tracker:
        if self._state != "new":
            raise TrackError(
                "this tracker was already used: a tracker is single-use; "
                "open a new block with hs.track(model)."
            )
        if self._model in _ACTIVE:
            raise TrackError(
                f"track() is already active on this {type(self._model).__name__}: nested "
                "track() blocks on the same model are not supported. Use the outer tracker, "
                "or track a submodule in the inner block (hs.track(model.encoder))."
            )
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
            state = thread_state(self._local)
            if state.depth:  # a forward of this thread was interrupted (KeyboardInterrupt)
                self._abandon(state)
            with self._accounts.lock:
                if self._events is not None:
                    self._events.discard_open()
                    self._events.resolve(self._accounts.stats, wait=True)
                self._stopped = time.perf_counter()
            if self._activations is not None:
                self._activations.freeze()
            if exc is None and self._weight_metrics:
                weights = self._weight_metrics
                self._metric_frame = compute_metrics(self._model, self._points_spec, weights)
        finally:
            _ACTIVE.discard(self._model)
            self._state = "done"
            self._view.stop()
        if exc is None:
            warn_uncounted(self._accounts.uncounted_ops())

    def _register_hooks(self) -> None:
        root = self._hook_root
        if self._permanent:
            self._recorder.attach()
        if self._sync:
            self._handles.extend(add_sync_hooks(self._inner_modules))
        if self._events is not None:
            self._handles.extend(self._events.add_hooks(self._points))
        if self._activations is not None:
            self._handles.extend(self._activations.add_hooks(lambda: thread_state(self._local)))
        self._handles.append(
            root.register_forward_pre_hook(self._root_pre, with_kwargs=True, prepend=True)
        )
        self._handles.append(root.register_forward_hook(self._root_done, with_kwargs=True))
        self._handles.append(
            root.register_forward_hook(self._root_cleanup, with_kwargs=True, always_call=True)
        )

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._recorder.remove()
        self._attached = 0

    def _attach(self) -> None:
        """Hooks on the tracked modules while any thread counts (reference-counted). Once a
        second thread has run a forward they stay until exit: removing a hook while another
        thread runs that module's hooks breaks its call (PyTorch reads the hooks unlocked)."""
        with self._attach_lock:
            if not self._recorder.attached and self._state == "active":
                self._recorder.attach()
            self._attached += 1

    def _detach(self) -> None:
        with self._attach_lock:
            self._attached = max(self._attached - 1, 0)
            if self._attached == 0 and not self._permanent and self._threads < 2:
                self._recorder.remove()

    # --- one forward ------------------------------------------------------------------------

    def _root_pre(self, module: nn.Module, args: Any, kwargs: Any) -> None:
        if not getattr(self._local, "seen", False):  # this thread's first forward
            self._local.seen = True
            with self._attach_lock:
                self._threads += 1
        state = thread_state(self._local)
        if state.is_stale():
            self._abandon(state)
        state.depth += 1
        if state.depth > 1:
            return
        state.frame = sys._getframe(1)
        state.finished = False
        signature = work_signature(args, kwargs, training=self._model.training)
        accounts = self._accounts
        with accounts.lock:
            if accounts.dtype is None:
                ran = autocast_dtype(model_device(self._model).type)
                accounts.dtype = dtype_name(ran) if ran is not None else ""
            mode, entry, predicted = accounts.decide(signature, timing=self._permanent)
        samples = leading_dim(args, kwargs)
        if mode == STEADY:  # the hot path: no hook, no counter
            state.pending = Pending(signature, mode, entry, predicted, samples, 0, perf_counter())
            return
        self._start_recording(state, mode, args, kwargs)
        input_bytes = summarize_tensors(args, kwargs).nbytes if self._root_name else 0
        if self._sync:
            torch.cuda.synchronize()
        state.pending = Pending(
            signature, mode, entry, predicted, samples, input_bytes, perf_counter()
        )

    def _start_recording(self, state: ForwardState, mode: str, args: Any, kwargs: Any) -> None:
        if self._events is not None:
            self._events.discard_open()
        if mode == RECORD:
            self._recorder.start(light=True)
            return
        if self._shadow is not None:
            try:
                state.shadow = self._shadow.count(args, kwargs)
                return
            except Exception as exc:  # the shadow needs values: count the compiled call
                self._shadow.failed = f"{type(exc).__name__}: {exc}"
        else:
            self._attach()
            state.recording = True
        self._recorder.start()
        state.counter = MacCounter(self._recorder)
        state.counter.__enter__()  # type: ignore[no-untyped-call]

    def _root_done(self, module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        state = thread_state(self._local)
        pending = state.pending
        if state.depth > 1 or pending is None:
            return
        if self._sync:
            torch.cuda.synchronize()
        elapsed = perf_counter() - pending.started
        if self._activations is not None:
            self._activations.commit(state)
        if pending.mode == STEADY:
            with self._accounts.lock:
                self._accounts.add_steady(pending, elapsed)
        else:
            self._finish_recorded(state, pending, output, elapsed)
        state.finished = True

    def _finish_recorded(
        self, state: ForwardState, pending: Pending, output: Any, elapsed: float
    ) -> None:
        if pending.mode == RECORD:
            self._finish_timed(pending, elapsed)
            return
        counter = state.counter
        if counter is not None:
            leave_mode(counter)
            state.counter = None
        if state.shadow is not None:
            calls, unattributed, counter = state.shadow
            state.shadow, top = None, 0.0
        else:
            calls, unattributed, top = self._recorder.take()
        if state.recording:
            self._detach()
            state.recording = False
        if self._root_name is not None:
            timed = self._timing and self._events is None
            calls.insert(
                0, root_call_record(self._root_name, pending, output, counter, unattributed)
            )
            if timed:
                calls[0].latency_s, calls[0].self_latency_s = elapsed, max(elapsed - top, 0.0)
            unattributed = 0
        assert counter is not None
        with self._accounts.lock:
            self._accounts.add_counted(pending, calls, counter, unattributed, elapsed)
            self._resolve_events()

    def _finish_timed(self, pending: Pending, elapsed: float) -> None:
        """A forward whose costs are cached, timed with the recorder's light hooks."""
        times, top = self._recorder.take_times()
        root = None
        if self._root_name is not None:
            timed = self._timing and self._events is None
            root = (self._root_name, elapsed if timed else 0.0, max(elapsed - top, 0.0) * timed)
        with self._accounts.lock:
            self._accounts.add_recorded(pending, times, root, elapsed)
            self._resolve_events()

    def _resolve_events(self) -> None:
        if self._events is not None:
            self._events.commit()
            self._events.resolve(self._accounts.stats, wait=False)

    def _root_cleanup(self, module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        state = thread_state(self._local)
        state.depth -= 1
        if state.depth > 0:
            return
        if not state.finished:  # the forward raised: drop its partial calls, keep going
            self._abandon(state)
        state.clear()

    def _abandon(self, state: ForwardState) -> None:
        """The forward of this thread ended without its post-hook (it raised, or it was
        interrupted): leave the counter, drop its records, count a failure."""
        if state.counter is not None:
            leave_mode(state.counter)
        self._recorder.reset()
        if state.recording:
            self._detach()
        if self._events is not None:
            self._events.discard_open()
        if state.pending is not None:
            with self._accounts.lock:
                self._accounts.add_failure()
        state.clear()

    # --- results ----------------------------------------------------------------------------

    @property
    def report(self) -> TrackReport:
        """A snapshot of everything recorded so far (safe to take from another thread)."""
        end = self._stopped if self._state == "done" else time.perf_counter()
        wall_s = end - self._started if self._started else 0.0
        metrics = metric_frame(self._metric_frame, self._activations)
        return self._accounts.snapshot(self._context, wall_s, metrics)

    def to_frame(self) -> pd.DataFrame:
        """One row per tracked hook point; see :meth:`TrackReport.to_frame`."""
        return self.report.to_frame()

    def __rich__(self) -> Any:
        return self.table()

    def table(
        self,
        *,
        sort_by: str | None = "track",
        top: int | None = None,
        depth: int | str | None = None,
        collapse: bool = True,
        columns: Any = None,
    ) -> Any:
        """The table of a fresh snapshot; ``sort_by``/``top`` default to those given to
        :func:`track` (``sort_by="track"``). See :meth:`TrackReport.table` for the options."""
        options: dict[str, Any] = {"depth": depth, "collapse": collapse, "columns": columns}
        if sort_by != "track":
            options["sort_by"] = sort_by
        if top is not None:
            options["top"] = top
        return self._view.table(**options)


def track(
    model: nn.Module,
    points: PointSpec = None,
    metrics: MetricNames = None,
    *,
    live: bool = False,
    timing: bool = True,
    console: Console | None = None,
    sort_by: SortKey = "latency",
    top: int = 15,
    cuda_timing: CudaTiming = "sync",
) -> Tracker:
    """Record calls, output shapes, bytes, MACs and latency of real inference in a block.

    Every forward's MACs, per hook point, are what ``hs.profile`` counts for that call: KV-cache
    decoding, value-dependent routing (mixture of experts), ``torch.inference_mode()``,
    compiled models and several threads included (docs/track.md says how, and when it runs
    the counter).

    Args:
        model: the model whose forward calls are tracked (it is not changed, moved or put in
            eval mode); a ``torch.compile(model)`` wrapper works too.
        points: which modules to track (glob, class, list, predicate); default all. Work
            outside them is the ``(outside hook points)`` row.
        metrics: metrics added as columns, e.g. ``["l1", "act_rms"]``; default none. Weight
            metrics (``hookstats.compute_metrics``) are computed once on exit; activation
            metrics (``act_mean``, ``act_rms``, ... category ``"activation"``) are streamed
            from every tracked call's outputs, and shown live.
        live: show a live table (refreshed at most 4 times a second from a snapshot) while the
            block runs; when the console is not a terminal or Jupyter, print a final table.
        timing: measure per-hook-point latency and self time (pre-hook to post-hook). Off, a
            forward whose costs are known runs without per-module hooks (lowest overhead).
        console: the rich console to render to. Giving one (or ``live=True``) asks for output;
            otherwise nothing is printed.
        sort_by: order of the rendered table: ``"latency"``/``"self_time"`` (time in the hook
            point itself), ``"total_time"`` (nested points included), ``"macs"``, or None
            (the module tree).
        top: rows shown in the rendered table (a totals row follows).
        cuda_timing: on CUDA, ``"sync"`` (synchronize around each call) or ``"events"``.

    Returns:
        A :class:`Tracker`; use it as a context manager.

    Raises:
        TrackError: bad options, a nested ``track()`` on a model already tracked, a model
            compiled in place (``model.compile()``) or a TorchScript module.
        PointSelectionError: ``points=`` selects nothing or is malformed.

    Warns:
        UncountedOpsWarning: on exit, once per block, when ops without a MAC formula ran.

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
    return Tracker(
        model,
        points,
        metrics,
        live=live,
        timing=timing,
        console=console,
        sort_by=sort_by,
        top=top,
        cuda_timing=cuda_timing,
    )
