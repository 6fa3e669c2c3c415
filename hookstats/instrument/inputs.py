"""Forward arguments for a profile: a dummy input made from ``input_shape=``/``batch_size=``, or
the given ``inputs=``/``kwargs=``, moved and cast by the :class:`~.placement.Placement`.

The dummy input is drawn from a private ``torch.Generator`` seeded with :data:`DUMMY_SEED`:
torch's global random state (yours) is never advanced, so a seeded run gives the same numbers
with or without a profile, and two profiles see the same input. On meta it has no values.

May import: torch, :mod:`hookstats.errors`, :mod:`hookstats.instrument.placement` and
:mod:`hookstats.instrument.model_state`.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from hookstats.instrument.placement import plan_placement
    >>> model = nn.Linear(3, 2)
    >>> args, kwargs = build_inputs(model, plan_placement(model, None, None), input_shape=(3,),
    ...                             batch_size=4, inputs=None, kwargs=None)
    >>> tuple(args[0].shape), kwargs
    ((4, 3), {})
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..errors import InputSpecError
from .model_state import model_float_dtype
from .placement import Placement

__all__ = ["DUMMY_SEED", "build_inputs", "dummy_input"]

DUMMY_SEED = 0


def dummy_input(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A standard-normal tensor from a private generator (the global RNG is untouched).

    Example:
        >>> a = dummy_input((2,), torch.float32, torch.device("cpu"))
        >>> torch.equal(a, dummy_input((2,), torch.float32, torch.device("cpu")))
        True
    """
    if device.type == "meta":
        return torch.empty(shape, dtype=dtype, device=device)
    try:
        generator = torch.Generator(device=device).manual_seed(DUMMY_SEED)
    except RuntimeError:  # a device without its own generators: draw on the CPU, then move
        generator = torch.Generator().manual_seed(DUMMY_SEED)
        return torch.randn(shape, dtype=dtype, generator=generator).to(device)
    return torch.randn(shape, dtype=dtype, device=device, generator=generator)


def _size(value: object) -> bool:
    """A dimension size: a positive int that fits in 64 bits (what torch can allocate)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63


def build_inputs(
    model: nn.Module,
    placement: Placement,
    *,
    input_shape: tuple[int, ...] | None,
    batch_size: int,
    inputs: Any,
    kwargs: Mapping[str, Any] | None,
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Turn ``input_shape``/``batch_size`` or ``inputs``/``kwargs`` into forward arguments."""
    if not _size(batch_size):
        raise InputSpecError(f"batch_size must be a positive int, got {batch_size!r}.")
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise InputSpecError(f"kwargs= must be a dict of keyword arguments, got {kwargs!r}.")
    if input_shape is not None and inputs is not None:
        raise InputSpecError(
            "give either input_shape= (a dummy input is made) or inputs=, not both."
        )
    if input_shape is not None:
        shape = tuple(input_shape) if isinstance(input_shape, list | tuple) else (input_shape,)
        if not all(_size(s) for s in shape):
            raise InputSpecError(
                f"input_shape must be positive ints without the batch dimension, e.g. "
                f"(1, 28, 28); got {input_shape!r}."
            )
        dtype = placement.dtype or model_float_dtype(model)
        with placement.context():
            dummy = dummy_input((batch_size, *shape), dtype, placement.device)
        args: tuple[Any, ...] = (dummy,)
    elif inputs is not None:
        args = inputs if isinstance(inputs, tuple) else (inputs,)
    elif kwargs:
        args = ()
    else:
        raise InputSpecError(
            "no input: pass input_shape=(C, H, W) with batch_size=, or inputs=(tensor, ...) "
            "and/or kwargs={...} for the forward call."
        )
    return placement.convert(args), placement.convert(dict(kwargs or {}))
