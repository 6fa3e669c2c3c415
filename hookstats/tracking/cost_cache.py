"""The per-signature cache that keeps :func:`hookstats.track` cheap in the steady state.

May import: torch, :mod:`hookstats.counting`, :mod:`hookstats.instrument`.

A forward's *input signature* is what decides its work: the shapes, dtypes and devices of its
tensor arguments and its plain scalar arguments. The first forward with a new signature runs
with every hook and the MAC counter; its per-hook-point totals become a
:class:`SignatureCosts`. Later forwards with that signature reuse them: with ``timing=False``
they run with no per-module hooks at all (only the two hooks on the model itself), and their
totals are added in bulk when a snapshot is taken.

The cache is checked, not trusted blindly: forwards number 2, 4, 8, 16, ... of a signature are
recorded again and their *structure* (which hook points ran, in which order, with which output
shapes) compared with the cached one. A mismatch -- control flow that depends on values, as in
mixture-of-experts routing -- marks the signature *dynamic*: its forwards are then all recorded
and counted.

Example:
    >>> import torch
    >>> input_signature((torch.zeros(2, 3),), {"flag": True})
    (1, ((2, 3), torch.float32, device(type='cpu')), 'flag', True)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import torch

from ..counting import MacCounter
from ..instrument import CallRecord, PointStats, structure_signature, summarize_tensors

__all__ = [
    "Pending",
    "SignatureCosts",
    "forward_structure",
    "input_signature",
    "leading_dim",
    "root_call_record",
    "should_verify",
]


def input_signature(args: Any, kwargs: Any) -> tuple[Any, ...]:
    """What decides a forward's work: tensor shapes/dtypes/devices and plain scalar arguments.

    Other objects contribute only their type name (see
    :func:`~hookstats.instrument.tensors.structure_signature`, the one walker).
    """
    if not kwargs and len(args) == 1 and type(args[0]) is torch.Tensor:  # the common case
        tensor = args[0]
        if not tensor.is_nested:
            return (1, (tuple(tensor.shape), tensor.dtype, tensor.device))
    return structure_signature(args, kwargs)


def leading_dim(args: Any, kwargs: Any) -> int:
    """Samples in one forward: the first dimension of the first tensor argument (1 if 0-d).

    >>> leading_dim((torch.zeros(32, 3),), {})
    32
    """
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            return int(value.shape[0]) if value.dim() else 1
    return 1


def forward_structure(calls: list[CallRecord]) -> tuple[Any, ...]:
    """Which hook points ran, in order, with which output shapes: compared across forwards."""
    return tuple((c.hook_point, tuple(c.output_shapes)) for c in calls)


def should_verify(forward_number: int) -> bool:
    """Whether the ``forward_number``-th forward (1-based) of a signature is recorded again.

    >>> [n for n in range(1, 20) if should_verify(n)]
    [1, 2, 4, 8, 16]
    """
    return forward_number & (forward_number - 1) == 0


class SignatureCosts:
    """Per-hook-point totals of one forward with a given signature.

    Attributes:
        per_point: hook point name -> :class:`PointStats` of that one forward (latency 0).
        structure: :func:`forward_structure` of the forward.
        unattributed: MACs that ran outside every tracked hook point.
        forwards: forwards with this signature so far (recorded or not).
        steady: forwards run without hooks, whose totals are these times ``steady``.
        dynamic: a recorded forward did not match ``structure``; record and count them all.
    """

    __slots__ = ("dynamic", "forwards", "per_point", "steady", "structure", "unattributed")

    def __init__(self, calls: list[CallRecord], unattributed: int) -> None:
        self.per_point: dict[str, PointStats] = {}
        for call in calls:
            stats = self.per_point.setdefault(call.hook_point, PointStats())
            stats.add_call(call)
            stats.latency_s = 0.0
        self.structure = forward_structure(calls)
        self.unattributed = unattributed
        self.forwards = 0
        self.steady = 0
        self.dynamic = False

    def add_to(self, stats: dict[str, PointStats], times: int) -> None:
        """Add ``times`` forwards' worth of these totals (MACs included) to ``stats``."""
        for name, one in self.per_point.items():
            stats[name].add_scaled(one, times)

    def add_macs_to(
        self, stats: dict[str, PointStats], calls: Mapping[str, int] | None = None
    ) -> None:
        """Add one forward's MACs (for forwards recorded without the counter).

        With ``calls`` (calls per hook point of a forward that did *not* match the cached
        structure), each point gets its cached MACs per call times its actual calls.
        """
        for name, one in self.per_point.items():
            times = 1.0 if calls is None else calls.get(name, 0) / one.calls
            stats[name].macs += round(one.macs * times)
            stats[name].self_macs += round(one.self_macs * times)


class Pending(NamedTuple):
    """A forward in progress: what the model's pre-hook decided and measured."""

    signature: tuple[Any, ...]
    costs: SignatureCosts | None
    mode: str
    samples: int
    input_bytes: int
    started: float


def root_call_record(
    name: str | None,
    pending: Pending,
    output: Any,
    counter: MacCounter | None,
    unattributed: int,
    latency_s: float | None,
) -> CallRecord:
    """The call record of the model itself (when it is a tracked hook point): its MACs are the
    counter's total, its own MACs those no other tracked point claimed."""
    summary = summarize_tensors(output)
    return CallRecord(
        hook_point=name or "",
        call_index=0,
        order=-1,
        input_bytes=pending.input_bytes,
        output_shapes=summary.shapes,
        output_elements=summary.elements,
        activation_bytes=summary.nbytes,
        macs=counter.total_macs if counter is not None else 0,
        self_macs=unattributed if counter is not None else 0,
        latency_s=latency_s,
    )
