"""Issue 12's defects outside the store: profiles that leave the RNG and buffers alone, thread
budgets, the CLI's one-line errors, modular metrics, hardware arguments, and the executors
(cloudpickle for Dask, submitit). Each test fails on the code before the fix."""

from __future__ import annotations

import functools
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
import torch
from sweep_helpers import METRICS, TinyAdder, build_mlp, write_checkpoints
from torch import nn

import hookstats as hs
from hookstats.cli import main
from hookstats.errors import InputSpecError, MetricError
from hookstats.metrics import parallel as par
from hookstats.runs import sweep
from hookstats.runs.store import MetricStore

from models import MLP

HERE = Path(__file__).parent
ROOT = HERE.parent
CNN = f"{ROOT / 'examples' / 'small_cnn.py'}:build_model"


# -- 6. profiles change nothing they promise to leave alone -----------------------------------


def test_a_profile_leaves_the_global_random_state_alone():
    model = nn.Linear(4, 2)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = hs.profile(model, input_shape=(4,), batch_size=2)
    assert torch.equal(torch.rand(3), expected)  # the seeded run is reproducible
    second = hs.profile(model, input_shape=(4,), batch_size=2)
    assert first.total("macs") == second.total("macs") == 2 * 4 * 2  # batch * in * out


class Observer(nn.Module):
    """Like a post-training-quantisation observer: records min/max and counts calls."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("low", torch.tensor(float("inf")))
        self.register_buffer("high", torch.tensor(float("-inf")))
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))
        self.register_buffer("last", torch.zeros(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.low.copy_(torch.minimum(self.low, x.min()))  # in place
        self.high = torch.maximum(self.high, x.max())  # replaced by a new tensor
        self.calls += 1
        self.last = x[0, :2].detach().clone()
        return x


def test_buffers_a_forward_updates_are_restored_after_a_profile():
    model = nn.Sequential(nn.Linear(4, 4), Observer())
    observer = model[1]
    objects = {name: buffer for name, buffer in observer.named_buffers()}
    before = {name: buffer.clone() for name, buffer in objects.items()}
    hs.profile(model, input_shape=(4,), batch_size=3)
    for name, buffer in observer.named_buffers():
        assert buffer is objects[name], name  # the same tensor objects
        assert torch.equal(buffer, before[name]), name  # with the same values
    model(torch.ones(1, 4))  # the model still works as its own: its buffers update
    assert int(observer.calls) == 1


# -- 8. thread settings ---------------------------------------------------------------------


def _sweep_in_a_child(folder: str, queue) -> None:  # runs in a child process
    sys.path.insert(0, str(HERE))
    from sweep_helpers import build_mlp as build

    from hookstats.metrics import parallel

    before = parallel.blas_threads()
    with ThreadPoolExecutor(2) as pool:  # a thread pool, not worker processes
        sweep(
            folder, build, f"{folder}/m.sqlite", "r", metrics=["l2"], executor=pool, progress=False
        )
    queue.put((multiprocessing.current_process().name, before, parallel.blas_threads()))


def test_a_thread_pool_sweep_in_a_child_process_keeps_its_blas_threads(tmp_path):
    if par.blas_threads() is None or par.usable_cores() < 2:
        pytest.skip("needs controllable BLAS threads and 2 cores")
    write_checkpoints(tmp_path, [1, 2])
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_sweep_in_a_child, args=(str(tmp_path), queue))
    child.start()
    name, before, after = queue.get(timeout=300)
    child.join(60)
    assert name != "MainProcess" and before > 1
    assert after == before  # the sweep's process is not a worker: its BLAS is untouched


CONCURRENCY_SCRIPT = textwrap.dedent(
    """
    import sys, threading, time
    from pathlib import Path
    from hookstats.metrics.parallel import parallel_map

    start = Path(sys.argv[1])
    while not start.exists():
        time.sleep(0.01)
    def job(_):
        began = time.time()
        time.sleep(0.3)
        return began, time.time()

    for began, ended in parallel_map(job, range(8)):
        print(began, ended)
    """
)


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The largest number of ``(start, end)`` spans running at one moment."""
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak


@pytest.mark.slow
def test_two_processes_split_the_cores_instead_of_each_using_all(tmp_path):
    cores = par.usable_cores()
    if cores < 2 or par.worker_count() < 2:
        pytest.skip("needs 2 cores and controllable BLAS threads")
    env = {k: v for k, v in os.environ.items() if k != par.THREADS_ENV}
    start = tmp_path / "go"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENCY_SCRIPT, str(start)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    time.sleep(5)  # both have imported hookstats and wait
    start.touch()
    spans = [
        (float(a), float(b))
        for child in children
        for a, b in (line.split() for line in child.communicate(timeout=120)[0].splitlines())
    ]
    assert len(spans) == 16
    # the second pool finds every slot taken and runs serially: cores + 1 at most, not 2 x cores
    assert most_at_once(spans) <= min(cores, par.MAX_WORKERS) + 1


def test_concurrent_pools_of_one_process_share_the_budget(monkeypatch):
    if par.usable_cores() < 2 or par.worker_count() < 2:
        pytest.skip("needs 2 cores and controllable BLAS threads")
    monkeypatch.delenv(par.THREADS_ENV, raising=False)
    lock, running, peak = threading.Lock(), [0], [0]
    barrier = threading.Barrier(2)

    def job(_: int) -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1

    def caller() -> None:
        barrier.wait()
        list(par.parallel_map(job, range(6)))

    threads = [threading.Thread(target=caller) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # the pool that finds no free slot runs in its caller's thread: one more at most
    assert peak[0] <= min(par.usable_cores(), par.MAX_WORKERS) + 1
    assert peak[0] < 2 * min(par.usable_cores(), par.MAX_WORKERS)  # not each pool all cores


def test_the_thread_budget_can_be_overridden(monkeypatch):
    monkeypatch.setenv(par.THREADS_ENV, "1")
    seen = set()
    list(par.parallel_map(lambda _: seen.add(threading.current_thread().name), range(4)))
    assert seen == {threading.current_thread().name}  # serial, in the calling thread


# -- 9. the CLI: every error one line, exit 2 ------------------------------------------------


def run_cli(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["profile", CNN, "--input-shape", "1,1,28,28", "--batch-size", "0"], "--batch-size"),
        (["profile", CNN, "--input-shape", "1,1,28,28", "--device", "tpu9"], "not a device"),
        (
            ["sweep", CNN, "x/*.pt", "--store", "m.sqlite", "--run", "r", "--workers", "-1"],
            "--workers: expected a whole number >= 0, got '-1'",
        ),
        (["show"], "the following arguments are required: store"),
        (["profile", CNN, "--input-shape", "1,1,28,28", "--max-rows", "x"], "--max-rows"),
        (["nope"], "invalid choice: 'nope'"),
    ],
)
def test_argument_errors_are_one_line_with_exit_2(capsys, argv, message):
    code, err = run_cli(capsys, *argv)
    assert code == 2 and err.startswith("hookstats: error: ") and message in err
    assert err.count("\n") == 1 and "usage:" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_device_cuda_without_cuda_is_one_line(capsys):
    code, err = run_cli(capsys, "profile", CNN, "--input-shape", "1,1,28,28", "--device", "cuda")
    assert code == 2 and "--device cuda: this torch" in err and err.count("\n") == 1


def test_show_refuses_a_folder_and_an_unknown_point(capsys, tmp_path):
    code, err = run_cli(capsys, "show", tmp_path)
    assert code == 2 and "is a folder, not a store" in err
    with MetricStore(tmp_path / "m.sqlite") as store:
        frame = pd.DataFrame({"hook_point": ["(model)", "fc"], "metric": "l2", "value": 1.0})
        store.write_checkpoint("r", "s", 1, frame)
    code, err = run_cli(capsys, "show", tmp_path / "m.sqlite", "--run", "r", "--point", "nope")
    assert code == 2 and "--point 'nope' matches no hook point of run 'r'" in err
    assert "(model), fc" in err
    code, err = run_cli(capsys, "show", tmp_path / "m.sqlite", "--point", "fc")
    assert code == 2 and "give --run too" in err


def test_an_unexpected_exception_is_one_line_too(capsys, tmp_path):
    (tmp_path / "odd.py").write_text(
        "import torch\n"
        "class Odd(torch.nn.Module):\n"
        "    def named_modules(self, *args, **kwargs):\n"
        "        raise RuntimeError('this model cannot list its modules')\n"
        "def build():\n"
        "    return Odd()\n"
    )
    code, err = run_cli(capsys, "metrics", f"{tmp_path / 'odd.py'}:build")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "cannot list its modules" in err and "HOOKSTATS_TRACEBACK=1" in err


def test_cli_workers_are_not_forked(monkeypatch, tmp_path, capsys):
    import concurrent.futures

    seen = {}
    real = concurrent.futures.ProcessPoolExecutor

    def spy(*args, **kwargs):
        seen["context"] = kwargs.get("mp_context")
        return real(*args, **kwargs)

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", spy)
    monkeypatch.syspath_prepend(str(HERE))
    write_checkpoints(tmp_path / "c", [1])
    code = main(
        [
            "sweep",
            "sweep_helpers:build_mlp",
            str(tmp_path / "c"),
            "--store",
            str(tmp_path / "m.sqlite"),
            "--run",
            "r",
            "--workers",
            "1",
            "--metrics",
            "l2",
            "--no-progress",
        ]
    )
    assert code == 0
    assert seen["context"] is not None
    assert seen["context"].get_start_method() in ("forkserver", "spawn")


# -- 12. the rest ----------------------------------------------------------------------------


class FlatAdder(nn.Module):
    """An adder whose 'embedding' hook point outputs (batch, features): no positions."""

    def __init__(self, p: int = 7) -> None:
        super().__init__()
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(2, 8))
        self.out = nn.Linear(8, p)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        return self.out(self.embed(pairs.float()))


def test_modular_metrics_refuse_a_hook_point_without_positions():
    task = hs.ModularAdditionTask(7, embedding="embed")
    with pytest.raises(MetricError, match=r"outputs shape \(100, 8\): no sequence positions"):
        hs.gradient_symmetricity(FlatAdder(), task)
    frame = hs.compute_metrics(FlatAdder(), "(model)", ["gradient_symmetricity"], task=task)
    assert "no sequence positions" in frame["note"].iloc[0]  # NaN with the reason, not 0.0
    assert -1.0 <= hs.gradient_symmetricity(TinyAdder(), task) <= 1.0  # (batch, 2, dim): fine


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_triples": "10"}, "n_triples"),
        ({"positions": (0,)}, "positions"),
        ({"embedding": 3}, "embedding"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_modular_task_arguments_are_checked(kwargs, message):
    with pytest.raises(MetricError, match=message):
        hs.ModularAdditionTask(7, **kwargs)


def seed_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "layer": ["fc"],
            "output_elements": [4],
            "parameter_bytes": [72],
            "activation_bytes": [16],
            "macs": [32],
        }
    )


def test_hardware_arguments_are_checked():
    with pytest.raises(InputSpecError, match=r"input_bytes must be >= 0"):
        hs.summarize_hardware(seed_frame(), 1.0, 100, input_bytes=-1)
    with pytest.raises(InputSpecError, match="latency_ms must be positive"):
        hs.summarize_hardware(seed_frame(), "1", 100)
    with pytest.raises(InputSpecError, match="memory_bandwidth_gbps must be positive"):
        hs.summarize_hardware(seed_frame(), 1.0, "fast")
    one = hs.precision_tradeoffs(seed_frame(), 1.0, 100, precisions="fp32", input_bytes=32)
    assert one["precision"].tolist() == ["fp32"]  # one precision, not the letters f, p, 3, 2
    with pytest.raises(InputSpecError, match="hardware must be a preset name"):
        hs.hardware_spec(5)


# -- ecosystem: cloudpickle for Dask, submitit for SLURM -------------------------------------


def test_dask_executors_take_what_cloudpickle_can_send(tmp_path):
    distributed = pytest.importorskip("distributed", reason="needs the [dask] extra")
    paths = write_checkpoints(tmp_path / "c", [1, 2])
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        summary = sweep(
            paths,
            lambda: MLP((8, 16, 4)),  # a lambda: plain pickle refuses it, cloudpickle does not
            tmp_path / "m.sqlite",
            "r",
            metrics=METRICS,
            executor=client.get_executor(),
            progress=False,
        )
    assert summary.done == 2


@pytest.mark.slow
def test_submitit_local_executor_sweep_equals_the_in_process_one(tmp_path, monkeypatch):
    submitit = pytest.importorskip("submitit", reason="needs the [slurm] extra")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(HERE), str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    paths = write_checkpoints(tmp_path / "c", [1, 2, 3])
    sweep(paths, build_mlp, tmp_path / "here.sqlite", "r", metrics=METRICS, progress=False)
    local = submitit.LocalExecutor(folder=tmp_path / "jobs")
    local.update_parameters(timeout_min=10)
    with hs.runs.SubmititExecutor(local, poll_interval=0.2) as executor:
        summary = sweep(
            paths,
            functools.partial(MLP, (8, 16, 4)),
            tmp_path / "slurm.sqlite",
            "r",
            metrics=METRICS,
            executor=executor,
            max_in_flight=2,  # two job arrays: 2 jobs, then 1
            progress=False,
        )
    assert (summary.done, summary.failed) == (3, 0)
    with (
        MetricStore(tmp_path / "here.sqlite") as here,
        MetricStore(tmp_path / "slurm.sqlite") as there,
    ):
        pd.testing.assert_frame_equal(here.to_frame(), there.to_frame(), check_exact=True)


def test_submitit_executor_refuses_what_it_cannot_wrap():
    pytest.importorskip("submitit", reason="needs the [slurm] extra")
    with pytest.raises(hs.HookstatsError, match="wraps a submitit executor"):
        hs.runs.SubmititExecutor(object())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timing": torch.ones(2)}, "timing= must be True or False"),
        ({"live": "yes"}, "live= must be True or False"),
        ({"sort_by": "fastest"}, "sort_by must be one of 'latency', 'self_time'"),
        ({"console": 3}, "console= must be a rich.console.Console"),
        ({"cuda_timing": pd.DataFrame()}, "cuda_timing must be 'sync' or 'events'"),
        ({"metrics": 5}, "metrics= must be a metric name, a list of names"),
    ],
)
def test_track_options_are_checked_when_the_block_is_set_up(kwargs, message):
    with pytest.raises(hs.HookstatsError, match=message):
        hs.track(nn.Linear(2, 2), **kwargs)


def test_a_factory_that_cannot_be_called_or_raises_is_a_clear_error():
    with pytest.raises(hs.InputSpecError, match=r"factory len raised TypeError.*no arguments"):
        hs.profile(len, input_shape=(2,))

    def broken() -> nn.Module:
        raise KeyError("hidden_size")

    with pytest.raises(hs.InputSpecError, match="factory .*broken raised KeyError") as info:
        hs.profile(broken, input_shape=(2,))
    assert isinstance(info.value.__cause__, KeyError)
    with pytest.raises(hs.InputSpecError, match="is not a torch device"):
        hs.profile(nn.Linear(2, 2), input_shape=(2,), device=2**70)
