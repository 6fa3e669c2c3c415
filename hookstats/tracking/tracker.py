"""``track()``: instrument real inference inside a ``with`` block, with low overhead.

:class:`Tracker` owns every hook it adds. Two hooks on the model itself see each forward: the
pre-hook reads the input signature (:mod:`hookstats.tracking.cost_cache`) and decides how to
run it; the post-hook hands what was recorded to :class:`~.accounting.TrackAccounts`, which adds
it up under a lock, so a live view can take a snapshot from another thread at any time. Hooks
never render.

* A forward with a **new signature** runs with a
  :class:`~hookstats.instrument.recorder.CallRecorder` on
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
CUDA events (``"events"``), see :mod:`hookstats.tracking.cuda_timing`.

May import: :mod:`hookstats.counting`, :mod:`hookstats.instrument`, :mod:`hookstats.metrics`,
:mod:`hookstats.points`, :mod:`hookstats.errors` and the :mod:`hookstats.tracking` siblings.
"""

from __future__ import annotations

import time
import weakref
from contextlib import ExitStack
from time import perf_counter
from typing import Any, Literal

import pandas as pd
import torch
from rich.console import Console
from torch import nn
from torch.utils.hooks import RemovableHandle

from ..counting import MacCounter
from ..errors import TrackError
from ..instrument import CallRecorder, dtype_name, model_device, model_float_dtype, point_infos
from ..instrument.tensors import summarize_tensors
from ..metrics import MetricNames, compute_metrics, metric_registry
from ..points import PointSpec, select_points
from .accounting import ReportContext, TrackAccounts
from .cost_cache import (
    Pending,
    SignatureCosts,
    input_signature,
    leading_dim,
    root_call_record,
    should_verify,
)
from .cuda_timing import CudaEventTimer, add_sync_hooks, warm_up_dispatch
from .live import LiveView
from .report import TrackReport

__all__ = ["Tracker", "track"]

_ACTIVE: weakref.WeakSet[nn.Module] = weakref.WeakSet()
_COUNT, _RECORD, _STEADY = "count", "record", "steady"
SortKey = Literal["latency", "macs"]
CudaTiming = Literal["sync", "events"]


class Tracker:
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
        _check_options(sort_by, top, cuda_timing)
        _check_metrics(metrics)
        selected = select_points(model, points)  # also rejects a non-module
        self._model, self._points = model, selected
        self._points_spec, self._metrics = points, metrics
        infos, sizes = point_infos(selected, None)
        device = model_device(model)
        self._context = ReportContext(
            infos, sizes, timing, str(device), dtype_name(model_float_dtype(model))
        )
        self._root_name = next((p.name for p in selected if p.module is model), None)
        inner = [p for p in selected if p.module is not model]
        self._timing = timing
        on_cuda = timing and device.type == "cuda"
        self._events = CudaEventTimer() if on_cuda and cuda_timing == "events" else None
        self._sync = on_cuda and cuda_timing == "sync"
        self._inner_modules = [p.module for p in inner]
        self._recorder = CallRecorder(model, inner, timing=timing and self._events is None)
        self._permanent = timing  # timing needs hooks on every forward
        self._view = LiveView(
            lambda: self.report, console=console, live=live, sort_by=sort_by, top=top
        )
        self._accounts = TrackAccounts([p.name for p in selected])
        self._handles: list[RemovableHandle] = []
        self._counting = ExitStack()  # holds the MAC counter while a forward is counted
        self._counter: MacCounter | None = None
        self._pending: Pending | None = None
        self._finished_ok = False
        self._depth = 0
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
            with self._accounts.lock:
                self._stop_counting()  # still active if a KeyboardInterrupt stopped a forward
                self._recorder.reset()
                self._depth, self._pending = 0, None
                if self._events is not None:
                    self._events.discard_open()
                    self._events.resolve(self._accounts.stats, wait=True)
                self._stopped = time.perf_counter()
            if exc is None and self._metrics is not None:
                self._metric_frame = compute_metrics(self._model, self._points_spec, self._metrics)
        finally:
            _ACTIVE.discard(self._model)
            self._state = "done"
            self._view.stop()

    def _register_hooks(self) -> None:
        root = self._model
        if self._permanent:
            self._recorder.attach()
        if self._sync:
            self._handles.extend(add_sync_hooks(self._inner_modules))
        if self._events is not None:
            self._handles.extend(self._events.add_hooks(self._points))
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

    def _start_counting(self) -> None:
        self._counter = self._counting.enter_context(MacCounter(self._recorder))

    def _stop_counting(self) -> None:
        self._counting.close()
        self._counter = None

    # --- one forward ------------------------------------------------------------------------

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
        costs = self._accounts.costs.get(signature)
        mode = self._mode(costs)
        samples = leading_dim(args, kwargs)
        if mode == _STEADY:  # the hot path: no hook, no counter
            self._pending = Pending(signature, costs, mode, samples, 0, perf_counter())
            return
        if self._recorder.calls:  # submodules called directly, outside a forward: not tracked
            self._recorder.reset()
        if self._events is not None:
            self._events.discard_open()
        if not self._permanent:
            self._recorder.attach()
        input_bytes = summarize_tensors(args, kwargs).nbytes if self._root_name else 0
        if mode == _COUNT:
            self._start_counting()
        if self._sync:
            torch.cuda.synchronize()
        self._pending = Pending(signature, costs, mode, samples, input_bytes, perf_counter())

    def _root_done(self, module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        pending = self._pending
        if self._depth > 1 or pending is None:
            return
        if self._sync:
            torch.cuda.synchronize()
        elapsed = perf_counter() - pending.started
        if pending.mode == _STEADY:
            with self._accounts.lock:
                self._accounts.add_steady(pending, elapsed)
        else:
            self._finish_recorded(pending, output, elapsed)
        self._finished_ok = True

    def _finish_recorded(self, pending: Pending, output: Any, elapsed: float) -> None:
        counter = self._counter
        self._stop_counting()
        if not self._permanent:
            self._recorder.remove()
        calls = self._recorder.calls
        unattributed = self._recorder.unattributed_macs
        if self._root_name is not None:
            latency = elapsed if self._timing and self._events is None else None
            root = root_call_record(
                self._root_name, pending, output, counter, unattributed, latency
            )
            calls.insert(0, root)
            unattributed = 0
        with self._accounts.lock:
            self._accounts.add_recorded(pending, calls, counter, unattributed, elapsed)
            if self._events is not None:
                self._events.commit()
                self._events.resolve(self._accounts.stats, wait=False)
        self._recorder.reset()

    def _root_cleanup(self, module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        self._depth -= 1
        if self._depth > 0:
            return
        self._pending = None
        if self._finished_ok:
            return
        # The forward raised: leave the counter, drop its partial calls, keep going.
        with self._accounts.lock:
            self._stop_counting()
            self._accounts.add_failure()
        if not self._permanent:
            self._recorder.remove()
        self._recorder.reset()
        if self._events is not None:
            self._events.discard_open()

    # --- results ----------------------------------------------------------------------------

    @property
    def report(self) -> TrackReport:
        """A snapshot of everything recorded so far (safe to take from another thread)."""
        end = self._stopped if self._state == "done" else time.perf_counter()
        wall_s = end - self._started if self._started else 0.0
        return self._accounts.snapshot(self._context, wall_s, self._metric_frame)

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

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        from ..display import mimebundle

        return mimebundle(self.table())

    def _repr_html_(self) -> str:
        from ..display import to_html

        return to_html(self.table())


def _check_metrics(metrics: MetricNames) -> None:
    """Unknown metric names fail when the block is set up, not after the inference."""
    if metrics is None:
        return
    needs_task = [spec.name for spec in metric_registry.resolve(metrics) if spec.category == 2]
    if needs_task:
        raise TrackError(
            f"track(metrics=) computes weight metrics; {', '.join(needs_task)} need(s) a task: "
            "call hs.compute_metrics(model, points, metrics, task=...) after the block instead."
        )


def _check_options(sort_by: str, top: int, cuda_timing: str) -> None:
    if sort_by not in ("latency", "macs"):
        raise TrackError(f"sort_by must be 'latency' or 'macs', got {sort_by!r}.")
    if not isinstance(top, int) or isinstance(top, bool) or top < 1:
        raise TrackError(f"top must be a positive int (rows shown in the table), got {top!r}.")
    if cuda_timing not in ("sync", "events"):
        raise TrackError(f"cuda_timing must be 'sync' or 'events', got {cuda_timing!r}.")


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
