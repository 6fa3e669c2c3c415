"""TensorBoard export (extra ``hookstats[tensorboard]``): a store's metrics as scalars, and
singular-value spectra as histograms.

Each run goes to its own folder ``<logdir>/<run>/`` (TensorBoard compares runs by folder), each
value ``hookstats/<metric>/<hook_point>`` at its step, with the time its checkpoint was
written as wall time. TensorBoard keeps scalars in float32; NaN values (undefined metrics) are
left out. Exporting twice into one folder appends a second copy: export into a fresh folder.

Singular values "where stored": a :class:`~hookstats.MetricStore` keeps one number per
(checkpoint, hook point, metric) -- the spectral metrics ``sv_mean``, ``sv_var`` and
``spectral_norm`` summarise a spectrum, the spectrum itself is not stored. So histograms come
from a *spectra frame* (columns ``step, hook_point, values``; ``values`` a 1-D array of one
hook point's singular values, every weight matrix pooled), which :func:`singular_value_frame`
computes from a model (at a save, in a callback, or for checkpoints you load), and written as
``hookstats/singular_values/<hook_point>``.

The writer is :class:`torch.utils.tensorboard.SummaryWriter`, which needs the ``tensorboard``
package; it is imported when an export runs.

May import: numpy, pandas, torch, :mod:`hookstats.errors`, :mod:`hookstats.metrics`,
:mod:`hookstats.points`, :mod:`hookstats.runs` and :mod:`hookstats.integrations.common`
(tensorboard lazily).

Example:
    >>> import hookstats as hs
    >>> from hookstats.integrations.tensorboard import export_tensorboard
    >>> export_tensorboard(hs.MetricStore("runs/metrics.sqlite"), "tb/", run="ft")  # doctest: +SKIP
    [PosixPath('tb/ft')]
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..errors import HookstatsError
from ..metrics.params import ParamStore
from ..points import PointSpec, select_points
from ..runs import MetricStore
from .common import KEY_PREFIX, checkpoint_times, import_extra, metric_keys, sanitize

__all__ = ["SPECTRA_COLUMNS", "export_tensorboard", "singular_value_frame"]

SPECTRA_COLUMNS = ["step", "hook_point", "values"]
"""The columns of a spectra frame (a ``run`` column, when present, is filtered on)."""


def singular_value_frame(model: nn.Module, points: PointSpec = None, *, step: int) -> pd.DataFrame:
    """Singular values of each selected hook point's weight matrices, pooled and sorted
    descending, as a spectra frame for :func:`export_tensorboard` (float64, exact SVD values
    as :func:`hookstats.compute_metrics` computes them; tied matrices once).

    Hook points without weight matrices, or with NaN/Inf in one, are left out.

    Example:
        >>> lin = nn.Linear(2, 2, bias=False)
        >>> with torch.no_grad():
        ...     _ = lin.weight.copy_(torch.tensor([[3.0, 0.0], [0.0, -4.0]]))
        >>> frame = singular_value_frame(lin, step=7)
        >>> frame["hook_point"].tolist(), frame["values"][0].round(12).tolist()
        (['(model)'], [4.0, 3.0])
    """
    params = ParamStore(model, torch.float32)
    rows = []
    for point in select_points(model, points):
        indices = [i for i in params.indices_of(point.module) if params.params[i].is_matrix]
        if not indices or not all(params.finite(i) for i in indices):
            continue
        values = np.sort(np.concatenate([params.singular_values(i) for i in indices]))[::-1]
        rows.append((int(step), point.name, values))
    frame: pd.DataFrame = pd.DataFrame(rows, columns=SPECTRA_COLUMNS)
    return frame


def _write_scalars(writer: Any, frame: pd.DataFrame, walltimes: dict[str, float]) -> int:
    keys = metric_keys(zip(frame["metric"], frame["hook_point"], strict=True))
    written = 0
    for step, checkpoint, point, metric, value in zip(
        frame["step"],
        frame["checkpoint"],
        frame["hook_point"],
        frame["metric"],
        frame["value"],
        strict=True,
    ):
        if value != value:  # NaN: undefined here, its reason is in the store's note
            continue
        walltime = walltimes.get(str(checkpoint))
        writer.add_scalar(keys[(metric, point)], float(value), int(step), walltime=walltime)
        written += 1
    return written


def _write_spectra(writer: Any, spectra: pd.DataFrame, run: str) -> None:
    missing = set(SPECTRA_COLUMNS) - set(spectra.columns)
    if missing:
        raise HookstatsError(
            f"spectra= needs columns {SPECTRA_COLUMNS}, missing {sorted(missing)}; make it with "
            "singular_value_frame(model, points, step=...)."
        )
    if "run" in spectra.columns:
        spectra = spectra[spectra["run"] == run]
    for step, point, values in zip(
        spectra["step"], spectra["hook_point"], spectra["values"], strict=True
    ):
        array = np.asarray(values, dtype=np.float64)
        if array.size:
            tag = f"{KEY_PREFIX}/singular_values/{point}"
            writer.add_histogram(tag, array, int(step), bins="auto")


def export_tensorboard(
    store: MetricStore,
    logdir: str | PathLike[str],
    run: str | Sequence[str] | None = None,
    *,
    metric: str | Sequence[str] | None = None,
    hook_point: str | Sequence[str] | None = None,
    spectra: pd.DataFrame | None = None,
) -> list[Path]:
    """Write a store's metrics as TensorBoard scalars (and spectra as histograms).

    Args:
        store: the :class:`~hookstats.MetricStore` to read.
        logdir: the TensorBoard log folder (created); run ``r`` is written to ``logdir/r/``.
        run, metric, hook_point: which records, as for :meth:`MetricStore.to_frame`
            (``None`` = all; hook points may be globs).
        spectra: optional spectra frame (:func:`singular_value_frame`) written as histograms
            ``hookstats/singular_values/<hook_point>``, to the run of its ``run`` column or,
            without one, to every exported run.

    Returns:
        The folders written, one per run.

    Raises:
        HookstatsError: tensorboard is not installed (``pip install hookstats[tensorboard]``),
            or ``spectra`` lacks a column.
        StoreError: a named run or metric is not in the store.

    Example:
        >>> export_tensorboard(store, "tb/", run="baseline", metric=["l2"])  # doctest: +SKIP
    """
    tensorboard = import_extra(
        "torch.utils.tensorboard", "tensorboard", "export_tensorboard", package="tensorboard"
    )
    frame = store.to_frame(run=run, metric=metric, hook_point=hook_point)
    runs = list(dict.fromkeys(frame["run"])) if not frame.empty else _named(run)
    written = []
    for name in runs:
        folder = Path(logdir) / sanitize(name)
        writer = tensorboard.SummaryWriter(log_dir=str(folder))
        try:
            _write_scalars(writer, frame[frame["run"] == name], checkpoint_times(store, name))
            if spectra is not None:
                _write_spectra(writer, spectra, name)
        finally:
            writer.close()
        written.append(folder)
    return written


def _named(run: str | Sequence[str] | None) -> list[str]:
    if run is None:
        return []
    return [run] if isinstance(run, str) else list(run)
