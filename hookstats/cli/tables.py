"""Command-line helpers for tree tables and token inputs: the ``--depth`` value, the table of a
store's metrics per step as a tree (``hookstats show --run``), and the integer inputs of
``hookstats profile --input-dtype int64`` for language models.

May import: torch, pandas, rich, :mod:`hookstats.units`, :mod:`hookstats.display` and
:mod:`hookstats.cli.specs`.

Example:
    >>> parse_depth("3"), parse_depth("all")
    (3, 'all')
"""

from __future__ import annotations

import argparse
from typing import Any

import pandas as pd
import torch
from torch import nn

from ..display import Column, FittedTable, Grid, build_tree, walk
from ..display.rows import Depth, resolve_depth, tree_label
from ..units import format_number
from .specs import CLIError

__all__ = ["TOKEN_DTYPES", "metrics_tree_table", "parse_depth", "token_inputs"]

TOKEN_DTYPES = {"int64": torch.int64, "int32": torch.int32}
"""``--input-dtype`` values that make token ids (``float``, the default, makes a float input)."""


def parse_depth(text: str) -> int | str:
    """``--depth``: a non-negative number of levels, or ``all``."""
    if text == "all":
        return text
    try:
        depth = int(text)
    except ValueError:
        depth = -1
    if depth < 0:
        raise argparse.ArgumentTypeError(
            f"expected a number of levels (0, 1, ...) or 'all', got {text!r}"
        )
    return depth


def smallest_vocabulary(model: nn.Module) -> int | None:
    """The smallest ``num_embeddings`` of the model's embeddings: ids below it are valid for
    every embedding (token and position tables alike)."""
    sizes = [m.num_embeddings for m in model.modules() if isinstance(m, nn.Embedding)]
    return min(sizes) if sizes else None


def token_inputs(
    model: nn.Module, shape: tuple[int, ...], dtype: str, vocab: int | None
) -> torch.Tensor:
    """Random token ids of ``shape`` in ``[0, vocab)`` (default: the smallest embedding).

    Raises:
        CLIError: no ``--vocab`` and no ``nn.Embedding`` to take it from, or a bad vocab.
    """
    high = vocab if vocab is not None else smallest_vocabulary(model)
    if high is None:
        raise CLIError(
            "--input-dtype int64 needs the vocabulary size: pass --vocab N (the model has no "
            "nn.Embedding to read it from)."
        )
    if high < 1:
        raise CLIError(f"--vocab must be a positive number of tokens, got {high}.")
    return torch.randint(0, high, shape, dtype=TOKEN_DTYPES[dtype])


def metrics_tree_table(
    wide: pd.DataFrame,
    *,
    title: str,
    depth: Depth,
    collapse: bool,
    max_rows: int,
) -> FittedTable:
    """``step, hook_point, <metric>...`` rows as one tree per step; a collapsed group shows
    the mean over its modules."""
    metrics = [str(c) for c in wide.columns if c not in ("step", "hook_point")]
    columns = [
        Column("step", "step"),
        Column("name", "hook point", "left", shrink=True),
        *(Column(m, m, drop=len(metrics) - i) for i, m in enumerate(metrics)),
    ]
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    grouped = False
    for step, frame in wide.groupby("step", sort=False):
        roots = build_tree(frame.to_dict("records"), signature=lambda row: (), collapse=collapse)
        shown_depth, depth_notes = resolve_depth(roots, depth)
        notes = notes or depth_notes
        for index, (node, level) in enumerate(walk(roots, shown_depth)):
            grouped = grouped or node.count > 1
            cells: dict[str, Any] = {"step": str(step) if index == 0 else ""}
            cells["name"] = tree_label(node, level)
            for metric in metrics:
                values = [float(row[metric]) for row in node.rows]
                cells[metric] = format_number(sum(values) / len(values), ".6g")
            rows.append(cells)
    if grouped:
        notes.append("×n: the mean over n consecutive modules · --no-collapse shows each")
    if len(rows) > max_rows:
        notes.append(f"… {len(rows) - max_rows} more rows (--max-rows)")
        rows = rows[:max_rows]
    return FittedTable(Grid(title, columns, rows, notes=notes))
