"""Cost of activation metrics on CPU: time per forward with and without ``ActivationMonitor``.

For the seed's small CNN and a small transformer (2 blocks, width 128, 64 tokens), at batch 1
and 32, it times the plain forward and the forward inside ``hs.ActivationMonitor`` with all six
built-in activation metrics streamed at every module (``points=None``) and at the
``nn.Linear``/``nn.Conv2d`` modules only, and ``hs.track(timing=False)`` without and with the
six metrics (``metrics=[...]``, streamed at every tracked module). Each configuration runs on
its own copy of the model, its monitor or tracker open for the whole measurement; configurations
are interleaved round by round and the *fastest* round of each is reported (like ``timeit``): on
a shared machine other processes only add time. Each monitored forward reduces every output
element to float64 moments (about ten passes over the output: a float64 copy, the mean, two dot
products, min/max, zeros), so the overhead grows with the activation volume, not with the
model's MACs.

Run:  python benchmarks/activation_overhead.py [--rounds 10] [--forwards 60] [--threads N]
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

import hookstats as hs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from models import SmallCNN, TinyTransformer

CONFIGS = ("plain", "every module", "Linear/Conv2d only", "track", "track + metrics")
ACTIVATION_METRICS = [
    "act_mean",
    "act_std",
    "act_rms",
    "act_absmax",
    "act_zero_frac",
    "act_kurtosis",
]


def _cases() -> list[tuple[str, nn.Module, Callable[[int], torch.Tensor]]]:
    cnn = SmallCNN().eval()
    transformer = TinyTransformer(vocab=1000, dim=128, heads=4, layers=2).eval()
    return [
        ("small CNN", cnn, lambda b: torch.randn(b, 1, 28, 28)),
        ("small transformer", transformer, lambda b: torch.randint(0, 1000, (b, 64))),
    ]


def _per_forward(model: nn.Module, x: torch.Tensor, forwards: int) -> float:
    start = time.perf_counter()
    for _ in range(forwards):
        model(x)
    return (time.perf_counter() - start) / forwards


def _measure(model: nn.Module, x: torch.Tensor, rounds: int, forwards: int) -> dict[str, float]:
    models = {config: copy.deepcopy(model) for config in CONFIGS}
    times: dict[str, list[float]] = {config: [] for config in CONFIGS}
    with contextlib.ExitStack() as stack, torch.inference_mode():
        stack.enter_context(hs.ActivationMonitor(models[CONFIGS[1]]))
        weighted = lambda name, module: isinstance(module, nn.Linear | nn.Conv2d)  # noqa: E731
        stack.enter_context(hs.ActivationMonitor(models[CONFIGS[2]], weighted))
        stack.enter_context(hs.track(models[CONFIGS[3]], timing=False))
        stack.enter_context(hs.track(models[CONFIGS[4]], metrics=ACTIVATION_METRICS, timing=False))
        for config in CONFIGS:
            _per_forward(models[config], x, 3)
        for _ in range(rounds):
            for config in CONFIGS:
                times[config].append(_per_forward(models[config], x, forwards))
    return {config: min(values) for config, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--forwards", type=int, default=60)
    parser.add_argument("--threads", type=int, default=None)
    options = parser.parse_args()
    if options.threads:
        torch.set_num_threads(options.threads)
    table = Table(
        title=f"ActivationMonitor overhead (torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, fastest round)"
    )
    for column in ("model", "batch", "plain ms", *[f"{c} ms (x)" for c in CONFIGS[1:]]):
        table.add_column(column)
    for name, model, make_input in _cases():
        for batch in (1, 32):
            x = make_input(batch)
            result = _measure(model, x, options.rounds, max(5, options.forwards // batch))
            plain = result["plain"]
            table.add_row(
                name,
                str(batch),
                f"{plain * 1e3:.3f}",
                *[f"{result[c] * 1e3:.3f} ({result[c] / plain:.2f}x)" for c in CONFIGS[1:]],
            )
    Console().print(table)


if __name__ == "__main__":
    main()
