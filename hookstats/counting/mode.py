"""The dispatch-mode MAC counter: routes every aten op to its formula and nothing else.

:class:`MacCounter` is a ``TorchDispatchMode``. For each op it looks up a formula once per
overload (cached), turns tensor arguments into shapes, and hands the count to a *sink* -- an
object with ``add_macs(macs)`` and ``current_point`` (the :class:`~hookstats.recorder.CallRecorder`
in practice), which attributes it to the innermost active hook point. Ops that carry matrix
work without a formula, or whose formula fails (nested tensors), land in ``uncounted`` as
:class:`UncountedOp` records.

May import: torch and the :mod:`hookstats.counting` siblings.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

from .coverage import carries_matrix_work
from .formulas import MacFormula, formula_for

__all__ = ["MacCounter", "MacSink", "UncountedOp", "merge_uncounted"]

OUTSIDE_POINTS = "(outside hook points)"


@dataclass(slots=True)
class UncountedOp:
    """An op that does matrix-like work but has no MAC formula: where and how often it ran."""

    op: str
    calls: int = 0
    hook_points: set[str] = field(default_factory=set)

    def copy(self) -> UncountedOp:
        """An independent copy (the set of hook points too)."""
        return UncountedOp(self.op, self.calls, set(self.hook_points))


def merge_uncounted(into: MutableMapping[str, UncountedOp], new: Mapping[str, UncountedOp]) -> None:
    """Add the uncounted ops of ``new`` (one counter's) to the running ones in ``into``."""
    for name, op in new.items():
        mine = into.setdefault(name, UncountedOp(op=name))
        mine.calls += op.calls
        mine.hook_points |= op.hook_points


_UNCOUNTED = object()


class MacSink(Protocol):
    """Where counted MACs go."""

    @property
    def current_point(self) -> str | None: ...

    def add_macs(self, macs: int) -> None: ...


def _shape_of(value: Any) -> Any:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else value


def _first_shape(out: Any) -> tuple[int, ...] | None:
    if isinstance(out, torch.Tensor):
        return tuple(out.shape)
    if isinstance(out, list | tuple) and out and isinstance(out[0], torch.Tensor):
        return tuple(out[0].shape)
    return None


class MacCounter(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """Count MACs of every aten op run while active; see the module docstring.

    Example:
        >>> class Total:
        ...     current_point, macs = None, 0
        ...     def add_macs(self, m): self.macs += m
        >>> sink = Total()
        >>> with MacCounter(sink):
        ...     _ = torch.ones(4, 8) @ torch.ones(8, 5)
        >>> sink.macs
        160
    """

    def __init__(self, sink: MacSink) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.sink = sink
        self.total_macs = 0
        self.uncounted: dict[str, UncountedOp] = {}
        self._route: dict[Any, Any] = {}

    def _classify(self, func: Any) -> MacFormula | object | None:
        formula = formula_for(func)
        if formula is not None:
            return formula
        return _UNCOUNTED if carries_matrix_work(func.overloadpacket.__name__) else None

    def _note_uncounted(self, func: Any) -> None:
        name = str(func.overloadpacket)
        entry = self.uncounted.get(name)
        if entry is None:
            entry = self.uncounted[name] = UncountedOp(op=name)
        entry.calls += 1
        entry.hook_points.add(self.sink.current_point or OUTSIDE_POINTS)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        try:
            route = self._route[func]
        except KeyError:
            route = self._route[func] = self._classify(func)
        if route is None:
            return out
        if route is _UNCOUNTED:
            self._note_uncounted(func)
            return out
        try:
            macs = int(
                route(
                    *tree_map(_shape_of, args),
                    out_shape=_first_shape(out),
                    **tree_map(_shape_of, kwargs),
                )
            )
        except Exception:  # e.g. nested tensors have no shape: report, never count as 0
            self._note_uncounted(func)
            return out
        self.total_macs += macs
        self.sink.add_macs(macs)
        return out
