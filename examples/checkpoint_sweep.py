"""Train a small model on CPU, saving checkpoints; sweep them into a metric store; plot.

The task is modular addition (a + b mod p) learned from 40 % of the pairs with strong weight
decay: weight norms move a lot during training, so the metric history is worth looking at.
Each checkpoint is also logged live with ``CheckpointLogger`` (run "live"); the sweep over the
saved files (run "sweep", in 2 worker processes) must give the same numbers.

Run:  python examples/checkpoint_sweep.py  [--seconds 60] [--out outputs/checkpoint_sweep]
Then: hookstats show outputs/checkpoint_sweep/metrics.sqlite --run sweep
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from torch import nn

from hookstats.plots import plot_metric_history
from hookstats.runs import CheckpointLogger, sweep
from hookstats.runs.store import MetricStore

P = 47
METRICS = ["l1", "l2", "spectral_norm"]


class AddMod(nn.Module):
    """Embed a and b, concatenate, one hidden layer, logits over the p residues."""

    def __init__(self, p: int = P, dim: int = 32, hidden: int = 128) -> None:
        super().__init__()
        self.embed = nn.Embedding(p, dim)
        self.hidden = nn.Linear(2 * dim, hidden)
        self.out = nn.Linear(hidden, p)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(self.embed(pairs).flatten(1))))


def build_model() -> AddMod:
    """Top-level, so the sweep's worker processes can build it."""
    return AddMod()


def train(folder: Path, seconds: float, every: int, logger: CheckpointLogger) -> int:
    """Train for ``seconds``; every ``every`` steps save a checkpoint and log it live."""
    torch.manual_seed(0)
    pairs = torch.cartesian_prod(torch.arange(P), torch.arange(P))
    labels = pairs.sum(1) % P
    train_idx = torch.randperm(len(pairs))[: int(0.4 * len(pairs))]
    model = build_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1.0)
    step, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or step % every:  # end on a saved step
        loss = nn.functional.cross_entropy(model(pairs[train_idx]), labels[train_idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        if step % every == 0:
            torch.save({"model": model.state_dict(), "step": step}, folder / f"step_{step:06d}.pt")
            logger.log(model, step)
    with torch.no_grad():
        accuracy = (model(pairs).argmax(1) == labels).float().mean().item()
    Console().print(f"trained {step} steps, accuracy on all pairs {accuracy:.1%}")
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--every", type=int, default=100, help="save every N steps")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("outputs/checkpoint_sweep"))
    args = parser.parse_args()
    folder = args.out / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    for old in (*folder.glob("*.pt"), args.out / "metrics.sqlite"):
        old.unlink(missing_ok=True)  # a fresh run each time
    store = MetricStore(args.out / "metrics.sqlite")
    logger = CheckpointLogger(
        store, "live", metrics=METRICS, config={"p": P, "seconds": args.seconds}
    )
    logger.log_profile(build_model(), inputs=(torch.zeros(64, 2, dtype=torch.long),))
    train(folder, args.seconds, args.every, logger)

    with ProcessPoolExecutor(args.workers) as pool:
        summary = sweep(
            str(folder / "*.pt"), build_model, store, "sweep", metrics=METRICS, executor=pool
        )
    live, swept = store.to_frame(run="live"), store.to_frame(run="sweep")
    a, b = live["value"].to_numpy(), swept["value"].to_numpy()
    worst = np.nanmax(np.abs(a - b) / np.maximum(np.abs(a), 1e-30))
    # live ran with this process's torch threads, the workers with one: sums may differ in the
    # last bit, never more
    same_nans = np.array_equal(np.isnan(a), np.isnan(b))
    Console().print(
        f"{summary.done} checkpoints swept; live vs swept: largest relative "
        f"difference {worst:.1e}, same NaNs: {same_nans}"
    )
    path = plot_metric_history(
        swept,
        args.out / "metric_history.png",
        metric=["l2", "spectral_norm"],
        title="AddMod training",
    )
    Console().print(f"wrote {path}")
    Console().print(store.runs()[["run", "checkpoints", "first_step", "last_step", "rows"]])


if __name__ == "__main__":
    main()
