"""The one walker over nested values: the tensors of a call's arguments or outputs.

Forward arguments and outputs nest tensors in tuples, lists, dicts, dataclasses and Hugging
Face ``ModelOutput`` objects (an ordered dict that is also a dataclass). :func:`flatten` walks any
of them, to a depth of :data:`MAX_NESTING`, in one order, and every reader of nested values
uses it: :func:`summarize_tensors` (sizes and shapes of outputs) and
:func:`structure_signature` (what decides a forward's work, for the tracking cache).

May import: torch.

    >>> summarize_tensors((torch.zeros(2, 3), {"h": torch.zeros(4, dtype=torch.int8)})).nbytes
    28
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    "MAX_NESTING",
    "TensorSummary",
    "flatten",
    "structure_signature",
    "summarize_tensors",
    "tensor_shape",
]

MAX_NESTING = 16
"""Containers nested deeper than this are not entered (a marker stands for them)."""

TRUNCATED = "…"
_SCALARS = (bool, int, float, str, type(None))


def tensor_shape(tensor: torch.Tensor) -> tuple[int, ...]:
    """The tensor's shape as plain ints; a nested tensor (no single shape) gives ``(numel,)``."""
    try:
        return tuple(int(s) for s in tensor.shape)
    except RuntimeError:
        return (tensor.numel(),)


def flatten(value: Any, out: list[Any], *, structure: bool = False, depth: int = 0) -> None:
    """Append the leaves of ``value`` to ``out`` in walk order.

    Tensors are always appended. With ``structure=True`` the walk also appends what tells two
    values apart besides their tensors: dict keys, sequence lengths, plain scalars, the type
    name of any other object, and :data:`TRUNCATED` where the depth limit stopped it.
    """
    if isinstance(value, torch.Tensor):
        out.append(value)
    elif depth >= MAX_NESTING:
        if structure:
            out.append(TRUNCATED)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if structure:
                out.append(key)
            flatten(item, out, structure=structure, depth=depth + 1)
    elif isinstance(value, list | tuple):
        if structure:
            out.append(len(value))
        for item in value:
            flatten(item, out, structure=structure, depth=depth + 1)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            if structure:
                out.append(f.name)
            flatten(getattr(value, f.name, None), out, structure=structure, depth=depth + 1)
    elif structure:
        out.append(value if isinstance(value, _SCALARS) else type(value).__qualname__)


@dataclass(slots=True)
class TensorSummary:
    """Shapes, element count and bytes of every tensor found in a nested value."""

    shapes: list[tuple[int, ...]] = field(default_factory=list)
    elements: int = 0
    nbytes: int = 0


def summarize_tensors(*values: Any) -> TensorSummary:
    """Sizes of all tensors in ``values``: tuples, lists, dicts, dataclasses, any nesting.

    A tensor that appears twice (same object) is counted once.

    >>> summarize_tensors([torch.zeros(2, 3)] * 2).shapes
    [(2, 3)]
    """
    leaves: list[Any] = []
    for value in values:
        flatten(value, leaves)
    summary = TensorSummary()
    seen: set[int] = set()
    for tensor in leaves:
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        numel = tensor.numel()
        summary.shapes.append(tensor_shape(tensor))
        summary.elements += numel
        summary.nbytes += numel * tensor.element_size()
    return summary


def structure_signature(*values: Any) -> tuple[Any, ...]:
    """What decides the work of a call on ``values``: each tensor's shape, dtype and device,
    and the structure and plain scalars around them (other objects by type name).

    >>> structure_signature((torch.zeros(2, 3),), {"flag": True})
    (1, ((2, 3), torch.float32, device(type='cpu')), 'flag', True)
    """
    leaves: list[Any] = []
    for value in values:
        flatten(value, leaves, structure=True)
    return tuple(
        (tensor_shape(v), v.dtype, v.device) if isinstance(v, torch.Tensor) else v for v in leaves
    )
