"""Activation metrics in ``track()``: :class:`TrackedActivations` streams the outputs of the
tracked hook points into an :class:`~hookstats.metrics.ActivationMonitor` over every forward of
the block, and gives each snapshot the long frame of their running values.

* **Hooks for the whole block.** One forward hook per tracked hook point, attached on entry
  and removed on exit with the tracker's other hooks -- also in the steady state with
  ``timing=False``, where a forward otherwise runs without per-module hooks. They are
  *prepended*, so a reduction runs before the recorder's (and the CUDA timers') post-hooks:
  its time is part of the hook point's own latency, where the cost is caused.
* **Tracked forwards only.** A hook does nothing outside a forward of the tracked model in its
  thread (a submodule called directly, as for every other column), nor for another module (a
  deep copy carries the hook along).
* **Never counted.** A call's outputs are reduced at once by
  :func:`~hookstats.metrics.outputs.output_moments` (eight float64 numbers per tensor, on the
  device, no wait, no grad; only what the metrics asked for: ``act_rms`` needs no extremes,
  zeros or fourth moments) with every MAC counter off the dispatch-mode stack
  (:func:`~hookstats.tracking.forward_state.counters_hidden`): a counted forward's MACs are the
  model's alone.
* **Per forward.** The parts wait in the thread's forward state; the post-hook hands them to
  the monitor when the forward completes, and a forward that raises or is interrupted drops
  them as it drops its costs -- so a point's activation statistics cover exactly its
  ``calls``.
* **Snapshots** (:attr:`Tracker.report`, the live view's thread) pool the parts so far and read
  them back with one transfer per device, holding no lock a forward waits on for more than a
  list copy; on exit the frame is frozen.
* **Compiled models** (``torch.compile(model)``): a hook added to a module inside the compiled
  forward does not run (Dynamo does not guard on hooks), and one present when Dynamo compiles
  would stay in its graph after the block. So only the wrapper is hooked: the model's own row
  (when it is tracked) is measured on the compiled call's output, every other point is NaN with
  a note saying to track the eager model.

May import: torch, pandas, :mod:`hookstats.metrics`, :mod:`hookstats.points` and the
:mod:`hookstats.tracking` sibling ``forward_state``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
from torch import nn
from torch.utils.hooks import RemovableHandle

from ..metrics import ActivationMonitor
from ..metrics.outputs import output_moments
from ..points import PointSpec
from .forward_state import ForwardState, counters_hidden

__all__ = ["COMPILED_NOTE", "TrackedActivations", "metric_frame"]

COMPILED_NOTE = (
    "not measured: hooks inside a torch.compile'd model do not run; track the eager model "
    "for activation metrics per hook point"
)


class TrackedActivations:
    """The activation metrics of one ``track()`` block (see the module docstring).

    Args:
        eager: the tracked model (the eager module of a ``torch.compile`` wrapper).
        hook_root: the module the tracker hooks for whole forwards (the wrapper, if compiled).
        points: the tracker's ``points=``.
        metrics: activation metric names.
        root_name: the model's own hook point name when it is tracked, else None.
        compiled: whether ``hook_root`` is a ``torch.compile`` wrapper.
    """

    def __init__(
        self,
        eager: nn.Module,
        hook_root: nn.Module,
        points: PointSpec,
        metrics: list[str],
        *,
        root_name: str | None,
        compiled: bool,
    ) -> None:
        self.monitor = ActivationMonitor(eager, points, metrics)
        self._modules = {p.name: p.module for p in self.monitor.points}
        if compiled:
            self._modules = {root_name: hook_root} if root_name is not None else {}
        self._compiled = compiled
        self._final: pd.DataFrame | None = None

    def add_hooks(self, state_of: Callable[[], ForwardState]) -> list[RemovableHandle]:
        """One prepended forward hook per measured module (all or none); ``state_of`` returns
        the calling thread's forward state."""
        handles: list[RemovableHandle] = []
        try:
            for name, module in self._modules.items():
                hook = _hook(name, module, state_of, self.monitor.measure)
                handles.append(module.register_forward_hook(hook, prepend=True))
        except BaseException:
            for handle in handles:
                handle.remove()
            raise
        return handles

    def commit(self, state: ForwardState) -> None:
        """The forward of ``state``'s thread completed: add its calls to the statistics."""
        found, state.activations = state.activations, []
        for name, parts in found:
            self.monitor.add(name, parts)

    def frame(self) -> pd.DataFrame:
        """Long rows ``hook_point, metric, value, note``: the running values, or those frozen
        on exit."""
        return self._final if self._final is not None else self._frame()

    def freeze(self) -> None:
        """The block ended: keep the final values."""
        self._final = self._frame()

    def _frame(self) -> pd.DataFrame:
        frame = self.monitor.to_frame()
        if self._compiled:
            frame.loc[~frame["hook_point"].isin(list(self._modules)), "note"] = COMPILED_NOTE
        return frame


def _hook(
    name: str, owner: nn.Module, state_of: Callable[[], ForwardState], measure: frozenset[str]
) -> Any:
    def hook(module: nn.Module, args: Any, output: Any) -> None:
        if module is not owner:
            return
        state = state_of()
        if state.depth == 0:  # not inside a forward of the tracked model
            return
        with counters_hidden():
            parts = output_moments(output, measure)
        state.activations.append((name, parts))

    return hook


def metric_frame(
    weights: pd.DataFrame | None, activations: TrackedActivations | None
) -> pd.DataFrame | None:
    """The long metric frame of a snapshot: weight metrics (once computed), then activation
    metrics; None when there is neither."""
    frames = [weights] if weights is not None else []
    if activations is not None:
        frames.append(activations.frame())
    if len(frames) < 2:
        return frames[0] if frames else None
    return pd.concat(frames, ignore_index=True)
