"""Sweeps on a SLURM cluster through submitit: :class:`SubmititExecutor`, a
:class:`concurrent.futures.Executor` over a submitit executor (extra ``hookstats[slurm]``).

A sweep hands it a window of jobs at a time (``max_in_flight=``); each window goes out as one
SLURM job array (``executor.map_array``), one array task per checkpoint. A background thread
polls the jobs (every ``poll_interval`` seconds) and completes the futures the sweep waits on.
An exception raised inside a job reaches the sweep as itself (not as submitit's
``FailedJobError``), so an error that would fail every checkpoint still stops the sweep. Like
any executor, the workers only compute; the sweep's process alone writes the store, which must
therefore be on a file system the sweep's process can write, and the checkpoints on one the
nodes can read.

``submitit.LocalExecutor`` runs the same jobs as local processes: the tests use it, and it is a
way to try a SLURM sweep on a laptop.

May import: the standard library and :mod:`hookstats.errors` (submitit lazily).

Example:
    >>> import submitit  # doctest: +SKIP
    >>> slurm = submitit.AutoExecutor(folder="logs/%j")  # doctest: +SKIP
    >>> slurm.update_parameters(timeout_min=60, slurm_partition="cpu", cpus_per_task=4)
    ... # doctest: +SKIP
    >>> with SubmititExecutor(slurm) as executor:  # doctest: +SKIP
    ...     hs.sweep("ckpts/*.pt", build_model, "m.sqlite", "a", executor=executor,
    ...              max_in_flight=200, worker_threads=4)
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future, InvalidStateError
from typing import Any

from ..errors import HookstatsError

__all__ = ["SubmititExecutor"]


def _call(fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[bool, Any]:
    """Run inside a job: ``(True, result)`` or ``(False, the exception itself)``."""
    try:
        return True, fn(*args)
    except Exception as exc:
        return False, exc


class SubmititExecutor(Executor):
    """A ``concurrent.futures`` executor that submits through a submitit executor.

    Args:
        executor: a ``submitit.AutoExecutor``/``SlurmExecutor``/``LocalExecutor``, with its
            parameters (partition, time, CPUs...) already set.
        poll_interval: seconds between two looks at the jobs' states.

    Raises:
        HookstatsError: submitit is not installed, or ``executor`` is not a submitit executor.
    """

    uses_cloudpickle = True  # submitit sends functions with cloudpickle

    def __init__(self, executor: Any, *, poll_interval: float = 1.0) -> None:
        try:
            import submitit
        except ImportError:
            raise HookstatsError(
                "SubmititExecutor needs submitit: pip install hookstats[slurm]"
            ) from None
        if not isinstance(executor, submitit.core.core.Executor):
            raise HookstatsError(
                f"SubmititExecutor wraps a submitit executor (submitit.AutoExecutor(folder=...)"
                f"), got {type(executor).__name__}."
            )
        if isinstance(poll_interval, bool) or not isinstance(poll_interval, int | float):
            raise HookstatsError(f"poll_interval must be seconds > 0, got {poll_interval!r}.")
        if not poll_interval > 0:
            raise HookstatsError(f"poll_interval must be seconds > 0, got {poll_interval!r}.")
        self.executor = executor
        self.poll_interval = float(poll_interval)
        self._pending: dict[Any, Future[Any]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._poller: threading.Thread | None = None

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Submit one job (``fn(*args)``); its future completes when the job ends."""
        if kwargs:
            raise HookstatsError("SubmititExecutor.submit takes positional arguments only.")
        return self.submit_many(fn, [args], unpack=True)[0]

    def submit_many(
        self, fn: Callable[..., Any], items: Iterable[Any], *, unpack: bool = False
    ) -> list[Future[Any]]:
        """Submit ``fn(item)`` for every item as one job array; one future per item."""
        if self._closed:
            raise RuntimeError("cannot submit to a SubmititExecutor after shutdown")
        calls = [(fn, tuple(item) if unpack else (item,)) for item in items]
        if not calls:
            return []
        jobs = self.executor.map_array(_call, *zip(*calls, strict=True))
        futures: list[Future[Any]] = []
        with self._lock:
            for job in jobs:
                future: Future[Any] = Future()  # left pending, so that cancel() works
                self._pending[job] = future
                futures.append(future)
        self._start_polling()
        return futures

    def _start_polling(self) -> None:
        if self._poller is None or not self._poller.is_alive():
            self._poller = threading.Thread(
                target=self._poll, name="hookstats-submitit", daemon=True
            )
            self._poller.start()
        self._wake.set()

    def _poll(self) -> None:
        while True:
            with self._lock:
                items = list(self._pending.items())
            if not items and self._closed:
                return
            for job, future in items:
                if future.cancelled():
                    job.cancel(check=False)
                elif job.done():
                    self._settle(job, future)
                else:
                    continue
                with self._lock:
                    self._pending.pop(job, None)
            self._wake.wait(self.poll_interval)
            self._wake.clear()

    @staticmethod
    def _settle(job: Any, future: Future[Any]) -> None:
        try:
            ok, value = job.result()
        except Exception as exc:  # the job itself died (killed, timed out, node failure)
            ok, value = (
                False,
                HookstatsError(f"submitit job {job.job_id} failed: {type(exc).__name__}: {exc}"),
            )
        with contextlib.suppress(InvalidStateError):  # cancelled meanwhile
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking jobs; with ``cancel_futures`` cancel those still queued or running."""
        self._closed = True
        if cancel_futures:
            with self._lock:
                for future in self._pending.values():
                    future.cancel()
        self._wake.set()
        if wait and self._poller is not None:
            self._poller.join()
