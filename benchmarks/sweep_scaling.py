"""Sweep scaling and store throughput.

1. Checkpoints per second of ``hookstats.sweep`` over GPT-2-small-sized checkpoints (124 M
   parameters, random weights, no download) with a ``ProcessPoolExecutor`` of 1 and of 2
   workers (one torch thread each). Target: 2 workers >= 1.7x one worker on 2 cores.
   A control job (pure compute) measures what 2 processes could gain on the machine at the
   time, so a busy shared machine shows up as a low control figure, not as a sweep problem.
2. The store's write throughput: rows per second of ``MetricStore.write_checkpoint`` (one
   transaction per checkpoint, GPT-2-like 2,000-row checkpoints), and ``to_frame`` reads.

Run:  python benchmarks/sweep_scaling.py  [--checkpoints 6] [--layers 12] [--metrics l1,l2]
Timings on a shared machine are noisy: run it on an idle one for figures to compare.
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.table import Table

from hookstats.runs import sweep
from hookstats.runs.store import MetricStore


def gpt2(layers: int) -> torch.nn.Module:
    """GPT-2 small (768 wide, 12 heads, vocab 50257), ``layers`` blocks, random weights."""
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(n_layer=layers))


def _warm(_: int) -> int:
    import hookstats.runs  # noqa: F401  (imports torch, hookstats in the worker)

    return 0


def _control_job(_: int) -> float:
    """Fixed pure-compute work (one torch thread): what 2 processes can gain right now."""
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    matrix = torch.randn(600, 600, generator=generator)
    for _ in range(8):
        torch.linalg.eigh(matrix @ matrix.T)
    return 0.0


def control_speedup(jobs: int = 4) -> float:
    """Speed-up of 2 processes over 1 on ``jobs`` identical pure-compute jobs (the ceiling)."""
    seconds = []
    for workers in (1, 2):
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_warm, range(workers)))
            start = time.perf_counter()
            list(pool.map(_control_job, range(jobs)))
            seconds.append(time.perf_counter() - start)
    return seconds[0] / seconds[1]


def write_checkpoints(folder: Path, build, count: int) -> list[Path]:
    model = build()
    paths = []
    for step in range(1, count + 1):
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.mul_(0.99)  # a different checkpoint each step
        path = folder / f"step_{step:04d}.pt"
        torch.save({"model": model.state_dict(), "step": step}, path)
        paths.append(path)
    return paths


def time_sweep(paths: list[Path], build, workers: int, metrics, folder: Path) -> float:
    store = folder / f"sweep_{workers}.sqlite"
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_warm, range(workers)))  # processes started, imports done
        start = time.perf_counter()
        summary = sweep(
            paths, build, store, "bench", metrics=metrics, executor=pool, progress=False
        )
        seconds = time.perf_counter() - start
    assert summary.done == len(paths) and summary.failed == 0, summary.failures
    return seconds


def store_throughput(folder: Path, checkpoints: int = 200, rows: int = 2000) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "hook_point": [
                f"transformer.h.{i // 15 % 12}.mlp.c_fc.{i // 180}" for i in range(rows)
            ],
            "metric": [f"metric_{i % 15}" for i in range(rows)],
            "value": rng.standard_normal(rows),
            "note": [""] * rows,
        }
    )
    with MetricStore(folder / "throughput.sqlite") as store:
        start = time.perf_counter()
        for step in range(checkpoints):
            store.write_checkpoint("bench", f"step_{step}", step, frame)
        write = checkpoints * rows / (time.perf_counter() - start)
        start = time.perf_counter()
        read = len(store.to_frame(run="bench")) / (time.perf_counter() - start)
    return write, read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=6)
    parser.add_argument("--layers", type=int, default=12, help="GPT-2 blocks (small: 12)")
    parser.add_argument("--metrics", default=None, help="comma-separated (default: category 1)")
    args = parser.parse_args()
    if args.metrics:
        metrics = args.metrics.split(",")
    else:
        from hookstats.metrics import metric_registry

        metrics = list(metric_registry.names(category=1))
    console = Console()
    build = functools.partial(gpt2, args.layers)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = write_checkpoints(folder, build, args.checkpoints)
        parameters = sum(p.numel() for p in build().parameters())
        before = control_speedup()
        for workers in (1, 2):
            seconds = time_sweep(paths, build, workers, metrics, folder)
            rows.append((workers, seconds, len(paths) / seconds))
        after = control_speedup()
        write, read = store_throughput(folder)
    table = Table(
        title=f"sweep: {len(paths)} GPT-2 checkpoints ({parameters / 1e6:.0f} M "
        f"parameters, {len(metrics)} metrics), ProcessPoolExecutor"
    )
    for column in ("workers", "seconds", "checkpoints/s", "speed-up"):
        table.add_column(column, justify="right")
    for workers, seconds, rate in rows:
        table.add_row(str(workers), f"{seconds:.1f}", f"{rate:.3f}", f"{rate / rows[0][2]:.2f}x")
    console.print(table)
    console.print(
        f"store: write {write:,.0f} rows/s (200 checkpoints x 2,000 rows, one "
        f"transaction each); read {read:,.0f} rows/s (to_frame)"
    )
    console.print(
        f"control (pure compute, 1 thread per process): 2 processes gave {before:.2f}x "
        f"before and {after:.2f}x after the sweeps: the most this machine offered"
    )
    console.print("[dim]shared machine: timings are noisy[/]")


if __name__ == "__main__":
    main()
