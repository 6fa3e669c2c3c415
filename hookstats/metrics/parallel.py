"""Solving many matrices at once: one worker thread per core, each with single-threaded BLAS,
within a thread budget shared by every hookstats pool on the machine.

Eigen-solvers (LAPACK ``dsyevd``) spend half their time in memory-bound BLAS-2 and scale poorly
with BLAS threads, while independent matrices scale almost perfectly across cores. So
:func:`parallel_map` runs one job per matrix on a thread pool (numpy releases the GIL inside
BLAS/LAPACK) with numpy's BLAS set to one thread while the pool runs. The BLAS is reached through
threadpoolctl (``ThreadpoolController().select(user_api="blas")``: OpenBLAS with or without
numpy's ``scipy_`` symbol prefix, MKL, BLIS), not through hand-written ``ctypes``. BLAS's thread
count is process-wide: a reference count and a lock make the first of concurrent pools save it
and the last one restore it, also on errors.

**The thread budget.** A machine has ``C`` usable cores (``os.sched_getaffinity``). Each pool
asks for ``worker_count()`` threads -- the smaller of numpy's BLAS threads and torch's
(``torch.set_num_threads``), capped by ``C`` and ``MAX_WORKERS`` -- and gets as many *core
slots* as are free: ``C`` lock files in ``<tmp>/hookstats-cores-<uid>/``, each held with
``flock`` by the pool using that core and released when it ends (or its process dies). Two
hookstats processes on one machine (or two threads of one process calling ``compute_metrics``)
thus split the cores instead of each running ``C`` threads -- oversubscribed BLAS threads spin
and made two concurrent processes 4-7x slower than one. A pool that finds no free slot runs its
jobs one after another in the calling thread. Override: ``HOOKSTATS_THREADS=n`` (this process's
pools use ``n`` threads and take no slots; ``n=1`` runs everything serially), or
``parallel_map(..., workers=n)``. Worker processes of a sweep run with ``worker_threads``
(default 1) BLAS and torch threads, so their pools are serial.

Without threadpoolctl, or when numpy's BLAS cannot be controlled, or on a one-core machine,
jobs run one after another in the calling thread: two multi-threaded BLAS pools fighting over
the same cores are slower than one (measured 1.8x slower on 2 cores).

May import: numpy, torch, the standard library (threadpoolctl lazily).

Example:
    >>> list(parallel_map(lambda x: x * x, [1, 2, 3]))
    [1, 4, 9]
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import torch

__all__ = [
    "MAX_WORKERS",
    "THREADS_ENV",
    "blas_threads",
    "core_slots",
    "parallel_map",
    "set_blas_threads",
    "usable_cores",
    "worker_count",
]

_set_lock = threading.Lock()
T = TypeVar("T")
R = TypeVar("R")
MAX_WORKERS = 8
THREADS_ENV = "HOOKSTATS_THREADS"


@functools.cache
def _blas() -> Any:
    """threadpoolctl's controller of the BLAS libraries loaded in this process, or None."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    selected = ThreadpoolController().select(user_api="blas")
    return selected if selected.lib_controllers else None


def blas_threads() -> int | None:
    """numpy's BLAS thread count (the largest over loaded BLAS libraries), or None when it
    cannot be read."""
    blas = _blas()
    if blas is None:
        return None
    return max(int(lib.num_threads) for lib in blas.lib_controllers)


def set_blas_threads(count: int) -> int | None:
    """Set numpy's BLAS thread count for the whole process (e.g. 1 in each worker process of a
    sweep); returns the previous count, or None when it cannot be controlled."""
    blas = _blas()
    if blas is None:
        return None
    with _set_lock:
        previous = blas_threads()
        for lib in blas.lib_controllers:
            # threadpoolctl lets only one "controlling" thread set a process-wide OpenBLAS
            # pool (others silently do nothing); these calls are serialised here, so any
            # hookstats thread may take control for its call.
            clear = getattr(lib, "clear_controlling_thread", None)
            if clear is not None:
                clear(force=True)
            lib.set_num_threads(max(1, int(count)))
        return previous


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _env_threads() -> int | None:
    text = os.environ.get(THREADS_ENV, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{THREADS_ENV} must be a whole number >= 1, got {text!r}.")
    return value


def worker_count() -> int:
    """Worker threads :func:`parallel_map` asks for: ``HOOKSTATS_THREADS`` when set; else the
    smaller of numpy's BLAS threads (``OPENBLAS_NUM_THREADS``, default: the cores) and torch's
    (``torch.set_num_threads``), capped by the usable cores and ``MAX_WORKERS``; 1 when BLAS's
    thread count cannot be controlled.

    Example:
        >>> 1 <= worker_count() <= max(MAX_WORKERS, worker_count())
        True
    """
    forced = _env_threads()
    if forced is not None:
        return forced
    cores = usable_cores()
    with _pools_lock:  # while pools run, BLAS reads 1: the count they will restore counts
        blas = _saved_threads if _pools_running else blas_threads()
    if cores <= 1 or blas is None:
        return 1
    return max(1, min(cores, blas, torch.get_num_threads(), MAX_WORKERS))


def _slot_folder() -> Path:
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"hookstats-cores-{uid}"


_local = threading.local()  # .inside: this thread runs inside a pool (holds its slots)


def _try_slots(folder: Path, wanted: int) -> list[int]:
    import fcntl

    held: list[int] = []
    for slot in range(usable_cores()):
        if len(held) >= wanted:
            break
        fd = os.open(folder / f"slot-{slot}", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # another pool holds this core
            os.close(fd)
            continue
        held.append(fd)
    return held


@contextlib.contextmanager
def core_slots(wanted: int) -> Iterator[int]:
    """Hold up to ``wanted`` of the machine's core slots for a ``with`` block; yields how many
    it holds: 0 when other pools hold every slot (the caller then runs serially; it never
    waits, so a busy machine cannot stall it). A process that dies frees its slots. Inside a
    pool (a job calling :func:`parallel_map` again) it yields 0. Without ``flock`` (Windows)
    or a writable temporary folder it yields ``wanted``: no cross-process budget there."""
    if getattr(_local, "inside", False):
        yield 0
        return
    try:
        import fcntl  # noqa: F401
    except ImportError:  # pragma: no cover - Windows
        yield wanted
        return
    try:
        folder = _slot_folder()
        folder.mkdir(mode=0o700, exist_ok=True)
        held = _try_slots(folder, wanted)
    except OSError:  # no usable temporary folder: no budget to share
        yield wanted
        return
    try:
        yield len(held)
    finally:
        for fd in held:
            os.close(fd)  # closing releases the lock


def _mark_inside() -> None:
    _local.inside = True


def parallel_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    workers: int | None = None,
) -> Iterator[R]:
    """``map(fn, items)``, in order, on up to ``workers`` threads with one BLAS thread each.

    ``workers`` defaults to :func:`worker_count` and is then bounded by the machine-wide core
    slots (see the module's thread budget); an explicit ``workers`` takes no slots. Jobs should
    be dominated by numpy/LAPACK calls (which release the GIL). Items are submitted up front;
    an exception in a job is raised when its result is reached.
    """
    items = list(items)
    budgeted = workers is None and _env_threads() is None
    workers = worker_count() if workers is None else workers
    if workers <= 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    slots = core_slots(min(workers, len(items))) if budgeted else contextlib.nullcontext(workers)
    with slots as granted:
        threads = max(1, min(workers, len(items), granted))
        _enter_single_threaded_blas()
        outer, _local.inside = getattr(_local, "inside", False), True
        try:
            if threads == 1:
                yield from map(fn, items)
            else:
                with ThreadPoolExecutor(
                    threads, thread_name_prefix="hookstats-metrics", initializer=_mark_inside
                ) as pool:
                    yield from pool.map(fn, items)
        finally:
            _local.inside = outer
            _leave_single_threaded_blas()


_pools_lock = threading.Lock()
_pools_running = 0
_saved_threads: int | None = None


def _enter_single_threaded_blas() -> None:
    """Set BLAS to one thread; the first of concurrent pools saves the count to restore."""
    global _pools_running, _saved_threads
    with _pools_lock:
        previous = set_blas_threads(1)
        if _pools_running == 0:
            _saved_threads = previous
        _pools_running += 1


def _leave_single_threaded_blas() -> None:
    """The last pool to finish restores the count saved by the first (concurrent
    ``compute_metrics`` calls from several threads must not leave BLAS at one thread)."""
    global _pools_running, _saved_threads
    with _pools_lock:
        _pools_running -= 1
        if _pools_running == 0 and _saved_threads:
            set_blas_threads(_saved_threads)
            _saved_threads = None
