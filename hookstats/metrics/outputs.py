"""What activation metrics measure of one call: the floating-point tensors a hook point's
module returned (:func:`output_tensors`), and their float64 parts (:func:`output_moments`).

May import: torch, :mod:`hookstats.instrument` (the tensor walker) and the
:mod:`hookstats.metrics` sibling ``moments``.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensor

from ..instrument.tensors import flatten
from .moments import MEASURES, tensor_moments

__all__ = ["output_moments", "output_tensors"]


def output_tensors(output: Any) -> list[torch.Tensor]:
    """The floating-point tensors of a module's output that activation metrics measure: each
    once, walked by the one walker, strided real floating-point tensors with values only (no
    meta or fake tensor).

    Example:
        >>> out = (torch.ones(2), {"ids": torch.zeros(2, dtype=torch.long)}, torch.ones(1))
        >>> [t.shape for t in output_tensors(out)]
        [torch.Size([2]), torch.Size([1])]
    """
    leaves: list[Any] = []
    flatten(output, leaves)
    found: dict[int, torch.Tensor] = {}
    for t in leaves:
        if (
            t.is_floating_point()
            and t.layout == torch.strided
            and not t.is_nested
            and t.device.type != "meta"
            and not isinstance(t, FakeTensor)
        ):
            found.setdefault(id(t), t)
    return list(found.values())


def output_moments(output: Any, measure: Collection[str] = MEASURES) -> list[torch.Tensor]:
    """One call's statistics: a float64 part (:func:`~hookstats.metrics.moments.tensor_moments`
    measuring ``measure``) per non-empty tensor of :func:`output_tensors`, on its device, made
    without grad.

    Example:
        >>> [p.tolist()[:2] for p in output_moments((torch.ones(2), torch.empty(0)))]
        [[2.0, 1.0]]
    """
    with torch.no_grad():
        return [tensor_moments(t, measure) for t in output_tensors(output) if t.numel()]
