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
For a process executor, ``build_model`` (and ``task``) must be picklable: a top-level function or
a ``functools.partial`` of one, not a lambda or a local function (Dask and submitit send them
with cloudpickle, which takes lambdas too).

A checkpoint is known by its content identity (:func:`~hookstats.runs.filesystem
.content_identity`: size, modification time, a hash of its first and last 64 KiB), so a swept
folder that was moved or renamed is not swept again. Every option is checked before anything is
written, and the run's settings are stored with its first computed checkpoint: a typo never
leaves a run behind. A file that cannot be read at all (a symlink loop, no permission) is a
failure like a corrupt one. Two checkpoints with one step are both kept, with a
:class:`~hookstats.runs.steps.CheckpointStepWarning`.

With ``probe=``, every job carries the probe batch (:mod:`hookstats.runs.probe`) and stores its
activation metrics beside the weight metrics; the run is stored with the probe's description.

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

import hashlib
import time
import warnings
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from os import PathLike
from pathlib import Path
from typing import Any

from rich.console import Console

from ..display import NotebookDisplay
from ..errors import HookstatsError
from ..metrics import MetricNames
from ..points import PointSpec
from .checkpoints import CheckpointsSpec, SafeGlobals, find_checkpoints
from .executors import check_executor, check_picklable, outcomes
from .filesystem import content_identity
from .jobs import Job, ModelFactory, Outcome, here
from .logger import StoreLike, as_store, check_run, run_settings
from .probe import ProbeLike, as_probe, check_plan
from .progress import progress_bar
from .readers import check_safe_globals
from .rows import check_name
from .shards import is_index, shard_names
from .steps import CheckpointStepWarning
from .store import MetricStore

__all__ = ["SweepSummary", "checkpoint_identity", "display_name", "sweep"]


@dataclass(slots=True)
class SweepSummary(NotebookDisplay):
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
    notes: list[str] = field(default_factory=list)

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


class _Recorder:
    """Writes outcomes into the store: the run (with its settings) goes in with the first
    computed checkpoint; failures before it wait, so that a sweep stopped by an error that
    fails every checkpoint (a typo in ``points=``) writes nothing."""

    def __init__(self, store: MetricStore, run: str, settings: dict[str, Any]) -> None:
        self.store, self.run, self.settings = store, run, settings
        self.summary = SweepSummary(run=run, total=0)
        self.waiting: list[Outcome] = []
        self.added = False
        self.steps: dict[int, str] = {}
        if check_run(store, run, settings):
            stored = store.checkpoints(run)
            self.steps = dict(zip(stored["step"].map(int), stored["checkpoint"], strict=True))

    def _add_run(self) -> None:
        if not self.added:
            self.store.add_run(self.run, settings=self.settings)
            self.added = True
            for waiting in self.waiting:
                self._failure(waiting)
            self.waiting = []

    def _failure(self, outcome: Outcome) -> None:
        self.store.record_failure(
            self.run, outcome.key, outcome.error or "Error", outcome.message or "", outcome.step
        )

    def _note(self, text: str) -> None:
        self.summary.notes.append(text)
        warnings.warn(CheckpointStepWarning(text), stacklevel=4)

    def record(self, outcome: Outcome, checkpoint: str) -> None:
        summary = self.summary
        for note in outcome.notes:
            self._note(note)
        if outcome.frame is None:
            summary.failed += 1
            summary.failures.append((checkpoint, f"{outcome.error}: {outcome.message}"))
            outcome = replace(outcome, key=checkpoint)  # failures are kept by file name
            if self.added:
                self._failure(outcome)
            else:
                self.waiting.append(outcome)
            return
        step = outcome.step or 0
        self._add_run()
        if step in self.steps and self.steps[step] != checkpoint:
            self._note(f"{checkpoint} and {self.steps[step]} both have step {step}; both are kept")
        if self.store.write_checkpoint(
            self.run,
            checkpoint,
            step,
            outcome.frame,
            if_exists="skip",
            seconds=outcome.seconds,
            identity=outcome.key,
        ):
            summary.done += 1
            self.steps.setdefault(step, checkpoint)
        else:  # another process completed it meanwhile
            summary.skipped += 1

    def finish(self) -> SweepSummary:
        if self.waiting:
            self._add_run()
        return self.summary


def checkpoint_identity(path: str | PathLike[str]) -> str:
    """The key a sweep gives a checkpoint in the store: the content identity of the file
    (size, mtime, a hash of its first and last 64 KiB), or, for a sharded checkpoint's
    ``*.index.json``, a hash of the identities of the index and every shard. A training
    callback keys the checkpoints it logs with it, so that a later sweep skips them.

    Raises:
        OSError: a file cannot be read.
        CheckpointError: a sharded index that cannot be read.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "step_1.pt"
        >>> _ = path.write_bytes(b"weights")
        >>> checkpoint_identity(path).startswith("7:")  # 7 bytes
        True
    """
    path = Path(path)
    if not is_index(path):
        return content_identity(path)
    parts = [content_identity(path)] + [
        content_identity(path.parent / name) for name in shard_names(path)
    ]
    return "sharded:" + hashlib.blake2b("|".join(parts).encode(), digest_size=16).hexdigest()


def _check_arguments(
    run: str, max_in_flight: int | None, worker_threads: int | None, progress: bool
) -> None:
    check_name(run, "run")
    for name, value in (("max_in_flight", max_in_flight), ("worker_threads", worker_threads)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise HookstatsError(f"{name} must be a positive int or None, got {value!r}.")
    if not isinstance(progress, bool):
        raise HookstatsError(f"progress must be True or False, got {progress!r}.")


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
    safe_globals: SafeGlobals = None,
    probe: ProbeLike = None,
) -> SweepSummary:
    """Compute metrics for every saved checkpoint and write them to ``store``, resumably.

    Args:
        checkpoints: a glob (``"ckpts/*.pt"``), a folder, a file, or a list of those.
            ``.pt/.pth/.bin/.ckpt`` load with ``weights_only=True``; ``.safetensors`` need
            ``hookstats[safetensors]``; a Hugging Face sharded checkpoint (``*.index.json``) is
            one checkpoint. Each holds a state_dict, ``{"model": ..., "step": n}`` or a
            Lightning ``.ckpt``; the step is read from the file, else from its name
            (``step_N``, ``global_step=N``, ``checkpoint-N/``; see :mod:`hookstats.runs.steps`).
        build_model: builds the architecture (weights are then loaded); picklable for process
            and Dask executors (top-level function or ``functools.partial``).
        store: a :class:`MetricStore` or its path.
        run: the run's name. A run resumed with other metrics/points/task is refused.
        points, metrics, task, precision: passed to ``compute_metrics``.
        probe: ``(inputs, kwargs)``, a batch run once per checkpoint (eval mode, no grad) for
            the activation metrics in ``metrics`` (``None``: all of them), stored with the
            weight metrics in the same transaction. Sent to the workers with each job (its
            tensors pickle); moved to the device of the model ``build_model`` returns. The run
            is stored with the probe's description (shapes, dtypes, a hash of its contents):
            resuming it with another probe is refused.
        executor: ``None`` (this process), a ``ProcessPoolExecutor``, or a Dask
            ``Client.get_executor()``.
        max_in_flight: jobs submitted to the executor at once (default: twice this machine's
            cores); raise it for a cluster with more workers than that.
        progress: show a progress bar with ETA and a closing summary (on stderr).
        console: the rich console for them (tests inject one).
        worker_threads: torch and numpy-BLAS threads in each worker process (1 avoids
            oversubscribing cores; None leaves the defaults). This process's settings are
            never changed (a worker is a process other than this one, whatever its name).
            Values are bit-identical across executors when the thread counts match; a
            reduction split over another number of threads may differ in the last bit.
        safe_globals: globals you trust that the checkpoints' pickles need (see
            :func:`~hookstats.runs.checkpoints.load_checkpoint`).

    Returns:
        A :class:`SweepSummary` (done, skipped, failed).

    Raises:
        CheckpointError: the glob matches nothing or a listed file does not exist.
        StoreError: the store cannot be opened or written, or the run's settings differ.
        MetricError, PointSelectionError: unknown metrics, a malformed ``points=``, activation
            metrics without ``probe=``, a malformed probe (checked before anything is
            written).
        HookstatsError: ``build_model`` is not picklable for the executor, or fails; a bad
            ``max_in_flight``/``worker_threads``/``executor``.

    Example:
        >>> from concurrent.futures import ProcessPoolExecutor
        >>> with ProcessPoolExecutor(2) as pool:  # doctest: +SKIP
        ...     hs.sweep("ckpts/*.pt", build_model, "m.sqlite", run="a", executor=pool)
    """
    start = time.perf_counter()
    _check_arguments(run, max_in_flight, worker_threads, progress)
    checked = as_probe(probe)
    check_plan(points, metrics, task, precision, checked)
    check_safe_globals(safe_globals)
    if not callable(build_model):
        raise HookstatsError(
            f"build_model must be a function that returns the model, got "
            f"{type(build_model).__name__}."
        )
    if executor is not None:
        check_executor(executor)
        check_picklable(build_model, task, executor)
    paths = find_checkpoints(checkpoints)
    owned = not isinstance(store, MetricStore)
    store = as_store(store, closed_after=owned)
    template = Job(
        "",
        "",
        build_model,
        points,
        metrics,
        task,
        precision,
        worker_threads,
        safe_globals,
        here(),
        checked,
    )
    try:
        summary = _sweep(paths, store, run, executor, max_in_flight, progress, console, template)
    finally:
        if owned:
            store.close()
    summary.seconds = time.perf_counter() - start
    if progress:
        (console or Console(stderr=True)).print(str(summary))
    return summary


def _jobs(
    paths: list[Path], template: Job, complete: set[str]
) -> tuple[list[Job], list[Outcome], int]:
    """The jobs to run (files not complete yet), failures of files that cannot be read, and
    how many were skipped. A version-1 store knows a checkpoint by its absolute path."""
    jobs, unreadable, skipped = [], [], 0
    for path in paths:
        try:
            key = checkpoint_identity(path)
        except (OSError, RuntimeError, HookstatsError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            message = f"cannot read {path}: {reason}"
            unreadable.append(Outcome(display_name(path), None, None, "CheckpointError", message))
            continue
        if key in complete or str(path.resolve()) in complete:
            skipped += 1
        else:
            jobs.append(replace(template, path=str(path), key=key))
    return jobs, unreadable, skipped


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
    settings = run_settings(
        template.metrics, template.points, template.task, template.precision, template.probe
    )
    recorder = _Recorder(store, run, settings)
    complete = store.completed(run)
    jobs, unreadable, skipped = _jobs(paths, template, complete)
    summary = recorder.summary
    summary.total, summary.skipped = len(paths), skipped
    names = {job.key: display_name(Path(job.path)) for job in jobs}
    with progress_bar(console, progress) as bar:
        status = "{0.done} done · {0.skipped} skipped · {0.failed} failed"
        task_id = bar.add_task(f"sweep {run}", total=len(jobs), status=status.format(summary))
        finished = outcomes(jobs, executor, max_in_flight)
        try:
            for outcome in finished:
                recorder.record(outcome, names.get(outcome.key, outcome.key))
                bar.update(task_id, advance=1, status=status.format(summary))
        finally:
            finished.close()
    for outcome in unreadable:
        recorder.record(outcome, outcome.key)
    return recorder.finish()


def display_name(path: str | PathLike[str]) -> str:
    """How a sweep names a checkpoint in the store (its ``checkpoint`` column): the file's
    resolved path (its absolute path when it cannot be resolved, a symlink loop)."""
    path = Path(path)
    try:
        return str(path.resolve())
    except (OSError, RuntimeError):
        return str(path.absolute())
