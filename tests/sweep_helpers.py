"""Helpers for the sweep, CLI and crash tests: a picklable model factory, checkpoint files,
and an independent reference (plain torch.load + load_state_dict + compute_metrics)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from hookstats.metrics import compute_metrics

from models import MLP

METRICS = ["l1", "l2", "spectral_norm"]
SIZES = (8, 16, 4)


def build_mlp() -> MLP:
    """A top-level factory: picklable, so process pools and Dask workers can build it."""
    return MLP(SIZES)


class TinyAdder(torch.nn.Module):
    """Embed a and b, flatten, one linear layer to p logits: fits ModularAdditionTask(p)."""

    def __init__(self, p: int = 7, dim: int = 4) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(p, dim)
        self.out = torch.nn.Linear(2 * dim, p)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        return self.out(self.embed(pairs).flatten(1))


def build_adder() -> TinyAdder:
    return TinyAdder()


def broken_build() -> MLP:
    """A factory that fails, as a typo in a model config would."""
    raise ValueError("no such config")


def write_checkpoints(folder: Path, steps: list[int], *, wrapped: bool = True) -> list[Path]:
    """One checkpoint per step with distinct weights (seeded by the step)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for step in steps:
        torch.manual_seed(step)
        state = MLP(SIZES).state_dict()
        path = folder / f"ckpt_{step:05d}.pt"
        torch.save({"model": state, "step": step} if wrapped else state, path)
        paths.append(path)
    return paths


def reference(paths: list[Path], run: str, metrics: list[str] | None = METRICS) -> pd.DataFrame:
    """What the store must hold, computed without hookstats' loading or sweep code."""
    frames = []
    for path in paths:
        saved = torch.load(path, weights_only=True)
        model = build_mlp()
        model.load_state_dict(saved["model"])
        frame = compute_metrics(model, metrics=metrics)
        frame.insert(0, "checkpoint", str(path.resolve()))
        frame.insert(0, "step", saved["step"])
        frame.insert(0, "run", run)
        frames.append(frame)
    return (
        pd.concat(frames, ignore_index=True)
        .sort_values("step", kind="stable")
        .reset_index(drop=True)
    )
