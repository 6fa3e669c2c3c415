"""The worker pool behind bulk spectra: order, errors, the BLAS thread budget, same results."""

from __future__ import annotations

import numpy as np
import pytest

from hookstats.metrics import compute_metrics
from hookstats.metrics import parallel as par

from models import TinyTransformer


def test_parallel_map_keeps_order_and_values():
    items = list(range(20))
    assert list(par.parallel_map(lambda x: x * x, items, workers=2)) == [x * x for x in items]
    assert list(par.parallel_map(lambda x: -x, items, workers=1)) == [-x for x in items]
    assert list(par.parallel_map(lambda x: x, [], workers=2)) == []


def test_parallel_map_raises_the_jobs_error_and_restores_blas_threads():
    before = par.blas_threads()

    def job(x: int) -> int:
        if x == 3:
            raise ValueError("bad matrix 3")
        return x

    with pytest.raises(ValueError, match="bad matrix 3"):
        list(par.parallel_map(job, range(8), workers=2))
    assert par.blas_threads() == before  # the process-wide BLAS thread count is back


def test_blas_runs_single_threaded_inside_the_pool_only():
    if par.blas_threads() is None:
        pytest.skip("numpy's BLAS thread count cannot be controlled (no threadpoolctl)")
    before = par.blas_threads()
    inside = list(par.parallel_map(lambda _: par.blas_threads(), range(4), workers=2))
    assert inside == [1] * 4 and par.blas_threads() == before


def test_worker_count_follows_the_blas_and_torch_thread_budget(monkeypatch):
    monkeypatch.delenv(par.THREADS_ENV, raising=False)
    monkeypatch.setattr(par.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(par, "blas_threads", lambda: 3)
    monkeypatch.setattr(par.torch, "get_num_threads", lambda: 8)
    assert par.worker_count() == 3
    monkeypatch.setattr(par.torch, "get_num_threads", lambda: 2)
    assert par.worker_count() == 2
    monkeypatch.setattr(par, "blas_threads", lambda: 1)
    assert par.worker_count() == 1
    monkeypatch.setattr(par, "blas_threads", lambda: None)  # no control over BLAS: serial
    assert par.worker_count() == 1
    monkeypatch.setenv(par.THREADS_ENV, "3")  # the documented override wins
    assert par.worker_count() == 3
    monkeypatch.setenv(par.THREADS_ENV, "zero")
    with pytest.raises(ValueError, match="HOOKSTATS_THREADS must be a whole number"):
        par.worker_count()


def test_parallel_and_serial_compute_metrics_agree(monkeypatch):
    model = TinyTransformer()
    metrics = ["sv_mean", "sv_var", "spectral_norm", "l1", "weight_median"]
    monkeypatch.setattr(par, "worker_count", lambda: 1)
    serial = compute_metrics(model, metrics=metrics)
    monkeypatch.setattr(par, "worker_count", lambda: 2)
    parallel = compute_metrics(model, metrics=metrics)
    sigma_only = compute_metrics(model, metrics=["spectral_norm"])
    np.testing.assert_allclose(parallel["value"], serial["value"], rtol=1e-12)
    np.testing.assert_allclose(
        sigma_only["value"], serial[serial.metric == "spectral_norm"]["value"], rtol=1e-7
    )


def test_set_blas_threads_sets_the_process_count_and_returns_the_previous(monkeypatch):
    monkeypatch.delenv(par.THREADS_ENV, raising=False)
    before = par.blas_threads()
    if before is None:
        assert par.set_blas_threads(1) is None
        return
    try:
        assert par.set_blas_threads(1) == before
        assert par.blas_threads() == 1 and par.worker_count() == 1  # a budget of one: serial
    finally:
        par.set_blas_threads(before)
    assert par.blas_threads() == before


def test_blas_is_reached_through_threadpoolctl_whatever_the_symbol_prefix():
    """numpy's wheels ship scipy-openblas, whose symbols carry a ``scipy_`` prefix; the old
    ctypes lookup of the unprefixed ``openblas_set_num_threads_local`` relied on a symbol that
    such builds need not export. threadpoolctl finds the library by its API instead."""
    threadpoolctl = pytest.importorskip("threadpoolctl", reason="threadpoolctl is a dependency")
    info = threadpoolctl.threadpool_info()
    blas = [lib for lib in info if lib["user_api"] == "blas"]
    assert blas, "numpy's BLAS is loaded"
    assert par.blas_threads() == max(lib["num_threads"] for lib in blas)


def test_concurrent_pools_restore_the_blas_count_once_all_are_done():
    import threading

    if par.blas_threads() is None:
        pytest.skip("numpy's BLAS thread count cannot be controlled (no threadpoolctl)")
    before = par.blas_threads()
    inside = {name: threading.Event() for name in "ab"}
    release = {name: threading.Event() for name in "ab"}

    def run(name: str) -> None:
        def job(x: int) -> int:
            if x == 0:
                inside[name].set()
                release[name].wait()
            return x

        list(par.parallel_map(job, range(3), workers=2))

    callers = {name: threading.Thread(target=run, args=(name,), daemon=True) for name in "ab"}
    try:
        callers["a"].start()
        assert inside["a"].wait(10)
        callers["b"].start()  # enters while a's pool runs: sees BLAS at 1 already
        assert inside["b"].wait(10)
        release["a"].set()
        callers["a"].join(10)
        during = par.blas_threads()  # b still runs: a must not have restored yet
    finally:
        for event in release.values():
            event.set()
        for caller in callers.values():
            caller.join(10)
    after = par.blas_threads()
    par.set_blas_threads(before)  # leave the process as it was, whatever happened
    assert (during, after) == (1, before)
