"""One observed forward: the recorder (hooks) and the MAC counter around ``model(...)`` on a
placement, and the translation of an exception inside it into a
:class:`~hookstats.errors.ForwardError` that names the module it came from.

``profile`` runs exactly this; ``track`` attaches the same recorder and counter around the
user's own forward calls.

May import: torch, :mod:`hookstats.errors`, :mod:`hookstats.counting`, and the other
:mod:`hookstats.instrument` modules.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from hookstats.points import select_points
    >>> from hookstats.instrument.placement import plan_placement
    >>> model = nn.Linear(8, 4)
    >>> recorder, counter = observe_forward(model, select_points(model),
    ...     plan_placement(model, None, None), (torch.zeros(2, 8),), {})
    >>> counter.total_macs, recorder.calls[0].output_shapes  # 2 * 8 * 4
    (64, [(2, 4)])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..counting import MacCounter
from ..errors import ForwardError, HookstatsError
from ..points import ROOT_NAME, HookPoint
from .placement import Placement
from .recorder import CallRecorder

__all__ = ["forward_error", "observe_forward"]


def forward_error(exc: BaseException, recorder: CallRecorder, device: torch.device) -> ForwardError:
    """A :class:`ForwardError` for ``exc`` raised by a forward, naming the module it came from."""
    where = recorder.failed_in or ROOT_NAME
    return ForwardError(
        f"forward raised {type(exc).__name__} in module '{where}' (on {device}): {exc}",
        hook_point=where,
    )


def observe_forward(
    model: nn.Module, points: list[HookPoint], placement: Placement, args: Any, kwargs: Any
) -> tuple[CallRecorder, MacCounter]:
    """Run ``model(*args, **kwargs)`` once on ``placement`` under ``no_grad``, recorded and counted.

    Raises:
        ForwardError: the forward raised (the original exception is its ``__cause__``).
    """
    recorder = CallRecorder(model, points)
    counter = MacCounter(recorder)
    try:
        with placement.context(), recorder, torch.no_grad(), counter:
            placement.call(model, args, kwargs)
    except HookstatsError:
        raise
    except Exception as exc:
        raise forward_error(exc, recorder, placement.device) from exc
    return recorder, counter
