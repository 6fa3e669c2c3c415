"""The one walker over nested values: the tensors of a call's arguments or outputs.

Forward arguments and outputs nest tensors in tuples, lists, dicts, dataclasses and Hugging
Face ``ModelOutput`` objects (an ordered dict that is also a dataclass). :func:`flatten` walks any
of them, to a depth of :data:`MAX_NESTING`, in one order, and every reader of nested values
uses it: :func:`summarize_tensors` (sizes and shapes of outputs) and
:func:`structure_signature` (what decides a forward's work, for the tracking cache). With
``objects=True`` the walk also enters plain objects through their attributes, so the tensors
held by a cache object (transformers' ``DynamicCache``: layers of keys and values) are found:
modules, functions and classes are never entered, and an object met twice is marked, not
walked again.

May import: torch.

    >>> summarize_tensors((torch.zeros(2, 3), {"h": torch.zeros(4, dtype=torch.int8)})).nbytes
    28
"""

from __future__ import annotations

import dataclasses
import enum
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = [
    "MAX_LEAVES",
    "MAX_NESTING",
    "TensorSummary",
    "flatten",
    "structure_signature",
    "summarize_tensors",
    "tensor_shape",
]

MAX_NESTING = 16
"""Containers nested deeper than this are not entered (a marker stands for them)."""

MAX_LEAVES = 4096
"""A walk with objects stops appending after this many leaves (a marker stands for the rest)."""

TRUNCATED = "…"
SEEN = "↺"
_SCALARS = (bool, int, float, str, bytes, type(None), torch.dtype, torch.device, enum.Enum)
_OPAQUE = (type, nn.Module, types.FunctionType, types.BuiltinFunctionType, types.MethodType)


_ENTERABLE: dict[type, bool] = {}


def _enterable(kind: type) -> bool:
    """Whether objects of ``kind`` are entered through their attributes (cached per type)."""
    found = _ENTERABLE.get(kind)
    if found is None:
        callable_instances = any("__call__" in vars(k) for k in kind.__mro__[:-1])
        found = _ENTERABLE[kind] = not (issubclass(kind, _OPAQUE) or callable_instances)
    return found


def _object_items(value: Any) -> list[tuple[str, Any]] | None:
    """The attributes of a plain object to walk into, or None for one not to enter."""
    if not _enterable(type(value)):
        return None
    attributes = getattr(value, "__dict__", None)
    if isinstance(attributes, dict):
        return list(attributes.items())
    slots = getattr(type(value), "__slots__", None)
    if isinstance(slots, tuple | list):
        return [(name, getattr(value, name, None)) for name in slots if isinstance(name, str)]
    return None


def tensor_shape(tensor: torch.Tensor) -> tuple[int, ...]:
    """The tensor's shape as plain ints; a nested tensor (no single shape) gives ``(numel,)``."""
    try:
        return tuple(tensor.shape)
    except RuntimeError:
        return (tensor.numel(),)


def flatten(
    value: Any,
    out: list[Any],
    *,
    structure: bool = False,
    objects: bool = False,
    depth: int = 0,
    seen: set[int] | None = None,
) -> None:
    """Append the leaves of ``value`` to ``out`` in walk order.

    Tensors are always appended. With ``structure=True`` the walk also appends what tells two
    values apart besides their tensors: dict keys, sequence lengths, plain scalars, the type
    name of any other object, and :data:`TRUNCATED` where the depth limit stopped it. With
    ``objects=True`` (and ``structure=True``) plain objects are entered through their
    attributes (see the module docstring).
    """
    _Walk(out, structure, objects, seen if seen is not None else set()).walk(value, depth)


class _Walk:
    """One walk of :func:`flatten` (its options held once, not passed at every level)."""

    __slots__ = ("objects", "out", "seen", "structure")

    def __init__(self, out: list[Any], structure: bool, objects: bool, seen: set[int]) -> None:
        self.out, self.structure, self.objects, self.seen = out, structure, objects, seen

    def walk(self, value: Any, depth: int) -> None:
        out = self.out
        if isinstance(value, torch.Tensor):
            out.append(value)
            return
        if depth >= MAX_NESTING or (self.objects and len(out) >= MAX_LEAVES):
            if self.structure:
                out.append(TRUNCATED)
            return
        structure = self.structure
        if isinstance(value, list | tuple):
            if structure:
                out.append(len(value))
            for item in value:
                self.walk(item, depth + 1)
        elif isinstance(value, Mapping):
            for key, item in value.items():
                if structure:
                    out.append(key)
                self.walk(item, depth + 1)
        elif structure and isinstance(value, _SCALARS):
            out.append(value)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            for f in dataclasses.fields(value):
                if structure:
                    out.append(f.name)
                self.walk(getattr(value, f.name, None), depth + 1)
        elif structure:
            self.other(value, depth)

    def other(self, value: Any, depth: int) -> None:
        out = self.out
        out.append(type(value).__qualname__)
        if not self.objects:
            return
        if id(value) in self.seen:
            out.append(SEEN)
            return
        items = _object_items(value)
        if items is None:
            return
        self.seen.add(id(value))
        for name, item in items:
            out.append(name)
            self.walk(item, depth + 1)


@dataclass(slots=True)
class TensorSummary:
    """Shapes, element count and bytes of every tensor found in a nested value."""

    shapes: list[tuple[int, ...]] = field(default_factory=list)
    elements: int = 0
    nbytes: int = 0


def _one_tensor(tensor: torch.Tensor) -> TensorSummary:
    shape = tensor_shape(tensor)
    numel = tensor.numel()
    return TensorSummary([shape], numel, numel * tensor.element_size())


def summarize_tensors(*values: Any) -> TensorSummary:
    """Sizes of all tensors in ``values``: tuples, lists, dicts, dataclasses, any nesting.

    A tensor that appears twice (same object) is counted once.

    >>> summarize_tensors([torch.zeros(2, 3)] * 2).shapes
    [(2, 3)]
    """
    if len(values) == 1 and type(values[0]) is torch.Tensor:  # the common case
        return _one_tensor(values[0])
    leaves: list[Any] = []
    for value in values:
        if isinstance(value, torch.Tensor):
            leaves.append(value)
        elif value or not isinstance(value, tuple | dict):
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


def structure_signature(*values: Any, objects: bool = False) -> tuple[Any, ...]:
    """What decides the work of a call on ``values``: each tensor's shape, dtype and device,
    and the structure and plain scalars around them (other objects by type name, and with
    ``objects=True`` by their attributes too: the tensors a cache object holds).

    >>> structure_signature((torch.zeros(2, 3),), {"flag": True})
    (1, ((2, 3), torch.float32, device(type='cpu')), 'flag', True)
    """
    leaves: list[Any] = []
    seen: set[int] = set()
    for value in values:
        flatten(value, leaves, structure=True, objects=objects, seen=seen)
    return tuple(
        (tensor_shape(v), v.dtype, v.device) if isinstance(v, torch.Tensor) else v for v in leaves
    )
