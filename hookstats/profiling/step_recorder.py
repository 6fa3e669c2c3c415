"""Who did the backward work and who saved what: :class:`StepRecorder`, the owner of the hooks
of one training step, and its records (:class:`PointTraining`, :class:`TrainingCosts`).

Attribution, by autograd node: when a selected module's forward ends, the autograd nodes
reachable from its outputs that no one has claimed yet were created by it (the nodes reachable
from its *inputs* were claimed when it started, for the module running then). A claimed node
carries its hook point in its ``metadata`` (so nothing holds the graph alive) and gets a
pre-hook that names that point while the backward runs the node, so every op of the backward
-- and every op recomputed inside it (activation checkpointing re-enters the modules'
forwards) -- is counted for the hook point whose forward produced the work. Nodes created by
the loss function belong to no hook point ("outside").

Saved bytes: a ``saved_tensors_hooks`` pack hook sees every tensor the forward saves for
backward; each storage counts once, for the hook point that saved it first; parameters are
excluded. A checkpointed region saves nothing but its inputs, so its saved bytes drop.

Nothing stays behind: the module hooks are removed on :meth:`StepRecorder.close` (the caller
does it in ``finally``); node hooks live on the step's own graph and die with it; the leaves'
gradient accumulators (parameters, inputs) get no hook.

May import: torch, :mod:`hookstats.points`, :mod:`hookstats.instrument` and
:mod:`hookstats.profiling.memory`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from ..instrument import CallRecorder
from ..instrument.tensors import flatten
from ..points import HookPoint
from .memory import StorageSet, Where, storage_of

__all__ = ["PointTraining", "StepRecorder", "TrainingCosts"]

_MARK = "hookstats.hook_point"
"""The key of a node's ``metadata`` that names the hook point whose forward created it."""


@dataclass(slots=True)
class PointTraining:
    """Training costs of one hook point: backward MACs and bytes saved for backward, with its
    nested hook points (``backward_macs``, ``saved_bytes``) and without (``self_*``); and the
    bytes of its parameters' gradients (``gradient_bytes``, trainable parameters only)."""

    backward_macs: int = 0
    self_backward_macs: int = 0
    saved_bytes: int = 0
    self_saved_bytes: int = 0
    gradient_bytes: int = 0


@dataclass(slots=True)
class TrainingCosts:
    """Per-hook-point training costs of a step, and what ran outside every hook point.

    Attributes:
        points: hook point -> :class:`PointTraining`.
        outside: self costs outside every selected hook point (the loss function's ops).
        recompute_macs: backward MACs that recomputed forward work (activation checkpointing);
            a model-FLOPs count (for MFU) leaves them out.
        forward_macs: every forward MAC of the step, the loss function's included.
        gradients: bytes of all the gradients (each parameter once).
        optimizer: the optimizer's name, or None.

    Example:
        >>> costs = TrainingCosts({"fc": PointTraining(8, 8, 16, 16)}, PointTraining(0, 0, 4, 4))
        >>> costs.total("backward_macs"), costs.total("saved_bytes")
        (8, 20)
    """

    points: dict[str, PointTraining]
    outside: PointTraining = field(default_factory=PointTraining)
    recompute_macs: int = 0
    gradients: int = 0
    optimizer: str | None = None
    forward_macs: int = 0

    def column(self, name: str, points: Sequence[str]) -> list[int]:
        """Values of the column ``name`` (``backward_macs``, ``self_saved_bytes``...) for
        ``points``, in order."""
        empty = PointTraining()
        return [int(getattr(self.points.get(p, empty), name)) for p in points]

    def total(self, column: str) -> int:
        """The step's total of ``column``: every op once (self values), outside included;
        ``gradient_bytes``: every parameter once."""
        if column == "gradient_bytes":
            return self.gradients
        kind = "self_backward_macs" if column.endswith("backward_macs") else "self_saved_bytes"
        inside = sum(getattr(p, kind) for p in self.points.values())
        return int(inside + getattr(self.outside, kind))


class StepRecorder:
    """Owns the hooks of one training step; the MAC sink of its counter (see module doc).

    In the forward the sink is the :class:`~hookstats.instrument.CallRecorder` (forward MACs
    per call); in the backward the hook point of the running node, or of the module being
    recomputed.
    """

    def __init__(
        self, points: Sequence[HookPoint], forward: CallRecorder, parameters: Iterable[Any]
    ) -> None:
        self._points = list(points)
        self._names = {id(p.module): p.name for p in self._points}
        self._forward = forward
        self._parameter_storages = {id(s) for s in map(storage_of, parameters) if s is not None}
        self._handles: list[RemovableHandle] = []
        self._stack: list[str] = []
        self._enclosing: dict[str, tuple[str, ...]] = {}
        self._node_point: str | None = None
        self._saved = StorageSet()
        self.phase = "forward"
        self.self_backward: Counter[str | None] = Counter()
        self.self_saved: Counter[str | None] = Counter()
        self.recompute_macs = 0

    # --- hooks ----------------------------------------------------------------------------

    def attach(self) -> None:
        """Hook every selected module (removed by :meth:`close`)."""
        try:
            for point in self._points:
                module: nn.Module = point.module
                self._handles.append(
                    module.register_forward_pre_hook(self._before, with_kwargs=True)
                )
                self._handles.append(
                    module.register_forward_hook(self._after, with_kwargs=True, always_call=True)
                )
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Remove every module hook and forget the graph (idempotent)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._stack.clear()
        self._saved.clear()

    def _before(self, module: nn.Module, args: Any, kwargs: Any) -> None:
        self._claim((args, kwargs), self._stack[-1] if self._stack else None)
        name = self._names[id(module)]
        self._enclosing.setdefault(name, tuple(self._stack))
        self._stack.append(name)

    def _after(self, module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        if not self._stack:
            return
        name = self._stack.pop()
        if output is not None:
            self._claim(output, name)

    def claim_outside(self, value: Any) -> None:
        """Nodes reachable from ``value`` not claimed yet belong to no hook point (the loss)."""
        self._claim(value, None)

    def _claim(self, value: Any, point: str | None) -> None:
        """Mark the unclaimed nodes reachable from the tensors of ``value`` as ``point``'s: the
        mark lives in the node's own ``metadata`` (it dies with the graph) and a pre-hook names
        the point when the backward runs the node."""
        leaves: list[Any] = []
        flatten(value, leaves)
        todo: list[Any] = [
            t.grad_fn for t in leaves if isinstance(t, torch.Tensor) and t.grad_fn is not None
        ]
        while todo:
            node = todo.pop()
            metadata = node.metadata
            if _MARK in metadata:
                continue
            metadata[_MARK] = point
            if hasattr(node, "variable"):  # a leaf's gradient accumulator: no work, no hook
                continue
            node.register_prehook(partial(self._enter_node, point))
            todo.extend(child for child, _ in node.next_functions if child is not None)

    def _enter_node(self, point: str | None, grad_outputs: Any) -> None:
        self._node_point = point

    # --- saved tensors --------------------------------------------------------------------

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        """The pack hook: count a storage saved in the forward (once, parameters excluded)."""
        if self.phase in ("forward", "loss"):
            storage = storage_of(tensor)
            if storage is None or id(storage) in self._parameter_storages:
                return tensor
            if self._saved.add(storage):
                self.self_saved[self._stack[-1] if self._stack else None] += storage.nbytes()
        return tensor

    @staticmethod
    def unpack(tensor: torch.Tensor) -> torch.Tensor:
        """The unpack hook: the tensor as it was saved."""
        return tensor

    # --- the MAC sink ---------------------------------------------------------------------

    @property
    def current_point(self) -> str | None:
        """The hook point that ops run for now (forward: the innermost running one)."""
        if self.phase == "backward":
            return self._stack[-1] if self._stack else self._node_point
        if self.phase == "forward":
            return self._forward.current_point
        return self._stack[-1] if self._stack else None

    def add_macs(self, macs: int) -> None:
        """Forward and loss MACs go to the call records; backward MACs to the running node's
        hook point (recomputation included)."""
        if self.phase == "loss":  # after the recorded forward: outside every hook point
            self._forward.add_outside_macs(macs)
            return
        if self.phase != "backward":
            self._forward.add_macs(macs)
            return
        self.self_backward[self.current_point] += macs
        if self._stack:
            self.recompute_macs += macs

    def where(self) -> Where:
        """``(phase, hook point)`` now, for the peak of live bytes."""
        return self.phase, self.current_point

    # --- the result -----------------------------------------------------------------------

    def costs(
        self,
        optimizer: str | None,
        gradient_bytes: dict[str, int],
        gradients: int,
        total_macs: int,
    ) -> TrainingCosts:
        """Per-point costs: self values, rolled up to the points enclosing each in the forward;
        ``gradient_bytes`` per point and ``gradients`` in all are the caller's, and
        ``total_macs`` the counter's (forward, loss and backward)."""
        points = {
            p.name: PointTraining(gradient_bytes=gradient_bytes.get(p.name, 0))
            for p in self._points
        }
        outside = PointTraining()
        columns = (("backward_macs", self.self_backward), ("saved_bytes", self.self_saved))
        for column, counts in columns:
            for name, value in counts.items():
                own = outside if name is None else points[name]
                _add(own, f"self_{column}", value)
                holders = (name, *self._enclosing.get(name, ())) if name is not None else ()
                for holder in [points[h] for h in holders] or [outside]:
                    _add(holder, column, value)
        forward = total_macs - sum(self.self_backward.values())
        return TrainingCosts(points, outside, self.recompute_macs, gradients, optimizer, forward)


def _add(record: PointTraining, column: str, value: int) -> None:
    setattr(record, column, getattr(record, column) + value)
