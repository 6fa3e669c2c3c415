"""Static facts about selected hook points (:class:`~hookstats.instrument.records.PointInfo`):
type, depth, parameters and their bytes (dtype-aware), and whether the point is innermost.

Parameter sizes are keyed by tensor identity, so totals count a tied or shared tensor once.
Quantized modules (``torch.ao.quantization.quantize_dynamic``) hold their weights *packed*, in
a ``torch.ScriptObject`` that is not a ``Parameter``: those are unpacked once and counted as
the module's parameters (int8 weights at 1 byte, fp16 at 2, plus the bias), keyed by the
packed object.

May import: torch, :mod:`hookstats.points`, :mod:`hookstats.instrument.records`.

Example:
    >>> from torch import nn
    >>> from hookstats.points import select_points
    >>> model = nn.Sequential(nn.Linear(4, 2))
    >>> infos, sizes = point_infos(select_points(model), dtype=None)
    >>> [(i.name, i.parameters, i.parameter_bytes, i.innermost) for i in infos]
    [('(model)', 10, 40, False), ('0', 10, 40, True)]
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..points import HookPoint, innermost_flags
from .records import PointInfo

__all__ = ["ParameterSizes", "packed_size", "parameter_bytes", "point_infos"]

ParameterSizes = dict[int, tuple[int, int]]
"""``id(tensor) -> (elements, bytes)`` of every parameter of the selected points."""


def parameter_bytes(param: torch.Tensor, dtype: torch.dtype | None) -> int:
    """Bytes of ``param``, or of its cast to ``dtype`` when it is floating point."""
    cast = dtype is not None and param.is_floating_point()
    itemsize = dtype.itemsize if cast and dtype is not None else param.element_size()
    return param.numel() * itemsize


def _script_objects(module: nn.Module) -> list[Any]:
    script_object = getattr(torch, "ScriptObject", None)
    if script_object is None:
        return []
    return [value for value in vars(module).values() if isinstance(value, script_object)]


def _is_packed_holder(module: nn.Module) -> bool:
    """A ``*PackedParams`` module: it holds a quantized module's weights, is never called."""
    return type(module).__name__.endswith("PackedParams")


class _Tensors:
    """The tensors each module holds (parameters and packed weights), with their sizes, each
    module's subtree walked once."""

    def __init__(self, dtype: torch.dtype | None) -> None:
        self.dtype = dtype
        self.sizes: ParameterSizes = {}
        self._under: dict[int, frozenset[int]] = {}

    def own(self, module: nn.Module) -> list[int]:
        ids = []
        for param in module.parameters(recurse=False):
            if id(param) not in self.sizes:
                self.sizes[id(param)] = (param.numel(), parameter_bytes(param, self.dtype))
            ids.append(id(param))
        for packed in _script_objects(module):
            if id(packed) not in self.sizes:
                self.sizes[id(packed)] = packed_size(packed, module, self.dtype)
            ids.append(id(packed))
        return ids

    def under(self, module: nn.Module) -> frozenset[int]:
        found = self._under.get(id(module))
        if found is None:
            ids = set(self.own(module))
            for child in module.children():
                ids |= self.under(child)
            found = self._under[id(module)] = frozenset(ids)
        return found

    def own_bytes(self, module: nn.Module) -> list[int]:
        """Bytes of the tensors the module owns itself (its packed-weight holders included)."""
        holders = [module, *(c for c in module.children() if _is_packed_holder(c))]
        return [self.sizes[i][1] for holder in holders for i in self.own(holder)]


def packed_size(packed: Any, holder: nn.Module, dtype: torch.dtype | None) -> tuple[int, int]:
    """``(elements, bytes)`` of the weight and bias in a quantized packed-parameter object
    (``(0, 0)`` when it cannot be unpacked)."""
    try:
        weight, bias = packed.unpack()[:2]
    except Exception:
        return 0, 0
    stored = getattr(holder, "dtype", None)
    itemsize = 2 if stored == torch.float16 else weight.element_size()
    elements = weight.numel() + (bias.numel() if bias is not None else 0)
    nbytes = weight.numel() * itemsize
    if bias is not None:
        nbytes += parameter_bytes(bias, dtype)
    return elements, nbytes


def point_infos(
    points: list[HookPoint], dtype: torch.dtype | None
) -> tuple[list[PointInfo], ParameterSizes]:
    """One :class:`PointInfo` per point, and the sizes of every parameter they hold."""
    tensors = _Tensors(dtype)
    innermost = innermost_flags([p.name for p in points])
    infos = []
    for point, is_innermost in zip(points, innermost, strict=True):
        ids = tensors.under(point.module)
        own = tensors.own_bytes(point.module)
        sizes = tensors.sizes
        infos.append(
            PointInfo(
                name=point.name,
                module_type=point.type_name,
                depth=point.depth,
                is_leaf=point.is_leaf,
                parameters=sum(sizes[i][0] for i in ids),
                parameter_bytes=sum(sizes[i][1] for i in ids),
                owns_parameters=bool(own),
                own_parameter_bytes=sum(own),
                innermost=is_innermost,
                parameter_ids=ids,
            )
        )
    return infos, tensors.sizes
