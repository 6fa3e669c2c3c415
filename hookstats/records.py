"""Small records that hold what a profile saw: one per call, one per hook point, one per
uncounted op; and :func:`summarize_tensors`, which turns any nested output into sizes once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["CallRecord", "PointInfo", "TensorSummary", "UncountedOp", "summarize_tensors"]

_MAX_NESTING = 16


@dataclass(slots=True)
class TensorSummary:
    """Shapes, element count and bytes of every tensor found in a nested value."""

    shapes: list[tuple[int, ...]] = field(default_factory=list)
    elements: int = 0
    nbytes: int = 0


def _add_tensor(summary: TensorSummary, tensor: torch.Tensor, seen: set[int]) -> None:
    if id(tensor) in seen:
        return
    seen.add(id(tensor))
    numel = tensor.numel()
    try:
        shape = tuple(int(s) for s in tensor.shape)
    except RuntimeError:  # nested tensors have no single shape
        shape = (numel,)
    summary.shapes.append(shape)
    summary.elements += numel
    summary.nbytes += numel * tensor.element_size()


def _walk(value: Any, summary: TensorSummary, seen: set[int], depth: int) -> None:
    if depth > _MAX_NESTING:
        return
    if isinstance(value, torch.Tensor):
        _add_tensor(summary, value, seen)
    elif isinstance(value, dict):
        for item in value.values():
            _walk(item, summary, seen, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            _walk(item, summary, seen, depth + 1)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            _walk(getattr(value, f.name, None), summary, seen, depth + 1)


def summarize_tensors(*values: Any) -> TensorSummary:
    """Sizes of all tensors in ``values``: tuples, lists, dicts, dataclasses, any nesting.

    A tensor that appears twice (same object) is counted once.

    >>> summarize_tensors((torch.zeros(2, 3), {"h": torch.zeros(4, dtype=torch.int8)})).nbytes
    28
    """
    summary = TensorSummary()
    seen: set[int] = set()
    for value in values:
        _walk(value, summary, seen, 0)
    return summary


@dataclass(slots=True)
class CallRecord:
    """One call of one hook point during a forward pass.

    ``macs`` includes every op run inside the call, nested hook points included;
    ``self_macs`` only those not inside a nested selected hook point.
    """

    hook_point: str
    call_index: int
    order: int
    input_bytes: int = 0
    output_shapes: list[tuple[int, ...]] = field(default_factory=list)
    output_elements: int = 0
    activation_bytes: int = 0
    macs: int = 0
    self_macs: int = 0
    latency_s: float | None = None


@dataclass(slots=True)
class PointInfo:
    """Static facts about a hook point, captured once (no reference to the module is kept)."""

    name: str
    module_type: str
    depth: int
    is_leaf: bool
    parameters: int
    parameter_bytes: int
    owns_parameters: bool
    own_parameter_bytes: int = 0
    innermost: bool = True
    parameter_ids: frozenset[int] = frozenset()


@dataclass(slots=True)
class UncountedOp:
    """An op that does matrix-like work but has no MAC formula."""

    op: str
    calls: int = 0
    hook_points: set[str] = field(default_factory=set)
