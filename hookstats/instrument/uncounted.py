"""The one wording of :class:`~hookstats.errors.UncountedOpsWarning`, for ``profile`` and
``track`` alike: each op once, with its calls, its first hook points ("... and 45 more") and,
when a formula bounds them, how many MACs are at most missing.

May import: :mod:`hookstats.errors`, :mod:`hookstats.units`, :mod:`hookstats.counting`.

Example:
    >>> from hookstats.counting import UncountedOp
    >>> ops = {"aten._cdist_forward": UncountedOp("aten._cdist_forward", 2, {"dist"}, 960)}
    >>> print(uncounted_message(ops))  # doctest: +NORMALIZE_WHITESPACE
    MAC totals are a lower bound: ops that do work without a MAC formula ran:
    aten._cdist_forward x2 in dist (at most 960 MACs). At most 960 MACs are missing in all.
    Register a formula with hookstats.counting.register_mac_formula.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Mapping
from types import FrameType

from ..counting import UncountedOp
from ..errors import UncountedOpsWarning
from ..units import format_count

__all__ = ["SHOWN_POINTS", "uncounted_message", "user_stacklevel", "warn_uncounted"]

SHOWN_POINTS = 3
"""Hook points named per op in the warning; the others are counted ("... and 45 more")."""


def _points_text(points: set[str]) -> str:
    ordered = sorted(points)
    shown = ", ".join(ordered[:SHOWN_POINTS])
    rest = len(ordered) - SHOWN_POINTS
    return f"{shown} … and {rest} more" if rest > 0 else shown


def uncounted_message(ops: Mapping[str, UncountedOp]) -> str:
    """The warning text for the uncounted ops ``ops`` (op name -> record)."""
    parts = []
    bounded_total, all_bounded = 0, True
    for name, op in sorted(ops.items()):
        text = f"{name} x{op.calls} in {_points_text(op.hook_points)}"
        if op.bound_macs is not None:
            text += f" (at most {format_count(op.bound_macs)} MACs)"
            bounded_total += op.bound_macs
        else:
            all_bounded = False
        parts.append(text)
    message = (
        "MAC totals are a lower bound: ops that do work without a MAC formula ran: "
        + "; ".join(parts)
        + "."
    )
    if bounded_total and all_bounded:
        message += f" At most {format_count(bounded_total)} MACs are missing in all."
    elif bounded_total:
        message += f" At least the bounded ones: at most {format_count(bounded_total)} MACs."
    return message + " Register a formula with hookstats.counting.register_mac_formula."


def user_stacklevel() -> int:
    """The ``stacklevel`` (for a ``warnings.warn`` called by the caller of this function) of
    the first frame outside hookstats: the user's ``hs.profile(...)`` call or ``with`` block."""
    level = 1
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if not (name == "hookstats" or name.startswith(("hookstats.", "contextlib"))):
            return level
        frame = frame.f_back
        level += 1
    return level


def warn_uncounted(ops: Mapping[str, UncountedOp]) -> None:
    """Warn once about ``ops`` (nothing when empty), pointing at the user's call site."""
    if ops:
        warnings.warn(UncountedOpsWarning(uncounted_message(ops)), stacklevel=user_stacklevel())
