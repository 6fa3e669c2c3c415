"""Cost models in the shapes: what a forward with a new signature costs, from counted ones.

A KV-cache decoding step is a new signature every time (the cache is one position longer), so
a cache keyed on signatures alone would count every step. But the steps of one *family* (same
skeleton, see :mod:`hookstats.tracking.signature`) lie on a line of dims -- every growing
dimension grows by one per step -- and along such a line each cost (MACs of every hook point,
calls, output sizes and shapes) is a polynomial of low degree: constant for the projections,
linear for attention over the cache, quadratic when the query grows with the keys.

:class:`Family` keeps the last counted forwards of a family (:data:`SAMPLES`), each as one
integer vector (:func:`vectorize`). For a new signature it takes the counted forwards that lie
on the line through the newest one and the new dims, and looks for the lowest degree ``p``
(at most :data:`MAX_DEGREE`) whose polynomial through ``p + 1`` of them reproduces **every**
other one **exactly** (integer arithmetic; at least one forward more than the polynomial
needs, so a model is never trusted before it is checked). The prediction is then exact
integer Lagrange interpolation; one that is not an integer is refused. Anything else -- too
few forwards on the line, a structure that changed, no polynomial that fits -- returns None,
and the forward is counted.

May import: numpy, :mod:`hookstats.counting`, :mod:`hookstats.instrument`.

Example:
    >>> from hookstats.instrument import PointStats
    >>> family = Family()
    >>> for n in (10, 11, 12):  # attention over a cache of n positions: 8 * n MACs
    ...     stats = PointStats(calls=1, macs=8 * n)
    ...     stats.shapes[((1, n),)] = 1
    ...     template, values = vectorize({"attn": stats}, 0, {})
    ...     family.add((1, n), template, np.asarray(values))
    >>> template, values = family.predict((1, 40))
    >>> predicted = devectorize(template, values)[0]["attn"]
    >>> predicted.macs, dict(predicted.shapes)
    (320, {((1, 40),): 1})
"""

from __future__ import annotations

import functools
import math
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..counting import UncountedOp
from ..instrument import PointStats

__all__ = [
    "MAX_DEGREE",
    "SAMPLES",
    "Family",
    "additive_mask",
    "devectorize",
    "sum_costs",
    "vectorize",
]

SAMPLES = 6
"""Counted forwards kept per family."""
MAX_DEGREE = 3
"""Highest degree of a cost polynomial along a line of dims."""

Template = tuple[Any, ...]
_INT64_SAFE = 2**62


def vectorize(
    per_point: dict[str, PointStats], unattributed: int, uncounted: dict[str, UncountedOp]
) -> tuple[Template, list[int]]:
    """One forward's costs as ``(template, integer values)``; the template holds what must be
    equal for two forwards to be compared (points, shape ranks, uncounted ops)."""
    points: list[Any] = []
    values: list[int] = [unattributed]
    for name, stats in per_point.items():
        ranks = tuple(tuple(len(shape) for shape in shapes) for shapes in stats.shapes)
        points.append((name, ranks))
        values += [stats.calls, stats.output_elements, stats.activation_bytes]
        values += [stats.input_bytes, stats.macs, stats.self_macs]
        for shapes, count in stats.shapes.items():
            values.append(count)
            for shape in shapes:
                values.extend(shape)
    ops = []
    for name, op in uncounted.items():
        ops.append((name, frozenset(op.hook_points), op.bound_macs is None))
        values += [op.calls, op.bound_macs or 0]
    return (tuple(points), tuple(ops)), values


@functools.lru_cache(maxsize=256)
def additive_mask(template: Template) -> np.ndarray:
    """Which values of a template add up across forwards (counts, sizes, MACs) and which do
    not (the dimensions of output shapes)."""
    points, ops = template
    mask = [True]
    for _, ranks in points:
        mask += [True] * 6
        for output_ranks in ranks:
            mask.append(True)
            mask += [False] * sum(output_ranks)
    mask += [True, True] * len(ops)
    return np.asarray(mask, dtype=bool)


def sum_costs(
    entries: Iterable[tuple[Template, np.ndarray, int]],
) -> list[tuple[Template, np.ndarray]]:
    """``times`` copies of each ``(template, values, times)``, summed: forwards with the same
    template and the same output shapes are added as vectors (one :func:`devectorize` each)."""
    groups: dict[tuple[Template, bytes], np.ndarray] = {}
    for template, values, times in entries:
        mask = additive_mask(template)
        key = (template, values[~mask].tobytes())
        scaled = np.where(mask, values * times, values)
        found = groups.get(key)
        groups[key] = scaled if found is None else np.where(mask, found + scaled, found)
    return [(template, values) for (template, _), values in groups.items()]


def devectorize(
    template: Template, values: Sequence[int] | np.ndarray
) -> tuple[dict[str, PointStats], int, dict[str, UncountedOp]]:
    """The inverse of :func:`vectorize`."""
    points, ops = template
    it = iter(values.tolist() if isinstance(values, np.ndarray) else values)
    unattributed = next(it)
    per_point: dict[str, PointStats] = {}
    for name, ranks in points:
        stats = PointStats(
            calls=next(it),
            output_elements=next(it),
            activation_bytes=next(it),
            input_bytes=next(it),
            macs=next(it),
            self_macs=next(it),
        )
        shapes: Counter[tuple[tuple[int, ...], ...]] = Counter()
        for output_ranks in ranks:
            count = next(it)
            key = tuple(tuple(next(it) for _ in range(rank)) for rank in output_ranks)
            shapes[key] += count
        stats.shapes = shapes
        per_point[name] = stats
    uncounted = {}
    for name, points_of_op, unbounded in ops:
        calls, bound = next(it), next(it)
        uncounted[name] = UncountedOp(name, calls, set(points_of_op), None if unbounded else bound)
    return per_point, unattributed, uncounted


def _weights(nodes: list[int], at: int) -> tuple[list[int], int]:
    """Integer Lagrange weights ``W`` and denominator ``D``: ``P(at) = sum(W_i y_i) / D``."""
    numerators, denominators = [], []
    for i, ti in enumerate(nodes):
        numerator = denominator = 1
        for j, tj in enumerate(nodes):
            if j != i:
                numerator *= at - tj
                denominator *= ti - tj
        numerators.append(numerator)
        denominators.append(denominator)
    common = math.lcm(*(abs(d) for d in denominators))
    return [n * (common // d) for n, d in zip(numerators, denominators, strict=True)], common


def _interpolate(rows: list[np.ndarray], nodes: list[int], at: int, peak: int) -> np.ndarray | None:
    """Exact value at ``at`` of the polynomial through ``(nodes, rows)``, or None when it is not
    an integer vector."""
    weights, denominator = _weights(nodes, at)
    exact = peak * (sum(abs(w) for w in weights) + denominator) < _INT64_SAFE
    if exact:  # int64 cannot overflow: one product of the weights and the stacked rows
        total = np.asarray(weights, dtype=np.int64) @ np.stack(rows)
    else:
        total = np.zeros(len(rows[0]), dtype=object)
        for weight, row in zip(weights, rows, strict=True):
            total = total + weight * row.astype(object)
    if denominator != 1:
        if np.any(total % denominator != 0):
            return None
        total = total // denominator
    return None if np.any(total < 0) else total


class _Sample:
    __slots__ = ("dims", "key", "peak", "template", "values")

    def __init__(self, dims: tuple[int, ...], template: Template, values: np.ndarray) -> None:
        self.key = tuple(int(d) for d in dims)
        self.dims = np.asarray(dims, dtype=np.int64)
        self.template = template
        self.values = values
        self.peak = int(np.abs(self.values).max()) if len(values) else 0


class _Line:
    """A validated polynomial along one line: ``p + 1`` defining samples at integer nodes."""

    __slots__ = ("nodes", "peak", "rows")

    def __init__(self, nodes: list[int], rows: list[np.ndarray], peak: int) -> None:
        self.nodes, self.rows, self.peak = nodes, rows, peak


class Family:
    """Counted forwards of one skeleton and the cost polynomials along their lines."""

    def __init__(self) -> None:
        self.samples: deque[_Sample] = deque(maxlen=SAMPLES)
        self._lines: dict[tuple[int, tuple[int, ...]], _Line | None] = {}
        self.forwards = 0  # forwards of this family not counted (steady or predicted)

    def add(self, dims: tuple[int, ...], template: Template, values: np.ndarray) -> None:
        """Keep a counted forward (the oldest beyond :data:`SAMPLES` is dropped)."""
        self.samples.append(_Sample(dims, template, values))
        self._lines.clear()

    def predict(self, dims: tuple[int, ...]) -> tuple[Template, np.ndarray] | None:
        """Exact costs of a forward with ``dims`` from a validated polynomial, or None."""
        if len(self.samples) < 3 or len(dims) != len(self.samples[-1].dims):
            return None
        anchor = self.samples[-1]
        delta = [d - a for d, a in zip(dims, anchor.key, strict=True)]  # plain ints: cheap
        step = math.gcd(*delta)
        if step == 0:
            return anchor.template, anchor.values
        direction = tuple(d // step for d in delta)
        key = (id(anchor), direction)
        if key not in self._lines:
            self._lines[key] = self._fit(anchor, np.asarray(direction, dtype=np.int64))
        line = self._lines[key]
        if line is None:
            return None
        values = _interpolate(line.rows, line.nodes, step, line.peak)
        if values is None:
            return None
        return anchor.template, values

    def _on_line(self, anchor: _Sample, direction: np.ndarray) -> list[tuple[int, _Sample]]:
        """Samples with the anchor's template on the line, as (integer node, sample)."""
        axis = int(np.flatnonzero(direction)[0])
        found: dict[int, _Sample] = {}
        for sample in self.samples:
            if sample.template != anchor.template or len(sample.values) != len(anchor.values):
                continue
            offset = sample.dims - anchor.dims
            node, remainder = divmod(int(offset[axis]), int(direction[axis]))
            if remainder == 0 and np.array_equal(offset, node * direction):
                found[node] = sample
        return sorted(found.items(), key=lambda item: abs(item[0]))

    def _fit(self, anchor: _Sample, direction: np.ndarray) -> _Line | None:
        points = self._on_line(anchor, direction)
        if len(points) < 3:
            return None
        peak = max(sample.peak for _, sample in points)
        for degree in range(min(MAX_DEGREE, len(points) - 2) + 1):
            nodes = [node for node, _ in points[: degree + 1]]
            rows = [sample.values for _, sample in points[: degree + 1]]
            checks = points[degree + 1 :]
            if all(
                (value := _interpolate(rows, nodes, node, peak)) is not None
                and np.array_equal(value, sample.values)
                for node, sample in checks
            ):
                return _Line(nodes, rows, peak)
        return None
