"""The dispatch-mode MAC counter: routes every op to its formula and nothing else.

:class:`MacCounter` is a ``TorchDispatchMode``. Each op overload is classified once
(:func:`~hookstats.counting.coverage.classify_op`): counted by its formula, no MACs
(allowlist), decomposed (a composite without a formula: its parts are counted, as under
``torch.inference_mode()``), a value read, or uncounted. Counts go to a *sink* -- an object
with ``add_macs(macs)`` and ``current_point`` (the
:class:`~hookstats.instrument.recorder.CallRecorder` in practice), which attributes them to the
innermost active hook point. Uncounted ops land in :attr:`MacCounter.uncounted` and ops that
read tensor values into Python in :attr:`MacCounter.value_reads`, as :class:`UncountedOp`
records.

The counter is transparent to ``torch.compile`` (``ignore_compile_internals``): code compiled
inside it is compiled normally and runs with the counter on, and Dynamo never skips a frame
because the counter is active. Higher-order operators pass through it (see
:mod:`hookstats.counting.hops`).

May import: torch and the :mod:`hookstats.counting` siblings.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from . import hops
from .coverage import OpKind, classify_op
from .formulas import formula_for, on_registration
from .packed import mac_bound_for, meta_fallback_for

__all__ = ["OUTSIDE_POINTS", "MacCounter", "MacSink", "UncountedOp", "merge_uncounted"]

OUTSIDE_POINTS = "(outside hook points)"
"""The row name of work done outside every selected hook point."""


@dataclass(slots=True)
class UncountedOp:
    """An op whose MACs could not be counted (or that read tensor values): where and how often
    it ran, and an upper bound of the MACs it did when a formula can bound them."""

    op: str
    calls: int = 0
    hook_points: set[str] = field(default_factory=set)
    bound_macs: int | None = None

    def copy(self) -> UncountedOp:
        """An independent copy (the set of hook points too)."""
        return UncountedOp(self.op, self.calls, set(self.hook_points), self.bound_macs)


def _add_bound(a: int | None, b: int | None) -> int | None:
    return None if a is None and b is None else (a or 0) + (b or 0)


def merge_uncounted(into: MutableMapping[str, UncountedOp], new: Mapping[str, UncountedOp]) -> None:
    """Add the uncounted ops of ``new`` (one counter's) to the running ones in ``into``."""
    for name, op in new.items():
        mine = into.setdefault(name, UncountedOp(op=name))
        mine.calls += op.calls
        mine.hook_points |= op.hook_points
        mine.bound_macs = _add_bound(mine.bound_macs, op.bound_macs)


class MacSink(Protocol):
    """Where counted MACs go."""

    @property
    def current_point(self) -> str | None: ...

    def add_macs(self, macs: int) -> None: ...


def _shapes(values: Any) -> Any:
    """``values`` with every tensor replaced by its shape, in lists and tuples too."""
    if isinstance(values, torch.Tensor):
        return tuple(values.shape)
    if isinstance(values, list):
        return [_shapes(v) for v in values]
    if isinstance(values, tuple):
        return tuple(_shapes(v) for v in values)
    return values


def _kwarg_shapes(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {key: _shapes(value) for key, value in kwargs.items()} if kwargs else kwargs


def _first_shape(out: Any) -> tuple[int, ...] | None:
    if isinstance(out, torch.Tensor):
        return tuple(out.shape)
    if isinstance(out, list | tuple) and out and isinstance(out[0], torch.Tensor):
        return tuple(out[0].shape)
    return None


_HOP = "hop"
_KINDS: dict[Any, Any] = {}  # op overload (or HOP) -> OpKind or _HOP, shared by all counters
on_registration(_KINDS.clear)


def _kind_of(func: Any) -> Any:
    kind = _KINDS.get(func)
    if kind is None:
        kind = _HOP if hops.is_hop(func) else classify_op(func, formula_for(func) is not None)
        _KINDS[func] = kind
    return kind


def _reads_values(func: Any, args: Any, kwargs: Any) -> bool:
    """Whether this call of a value-tagged op lets Python see tensor values: integer indexing
    and ``one_hot`` with a given class count have static shapes."""
    name = func.overloadpacket.__name__
    if name == "index":
        indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
        return any(
            isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices
        )
    if name == "one_hot":
        classes = args[1] if len(args) > 1 else kwargs.get("num_classes", -1)
        return int(classes) < 0
    return True


def _on_meta(args: Any) -> bool:
    from torch._subclasses.fake_tensor import FakeTensor

    return any(
        isinstance(a, FakeTensor) or (isinstance(a, torch.Tensor) and a.is_meta) for a in args
    )


class MacCounter(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """Count MACs of every op run while active; see the module docstring.

    Attributes:
        total_macs: every MAC counted so far.
        uncounted: ops that did work without a formula (op name -> record).
        value_reads: ops that read tensor values into Python (op name -> record); when there
            is any, control flow may depend on the data.

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

    supports_higher_order_operators = True

    @classmethod
    def ignore_compile_internals(cls) -> bool:
        """Compiled code is compiled as usual and runs with the counter on."""
        return True

    def __init__(self, sink: MacSink) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.sink = sink
        self.total_macs = 0
        self.uncounted: dict[str, UncountedOp] = {}
        self.value_reads: dict[str, UncountedOp] = {}

    def _note(self, into: dict[str, UncountedOp], name: str, bound: int | None = None) -> None:
        entry = into.get(name)
        if entry is None:
            entry = into[name] = UncountedOp(op=name)
        entry.calls += 1
        entry.hook_points.add(self.sink.current_point or OUTSIDE_POINTS)
        entry.bound_macs = _add_bound(entry.bound_macs, bound)

    def _add(self, macs: int) -> None:
        self.total_macs += macs
        self.sink.add_macs(macs)

    def _run(self, func: Any, args: Any, kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception:
            fallback = meta_fallback_for(str(func.overloadpacket))
            if fallback is None or not _on_meta(args):
                raise
            return fallback(*args, **kwargs)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        kind = _KINDS.get(func) or _kind_of(func)
        if kind is OpKind.NO_MACS:
            return func(*args, **kwargs)
        if kind is OpKind.COUNTED:
            out = self._run(func, args, kwargs)
            self._count(func, args, kwargs, out)
            return out
        if kind is OpKind.READS_VALUES:
            if _reads_values(func, args, kwargs):
                self._note(self.value_reads, str(func.overloadpacket))
            return func(*args, **kwargs)
        if kind is OpKind.DECOMPOSE:
            with self:
                out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
        elif kind == _HOP:
            return self._higher_order(func, args, kwargs)
        out = self._run(func, args, kwargs)
        self._uncounted(func, args, kwargs)
        return out

    def _count(self, func: Any, args: Any, kwargs: Any, out: Any) -> None:
        formula = formula_for(func)
        assert formula is not None
        try:
            macs = int(
                formula(*_shapes(args), out_shape=_first_shape(out), **_kwarg_shapes(kwargs))
            )
        except Exception:  # e.g. nested tensors have no shape: report, never count as 0
            self._uncounted(func, args, kwargs)
            return
        self._add(macs)

    def _uncounted(self, func: Any, args: Any, kwargs: Any) -> None:
        name = str(func.overloadpacket)
        bound_formula = mac_bound_for(name)
        bound = None
        if bound_formula is not None:
            try:
                bound = int(bound_formula(*_shapes(args), **_kwarg_shapes(kwargs)))
            except Exception:
                bound = None
        self._note(self.uncounted, name, bound)

    def _higher_order(self, func: Any, args: Any, kwargs: Any) -> Any:
        """A HOP reaches the counter with the counter popped (see ``HigherOrderOperator``)."""
        name = f"higher_order.{getattr(func, '_name', func)}"
        if hops.is_flex_attention(func):
            out = func(*args, **kwargs)
            macs, dense = hops.flex_attention_macs(args)
            if macs is None:
                self._note(self.uncounted, name, dense)
            else:
                self._add(macs)
            return out
        kernel = hops.hop_kernel(func)
        if kernel is not None:
            with self:
                return kernel(*args, **kwargs)
        out = func(*args, **kwargs)
        self._note(self.uncounted, name)
        return out
