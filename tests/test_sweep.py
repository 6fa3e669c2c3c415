"""CheckpointLogger and sweep: stored rows equal an independent compute, resume is
exactly-once (also after SIGKILL), failures are recorded, executors agree."""

from __future__ import annotations

import contextlib
import functools
import io
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
import torch
from rich.console import Console
from sweep_helpers import (
    METRICS,
    broken_build,
    build_adder,
    build_mlp,
    reference,
    write_checkpoints,
)

import hookstats as hs
from hookstats.errors import HookstatsError, MetricError, StoreError
from hookstats.metrics import compute_metrics
from hookstats.runs import CheckpointLogger, sweep
from hookstats.runs.store import MetricStore

from models import MLP, SmallCNN

HERE = Path(__file__).parent


def stored(store_path: Path, run: str = "r") -> pd.DataFrame:
    with MetricStore(store_path, read_only=True) as store:
        return store.to_frame(run=run)


def same_rows(frame: pd.DataFrame, expected: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(
        frame.reset_index(drop=True),
        expected[frame.columns].reset_index(drop=True),
        check_exact=True,
    )


def test_logger_writes_what_compute_metrics_returns(tmp_path):
    torch.manual_seed(0)
    model = MLP((8, 16, 4))
    logger = CheckpointLogger(tmp_path / "m.sqlite", "live", metrics=METRICS, config={"lr": 0.1})
    written = logger.log(model, step=100)
    direct = compute_metrics(model, metrics=METRICS)
    pd.testing.assert_frame_equal(written, direct, check_exact=True)
    frame = logger.store.to_frame(run="live")
    assert frame["checkpoint"].unique().tolist() == ["step:100"]
    assert frame["value"].tolist() == pytest.approx(direct["value"].tolist(), nan_ok=True)
    assert frame["hook_point"].tolist() == direct["hook_point"].tolist()
    with pytest.raises(StoreError, match="'step:100' of run 'live' is already in the store"):
        logger.log(model, step=100)
    with torch.no_grad():
        model.layers[0].weight.mul_(2)
    logger.log(model, step=100, if_exists="replace")
    again = logger.store.to_frame(run="live")
    assert again["value"].tolist() == pytest.approx(
        compute_metrics(model, metrics=METRICS)["value"].tolist(), nan_ok=True
    )
    assert logger.store.runs()["config"].iloc[0] == {"lr": 0.1}


def test_logger_keeps_the_layer_cost_profile(tmp_path):
    logger = CheckpointLogger(tmp_path / "m.sqlite", "cnn", metrics=METRICS)
    report = logger.log_profile(SmallCNN(), input_shape=(1, 28, 28), batch_size=32)
    frame, info = logger.store.profile_frame("cnn")
    # classifier: 32 * 1568 * 10 = 501_760 MACs
    assert frame.set_index("hook_point").loc["classifier", "self_macs"] == 501_760
    assert info["total_macs"] == report.total("macs") and info["batch_size"] == 32


def test_sweep_stores_each_checkpoint_once_and_resumes(tmp_path):
    paths = write_checkpoints(tmp_path / "ckpts", [300, 100, 200])
    store = tmp_path / "m.sqlite"
    out = io.StringIO()
    summary = sweep(
        str(tmp_path / "ckpts" / "*.pt"),
        build_mlp,
        store,
        "r",
        metrics=METRICS,
        console=Console(file=out, width=100),
    )
    assert (summary.done, summary.skipped, summary.failed, summary.total) == (3, 0, 0, 3)
    assert "sweep 'r': 3 done, 0 skipped, 0 failed of 3 checkpoints" in out.getvalue()
    same_rows(stored(store), reference(paths, "r"))
    again = sweep(paths, build_mlp, store, "r", metrics=METRICS, progress=False)
    assert (again.done, again.skipped, again.failed) == (0, 3, 0)
    same_rows(stored(store), reference(paths, "r"))


def test_task_is_passed_through_for_category_2_metrics(tmp_path):
    task = hs.ModularAdditionTask(7, embedding="embed", n_triples=8)
    torch.manual_seed(3)
    model = build_adder()
    torch.save({"model": model.state_dict(), "step": 5}, tmp_path / "adder.pt")
    metrics = ["distance_irrelevance", "gradient_symmetricity", "l2"]
    summary = sweep(
        tmp_path / "adder.pt",
        build_adder,
        tmp_path / "m.sqlite",
        "r",
        metrics=metrics,
        task=task,
        progress=False,
    )
    assert summary.done == 1
    with MetricStore(tmp_path / "m.sqlite") as store:
        frame = store.to_frame(run="r")
        assert "ModularAdditionTask(p=7" in store.runs()["settings"].iloc[0]["task"]
    direct = compute_metrics(model, metrics=metrics, task=task)
    assert direct["value"].notna().all()  # category-2 values really computed
    assert frame["value"].tolist() == pytest.approx(direct["value"].tolist(), rel=1e-12)
    assert frame["metric"].tolist() == direct["metric"].tolist()


def test_sweep_with_other_metrics_on_the_same_run_is_refused(tmp_path):
    paths = write_checkpoints(tmp_path, [1])
    sweep(paths, build_mlp, tmp_path / "m.sqlite", "r", metrics=["l1"], progress=False)
    with pytest.raises(StoreError, match=r"run 'r' already exists with settings .*Use a new run"):
        sweep(paths, build_mlp, tmp_path / "m.sqlite", "r", metrics=["l2"], progress=False)


def write_bad_files(folder: Path) -> dict[str, str]:
    """Bad checkpoints and the message each must be recorded with."""
    torch.manual_seed(0)
    good = MLP((8, 16, 4)).state_dict()
    (folder / "ckpt_00010.pt").write_bytes(b"")
    torch.save({"model": good, "step": 20}, folder / "ckpt_00020.pt")
    data = (folder / "ckpt_00020.pt").read_bytes()
    (folder / "ckpt_00020.pt").write_bytes(data[: len(data) // 3])
    torch.save({"model": MLP((8, 32, 4)).state_dict(), "step": 30}, folder / "ckpt_00030.pt")
    torch.save(
        {"model": {k: good[k] for k in list(good)[:-1]}, "step": 40}, folder / "ckpt_00040.pt"
    )
    torch.save(good, folder / "final.pt")
    return {
        "ckpt_00010.pt": r"is empty \(0 bytes\)",
        "ckpt_00020.pt": "corrupt, truncated",
        "ckpt_00030.pt": r"shape mismatch: layers.0.weight \(32, 8\) vs model \(16, 8\)",
        "ckpt_00040.pt": "missing keys: layers.1.bias",
        "final.pt": "cannot tell the step of .*final.pt",
    }


def test_failing_checkpoints_are_recorded_and_the_sweep_goes_on(tmp_path):
    good = write_checkpoints(tmp_path, [5, 50])
    expected = write_bad_files(tmp_path)
    summary = sweep(
        str(tmp_path / "*.pt"),
        build_mlp,
        tmp_path / "m.sqlite",
        "r",
        metrics=METRICS,
        progress=False,
    )
    assert (summary.done, summary.skipped, summary.failed) == (2, 0, 5)
    with MetricStore(tmp_path / "m.sqlite") as store:
        failures = store.failures("r")
        assert sorted(Path(c).name for c in failures["checkpoint"]) == sorted(expected)
        for checkpoint, message, error in failures[["checkpoint", "message", "error"]].values:
            assert pd.Series([message]).str.contains(expected[Path(checkpoint).name]).all()
            assert error == "CheckpointError"
        assert store.runs()["failures"].iloc[0] == 5
    same_rows(stored(tmp_path / "m.sqlite"), reference(good, "r"))
    # fix one file: the next sweep retries only the failures and clears that record
    write_checkpoints(tmp_path, [10])  # replaces the empty file
    retry = sweep(
        str(tmp_path / "*.pt"),
        build_mlp,
        tmp_path / "m.sqlite",
        "r",
        metrics=METRICS,
        progress=False,
    )
    assert (retry.done, retry.skipped, retry.failed) == (1, 2, 4)
    with MetricStore(tmp_path / "m.sqlite") as store:
        assert "ckpt_00010.pt" not in {Path(c).name for c in store.failures("r")["checkpoint"]}


def test_malicious_checkpoint_in_a_sweep_never_runs(tmp_path):
    from test_checkpoints import Payload

    marker = tmp_path / "marker"
    torch.save({"model": {"w": Payload(str(marker))}, "step": 1}, tmp_path / "ckpt_1.pt")
    summary = sweep(
        [tmp_path / "ckpt_1.pt"],
        build_mlp,
        tmp_path / "m.sqlite",
        "r",
        metrics=METRICS,
        progress=False,
    )
    assert (
        summary.failed == 1 and "UnsafeCheckpointError: refused to load" in summary.failures[0][1]
    )
    assert not marker.exists()


def test_bad_arguments(tmp_path):
    with pytest.raises(hs.errors.CheckpointError, match="matches no checkpoint file"):
        sweep(str(tmp_path / "*.pt"), build_mlp, tmp_path / "m.sqlite", "r", progress=False)
    paths = write_checkpoints(tmp_path, [1])
    with pytest.raises(StoreError, match="folder '.*missing' does not exist"):
        sweep(paths, build_mlp, tmp_path / "missing" / "m.sqlite", "r", progress=False)
    with (
        ProcessPoolExecutor(1) as pool,
        pytest.raises(
            HookstatsError,
            match=r"build_model cannot be sent .*top-level function or "
            r"functools.partial",
        ),
    ):
        sweep(
            paths,
            lambda: MLP((8, 16, 4)),
            tmp_path / "m.sqlite",
            "r",
            executor=pool,
            progress=False,
        )


@pytest.mark.parametrize("pool", [False, True])
def test_errors_that_would_fail_every_checkpoint_stop_the_sweep(tmp_path, pool):
    paths = write_checkpoints(tmp_path, [1, 2])
    store = tmp_path / "m.sqlite"
    with ProcessPoolExecutor(1) if pool else contextlib.nullcontext() as executor:
        with pytest.raises(MetricError, match="unknown metric.*'l9'"):
            sweep(paths, build_mlp, store, "a", metrics=["l9"], executor=executor, progress=False)
        with pytest.raises(HookstatsError, match=r"build_model\(\) raised ValueError: no such"):
            sweep(
                paths, broken_build, store, "b", metrics=METRICS, executor=executor, progress=False
            )
    with MetricStore(store) as opened:
        assert opened.failures().empty and opened.checkpoints().empty


def test_process_pool_gives_identical_rows(tmp_path):
    paths = write_checkpoints(tmp_path / "ckpts", [1, 2, 3, 4])
    sweep(paths, build_mlp, tmp_path / "local.sqlite", "r", metrics=METRICS, progress=False)
    factory = functools.partial(MLP, (8, 16, 4))  # a partial pickles too
    with ProcessPoolExecutor(2) as pool:
        summary = sweep(
            paths,
            factory,
            tmp_path / "pool.sqlite",
            "r",
            metrics=METRICS,
            executor=pool,
            progress=False,
        )
    assert summary.done == 4
    pd.testing.assert_frame_equal(
        stored(tmp_path / "pool.sqlite"), stored(tmp_path / "local.sqlite"), check_exact=True
    )


def test_a_dying_worker_stops_the_sweep_with_a_clear_error(tmp_path):
    paths = write_checkpoints(tmp_path, [1, 2])
    with (
        ProcessPoolExecutor(1) as pool,
        pytest.raises(HookstatsError, match=r"workers died .*run the same sweep again to resume"),
    ):
        sweep(
            paths,
            functools.partial(os._exit, 3),
            tmp_path / "m.sqlite",
            "r",
            metrics=METRICS,
            executor=pool,
            progress=False,
        )
    resumed = sweep(paths, build_mlp, tmp_path / "m.sqlite", "r", metrics=METRICS, progress=False)
    assert resumed.done == 2


@pytest.mark.slow
def test_dask_local_cluster_gives_identical_rows(tmp_path):
    distributed = pytest.importorskip("distributed")
    paths = write_checkpoints(tmp_path / "ckpts", [1, 2, 3])
    sweep(paths, build_mlp, tmp_path / "local.sqlite", "r", metrics=METRICS, progress=False)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        summary = sweep(
            paths,
            build_mlp,
            tmp_path / "dask.sqlite",
            "r",
            metrics=METRICS,
            executor=client.get_executor(),
            progress=False,
        )
    assert summary.done == 3
    pd.testing.assert_frame_equal(
        stored(tmp_path / "dask.sqlite"), stored(tmp_path / "local.sqlite"), check_exact=True
    )


def completed_count(store_path: Path) -> int:
    if not store_path.exists():
        return 0
    try:
        with MetricStore(store_path, read_only=True) as store:
            return len(store.checkpoints())
    except StoreError:  # created but schema not written yet
        return 0


@pytest.mark.slow
def test_sigkill_mid_sweep_then_resume_is_exactly_once(tmp_path):
    paths = write_checkpoints(tmp_path / "ckpts", list(range(1, 11)))
    pattern = str(tmp_path / "ckpts" / "*.pt")
    store = tmp_path / "killed.sqlite"
    command = [sys.executable, str(HERE / "sweep_kill_script.py"), str(store), "r", pattern]
    child = subprocess.Popen([*command, "0.3"])
    deadline = time.monotonic() + 60
    while completed_count(store) < 1 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert child.poll() is None, f"the sweep process ended early ({child.returncode})"
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    done_before = completed_count(store)
    assert 1 <= done_before < len(paths), "the kill must land mid-sweep"
    subprocess.run([*command, "0"], check=True, timeout=120)
    frame = stored(store)
    assert not frame.duplicated(["checkpoint", "hook_point", "metric"]).any()
    same_rows(frame, reference(paths, "r"))
    with MetricStore(store, read_only=True) as opened:
        assert len(opened.checkpoints("r")) == len(paths) and opened.failures().empty


@pytest.fixture
def blas_threads_metric():
    """A plugin reporting the OpenBLAS thread count of the process that computes it."""
    from hookstats.metrics import parallel, register_metric, unregister_metric

    if parallel.blas_threads() is None:
        pytest.skip("numpy's BLAS thread count cannot be read (no threadpoolctl)")

    @register_metric("blas_threads_seen", needs=())
    def blas_threads_seen(ctx) -> float:
        return float(parallel.blas_threads())

    yield parallel.blas_threads()
    unregister_metric("blas_threads_seen")


def test_worker_processes_run_numpy_blas_on_worker_threads(tmp_path, blas_threads_metric):
    paths = write_checkpoints(tmp_path / "ckpts", [1])
    with ProcessPoolExecutor(1) as pool:  # forked: the plugin is registered there too
        sweep(
            paths,
            build_mlp,
            tmp_path / "pool.sqlite",
            "r",
            metrics=["blas_threads_seen"],
            points="(model)",
            executor=pool,
            progress=False,
            worker_threads=1,
        )
    assert stored(tmp_path / "pool.sqlite")["value"].tolist() == [1.0]
    sweep(
        paths,
        build_mlp,
        tmp_path / "here.sqlite",
        "r",
        metrics=["blas_threads_seen"],
        points="(model)",
        progress=False,
    )  # this process: never changed
    assert stored(tmp_path / "here.sqlite")["value"].tolist() == [float(blas_threads_metric)]
