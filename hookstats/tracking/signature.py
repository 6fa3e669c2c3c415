"""The work signature of a forward: what decides its work, split into a *skeleton* and *dims*.

A forward's work (MACs, calls, shapes) is decided by the shapes, dtypes and devices of every
tensor it is given -- including the tensors held by cache objects such as transformers'
``DynamicCache``, which grow by one position per decoding step -- by its plain scalar
arguments, and by the state around it (grad mode, autocast, the model's training flag). The
walk is :func:`hookstats.instrument.tensors.flatten` with ``objects=True`` (the one walker).

:class:`Signature` splits it in two: ``skeleton`` (everything but the sizes: structure, ranks,
dtypes, devices, scalars, the state) and ``dims`` (every tensor dimension, in walk order).
Two forwards with the same skeleton belong to one *family*; their dims tell them apart, and
:mod:`hookstats.tracking.cost_model` fits costs along lines of dims.

May import: torch, :mod:`hookstats.instrument`.

Example:
    >>> import torch
    >>> sig = work_signature((torch.zeros(2, 3),), {})
    >>> sig.dims
    (2, 3)
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from ..instrument.tensors import flatten, tensor_shape

__all__ = ["Signature", "leading_dim", "work_signature"]


class Signature(NamedTuple):
    """A forward's work signature (see the module docstring)."""

    skeleton: tuple[Any, ...]
    dims: tuple[int, ...]


def _state(device_type: str) -> tuple[Any, ...]:
    autocast = torch.is_autocast_enabled(device_type)
    return (
        torch.is_grad_enabled(),
        autocast,
        torch.get_autocast_dtype(device_type) if autocast else None,
    )


def work_signature(args: Any, kwargs: Any, *, training: bool = False) -> Signature:
    """The :class:`Signature` of a call ``forward(*args, **kwargs)``.

    ``training`` is the model's own training flag (part of the skeleton).
    """
    if not kwargs and len(args) == 1 and type(args[0]) is torch.Tensor:  # the common case
        tensor = args[0]
        if not tensor.is_nested:
            shape = tuple(tensor.shape)
            state = _state(tensor.device.type)
            return Signature((training, state, 1, (len(shape), tensor.dtype, tensor.device)), shape)
    leaves: list[Any] = []
    flatten((args, kwargs), leaves, structure=True, objects=True, seen=set())
    skeleton: list[Any] = [training]
    dims: list[int] = []
    device_type = "cpu"
    for leaf in leaves:
        if isinstance(leaf, torch.Tensor):
            shape = tensor_shape(leaf)
            skeleton.append((len(shape), leaf.dtype, leaf.device))
            dims.extend(shape)
            device_type = leaf.device.type
        else:
            skeleton.append(leaf)
    skeleton.insert(1, _state(device_type))
    return Signature(tuple(skeleton), tuple(dims))


def leading_dim(args: Any, kwargs: Any) -> int:
    """Samples in one forward: the first dimension of the first tensor argument (1 if 0-d).

    >>> leading_dim((torch.zeros(32, 3),), {})
    32
    """
    if args and type(args[0]) is torch.Tensor:  # the common case
        shape = args[0].shape
        return int(shape[0]) if shape else 1
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            return int(value.shape[0]) if value.dim() else 1
    return 1
