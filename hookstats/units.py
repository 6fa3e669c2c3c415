"""Human units for every table and message: counts (K/M/G/T), bytes (KiB/MiB/...), shapes, and
``'-'`` for a missing number. Pure functions of values; nothing here knows a report.

May import: the standard library only.

    >>> format_count(3_612_672), format_bytes(1_605_632), format_shape((32, 16, 28, 28))
    ('3.61 M', '1.53 MiB', '32×16×28×28')
    >>> format_number(float("nan"), ".3f"), format_number(2.5, ".3f")
    ('-', '2.500')
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = [
    "MISSING",
    "format_bytes",
    "format_count",
    "format_number",
    "format_shape",
    "is_missing",
    "shape_cell",
]

MISSING = "-"
"""What a table shows for a value that is not there (None or NaN)."""

_COUNT_UNITS = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K"))
_BYTE_UNITS = ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB"))

Shape = tuple[int, ...]


def is_missing(value: object) -> bool:
    """True for ``None`` and float NaN (the values a table shows as ``'-'``)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_number(value: Any, spec: str) -> str:
    """``format(value, spec)``, or ``'-'`` when the value is missing (None or NaN)."""
    return MISSING if is_missing(value) else format(value, spec)


def format_count(value: float) -> str:
    """``1234567`` -> ``'1.23 M'`` (K, M, G, T; plain below 1000; ``'-'`` when missing)."""
    if is_missing(value):
        return MISSING
    for scale, unit in _COUNT_UNITS:
        if abs(value) >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:.3g}"


def format_bytes(value: float) -> str:
    """``1605632`` -> ``'1.53 MiB'`` (binary units; plain bytes below 1 KiB)."""
    if is_missing(value):
        return MISSING
    for scale, unit in _BYTE_UNITS:
        if abs(value) >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:,.0f} B"


def format_shape(shape: object) -> str:
    """``(32, 16, 28, 28)`` -> ``'32×16×28×28'``; several outputs are joined by commas."""
    if not shape or not isinstance(shape, tuple | list):
        return MISSING
    if isinstance(shape[0], tuple | list):
        return ", ".join(format_shape(s) for s in shape)
    return "×".join(str(s) for s in shape)


def shape_cell(shapes: Sequence[Shape]) -> Shape | tuple[Shape, ...]:
    """The output-shape cell of a call: its one shape, a tuple of shapes, ``()`` for none.

    >>> shape_cell([(2, 3)]), shape_cell([(2, 3), (2,)]), shape_cell([])
    ((2, 3), ((2, 3), (2,)), ())
    """
    if len(shapes) == 1:
        return tuple(shapes[0])
    return tuple(tuple(s) for s in shapes)
