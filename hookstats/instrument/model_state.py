"""Facts about a model's state, and the one way to change it for a while and put it back.

:func:`model_device` and :func:`model_float_dtype` read where and in what precision a model
lives; :func:`eval_mode` puts it in eval mode for a ``with`` block and restores every module's
own training flag afterwards, whether the block returns or raises.

May import: torch.

Example:
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(2, 2), nn.Dropout())
    >>> with eval_mode(model):
    ...     model[1].training
    False
    >>> model[1].training, model_float_dtype(model), model_device(model)
    (True, torch.float32, device(type='cpu'))
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["dtype_name", "eval_mode", "model_device", "model_float_dtype"]


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the duration; every module's own training flag is restored afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield
    finally:
        for module, training in flags:
            module.training = training


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (cpu for a model with none)."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device
    return torch.device("cpu")


def model_float_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the model's first floating-point parameter (float32 when it has none)."""
    for tensor in model.parameters():
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``'bfloat16'`` (how reports name a dtype)."""
    return str(dtype).replace("torch.", "")
