"""Profile the seed's SmallCNN: the layer-wise table, a rich report, and a CSV.

Run:  python examples/small_cnn.py  [--batch-size 32] [--out outputs]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn

import hookstats as hs


class SmallCNN(nn.Module):
    """The seed's CNN: conv 3x3 pad 1 + 2x2 max pool, twice, then a linear classifier."""

    def __init__(self, conv1_channels: int = 16, conv2_channels: int = 32, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, conv1_channels, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(conv1_channels, conv2_channels, kernel_size=3, padding=1)
        self.classifier = nn.Linear(conv2_channels * 7 * 7, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.classifier(torch.flatten(x, 1))


def build_model() -> SmallCNN:
    """Factory for the CLI: ``hookstats profile examples/small_cnn.py:build_model``."""
    return SmallCNN(conv1_channels=16, conv2_channels=32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path("outputs"))
    args = parser.parse_args()

    model = build_model()
    console = Console()
    table = hs.estimate_layerwise_stats(model, batch_size=args.batch_size, input_shape=(1, 28, 28))
    console.print("[bold]estimate_layerwise_stats[/] (the seed's table, for any model):")
    console.print(table.to_string(index=False))

    report = hs.profile(model, input_shape=(1, 28, 28), batch_size=args.batch_size)
    console.print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    report.to_csv(args.out / "layerwise_breakdown.csv")
    console.print(f"wrote {args.out / 'layerwise_breakdown.csv'}")


if __name__ == "__main__":
    main()
