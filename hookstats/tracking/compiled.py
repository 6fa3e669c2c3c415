"""``track()`` on a ``torch.compile``'d model without touching what Dynamo compiled.

Hooks inside a compiled module are traced into its graph (adding or removing one recompiles,
and their side effects do not run as written), and a dispatch mode around a compiled frame
used to make Dynamo skip it -- for the rest of the process on some versions (pytorch#190286).
So for a model wrapped by ``torch.compile(model)`` (an ``OptimizedModule``) the tracker hooks
the **wrapper only**, never a module inside it, and never runs the compiled call under its
counter. The costs of a new work signature come from a **shadow forward**
(:class:`ShadowCounter`): the eager module, deep-copied once with fake parameters (no memory,
the user's module is never touched), runs on fake copies of the arguments (a cache object is
copied too, so the real one is not advanced) under the recorder and the MAC counter. That is
exactly what ``profile`` counts for the eager model. When the shadow cannot run (code that
needs values), the compiled call itself is counted with the counter -- which is transparent to
``torch.compile`` -- and its work is the model's own (no per-point breakdown).

A module compiled in place (``model.compile()``) runs its hooks inside the compiled call: it
is refused with a message (:func:`unwrap_compiled`).

May import: torch, :mod:`hookstats.errors`, :mod:`hookstats.counting`,
:mod:`hookstats.instrument`, :mod:`hookstats.points`.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ..counting import MacCounter
from ..errors import TrackError
from ..instrument import CallRecord, CallRecorder
from ..instrument.placement import fake_copies
from ..instrument.recorder import scripted_module
from ..points import HookPoint, select_points

__all__ = ["ShadowCounter", "unwrap_compiled"]


def unwrap_compiled(model: nn.Module) -> tuple[nn.Module, bool]:
    """``(the eager module, whether model is a torch.compile wrapper)``.

    Raises:
        TrackError: the model was compiled in place (``model.compile()``), or it or one of its
            submodules is a TorchScript module (they cannot take Python hooks).
    """
    eager = getattr(model, "_orig_mod", None)
    wrapped = isinstance(eager, nn.Module) and type(model).__name__ == "OptimizedModule"
    inner = eager if wrapped and eager is not None else model
    if getattr(model, "_compiled_call_impl", None) is not None:
        raise TrackError(
            f"this {type(model).__name__} was compiled in place (model.compile()), so hooks on "
            "it would run inside the compiled call. Track the wrapper instead: "
            "compiled = torch.compile(model); with hs.track(compiled): compiled(x) -- or "
            "track the model before compiling it."
        )
    scripted = scripted_module(inner)
    if scripted is not None:
        raise TrackError(
            f"module '{scripted}' is a TorchScript module (torch.jit.script/trace): scripted "
            "modules cannot take Python forward hooks, so track() cannot follow them. Track "
            "the eager module (before torch.jit.script), or hs.profile() the eager model "
            "with the same inputs."
        )
    return inner, wrapped


class ShadowCounter:
    """Counts a forward of ``module`` on fake tensors, as ``profile`` would, without running
    or touching the user's module (see the module docstring)."""

    def __init__(self, module: nn.Module, points: list[HookPoint], spec: Any) -> None:
        self._module = module
        self._points = points
        self._spec = spec
        self._shadow: tuple[nn.Module, list[HookPoint], Any] | None = None
        self.failed: str | None = None

    def _build(self) -> tuple[nn.Module, list[HookPoint], Any]:
        if self._shadow is None:
            from torch._subclasses.fake_tensor import FakeTensorMode

            mode = FakeTensorMode(allow_non_fake_inputs=True)
            memo = fake_copies(self._module, mode)
            shadow = copy.deepcopy(self._module, memo)
            names = {p.name for p in self._points}
            points = [p for p in select_points(shadow, self._spec) if p.name in names]
            self._shadow = (shadow, points, mode)
        return self._shadow

    def count(self, args: Any, kwargs: Any) -> tuple[list[CallRecord], int, MacCounter]:
        """``(calls, MACs outside points, counter)`` of one shadow forward.

        Raises:
            Exception: whatever the shadow forward raised (the caller falls back).
        """
        shadow, points, mode = self._build()
        memo: dict[int, Any] = {}
        with torch.no_grad():
            fake_args = copy.deepcopy((args, kwargs), _fake_memo((args, kwargs), mode, memo))
        recorder = CallRecorder(shadow, points)
        counter = MacCounter(recorder)
        with mode, recorder, counter:
            shadow(*fake_args[0], **fake_args[1])
        calls, unattributed, _ = recorder.take()
        return calls, unattributed, counter


def _fake_memo(value: Any, mode: Any, memo: dict[int, Any]) -> dict[int, Any]:
    """A deepcopy memo that maps every tensor found in ``value`` to a fake of it."""
    from ..instrument.tensors import flatten

    leaves: list[Any] = []
    flatten(value, leaves, structure=True, objects=True, seen=set())
    for leaf in leaves:
        if isinstance(leaf, torch.Tensor) and id(leaf) not in memo:
            memo[id(leaf)] = mode.from_tensor(leaf)
    return memo
