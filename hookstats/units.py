"""Human units for every table and message: counts (K/M/G/T), bytes (KiB/MiB/...), shapes, and
``'-'`` for a missing number. Pure functions of values; nothing here knows a report.

May import: the standard library only.

    >>> format_count(3_612_672), format_bytes(1_605_632), format_shape((32, 16, 28, 28))
    ('3.61 M', '1.53 MiB', '32×16×28×28')
    >>> format_number(float("nan"), ".3f"), format_number(2.5, ".3f")
    ('-', '2.500')
    >>> format_seconds(0.0042), format_bandwidth(1.5e9), format_percent(0.0123)
    ('4.20 ms', '1.50 GB/s', '1.2%')
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = [
    "MISSING",
    "format_bandwidth",
    "format_bytes",
    "format_count",
    "format_number",
    "format_percent",
    "format_seconds",
    "format_shape",
    "is_missing",
    "shape_cell",
]

MISSING = "-"
"""What a table shows for a value that is not there (None or NaN)."""

_COUNT_UNITS = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K"))
_BYTE_UNITS = ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB"))
_RATE_UNITS = ((1e12, "TB/s"), (1e9, "GB/s"), (1e6, "MB/s"), (1e3, "KB/s"))
_TIME_UNITS = ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns"))

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


def _three_digits(value: float) -> str:
    """Three significant digits without an exponent: 4.20, 42.0, 420, 4200."""
    return (
        f"{value:.2f}"
        if abs(value) < 10
        else f"{value:.1f}"
        if abs(value) < 100
        else f"{value:.0f}"
    )


def format_seconds(value: float) -> str:
    """A duration in seconds with its unit: ``0.0042`` -> ``'4.20 ms'`` (s, ms, µs, ns).

    >>> format_seconds(2.9655), format_seconds(837e-9), format_seconds(0)
    ('2.97 s', '837 ns', '0 s')
    """
    if is_missing(value):
        return MISSING
    if value == 0:
        return "0 s"
    for scale, unit in _TIME_UNITS:
        if abs(value) >= scale * 0.9995:
            return f"{_three_digits(value / scale)} {unit}"
    return f"{_three_digits(value / 1e-9)} ns"


def format_bandwidth(bytes_per_s: float) -> str:
    """A rate in bytes per second, decimal units: ``1.5e9`` -> ``'1.50 GB/s'``."""
    if is_missing(bytes_per_s):
        return MISSING
    for scale, unit in _RATE_UNITS:
        if abs(bytes_per_s) >= scale * 0.9995:
            return f"{_three_digits(bytes_per_s / scale)} {unit}"
    return f"{_three_digits(bytes_per_s)} B/s"


def format_percent(fraction: float) -> str:
    """A fraction as a percentage with one decimal: ``0.0123`` -> ``'1.2%'``; a non-zero
    share below 0.05% is ``'<0.1%'``, never a misleading ``'0.0%'``.

    >>> format_percent(1.0), format_percent(2.7), format_percent(0.0001), format_percent(0)
    ('100.0%', '270.0%', '<0.1%', '0.0%')
    """
    if is_missing(fraction):
        return MISSING
    if 0 < abs(fraction) < 0.0005:
        return "<0.1%"
    return f"{fraction * 100:.1f}%"


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
