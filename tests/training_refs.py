"""Independent references for the training step, run on the real model (tests only).

* MACs: ``torch.utils.flop_counter.FlopCounterMode`` around forward + loss + backward, / 2;
* saved bytes: a ``torch.autograd.graph.saved_tensors_hooks`` pack hook on the real forward,
  distinct storages, parameters excluded;
* peak: torch's private ``torch.distributed._tools.mem_tracker.MemTracker`` around a steady-state
  step (forward, loss, backward, ``optimizer.step()``; the optimizer's state already exists).
  hookstats never imports it; when this torch lacks it the peak tests skip.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def flop_counter_macs(model: nn.Module, args: tuple, loss_fn: Callable[[Any], torch.Tensor]) -> int:
    model.train()
    with FlopCounterMode(display=False) as counter:
        loss_fn(model(*args)).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() // 2


def saved_bytes(model: nn.Module, args: tuple, loss_fn: Callable[[Any], torch.Tensor]) -> int:
    model.train()
    parameters = {id(p.untyped_storage()) for p in model.parameters()}
    seen: dict[int, int] = {}
    keep: list[torch.UntypedStorage] = []  # ids stay unique while the storages live

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if id(storage) not in parameters:
            seen[id(storage)] = storage.nbytes()
            keep.append(storage)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn(model(*args))
    loss.backward()
    model.zero_grad(set_to_none=True)
    return sum(seen.values())


def memtracker_peak(
    model: nn.Module,
    args: tuple,
    loss_fn: Callable[[Any], torch.Tensor],
    optimizer: Callable[[Any], torch.optim.Optimizer] | None,
) -> int:
    """Peak bytes of a steady-state CPU step, by MemTracker (skips if this torch lacks it)."""
    import pytest

    mem_tracker = pytest.importorskip(
        "torch.distributed._tools.mem_tracker", reason="MemTracker is a private torch tool"
    )
    model.train()
    opt = optimizer(model.parameters()) if optimizer is not None else None
    if opt is not None:  # the first step creates the state
        loss_fn(model(*args)).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    tracker = mem_tracker.MemTracker()
    tracker.track_external(model, *([opt] if opt is not None else []), *args)
    with tracker:
        out = model(*args)
        loss = loss_fn(out)
        loss.backward()
        if opt is not None:
            opt.step()
    model.zero_grad(set_to_none=True)
    del out, loss
    return int(tracker.get_tracker_snapshot("peak")[torch.device("cpu")]["Total"])
