"""The one rule for model totals, used by ``Report.total`` and ``TrackReport.total``.

Totals never double count:

* ``macs``/``self_macs``: every op once -- the sum of the points' *self* MACs;
* ``calls``: the calls of every hook point;
* ``parameters``/``parameter_bytes``: each tensor once (tied or shared tensors too);
* ``output_elements``, ``activation_bytes``, ``input_bytes``: the innermost selected hook
  points only (a container's output is its last child's).

May import: :mod:`hookstats.instrument.records`.

Example:
    >>> from hookstats.instrument.records import PointInfo, PointStats
    >>> infos = [PointInfo("(model)", "M", 0, False, 0, 0, False, innermost=False),
    ...          PointInfo("fc", "Linear", 1, True, 0, 0, False)]
    >>> stats = {"(model)": PointStats(calls=1, activation_bytes=8, self_macs=0),
    ...          "fc": PointStats(calls=1, activation_bytes=8, self_macs=32)}
    >>> model_total("activation_bytes", infos, stats, {}), model_total("macs", infos, stats, {})
    (8, 32)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .records import PointInfo, PointStats

__all__ = ["INNERMOST_TOTALS", "TOTAL_COLUMNS", "model_total"]

INNERMOST_TOTALS = ("output_elements", "activation_bytes", "input_bytes")
TOTAL_COLUMNS = ("macs", "self_macs", "calls", "parameters", "parameter_bytes", *INNERMOST_TOTALS)


def model_total(
    column: str,
    points: Sequence[PointInfo],
    stats: Mapping[str, PointStats],
    parameter_sizes: Mapping[int, tuple[int, int]],
    *,
    also: Sequence[str] = (),
) -> int:
    """The model total of ``column`` (see the module docstring).

    Args:
        also: further column names the caller totals itself, listed in the error message.

    Raises:
        KeyError: ``column`` has no total; the message lists those that do.
    """
    if column in ("macs", "self_macs"):
        return sum(s.self_macs for s in stats.values())
    if column == "calls":
        return sum(s.calls for s in stats.values())
    if column in ("parameters", "parameter_bytes"):
        ids: set[int] = set().union(*(p.parameter_ids for p in points))
        index = 0 if column == "parameters" else 1
        return sum(parameter_sizes[i][index] for i in ids)
    if column in INNERMOST_TOTALS:
        innermost = {p.name for p in points if p.innermost}
        return sum(getattr(s, column) for name, s in stats.items() if name in innermost)
    raise KeyError(
        f"no total for column {column!r}; totals exist for: {', '.join((*TOTAL_COLUMNS, *also))}."
    )
