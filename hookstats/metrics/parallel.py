"""Solving many matrices at once: one worker thread per core, each with single-threaded BLAS.

Eigen-solvers (LAPACK ``dsyevd``) spend half their time in memory-bound BLAS-2 and scale poorly
with BLAS threads, while independent matrices scale almost perfectly across cores. So
:func:`parallel_map` runs one job per matrix on a thread pool (numpy releases the GIL inside
BLAS/LAPACK) with OpenBLAS set to one thread while the pool runs
(``openblas_set_num_threads_local``, OpenBLAS >= 0.3.27, the BLAS numpy's wheels ship; despite
its name it sets the process-wide count and returns the previous one). The previous count is
restored when the pool is done, also on errors; BLAS calls that *other* threads of the process
make meanwhile run single-threaded.

Without that per-thread control (another BLAS, an old OpenBLAS, a one-core machine) the jobs
run one after another in the calling thread: two multi-threaded BLAS pools fighting over the
same cores are slower than one (measured 1.8x slower on 2 cores).

Example:
    >>> list(parallel_map(lambda x: x * x, [1, 2, 3]))
    [1, 4, 9]
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

__all__ = ["parallel_map", "set_blas_threads", "worker_count"]

T = TypeVar("T")
R = TypeVar("R")
MAX_WORKERS = 8
_LOCAL_THREADS = "openblas_set_num_threads_local"
_GETTERS = (
    "openblas_get_num_threads",
    "scipy_openblas_get_num_threads64_",
    "openblas_get_num_threads64_",
)


def _candidate_libraries() -> list[str]:
    """Paths of the OpenBLAS libraries this process has loaded (numpy's bundled one first)."""
    numpy_dir = Path(np.__file__).parent
    bundled = sorted(
        str(p)
        for folder in (numpy_dir.parent / "numpy.libs", numpy_dir / ".dylibs")
        if folder.is_dir()
        for p in folder.iterdir()
        if "openblas" in p.name
    )
    mapped: list[str] = []
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            mapped = [line.split()[-1] for line in maps if "openblas" in line.lower()]
    except OSError:  # not Linux
        pass
    return list(dict.fromkeys(bundled + mapped))


@functools.cache
def _openblas() -> tuple[Callable[[int], int], Callable[[], int]] | None:
    """OpenBLAS's thread-count setter (returning the previous count) and getter, or None."""
    for path in _candidate_libraries():
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        setter = getattr(library, _LOCAL_THREADS, None)
        getter = next((getattr(library, n) for n in _GETTERS if hasattr(library, n)), None)
        if setter is not None and getter is not None:
            setter.argtypes, setter.restype = [ctypes.c_int], ctypes.c_int
            getter.argtypes, getter.restype = [], ctypes.c_int
            return setter, getter
    return None


def _set_local_threads() -> Callable[[int], int] | None:
    found = _openblas()
    return found[0] if found else None


def set_blas_threads(count: int) -> int | None:
    """Set numpy's OpenBLAS thread count for the whole process (e.g. 1 in each worker process
    of a sweep); returns the previous count, or None when it cannot be controlled."""
    setter = _set_local_threads()
    return setter(max(1, int(count))) if setter is not None else None


def worker_count() -> int:
    """Worker threads :func:`parallel_map` uses: the thread budget the process set -- the
    smaller of numpy's BLAS threads (``OPENBLAS_NUM_THREADS``, default: the cores) and torch's
    (``torch.set_num_threads``) -- capped by the usable cores and ``MAX_WORKERS``; 1 when
    OpenBLAS's thread count cannot be controlled.

    Example:
        >>> 1 <= worker_count() <= MAX_WORKERS
        True
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    found = _openblas()
    if cores <= 1 or found is None:
        return 1
    budget = min(int(found[1]()), torch.get_num_threads())
    return max(1, min(cores, budget, MAX_WORKERS))


def parallel_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    workers: int | None = None,
) -> Iterator[R]:
    """``map(fn, items)``, in order, on ``workers`` threads with one BLAS thread each.

    Jobs should be dominated by numpy/LAPACK calls (which release the GIL). Items are
    submitted up front; an exception in a job is raised when its result is reached.
    """
    items = list(items)
    workers = worker_count() if workers is None else workers
    if workers <= 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    _enter_single_threaded_blas()
    try:
        with ThreadPoolExecutor(
            max_workers=min(workers, len(items)), thread_name_prefix="hookstats-metrics"
        ) as pool:
            yield from pool.map(fn, items)
    finally:
        _leave_single_threaded_blas()


_pools_lock = threading.Lock()
_pools_running = 0
_saved_threads: int | None = None


def _enter_single_threaded_blas() -> None:
    """Set BLAS to one thread; the first of concurrent pools saves the count to restore."""
    global _pools_running, _saved_threads
    setter = _set_local_threads()
    with _pools_lock:
        previous = setter(1) if setter is not None else None
        if _pools_running == 0:
            _saved_threads = previous
        _pools_running += 1


def _leave_single_threaded_blas() -> None:
    """The last pool to finish restores the count saved by the first (concurrent
    ``compute_metrics`` calls from several threads must not leave BLAS at one thread)."""
    global _pools_running, _saved_threads
    setter = _set_local_threads()
    with _pools_lock:
        _pools_running -= 1
        if _pools_running == 0 and setter is not None and _saved_threads:
            setter(_saved_threads)
            _saved_threads = None
