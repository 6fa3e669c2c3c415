"""Watch a small CNN's inference live with ``track()``, then summarise it for the hardware.

    python examples/live_inference.py                          # about 3 s, live table
    HOOKSTATS_EXAMPLE_SECONDS=0.5 python examples/live_inference.py   # shorter (tests use it)
    python examples/live_inference.py | cat                    # not a terminal: final table only

The live table refreshes at most 4 times a second from a snapshot; the hooks never render.
"""

from __future__ import annotations

import os
import time

import torch
from rich.console import Console
from torch import nn

from hookstats import track
from hookstats.hardware import precision_table, precision_tradeoffs, summarize_hardware


class SmallCNN(nn.Module):
    """The seed's CNN: two conv 3x3 + ReLU + 2x2 max-pool stages, then a linear classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 16, 3, padding=1), nn.Conv2d(16, 32, 3, padding=1)
        self.act, self.pool = nn.ReLU(), nn.MaxPool2d(2)
        self.classifier = nn.Linear(32 * 7 * 7, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.act(self.conv1(x)))
        x = self.pool(self.act(self.conv2(x)))
        return self.classifier(x.flatten(1))


def main() -> None:
    seconds = float(os.environ.get("HOOKSTATS_EXAMPLE_SECONDS", "3"))
    console = Console()
    model = SmallCNN().eval()
    batches = [torch.randn(batch, 1, 28, 28) for batch in (32, 32, 32, 8)]
    with torch.no_grad(), track(model, live=True, console=console, top=8) as tracker:
        start, step = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            model(batches[step % len(batches)])
            step += 1
    console.print(summarize_hardware(tracker, hardware="cpu"))
    console.print(
        precision_table(
            precision_tradeoffs(tracker, hardware="cpu", precisions=("fp32", "bf16", "int8"))
        )
    )


if __name__ == "__main__":
    main()
