"""The seed's per-layer table, :func:`estimate_layerwise_stats`, for any model.

Its signature and columns are a contract (the seed's): ``estimate_layerwise_stats(model,
batch_size, input_shape=(1, 28, 28))`` returning ``layer, output_elements, parameter_bytes,
activation_bytes, macs``.

May import: pandas and its own package.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..instrument.placement import ModelLike
from .profiler import profile

__all__ = ["SEED_COLUMNS", "estimate_layerwise_stats"]

SEED_COLUMNS = ["layer", "output_elements", "parameter_bytes", "activation_bytes", "macs"]


def estimate_layerwise_stats(
    model: ModelLike,
    batch_size: int = 1,
    input_shape: tuple[int, ...] = (1, 28, 28),
    **profile_kwargs: Any,
) -> pd.DataFrame:
    """The seed's per-layer table for any model.

    One row per layer that owns parameters and ran, in execution order, with exactly the
    columns ``layer, output_elements, parameter_bytes, activation_bytes, macs``.
    ``parameter_bytes`` and ``macs`` are the layer's own (a module's children have their own
    rows), so both columns sum without double counting. Bytes follow each tensor's real
    element size. ``profile_kwargs`` go to :func:`hookstats.profile` (``device="meta"``,
    ``dtype=``...).

    Example:
        >>> import hookstats as hs
        >>> from torch import nn
        >>> df = hs.estimate_layerwise_stats(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), 32)
        >>> int(df.loc[0, "macs"])  # 32 * 784 * 10
        250880
    """
    report = profile(model, input_shape=input_shape, batch_size=batch_size, **profile_kwargs)
    own_bytes = {p.name: p.own_parameter_bytes for p in report.points if p.owns_parameters}
    frame = report.to_frame()
    rows = frame[(frame["calls"] > 0) & frame["hook_point"].isin(own_bytes)]
    table = pd.DataFrame(
        {
            "layer": rows["hook_point"],
            "output_elements": rows["output_elements"],
            "parameter_bytes": rows["hook_point"].map(own_bytes),
            "activation_bytes": rows["activation_bytes"],
            "macs": rows["self_macs"],
        }
    )
    return table.reset_index(drop=True)[SEED_COLUMNS]
