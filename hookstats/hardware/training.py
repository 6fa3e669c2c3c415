"""Hardware views of a training step (a ``profile(..., train=True)`` report): the step as roofline
rows, and its model FLOPs utilization (MFU) for a measured step time.

The step's rows, read by :func:`~hookstats.hardware.roofline.summarize_hardware` like any cost
frame (so the time bound of a step is the sum of its rows' roofline times):

* each hook point's **forward** row, as in an inference profile;
* its **backward** row, named ``(backward).<hook point>`` (``(backward)`` for the root) and
  counted in the totals when the forward row is (the innermost hook points): ``backward_macs``; the
  weights read again by every call (``calls * parameter_bytes``); read: the saved tensors
  (``saved_bytes``) and the output's gradient (``activation_bytes``) -- the ``input_bytes``
  column; written: the input's gradient (``input_bytes``) and the weight gradients
  (``gradient_bytes``) -- the ``activation_bytes`` column;
* the **optimizer** row ``(optimizer)``: it reads the trainable parameters, their gradients and
  the state and writes the parameters and the state (``3 * gradients + 2 * state`` bytes; no
  MACs), when the report has an optimizer.

MFU = model FLOPs / (step time x peak FLOP/s), with model FLOPs = ``2 * (forward MACs +
backward MACs - recomputed MACs)``: recomputation (activation checkpointing) is work the
hardware does but not model work (it is in the rows' MACs, which give the time bound).

May import: numpy, pandas, :mod:`hookstats.points` and :mod:`hookstats.profiling`.

Example:
    >>> import hookstats as hs
    >>> from torch import nn
    >>> r = hs.profile(nn.Linear(8, 4), input_shape=(8,), batch_size=2, train=True)
    >>> list(training_frame(r)["hook_point"]), model_flops(r)  # 2 * (64 + 64)
    (['(model)', '(backward)'], 256)
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from ..points import ROOT_NAME, innermost_flags
from ..profiling import Report

__all__ = ["BACKWARD_PREFIX", "OPTIMIZER_ROW", "model_flops", "step_totals", "training_frame"]

BACKWARD_PREFIX = "(backward)"
OPTIMIZER_ROW = "(optimizer)"
_COLUMNS = ["hook_point", "calls", "parameter_bytes", "input_bytes", "activation_bytes", "macs"]
_ROWS = [*_COLUMNS, "counted"]


def _backward_name(hook_point: str) -> str:
    return BACKWARD_PREFIX if hook_point == ROOT_NAME else f"{BACKWARD_PREFIX}.{hook_point}"


def training_frame(report: Report) -> pd.DataFrame:
    """The step's rows: forward, backward per called hook point, and the optimizer's."""
    frame = report.to_frame()
    frame["counted"] = innermost_flags([str(n) for n in frame["hook_point"]])
    forward = frame[_ROWS]
    called = frame[frame["calls"] > 0]
    backward = pd.DataFrame(
        {
            "hook_point": [_backward_name(str(n)) for n in called["hook_point"]],
            "calls": called["calls"].to_numpy(),
            "parameter_bytes": called["parameter_bytes"].to_numpy(),
            "input_bytes": (called["saved_bytes"] + called["activation_bytes"]).to_numpy(),
            "activation_bytes": (called["input_bytes"] + called["gradient_bytes"]).to_numpy(),
            "macs": called["backward_macs"].to_numpy(),
            "counted": called["counted"].to_numpy(),
        }
    )
    parts = [forward, backward]
    memory = report.memory
    if memory is not None and memory.optimizer is not None:
        reads = 2 * memory.gradients + memory.optimizer_state
        writes = memory.gradients + memory.optimizer_state
        parts.append(pd.DataFrame([[OPTIMIZER_ROW, 1, 0, reads, writes, 0, True]], columns=_ROWS))
    return pd.concat(parts, ignore_index=True)


def model_flops(report: Report) -> int:
    """``2 * (forward + backward - recomputed MACs)`` of the step (the loss function's too)."""
    training = report.training
    if training is None:
        raise ValueError("model_flops needs a profile(..., train=True) report.")
    backward = training.total("backward_macs") - training.recompute_macs
    return 2 * (training.forward_macs + backward)


def step_totals(
    report: Report, latency_ms: float | None, peak_tflops: float | None, measured: bool
) -> dict[str, Any]:
    """``model_flops`` and ``mfu`` for the summary's total (``mfu`` NaN without a measured
    step time, a peak, or at a what-if precision)."""
    flops = model_flops(report)
    mfu = math.nan
    if measured and latency_ms and peak_tflops:
        mfu = flops / (latency_ms / 1e3) / (peak_tflops * 1e12)
    return {"model_flops": flops, "mfu": mfu}
