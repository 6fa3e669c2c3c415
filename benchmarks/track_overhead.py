"""Steady-state overhead of ``track()`` on CPU: time per forward with and without it.

For a small CNN (the seed's) and a small transformer (2 blocks, width 128, 64 tokens), at batch
1 and 32, it times the plain forward, ``track(timing=False)`` and ``track(timing=True)``, with
every module tracked (``points=None``). Each configuration runs on its own copy of the model,
its tracker open for the whole measurement (the steady state: the first forward of the
signature, under the MAC counter, is in the warm-up; the re-checks of the cache on forwards
2, 4, 8, ... are measured). Configurations are interleaved round by round and the *fastest*
round of each is reported (like ``timeit``): on a shared machine other processes only ever
add time, and the fastest rounds are the least disturbed.

Targets (issue 4): with timing off, overhead under 15% at batch 1 and under 5% at batch 32.

Run:  python benchmarks/track_overhead.py [--rounds 15] [--forwards 100] [--threads N]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from hookstats import track

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from models import SmallCNN, TinyTransformer

TARGETS = {1: 0.15, 32: 0.05}
CONFIGS = ("plain", "track, timing off", "track, timing on")


def _cases() -> list[tuple[str, nn.Module, Callable[[int], torch.Tensor]]]:
    cnn = SmallCNN().eval()
    transformer = TinyTransformer(vocab=1000, dim=128, heads=4, layers=2).eval()
    return [
        ("small CNN", cnn, lambda b: torch.randn(b, 1, 28, 28)),
        ("small transformer", transformer, lambda b: torch.randint(0, 1000, (b, 64))),
    ]


def _per_forward(model: nn.Module, x: torch.Tensor, forwards: int) -> float:
    """Seconds per forward over one round."""
    start = time.perf_counter()
    for _ in range(forwards):
        model(x)
    return (time.perf_counter() - start) / forwards


def _measure_case(model: nn.Module, x: torch.Tensor, rounds: int, forwards: int) -> dict:
    """Three copies of the model -- plain, tracked with timing off, with timing on -- each
    tracker open for the whole measurement (steady state), rounds interleaved."""
    models = {config: copy.deepcopy(model) for config in CONFIGS}
    times: dict[str, list[float]] = {config: [] for config in CONFIGS}
    with contextlib.ExitStack() as stack, torch.no_grad():
        stack.enter_context(track(models[CONFIGS[1]], timing=False))
        stack.enter_context(track(models[CONFIGS[2]], timing=True))
        for config in CONFIGS:  # warm-up; in a tracker: the counted forward and first checks
            _per_forward(models[config], x, 5)
        for _ in range(rounds):
            for config in CONFIGS:
                times[config].append(_per_forward(models[config], x, forwards))
    return {config: min(values) for config, values in times.items()}


def measure(rounds: int, forwards: int) -> list[dict[str, object]]:
    """Fastest round's seconds per forward of every configuration, per model and batch."""
    results = []
    for name, model, make_input in _cases():
        for batch in (1, 32):
            n = max(10, forwards // batch)
            results.append(
                {
                    "model": name,
                    "batch": batch,
                    **_measure_case(model, make_input(batch), rounds, n),
                }
            )
    return results


def render(results: list[dict[str, object]]) -> Table:
    table = Table(
        title=f"track() overhead per forward (CPU, {torch.get_num_threads()} threads, "
        "fastest of rounds)",
        header_style="bold",
    )
    for column in (
        "model",
        "batch",
        "plain ms",
        "timing off ms",
        "overhead",
        "target",
        "timing on ms",
        "overhead ",
    ):
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in results:
        plain, off, on = (float(row[c]) for c in CONFIGS)  # type: ignore[arg-type]
        target = TARGETS[int(row["batch"])]  # type: ignore[call-overload]
        over_off, over_on = off / plain - 1, on / plain - 1
        verdict = "ok" if over_off < target else "MISSED"
        table.add_row(
            str(row["model"]),
            str(row["batch"]),
            f"{plain * 1e3:.3f}",
            f"{off * 1e3:.3f}",
            f"{over_off:+.1%}",
            f"<{target:.0%} {verdict}",
            f"{on * 1e3:.3f}",
            f"{over_on:+.1%}",
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument(
        "--forwards",
        type=int,
        default=100,
        help="forwards per round at batch 1 (divided by the batch size)",
    )
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    Console().print(render(measure(args.rounds, args.forwards)))


if __name__ == "__main__":
    main()
