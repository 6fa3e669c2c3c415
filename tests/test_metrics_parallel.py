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
    found = par._openblas()
    before = found[1]() if found else None

    def job(x: int) -> int:
        if x == 3:
            raise ValueError("bad matrix 3")
        return x

    with pytest.raises(ValueError, match="bad matrix 3"):
        list(par.parallel_map(job, range(8), workers=2))
    if found:
        assert found[1]() == before  # the process-wide BLAS thread count is back


def test_blas_runs_single_threaded_inside_the_pool_only():
    found = par._openblas()
    if found is None:
        pytest.skip("numpy's BLAS is not an OpenBLAS with a thread-count setter")
    before = found[1]()
    inside = list(par.parallel_map(lambda _: found[1](), range(4), workers=2))
    assert inside == [1] * 4 and found[1]() == before


def test_worker_count_follows_the_blas_and_torch_thread_budget(monkeypatch):
    monkeypatch.setattr(par.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(par, "_openblas", lambda: (lambda n: n, lambda: 3))
    monkeypatch.setattr(par.torch, "get_num_threads", lambda: 8)
    assert par.worker_count() == 3
    monkeypatch.setattr(par.torch, "get_num_threads", lambda: 2)
    assert par.worker_count() == 2
    monkeypatch.setattr(par, "_openblas", lambda: (lambda n: n, lambda: 1))
    assert par.worker_count() == 1
    monkeypatch.setattr(par, "_openblas", lambda: None)  # no control over BLAS: never parallel
    assert par.worker_count() == 1


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


def test_set_blas_threads_sets_the_process_count_and_returns_the_previous():
    found = par._openblas()
    if found is None:
        assert par.set_blas_threads(1) is None
        return
    before = found[1]()
    try:
        assert par.set_blas_threads(1) == before
        assert found[1]() == 1 and par.worker_count() == 1  # a budget of one: serial
    finally:
        par.set_blas_threads(before)
    assert found[1]() == before


def test_concurrent_pools_restore_the_blas_count_once_all_are_done():
    import threading

    found = par._openblas()
    if found is None:
        pytest.skip("numpy's BLAS is not an OpenBLAS with a thread-count setter")
    before = found[1]()
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
        during = found[1]()  # b still runs: a must not have restored yet
    finally:
        for event in release.values():
            event.set()
        for caller in callers.values():
            caller.join(10)
    after = found[1]()
    par.set_blas_threads(before)  # leave the process as it was, whatever happened
    assert (during, after) == (1, before)
