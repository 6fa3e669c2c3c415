"""The precision what-if, :func:`precision_tradeoffs`: the hardware summary's total row at each
precision (fp32, bf16/fp16, fp8, int8, int4), for the seed's precision tradeoffs.

May import: pandas and its own package.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

from ..errors import InputSpecError
from .presets import PRECISION_BITS, HardwareSpec
from .roofline import HardwareSource, summarize_hardware

__all__ = ["precision_tradeoffs"]


def precision_tradeoffs(
    df: HardwareSource,
    latency_ms: float | None = None,
    memory_bandwidth_gbps: float | None = None,
    peak_tflops: float | Mapping[str, float] | None = None,
    *,
    hardware: str | HardwareSpec | None = None,
    precisions: str | Sequence[str] = ("fp32", "bf16", "int8", "int4"),
    source_precision: str | None = None,
    input_bytes: int | None = None,
) -> pd.DataFrame:
    """The hardware summary's total row at each precision, for the seed's precision tradeoffs.

    Every size is scaled by the precision's bits (fp32 32, bf16/fp16 16, fp8/int8 8, int4 4)
    relative to the source -- weights *and* activations, as in W8A8; MACs do not change.
    ``estimated_latency_ms`` scales the measured latency by the roofline ratio (same efficiency
    assumed); ``speedup`` is the source roofline time over this one -- NaN when the device
    has a peak for one of the two precisions only (the rooflines are not comparable).
    Arguments are :func:`~hookstats.hardware.roofline.summarize_hardware`'s, and ``precisions``
    the precisions to compare (a list, or one name).

    Returns:
        One row per precision: ``precision, bits`` then the total columns of
        :func:`summarize_hardware`, ``estimated_latency_ms`` and ``speedup``.

    Example:
        >>> import pandas as pd
        >>> seed = pd.DataFrame({"layer": ["fc"], "output_elements": [4],
        ...     "parameter_bytes": [72], "activation_bytes": [16], "macs": [32]})
        >>> precision_tradeoffs(seed, 0.001, 100, input_bytes=32)["bytes_moved"].tolist()
        [120, 60, 30, 15]
    """
    if isinstance(precisions, str):
        precisions = [precisions]  # one precision, not its letters
    if not isinstance(precisions, Sequence) or not precisions:
        raise InputSpecError(
            f"precisions must be a precision name or a non-empty list of them (e.g. ['fp32', "
            f"'bf16', 'int8']), got {precisions!r}."
        )
    rows = []
    for name in precisions:
        summary = summarize_hardware(
            df,
            latency_ms,
            memory_bandwidth_gbps,
            peak_tflops,
            hardware=hardware,
            precision=name,
            source_precision=source_precision,
            input_bytes=input_bytes,
        )
        rows.append(
            {
                "precision": summary.precision,
                "bits": PRECISION_BITS[summary.precision],
                **summary.total_row,
            }
        )
        source = summary.source_precision
    table = pd.DataFrame(rows).drop(columns=["hook_point", "counted"])
    base = summarize_hardware(
        df,
        latency_ms,
        memory_bandwidth_gbps,
        peak_tflops,
        hardware=hardware,
        precision=source,
        source_precision=source,
        input_bytes=input_bytes,
    ).total_row
    table["speedup"] = base["roofline_ms"] / table["roofline_ms"]
    comparable = (table["bound"] == "unknown") == (base["bound"] == "unknown")
    table.loc[~comparable, "speedup"] = math.nan  # a compute roof known for one side only
    table["estimated_latency_ms"] = base["latency_ms"] / table["speedup"]
    return table
