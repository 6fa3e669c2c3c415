"""Small records of what an instrumented forward saw: one :class:`CallRecord` per call, one
:class:`PointInfo` per hook point (static facts), and :class:`PointStats`, the running totals of
a hook point over many calls -- the one place where a call is folded into per-point sums, for
``profile`` and ``track`` alike.

May import: torch and :mod:`hookstats.units`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

__all__ = [
    "MAX_SHAPES",
    "OTHER_SHAPES",
    "CallRecord",
    "PointInfo",
    "PointStats",
    "Shapes",
    "fold_calls",
]

Shapes = tuple[tuple[int, ...], ...]

MAX_SHAPES = 64
"""Distinct output signatures kept per hook point; calls with further ones are counted under
:data:`OTHER_SHAPES` (so a block over 10,001 sequence lengths keeps its memory flat)."""
OTHER_SHAPES: Shapes = ((-1,),)
"""The ``shapes`` key that counts the calls beyond :data:`MAX_SHAPES` distinct signatures."""


@dataclass(slots=True)
class CallRecord:
    """One call of one hook point during a forward pass.

    ``macs`` includes every op run inside the call, nested hook points included;
    ``self_macs`` only those not inside a nested selected hook point. ``latency_s`` is the
    call's wall time (pre-hook to post-hook) and ``self_latency_s`` that time less the time
    of the nested selected hook points' calls (both None untimed).
    """

    hook_point: str
    call_index: int
    order: int
    input_bytes: int = 0
    output_shapes: list[tuple[int, ...]] = field(default_factory=list)
    output_elements: int = 0
    activation_bytes: int = 0
    macs: int = 0
    self_macs: int = 0
    latency_s: float | None = None
    self_latency_s: float | None = None


@dataclass(slots=True)
class PointInfo:
    """Static facts about a hook point, captured once (no reference to the module is kept).

    ``innermost`` is :func:`hookstats.points.innermost_flags` for this point among the
    selected ones; ``parameter_ids`` identify its parameters (recursively) for totals that
    count a tied tensor once.
    """

    name: str
    module_type: str
    depth: int
    is_leaf: bool
    parameters: int
    parameter_bytes: int
    owns_parameters: bool
    own_parameter_bytes: int = 0
    innermost: bool = True
    parameter_ids: frozenset[int] = frozenset()


@dataclass(slots=True)
class PointStats:
    """Running totals of one hook point over its calls.

    ``shapes`` counts the calls per distinct output signature (the tuple of output shapes), in
    first-seen order, at most :data:`MAX_SHAPES` of them (the others under
    :data:`OTHER_SHAPES`). ``latency_s`` sums the calls' pre-hook to post-hook time (0 untimed) and
    ``self_latency_s`` their self time (less the nested selected points' calls).
    ``first_seen`` orders points by first call (-1: never called).
    """

    first_seen: int = -1
    calls: int = 0
    shapes: Counter[Shapes] = field(default_factory=Counter)
    output_elements: int = 0
    activation_bytes: int = 0
    input_bytes: int = 0
    macs: int = 0
    self_macs: int = 0
    latency_s: float = 0.0
    self_latency_s: float = 0.0

    def add_call(self, record: CallRecord, *, with_macs: bool = True) -> None:
        """Fold one call in; its MACs too unless ``with_macs=False`` (they come from a cache)."""
        self.calls += 1
        self._add_shapes(tuple(record.output_shapes), 1)
        self.output_elements += record.output_elements
        self.activation_bytes += record.activation_bytes
        self.input_bytes += record.input_bytes
        if record.latency_s is not None:
            self.latency_s += record.latency_s
        if record.self_latency_s is not None:
            self.self_latency_s += record.self_latency_s
        if with_macs:
            self.macs += record.macs
            self.self_macs += record.self_macs

    def add_scaled(self, other: PointStats, times: int) -> None:
        """Add ``times`` copies of ``other``'s counts (latency excluded)."""
        self.calls += other.calls * times
        for shapes, count in other.shapes.items():
            self._add_shapes(shapes, count * times)
        self.output_elements += other.output_elements * times
        self.activation_bytes += other.activation_bytes * times
        self.input_bytes += other.input_bytes * times
        self.macs += other.macs * times
        self.self_macs += other.self_macs * times

    def _add_shapes(self, shapes: Shapes, count: int) -> None:
        if shapes in self.shapes or len(self.shapes) < MAX_SHAPES:
            self.shapes[shapes] += count
        else:
            self.shapes[OTHER_SHAPES] += count

    def copy(self) -> PointStats:
        """An independent copy (the counter of shapes too)."""
        return PointStats(
            self.first_seen,
            self.calls,
            Counter(self.shapes),
            self.output_elements,
            self.activation_bytes,
            self.input_bytes,
            self.macs,
            self.self_macs,
            self.latency_s,
            self.self_latency_s,
        )


def fold_calls(calls: list[CallRecord], names: list[str]) -> dict[str, PointStats]:
    """Per-point totals of ``calls`` for the hook points ``names`` (all present, in order)."""
    stats = {name: PointStats() for name in names}
    for call in calls:
        point = stats[call.hook_point]
        if point.first_seen < 0:
            point.first_seen = call.order
        point.add_call(call)
    return stats
