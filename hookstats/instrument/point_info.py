"""Static facts about selected hook points (:class:`~hookstats.instrument.records.PointInfo`):
type, depth, parameters and their bytes (dtype-aware), and whether the point is innermost.

Parameter sizes are keyed by tensor identity, so totals count a tied or shared tensor once.

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

import torch

from ..points import HookPoint, innermost_flags
from .records import PointInfo

__all__ = ["ParameterSizes", "parameter_bytes", "point_infos"]

ParameterSizes = dict[int, tuple[int, int]]
"""``id(tensor) -> (elements, bytes)`` of every parameter of the selected points."""


def parameter_bytes(param: torch.Tensor, dtype: torch.dtype | None) -> int:
    """Bytes of ``param``, or of its cast to ``dtype`` when it is floating point."""
    cast = dtype is not None and param.is_floating_point()
    itemsize = dtype.itemsize if cast and dtype is not None else param.element_size()
    return param.numel() * itemsize


def point_infos(
    points: list[HookPoint], dtype: torch.dtype | None
) -> tuple[list[PointInfo], ParameterSizes]:
    """One :class:`PointInfo` per point, and the sizes of every parameter they hold."""
    sizes: ParameterSizes = {}
    innermost = innermost_flags([p.name for p in points])
    infos = []
    for point, is_innermost in zip(points, innermost, strict=True):
        ids = []
        for param in point.module.parameters():
            if id(param) not in sizes:
                sizes[id(param)] = (param.numel(), parameter_bytes(param, dtype))
            ids.append(id(param))
        own = [parameter_bytes(p, dtype) for p in point.module.parameters(recurse=False)]
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
                parameter_ids=frozenset(ids),
            )
        )
    return infos, sizes
