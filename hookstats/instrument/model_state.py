"""Facts about a model's state, and the one way to change it for a while and put it back.

:func:`model_device` and :func:`model_float_dtype` read where and in what precision a model
lives; :func:`eval_mode` puts it in eval mode for a ``with`` block and restores every module's
own training flag afterwards, whether the block returns or raises. :func:`restored_buffers`
puts back every buffer a forward changed (quantisation observers' min/max, call counters,
running statistics updated even in eval mode): the buffer objects themselves and their values,
also when the block raises.

The training flags are the model's own attributes: while a ``with eval_mode(...)`` block runs,
*other threads* using the same model see it in eval mode (``hs.profile`` runs one such block).
Profile a model that another thread trains or serves on a copy (``copy.deepcopy(model)``), or
on ``device="meta"``, which runs on substitute tensors.

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

__all__ = [
    "dtype_name",
    "eval_mode",
    "model_device",
    "model_float_dtype",
    "restored_buffers",
    "train_mode",
]


@contextmanager
def eval_mode(model: nn.Module, *, restore_buffers: bool = False) -> Iterator[None]:
    """Eval mode for the duration; every module's own training flag is restored afterwards
    (and, with ``restore_buffers``, every buffer: :func:`restored_buffers`)."""
    with _training_flags(model, False):
        if restore_buffers:
            with restored_buffers(model):
                yield
        else:
            yield


@contextmanager
def train_mode(model: nn.Module) -> Iterator[None]:
    """Training mode for the duration; every module's own flag is restored afterwards."""
    with _training_flags(model, True):
        yield


@contextmanager
def _training_flags(model: nn.Module, training: bool) -> Iterator[None]:
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.train(training)
        yield
    finally:
        for module, flag in flags:
            module.training = flag


@contextmanager
def restored_buffers(model: nn.Module) -> Iterator[None]:
    """Put back, when the block ends, every buffer of ``model`` as it was: a buffer replaced by
    another tensor gets its own object back, a buffer changed in place gets its values back
    (only those whose version counter moved are copied). Meta buffers hold no values and are
    left alone. Costs one copy of the model's buffers while the block runs.

    Example:
        >>> counter = nn.Module()
        >>> counter.register_buffer("calls", torch.zeros(()))
        >>> with restored_buffers(counter):
        ...     counter.calls += 1
        >>> float(counter.calls)
        0.0
    """
    saved = []
    with torch.no_grad():
        for module in model.modules():
            for name, buffer in module._buffers.items():
                if buffer is None:
                    continue
                value = None if buffer.device.type == "meta" else buffer.detach().clone()
                saved.append((module, name, buffer, buffer._version, value))
    try:
        yield
    finally:
        with torch.no_grad():
            for module, name, buffer, version, value in saved:
                if module._buffers.get(name) is not buffer:
                    module._buffers[name] = buffer
                if value is not None and buffer._version != version:
                    if buffer.shape != value.shape:
                        buffer.resize_(value.shape)
                    buffer.copy_(value)


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
