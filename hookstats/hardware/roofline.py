"""The seed's ``summarize_hardware``: bytes moved, achieved bandwidth, arithmetic intensity and a
roofline, for the whole model and per layer; and the precision what-if
(:func:`precision_tradeoffs`).

Definitions (one row = one layer or hook point; units in the column names):

* ``bytes_moved = calls * parameter_bytes + input_bytes + activation_bytes`` -- each call reads
  the weights once, reads its inputs and writes its outputs (no cache reuse assumed).
* ``flops = 2 * macs``; ``arithmetic_intensity = flops / bytes_moved`` (FLOPs per byte).
* ``memory_ms = bytes_moved / bandwidth``; ``compute_ms = flops / peak``; a layer's roofline
  time is their maximum and ``bound`` says which one it is (``"unknown"`` without a peak: the
  roofline time is then the memory time, a lower bound). The total's roofline time is the sum
  of the counted layers' (they run one after another), its ``bound`` the roof under which most
  of that time falls.
* With a measured latency: ``achieved_bandwidth_gbps = bytes_moved / latency`` and
  ``bandwidth_utilization`` = that / peak bandwidth (likewise ``achieved_tflops`` and
  ``compute_utilization``). Per layer only when the frame has per-layer ``latency_ms``
  (``track()`` frames); the total uses ``latency_ms=`` (or the tracked forward time).

Every row is named by its ``hook_point`` (the seed table's ``layer`` becomes ``hook_point``).

A training report (``profile(..., train=True)``) is read as the rows of one step -- forward,
backward and the optimizer, see :mod:`hookstats.hardware.training` -- so the roofline time is
the step's time bound, and with the measured step time as ``latency_ms`` the total row also has
``model_flops`` and ``mfu`` (model FLOPs utilization).

Inputs accepted: the seed table of :func:`hookstats.estimate_layerwise_stats` (columns ``layer,
output_elements, parameter_bytes, activation_bytes, macs``), a ``Report.to_frame()`` or
``track()`` frame (``hook_point`` ... ``input_bytes``, ``calls``, ``latency_ms``), or those
objects themselves. The seed table has no input sizes, so **a layer's input is approximated by
the previous row's output** and the first row's by ``input_bytes=`` (0 when not given: the
total is then low by the model input). Rows of the seed table are summed as they are (their
parameters and MACs are each layer's own); in hierarchical frames only the innermost rows
(no selected descendant, by :func:`hookstats.points.innermost_flags`) enter the totals, so
nothing is counted twice (``counted`` column).

May import: numpy, pandas, :mod:`hookstats.errors`, :mod:`hookstats.points`, the reports
of :mod:`hookstats.profiling` and :mod:`hookstats.tracking` (to read them), and its own package.

Example:
    >>> import pandas as pd
    >>> seed = pd.DataFrame({"layer": ["fc"], "output_elements": [4], "parameter_bytes": [72],
    ...                      "activation_bytes": [16], "macs": [32]})
    >>> hw = summarize_hardware(seed, latency_ms=0.001, memory_bandwidth_gbps=100,
    ...                         input_bytes=32)
    >>> hw.total("bytes_moved"), hw.arithmetic_intensity  # 72 + 32 + 16 = 120; 2 * 32 / 120
    (120, 0.5333333333333333)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..display import NotebookDisplay
from ..errors import InputSpecError
from ..points import innermost_flags
from ..profiling import Report
from ..tracking import Tracker, TrackReport
from .presets import PRECISION_BITS, HardwareSpec, canonical_precision, hardware_spec
from .training import step_totals, training_frame

__all__ = ["LAYER_COLUMNS", "TOTAL_ROW", "HardwareSummary", "summarize_hardware"]

HardwareSource = pd.DataFrame | Report | TrackReport | Tracker
"""What ``summarize_hardware`` reads: a cost frame, or the object that makes one."""

LAYER_COLUMNS = [
    "hook_point",
    "calls",
    "parameter_bytes",
    "input_bytes",
    "activation_bytes",
    "bytes_moved",
    "macs",
    "flops",
    "arithmetic_intensity",
    "latency_ms",
    "memory_ms",
    "compute_ms",
    "roofline_ms",
    "bound",
    "achieved_bandwidth_gbps",
    "bandwidth_utilization",
    "achieved_tflops",
    "compute_utilization",
    "input_estimated",
    "counted",
]
_REQUIRED = ("parameter_bytes", "activation_bytes", "macs")
_SIZES = ("parameter_bytes", "input_bytes", "activation_bytes")
TOTAL_ROW = "(total)"


@dataclass(slots=True)
class HardwareSummary(NotebookDisplay):
    """What :func:`summarize_hardware` returns: per-layer rows and the model total.

    Attributes:
        rows: one row per hook point, columns ``LAYER_COLUMNS``.
        total_row: the same keys for the whole model (counted rows only); read one value with
            :meth:`total`.
        precision, source_precision: precision of the summary and of the measured frame.
        memory_bandwidth_gbps, peak_tflops: the roofs used (peak None when unknown).
        hardware: the preset's name, if one was used.
        notes: how inputs were approximated, and other caveats.
    """

    rows: pd.DataFrame
    total_row: dict[str, Any]
    precision: str
    source_precision: str
    memory_bandwidth_gbps: float
    peak_tflops: float | None
    hardware: str | None = None
    notes: list[str] = field(default_factory=list)

    def total(self, column: str) -> Any:
        """The model total of ``column`` (a key of ``LAYER_COLUMNS``).

        Raises:
            KeyError: ``column`` is not a column of the summary; the message lists them.
        """
        if column not in self.total_row:
            raise KeyError(
                f"no total for column {column!r}; totals exist for: {', '.join(LAYER_COLUMNS[1:])}."
            )
        return self.total_row[column]

    total_bytes = property(lambda self: self.total("bytes_moved"), doc="Bytes moved in all.")
    achieved_bandwidth_gbps = property(
        lambda self: self.total("achieved_bandwidth_gbps"),
        doc="Total bytes / total latency, in GB/s.",
    )
    bandwidth_utilization = property(
        lambda self: self.total("bandwidth_utilization"), doc="Achieved / peak bandwidth (0..1)."
    )
    arithmetic_intensity = property(
        lambda self: self.total("arithmetic_intensity"), doc="FLOPs per byte moved."
    )
    roofline_ms = property(lambda self: self.total("roofline_ms"), doc="Roofline time.")
    bound = property(lambda self: self.total("bound"), doc="'memory', 'compute' or 'unknown'.")

    def to_frame(self) -> pd.DataFrame:
        """The per-hook-point rows followed by a ``(total)`` row."""
        total = pd.DataFrame([self.total_row], columns=LAYER_COLUMNS)
        return pd.concat([self.rows, total], ignore_index=True)

    def __rich__(self) -> Any:
        from .table import hardware_table

        return hardware_table(self)

    def table(
        self,
        *,
        depth: int | str | None = None,
        collapse: bool = True,
        columns: Any = None,
        max_rows: int | None = 30,
    ) -> Any:
        """The summary as a rich table that fits the console (HTML in Jupyter); the options
        are :meth:`hookstats.Report.table`'s. See :func:`hookstats.hardware.table.hardware_table`.
        """
        from .table import hardware_table

        return hardware_table(
            self,
            depth=depth,  # type: ignore[arg-type]
            collapse=collapse,
            columns=columns,
            max_rows=max_rows,
        )


def _as_frame(data: HardwareSource) -> tuple[pd.DataFrame, str | None, float | None]:
    """The frame, its precision (objects know it) and its total latency (``track`` knows it)."""
    if isinstance(data, pd.DataFrame):
        return data, None, None
    if isinstance(data, Tracker):
        data = data.report
    if isinstance(data, TrackReport):
        return data.to_frame(), data.dtype, data.total("latency_ms") or None
    if isinstance(data, Report) and data.training is not None:
        return training_frame(data), data.dtype, None
    if isinstance(data, Report):
        return data.to_frame(), data.dtype, None
    raise InputSpecError(
        f"summarize_hardware needs a DataFrame (estimate_layerwise_stats, Report.to_frame, "
        f"track().to_frame) or a Report, TrackReport or Tracker; got {type(data).__name__}."
    )


def _layer_rows(frame: pd.DataFrame, input_bytes: int | None, scale: float) -> pd.DataFrame:
    name_column = "layer" if "layer" in frame.columns else "hook_point"
    missing = [c for c in (name_column, *_REQUIRED) if c not in frame.columns]
    if missing:
        raise InputSpecError(
            f"the frame lacks column(s) {', '.join(missing)}; it has {', '.join(frame.columns)}. "
            "Pass hs.estimate_layerwise_stats(...), report.to_frame() or tracker.to_frame()."
        )
    names = [str(n) for n in frame[name_column]]
    rows = pd.DataFrame({"hook_point": names})
    rows["calls"] = frame["calls"].to_numpy() if "calls" in frame.columns else 1
    for column in ("parameter_bytes", "activation_bytes", "macs"):
        rows[column] = frame[column].to_numpy().astype("int64")
    estimated = "input_bytes" not in frame.columns
    if estimated:  # the previous layer's output, the first layer's given (or 0)
        previous = rows["activation_bytes"].shift(1)
        rows["input_bytes"] = previous.fillna(input_bytes or 0).astype("int64")
    else:
        rows["input_bytes"] = frame["input_bytes"].to_numpy().astype("int64")
    for column in _SIZES:
        rows[column] = np.rint(rows[column] * scale).astype("int64")
    rows["latency_ms"] = (
        frame["latency_ms"].to_numpy(dtype=float) if "latency_ms" in frame.columns else math.nan
    )
    rows["input_estimated"] = estimated
    if "counted" in frame.columns:  # a training step's rows say which ones count
        rows["counted"] = frame["counted"].to_numpy(dtype=bool)
    else:
        rows["counted"] = [True] * len(names) if name_column == "layer" else innermost_flags(names)
    return rows


def _derive(
    rows: pd.DataFrame, bandwidth: float, peak: float | None, measured: bool
) -> pd.DataFrame:
    """Add the roofline and achieved columns to rows that have sizes, MACs and latency."""
    rows["bytes_moved"] = (
        rows["calls"] * rows["parameter_bytes"] + rows["input_bytes"] + rows["activation_bytes"]
    )
    rows["flops"] = 2 * rows["macs"]
    moved = rows["bytes_moved"].astype(float)
    rows["arithmetic_intensity"] = (rows["flops"] / moved).where(moved > 0)
    rows["memory_ms"] = moved / (bandwidth * 1e9) * 1e3
    rows["compute_ms"] = rows["flops"] / (peak * 1e12) * 1e3 if peak else math.nan
    rows["roofline_ms"] = rows[["memory_ms", "compute_ms"]].max(axis=1)
    if peak:
        rows["bound"] = np.where(rows["compute_ms"] > rows["memory_ms"], "compute", "memory")
    else:
        rows["bound"] = "unknown"
    seconds = rows["latency_ms"].astype(float) / 1e3 if measured else math.nan
    rows["achieved_bandwidth_gbps"] = moved / seconds / 1e9
    rows["bandwidth_utilization"] = rows["achieved_bandwidth_gbps"] / bandwidth
    rows["achieved_tflops"] = rows["flops"] / seconds / 1e12
    rows["compute_utilization"] = rows["achieved_tflops"] / peak if peak else math.nan
    return rows[LAYER_COLUMNS]


def _total_row(
    layers: pd.DataFrame,
    latency_ms: float | None,
    bandwidth: float,
    peak: float | None,
    measured: bool,
) -> dict[str, Any]:
    """The counted rows summed. ``parameter_bytes`` is the weights read by every call; the
    roofline time is the sum of the layers' (they run one after another) and ``bound`` the
    roof under which most of that time falls."""
    counted = layers[layers["counted"]]
    total = pd.DataFrame(
        [
            {
                "hook_point": TOTAL_ROW,
                "calls": 1,
                "parameter_bytes": int((counted["calls"] * counted["parameter_bytes"]).sum()),
                "input_bytes": int(counted["input_bytes"].sum()),
                "activation_bytes": int(counted["activation_bytes"].sum()),
                "macs": int(counted["macs"].sum()),
                "latency_ms": latency_ms if latency_ms is not None and measured else math.nan,
                "input_estimated": bool(counted["input_estimated"].any()),
                "counted": True,
            }
        ]
    )
    derived = _derive(total, bandwidth, peak, measured).iloc[0].to_dict()
    derived["calls"] = int(counted["calls"].sum())
    derived["roofline_ms"] = float(counted["roofline_ms"].sum())
    if peak:
        by_bound = counted.groupby("bound")["roofline_ms"].sum()
        derived["bound"] = (
            "compute" if by_bound.get("compute", 0.0) > by_bound.get("memory", 0.0) else "memory"
        )
    return {str(k): v.item() if isinstance(v, np.generic) else v for k, v in derived.items()}


def _positive(value: object, name: str, unit: str) -> float:
    """``value`` as a float when it is a finite real number > 0, else an InputSpecError naming
    the argument."""
    ok = isinstance(value, int | float | np.number) and not isinstance(value, bool | np.bool_)
    number = float(value) if ok else math.nan  # type: ignore[arg-type]
    if not (math.isfinite(number) and number > 0):
        raise InputSpecError(f"{name} must be positive ({unit}, a finite number), got {value!r}.")
    return number


def _resolve_roofs(
    hardware: str | HardwareSpec | None,
    memory_bandwidth_gbps: float | None,
    peak_tflops: float | Mapping[str, float] | None,
    precision: str,
) -> tuple[float, float | None, str | None]:
    spec = hardware_spec(hardware) if hardware is not None else None
    bandwidth = (
        memory_bandwidth_gbps
        if memory_bandwidth_gbps is not None
        else (spec.memory_bandwidth_gbps if spec is not None else None)
    )
    if bandwidth is None:
        raise InputSpecError(
            "memory_bandwidth_gbps must be a positive number of GB/s, got None; pass it, or "
            "hardware='a100' / 'h100' / 'rtx4090' / 'cpu'."
        )
    bandwidth = _positive(bandwidth, "memory_bandwidth_gbps", "GB/s")
    if isinstance(peak_tflops, Mapping):
        peaks = {canonical_precision(k): v for k, v in peak_tflops.items()}
        peak = peaks.get(precision)
        if peak is not None:
            peak = _positive(peak, f"peak_tflops[{precision!r}]", "TFLOPS")
    elif peak_tflops is not None:
        peak = _positive(peak_tflops, "peak_tflops", "TFLOPS")
    else:
        peak = spec.peak(precision) if spec is not None else None
    return bandwidth, peak, spec.name if spec is not None else None


def summarize_hardware(
    df: HardwareSource,
    latency_ms: float | None = None,
    memory_bandwidth_gbps: float | None = None,
    peak_tflops: float | Mapping[str, float] | None = None,
    *,
    hardware: str | HardwareSpec | None = None,
    precision: str | None = None,
    source_precision: str | None = None,
    input_bytes: int | None = None,
) -> HardwareSummary:
    """Bytes moved, achieved bandwidth, arithmetic intensity and roofline (see module doc).

    Args:
        df: the seed table, a ``Report``/``track`` frame, or a Report, TrackReport or tracker.
        latency_ms: measured latency of the whole frame (one forward for the seed table; the
            whole block for a ``track`` frame). Default: a tracker's time in forward, else the
            sum of the counted rows' ``latency_ms``; without any, achieved figures are NaN.
        memory_bandwidth_gbps: peak memory bandwidth in GB/s (or take it from ``hardware``).
        peak_tflops: peak TFLOPS at ``precision`` -- a number, or a dict per precision.
        hardware: a preset name (``"a100"``, ``"h100"``, ``"rtx4090"``, ``"cpu"``) or a
            :class:`~hookstats.hardware.presets.HardwareSpec` supplying bandwidth and peaks.
        precision: what-if precision (``"fp32"``, ``"bf16"``, ``"fp16"``, ``"int8"``, ``"int4"``,
            ...): every size is scaled by its bits / the source's; achieved figures are only
            given at the source precision (the latency was measured there).
        source_precision: precision the frame was measured in; default the object's dtype,
            else ``"fp32"`` (the seed's assumption).
        input_bytes: the first layer's input size, for frames without ``input_bytes``.

    Returns:
        A :class:`HardwareSummary` (``to_frame()``, ``total``, ``__rich__``).

    Raises:
        InputSpecError: missing columns, no bandwidth, a non-positive latency, or an unknown
            hardware preset or precision.

    Example:
        >>> import hookstats as hs
        >>> from torch import nn
        >>> df = hs.estimate_layerwise_stats(nn.Sequential(nn.Linear(8, 4)), 2, (8,))
        >>> hw = hs.summarize_hardware(df, 0.01, 100, input_bytes=2 * 8 * 4)
        >>> hw.total_bytes  # weights (32 + 4) * 4 + input 2 * 8 * 4 + output 2 * 4 * 4
        240
    """
    frame, own_precision, own_latency = _as_frame(df)
    source = canonical_precision(
        next((p for p in (source_precision, own_precision) if p is not None), "fp32")
    )
    target = canonical_precision(precision if precision is not None else source)
    bandwidth, peak, hardware_name = _resolve_roofs(
        hardware, memory_bandwidth_gbps, peak_tflops, target
    )
    if latency_ms is not None:
        latency_ms = _positive(latency_ms, "latency_ms", "milliseconds")
    if input_bytes is not None and (
        isinstance(input_bytes, bool) or not isinstance(input_bytes, int | np.integer)
    ):
        raise InputSpecError(f"input_bytes must be a whole number of bytes, got {input_bytes!r}.")
    if input_bytes is not None and input_bytes < 0:
        raise InputSpecError(f"input_bytes must be >= 0 (bytes), got {input_bytes!r}.")
    scale = PRECISION_BITS[target] / PRECISION_BITS[source]
    rows = _layer_rows(frame, input_bytes, scale)
    measured = target == source
    if latency_ms is None:
        latency_ms = own_latency
    if latency_ms is None and rows.loc[rows["counted"], "latency_ms"].notna().all():
        latency_ms = float(rows.loc[rows["counted"], "latency_ms"].sum()) or None
    if not measured:
        rows["latency_ms"] = math.nan  # measured at the source precision only
    layers = _derive(rows, bandwidth, peak, measured)
    total = _total_row(layers, latency_ms, bandwidth, peak, measured)
    notes = []
    if isinstance(df, Report) and df.training is not None:
        total.update(step_totals(df, total["latency_ms"], peak, measured))
        notes.append(
            "training step: forward, (backward).* and (optimizer) rows; latency_ms is the "
            "step time; mfu = model_flops (recomputation excluded) / (latency x peak)"
        )
    if rows["input_estimated"].any():
        notes.append(
            "inputs estimated: each layer's input = the previous row's output; first "
            f"layer's = input_bytes ({input_bytes or 0} B)"
        )
    if not measured:
        notes.append(
            f"sizes scaled {source} -> {target} (x{scale:g}); achieved figures are "
            f"measured at {source} only"
        )
    return HardwareSummary(layers, total, target, source, bandwidth, peak, hardware_name, notes)
