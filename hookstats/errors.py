"""The one exception hierarchy of hookstats.

Every error says what was expected, what was got, and how to fix it. Catch
``HookstatsError`` to catch them all.
"""

from __future__ import annotations


class HookstatsError(Exception):
    """Base class of every error hookstats raises on purpose."""


class PointSelectionError(HookstatsError, ValueError):
    """A ``points=`` selection is malformed or selects no module."""


class InputSpecError(HookstatsError, ValueError):
    """The inputs given to ``profile`` cannot be turned into a forward call."""


class ForwardError(HookstatsError, RuntimeError):
    """The model's forward raised; the message names the hook point it raised in."""

    def __init__(self, message: str, hook_point: str | None = None) -> None:
        super().__init__(message)
        self.hook_point = hook_point


class MetaDeviceError(HookstatsError, RuntimeError):
    """The model cannot run without real data (meta device and fake tensors both failed)."""


class UncountedOpsWarning(UserWarning):
    """Ops that do matrix-like work ran but have no MAC formula: totals are a lower bound."""
