"""``sweep()``: metrics of saved checkpoints into a :class:`~hookstats.runs.store.MetricStore`.

A sweep loads each checkpoint into ``build_model()`` (safely: see
:mod:`hookstats.runs.checkpoints`),
computes its metrics and writes them in one transaction with the checkpoint's completed marker.
Checkpoints already complete are skipped, so a sweep killed at any moment and started again
loses nothing and repeats nothing. A checkpoint that fails (corrupt file, missing keys, shape
mismatch...) is recorded in the store's failures and the sweep goes on.

``executor`` is any :class:`concurrent.futures.Executor`: ``None`` computes in this process, a
``ProcessPoolExecutor(n)`` in ``n`` local processes, ``distributed.Client(address)
.get_executor()`` on a Dask cluster. Workers only compute; this process alone writes the store.
For a process or Dask executor, ``build_model`` (and ``task``) must be picklable: a top-level
function or a ``functools.partial`` of one, not a lambda or a local function.
Jobs are computed by :mod:`hookstats.runs.jobs`, submitted by :mod:`hookstats.runs.executors`,
and shown by :mod:`hookstats.runs.progress`.

Example:
    >>> import hookstats as hs
    >>> summary = hs.sweep("ckpts/*.pt", build_model, "runs/metrics.sqlite", run="baseline",
    ...                    metrics=["l2"])  # doctest: +SKIP
    >>> print(summary)  # doctest: +SKIP
    sweep 'baseline': 12 done, 0 skipped, 0 failed of 12 checkpoints in 3.1 s

May import: rich, :mod:`hookstats.metrics`, :mod:`hookstats.points` and the :mod:`hookstats.runs`
modules.
"""

from __future__ import annotations

import time
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from ..errors import HookstatsError
from ..metrics import MetricNames
from ..points import PointSpec
from .checkpoints import CheckpointsSpec, find_checkpoints
from .executors import check_picklable, outcomes
from .jobs import Job, ModelFactory, Outcome
from .logger import StoreLike, as_store, run_settings
from .progress import progress_bar
from .store import MetricStore

__all__ = ["SweepSummary", "sweep"]


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
        return (
            f"sweep {self.run!r}: {self.done} done, {self.skipped} skipped, {self.failed} "
            f"failed of {self.total} checkpoints in {self.seconds:.1f} s"
        )

    def __rich__(self) -> Any:
        from .table import sweep_view

        return sweep_view(self)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        from ..display import mimebundle

        return mimebundle(self)

    def _repr_html_(self) -> str:
        from ..display import to_html

        return to_html(self)


def _record(store: MetricStore, run: str, outcome: Outcome, summary: SweepSummary) -> None:
    if outcome.frame is None:
        store.record_failure(
            run, outcome.key, outcome.error or "Error", outcome.message or "", outcome.step
        )
        summary.failed += 1
        summary.failures.append((outcome.key, f"{outcome.error}: {outcome.message}"))
    elif store.write_checkpoint(
        run,
        outcome.key,
        outcome.step or 0,
        outcome.frame,
        if_exists="skip",
        seconds=outcome.seconds,
    ):
        summary.done += 1
    else:  # another process completed it meanwhile
        summary.skipped += 1


def sweep(
    checkpoints: CheckpointsSpec,
    build_model: ModelFactory,
    store: StoreLike,
    run: str,
    points: PointSpec = None,
    metrics: MetricNames = None,
    *,
    executor: Executor | None = None,
    max_in_flight: int | None = None,
    task: Any = None,
    precision: str = "float32",
    progress: bool = True,
    console: Console | None = None,
    worker_threads: int | None = 1,
) -> SweepSummary:
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
        points, metrics, task, precision: passed to ``compute_metrics``.
        executor: ``None`` (this process), a ``ProcessPoolExecutor``, or a Dask
            ``Client.get_executor()``.
        max_in_flight: jobs submitted to the executor at once (default: twice this machine's
            cores); raise it for a cluster with more workers than that.
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
        check_picklable(build_model, task)
    if max_in_flight is not None and (not isinstance(max_in_flight, int) or max_in_flight < 1):
        raise HookstatsError(f"max_in_flight must be a positive int, got {max_in_flight!r}.")
    owned = not isinstance(store, MetricStore)
    store = as_store(store)
    try:
        summary = _sweep(
            paths,
            store,
            run,
            executor,
            max_in_flight,
            progress,
            console,
            Job("", "", build_model, points, metrics, task, precision, worker_threads),
        )
    finally:
        if owned:
            store.close()
    summary.seconds = time.perf_counter() - start
    if progress:
        (console or Console(stderr=True)).print(str(summary))
    return summary


def _sweep(
    paths: list[Path],
    store: MetricStore,
    run: str,
    executor: Executor | None,
    max_in_flight: int | None,
    progress: bool,
    console: Console | None,
    template: Job,
) -> SweepSummary:
    store.add_run(
        run,
        settings=run_settings(template.metrics, template.points, template.task, template.precision),
    )
    complete = store.completed(run)
    keys = [str(Path(p).resolve()) for p in paths]
    jobs = [
        replace(template, path=str(p), key=key)
        for p, key in zip(paths, keys, strict=True)
        if key not in complete
    ]
    summary = SweepSummary(run=run, total=len(paths), skipped=len(paths) - len(jobs))
    with progress_bar(console, progress) as bar:
        status = "{0.done} done · {0.skipped} skipped · {0.failed} failed"
        task_id = bar.add_task(f"sweep {run}", total=len(jobs), status=status.format(summary))
        finished = outcomes(jobs, executor, max_in_flight)
        try:
            for outcome in finished:
                _record(store, run, outcome, summary)
                bar.update(task_id, advance=1, status=status.format(summary))
        finally:
            finished.close()
    return summary
