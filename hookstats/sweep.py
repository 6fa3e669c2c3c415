"""Metrics per checkpoint into a :class:`~hookstats.store.MetricStore`: during training with
:class:`CheckpointLogger`, or afterwards over saved files with :func:`sweep`.

A sweep loads each checkpoint into ``build_model()`` (safely: see :mod:`hookstats.checkpoints`),
computes its metrics and writes them in one transaction with the checkpoint's completed marker.
Checkpoints already complete are skipped, so a sweep killed at any moment and started again
loses nothing and repeats nothing. A checkpoint that fails (corrupt file, missing keys, shape
mismatch...) is recorded in the store's failures and the sweep goes on.

``executor`` is any :class:`concurrent.futures.Executor`: ``None`` computes in this process, a
``ProcessPoolExecutor(n)`` in ``n`` local processes, ``distributed.Client(address)
.get_executor()`` on a Dask cluster. Workers only compute; this process alone writes the store.
For a process or Dask executor, ``build_model`` (and ``task``) must be picklable: a top-level
function or a ``functools.partial`` of one, not a lambda or a local function.

Example:
    >>> import hookstats as hs
    >>> summary = hs.sweep("ckpts/*.pt", build_model, "runs/metrics.sqlite", run="baseline",
    ...                    metrics=["l2"])  # doctest: +SKIP
    >>> print(summary)  # doctest: +SKIP
    sweep 'baseline': 12 done, 0 skipped, 0 failed of 12 checkpoints in 3.1 s
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import pickle
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, BrokenExecutor, Executor, Future, wait
from contextlib import closing
from dataclasses import dataclass, field, replace
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from torch import nn

from .checkpoints import CheckpointsSpec, find_checkpoints, load_checkpoint, load_into
from .errors import CheckpointError, HookstatsError
from .metrics.parallel import set_blas_threads
from .points import PointSpec
from .store import IfExists, MetricStore

if TYPE_CHECKING:
    from .report import Report

__all__ = ["CheckpointLogger", "SweepSummary", "sweep"]

StoreLike = MetricStore | str | PathLike[str]
ModelFactory = Callable[[], nn.Module]


def _as_store(store: StoreLike) -> MetricStore:
    return store if isinstance(store, MetricStore) else MetricStore(store)


def _describe(value: Any) -> Any:
    """A JSON-able, run-to-run stable description of metrics/points/task settings."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [_describe(v) for v in value]
    if isinstance(value, functools.partial):
        return {"partial": _describe(value.func), "args": _describe(list(value.args))}
    if hasattr(value, "__qualname__"):  # a class or a function: by name
        return f"{getattr(value, '__module__', '?')}.{value.__qualname__}"
    text = repr(value)  # an object (a task): its repr, unless it is only an address
    return text if " at 0x" not in text and len(text) <= 200 else type(value).__qualname__


def _settings(metrics: Any, points: Any, task: Any, precision: str) -> dict[str, Any]:
    return {"metrics": _describe(metrics), "points": _describe(points),
            "task": _describe(task), "precision": precision}


def _compute_metrics(model: nn.Module, metrics: Any, points: Any, task: Any,
                     precision: str) -> pd.DataFrame:
    from .metrics import compute_metrics

    return compute_metrics(model, metrics, points, task=task, precision=precision)


class CheckpointLogger:
    """Log a model's metrics into a store during training: one transaction per checkpoint.

    Args:
        store: a :class:`MetricStore` or the path of one.
        run: the run's name; created on first use, with ``config`` and versions.
        metrics, points: passed to :func:`hookstats.metrics.compute_metrics` (default: all).
        task: for category-2 metrics (e.g. modular addition); passed through.
        precision: the precision metrics are computed in.
        config: your run metadata (JSON-able), kept with the run.

    Example:
        >>> logger = CheckpointLogger("runs/metrics.sqlite", run="baseline")  # doctest: +SKIP
        >>> for step in range(1, 10_001):  # doctest: +SKIP
        ...     train_step(model)
        ...     if step % 1000 == 0:
        ...         logger.log(model, step)
    """

    def __init__(self, store: StoreLike, run: str, metrics: Any = None, points: PointSpec = None,
                 *, task: Any = None, precision: str = "float32",
                 config: Mapping[str, Any] | None = None) -> None:
        self.store = _as_store(store)
        self.run = run
        self.metrics, self.points, self.task, self.precision = metrics, points, task, precision
        self.store.add_run(run, config=config,
                           settings=_settings(metrics, points, task, precision))

    def log(self, model: nn.Module, step: int, *, checkpoint: str | None = None,
            if_exists: IfExists = "error") -> pd.DataFrame:
        """Compute ``model``'s metrics and write them as checkpoint ``checkpoint`` (default
        ``"step:<step>"``), all rows or none. Returns the rows written.

        Raises:
            StoreError: that checkpoint is already logged (pass ``if_exists="replace"`` or
                ``"skip"``), or the store cannot be written.
        """
        start = time.perf_counter()
        frame = _compute_metrics(model, self.metrics, self.points, self.task, self.precision)
        self.store.write_checkpoint(self.run, checkpoint or f"step:{step}", step, frame,
                                    if_exists=if_exists, seconds=time.perf_counter() - start)
        return frame

    def log_profile(self, model: nn.Module, input_shape: tuple[int, ...] | None = None,
                    batch_size: int = 1, **profile_kwargs: Any) -> Report:
        """Profile ``model`` once (:func:`hookstats.profile`) and keep its layer costs with the
        run (a later call replaces them). Returns the :class:`~hookstats.Report`.

        Example:
            >>> logger.log_profile(model, input_shape=(1, 28, 28), batch_size=32)  # doctest: +SKIP
        """
        from .profile import profile

        report = profile(model, input_shape=input_shape, batch_size=batch_size, **profile_kwargs)
        self.store.write_profile(self.run, report, input_shape=input_shape,
                                 batch_size=batch_size)
        return report


@dataclass(slots=True)
class SweepSummary:
    """What a sweep did: checkpoints done now, skipped (already complete), failed.

    ``failures`` lists ``(checkpoint, "Error: message")`` for this sweep's failures; the store
    keeps them too (``store.failures(run)``).
    """

    run: str
    total: int
    done: int = 0
    skipped: int = 0
    failed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no checkpoint failed."""
        return self.failed == 0

    def __str__(self) -> str:
        return (f"sweep {self.run!r}: {self.done} done, {self.skipped} skipped, {self.failed} "
                f"failed of {self.total} checkpoints in {self.seconds:.1f} s")


@dataclass(frozen=True, slots=True)
class _Job:
    """Everything a worker needs for one checkpoint (picklable when build_model is)."""

    path: str
    key: str
    build_model: ModelFactory
    metrics: Any
    points: Any
    task: Any
    precision: str
    threads: int | None


@dataclass(frozen=True, slots=True)
class _Outcome:
    key: str
    step: int | None
    frame: pd.DataFrame | None
    error: str | None = None
    message: str | None = None
    seconds: float = 0.0


def _compute(job: _Job, model: nn.Module) -> _Outcome:
    start = time.perf_counter()
    step = None
    try:
        loaded = load_checkpoint(job.path)
        step = loaded.step
        if step is None:
            raise CheckpointError(
                f"cannot tell the step of {job.path}: save {{'model': state_dict, 'step': n}} "
                "or put the step in the file name (step_1000.pt)."
            )
        load_into(model, loaded)
        frame = _compute_metrics(model, job.metrics, job.points, job.task, job.precision)
    except Exception as exc:
        if _is_fatal(exc):
            raise
        return _Outcome(job.key, step, None, type(exc).__name__, str(exc),
                        time.perf_counter() - start)
    return _Outcome(job.key, step, frame, seconds=time.perf_counter() - start)


_worker = threading.local()  # one model per worker thread, reused across its checkpoints


def _run_job(job: _Job) -> _Outcome:
    """Worker entry point: build (once per worker thread) or reuse the model, then compute."""
    if job.threads and multiprocessing.current_process().name != "MainProcess":
        torch.set_num_threads(job.threads)
        set_blas_threads(job.threads)  # numpy's BLAS too: metrics then run serially inside
    try:
        key: Any = pickle.dumps(job.build_model)
    except Exception:
        key = id(job.build_model)
    if getattr(_worker, "key", None) != key:
        _worker.model, _worker.key = None, None
        _worker.model, _worker.key = _build(job.build_model), key
    return _compute(job, _worker.model)


def _is_fatal(exc: BaseException) -> bool:
    """A hookstats error that is not about one checkpoint (unknown metric, bad points=, a
    failing build_model) would fail every checkpoint alike: it stops the sweep instead."""
    return isinstance(exc, HookstatsError) and not isinstance(exc, CheckpointError)


def _build(build_model: ModelFactory) -> nn.Module:
    try:
        model = build_model()
    except Exception as exc:
        raise HookstatsError(f"build_model() raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise HookstatsError(f"build_model() returned {type(model).__name__}, not an nn.Module.")
    return model


def _parallelism(executor: Executor) -> int:
    workers = getattr(executor, "_max_workers", None)
    client = getattr(executor, "_client", None)
    if workers is None and client is not None:
        workers = sum(client.nthreads().values())
    return max(1, int(workers or os.cpu_count() or 1))


def _broken(exc: BaseException) -> HookstatsError:
    return HookstatsError(
        f"the executor's workers died ({type(exc).__name__}: {exc}). Checkpoints already "
        "written are kept: run the same sweep again to resume. A worker killed by the system "
        "is often out of memory: use fewer workers."
    )


def _outcomes(jobs: list[_Job], executor: Executor | None) -> Iterator[_Outcome]:
    """Yield outcomes as they finish; at most 2x the executor's workers are in flight."""
    if executor is None:
        model = _build(jobs[0].build_model) if jobs else None
        for job in jobs:
            yield _compute(job, model)  # type: ignore[arg-type]
        return
    window = 2 * _parallelism(executor)
    pending: dict[Future[_Outcome], _Job] = {}
    queue = list(reversed(jobs))
    try:
        while queue or pending:
            while queue and len(pending) < window:
                job = queue.pop()
                try:
                    pending[executor.submit(_run_job, job)] = job
                except BrokenExecutor as exc:
                    raise _broken(exc) from exc
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                job = pending.pop(future)
                exc = future.exception()
                if isinstance(exc, BrokenExecutor):
                    raise _broken(exc) from exc
                if exc is not None and _is_fatal(exc):
                    raise exc
                yield future.result() if exc is None else _Outcome(
                    job.key, None, None, type(exc).__name__, str(exc) or repr(exc))
    finally:
        for future in pending:
            future.cancel()


def _check_picklable(build_model: ModelFactory, task: Any) -> None:
    for name, value in (("build_model", build_model), ("task", task)):
        try:
            pickle.dumps(value)
        except Exception as exc:
            raise HookstatsError(
                f"{name} cannot be sent to the executor's workers ({type(exc).__name__}: {exc})."
                f" Use a top-level function or functools.partial(top_level_function, ...), not "
                "a lambda or a function defined inside another, or pass executor=None."
            ) from None


def _progress(console: Console | None, enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TextColumn("ETA"),
        TimeRemainingColumn(), console=console or Console(stderr=True), disable=not enabled,
    )


def _record(store: MetricStore, run: str, outcome: _Outcome, summary: SweepSummary) -> None:
    if outcome.frame is None:
        store.record_failure(run, outcome.key, outcome.error or "Error", outcome.message or "",
                             outcome.step)
        summary.failed += 1
        summary.failures.append((outcome.key, f"{outcome.error}: {outcome.message}"))
    elif store.write_checkpoint(run, outcome.key, outcome.step or 0, outcome.frame,
                                if_exists="skip", seconds=outcome.seconds):
        summary.done += 1
    else:  # another process completed it meanwhile
        summary.skipped += 1


def sweep(checkpoints: CheckpointsSpec, build_model: ModelFactory, store: StoreLike, run: str,
          metrics: Any = None, points: PointSpec = None, executor: Executor | None = None, *,
          task: Any = None, precision: str = "float32", progress: bool = True,
          console: Console | None = None, worker_threads: int | None = 1) -> SweepSummary:
    """Compute metrics for every saved checkpoint and write them to ``store``, resumably.

    Args:
        checkpoints: a glob (``"ckpts/*.pt"``), a folder, a file, or a list of those.
            ``.pt/.pth/.bin/.ckpt`` load with ``weights_only=True``; ``.safetensors`` need
            ``hookstats[safetensors]``. Each holds a state_dict or ``{"model": ..., "step": n}``;
            the step is read from the file, else from the last number in its name.
        build_model: builds the architecture (weights are then loaded); picklable for process
            and Dask executors (top-level function or ``functools.partial``).
        store: a :class:`MetricStore` or its path.
        run: the run's name. A run resumed with other metrics/points/task is refused.
        metrics, points, task, precision: passed to ``compute_metrics``.
        executor: ``None`` (this process), a ``ProcessPoolExecutor``, or a Dask
            ``Client.get_executor()``.
        progress: show a progress bar with ETA and a closing summary (on stderr).
        console: the rich console for them (tests inject one).
        worker_threads: torch and numpy-BLAS threads in each worker process (1 avoids
            oversubscribing cores; None leaves the defaults). This process's settings are
            never changed. Values are bit-identical across executors when the thread counts
            match; a reduction split over another number of threads may differ in the last bit.

    Returns:
        A :class:`SweepSummary` (done, skipped, failed).

    Raises:
        CheckpointError: the glob matches nothing or a listed file does not exist.
        StoreError: the store cannot be opened or written, or the run's settings differ.
        HookstatsError: ``build_model`` is not picklable for the executor, or fails.

    Example:
        >>> from concurrent.futures import ProcessPoolExecutor
        >>> with ProcessPoolExecutor(2) as pool:  # doctest: +SKIP
        ...     hs.sweep("ckpts/*.pt", build_model, "m.sqlite", run="a", executor=pool)
    """
    start = time.perf_counter()
    paths = find_checkpoints(checkpoints)
    if executor is not None:
        _check_picklable(build_model, task)
    owned = not isinstance(store, MetricStore)
    store = _as_store(store)
    try:
        summary = _sweep(paths, store, run, executor, progress, console,
                         _Job("", "", build_model, metrics, points, task, precision,
                              worker_threads))
    finally:
        if owned:
            store.close()
    summary.seconds = time.perf_counter() - start
    if progress:
        (console or Console(stderr=True)).print(str(summary))
    return summary


def _sweep(paths: list[Path], store: MetricStore, run: str,
           executor: Executor | None, progress: bool, console: Console | None,
           template: _Job) -> SweepSummary:
    store.add_run(run, settings=_settings(template.metrics, template.points, template.task,
                                          template.precision))
    complete = store.completed(run)
    keys = [str(Path(p).resolve()) for p in paths]
    jobs = [replace(template, path=str(p), key=key)
            for p, key in zip(paths, keys, strict=True) if key not in complete]
    summary = SweepSummary(run=run, total=len(paths), skipped=len(paths) - len(jobs))
    with _progress(console, progress) as bar:
        status = "{0.done} done · {0.skipped} skipped · {0.failed} failed"
        task_id = bar.add_task(f"sweep {run}", total=len(jobs), status=status.format(summary))
        with closing(_outcomes(jobs, executor)) as outcomes:
            for outcome in outcomes:
                _record(store, run, outcome, summary)
                bar.update(task_id, advance=1, status=status.format(summary))
    return summary
