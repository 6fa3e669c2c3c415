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


class MetaDeviceError(ForwardError):
    """The model cannot run without real data (meta device and fake tensors both failed)."""


class UncountedOpsWarning(UserWarning):
    """Ops that do matrix-like work ran but have no MAC formula: totals are a lower bound."""


class MetricError(HookstatsError, ValueError):
    """A metric name, plugin or metric input is invalid (unknown name, bad registration...)."""


class StoreError(HookstatsError, RuntimeError):
    """The metric store cannot be opened, read or written (path, schema version, permissions)."""


class CheckpointError(HookstatsError, RuntimeError):
    """A checkpoint cannot be loaded (missing, corrupt, wrong keys or shapes)."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint would need arbitrary code to load (a pickle with unknown globals): refused."""


class TrackError(HookstatsError, RuntimeError):
    """``track()`` is used in a way it does not support (e.g. nested on the same model)."""


class FormulaError(HookstatsError, ValueError):
    """A MAC formula registration is invalid (an op registered twice without ``replace=True``)."""


class TableError(HookstatsError, ValueError):
    """A table option is invalid (``depth=``, ``columns=``, ``sort_by=``, ``top=``)."""
