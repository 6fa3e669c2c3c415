"""Plots (extra ``hookstats[plot]``): layer costs, metric history, activation memory vs batch.

matplotlib is imported only when a plot is drawn, and only its object API is used (no pyplot,
no global state, no window): each function writes a PNG, SVG or PDF file, chosen by the
suffix, and returns its path. The ``*_figure`` functions return the matplotlib ``Figure``
instead, to adjust before saving.

Example:
    >>> import hookstats as hs
    >>> from hookstats.plots import plot_layer_costs
    >>> report = hs.profile(model, input_shape=(1, 28, 28), batch_size=32)  # doctest: +SKIP
    >>> plot_layer_costs(report, "outputs/layer_costs.png")  # doctest: +SKIP
    PosixPath('outputs/layer_costs.png')

May import: pandas, :mod:`hookstats.errors`, :mod:`hookstats.counting` (a name),
:mod:`hookstats.display`, :mod:`hookstats.profiling` (matplotlib lazily).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .counting import OUTSIDE_POINTS
from .display import build_tree, walk
from .errors import HookstatsError
from .profiling.table import signature

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .profiling import Report

__all__ = [
    "activation_memory",
    "layer_costs_figure",
    "memory_vs_batch_figure",
    "metric_history_figure",
    "plot_layer_costs",
    "plot_memory_vs_batch",
    "plot_metric_history",
]

FORMATS = (".png", ".svg", ".pdf")
_MAX_LEGEND = 16
_MIB = 2**20


def _new_figure(width: float, height: float) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise HookstatsError("plots need matplotlib: pip install hookstats[plot]") from None
    return Figure(figsize=(width, height), layout="constrained")


def _save(figure: Figure, path: str | PathLike[str]) -> Path:
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise HookstatsError(
            f"cannot tell the image format of {str(path)!r}: end the file name with "
            f"{', '.join(FORMATS)}."
        )
    if not path.parent.is_dir():
        raise HookstatsError(f"the folder '{path.parent}' does not exist: create it first.")
    figure.savefig(path, dpi=120)
    return path


def _cost_table(source: Report | pd.DataFrame, collapse: bool = True) -> pd.DataFrame:
    """Rows ``layer, activation_bytes, macs`` from a seed frame as they are, or from a Report
    or its frame by :func:`_leaf_costs`."""
    frame = source if isinstance(source, pd.DataFrame) else source.to_frame()
    if {"layer", "activation_bytes", "macs"} <= set(frame.columns):
        return frame[["layer", "activation_bytes", "macs"]]
    if {"hook_point", "activation_bytes", "self_macs"} <= set(frame.columns):
        return _leaf_costs(frame, collapse)
    raise HookstatsError(
        "layer costs need a Report, estimate_layerwise_stats()'s frame (layer, "
        "activation_bytes, macs) or Report.to_frame(); got columns "
        f"{list(frame.columns)[:8]}."
    )


def _leaf_costs(frame: pd.DataFrame, collapse: bool) -> pd.DataFrame:
    """One bar per hook point that ran with no selected point below it (and the work outside
    every selected point), and one ``<point> (own ops)`` for a container whose own code does
    MAC work (attention's matmuls), so the bars add up to the model's MACs. With
    ``collapse``, repeated blocks (``h.0–11 ×12``) give one bar per kind of leaf,
    ``h.0–11.attn.c_attn ×12``, with the members' costs summed (the tree of
    :mod:`hookstats.display.tree`, as in the report's table)."""
    roots = build_tree(frame.to_dict("records"), signature=signature, collapse=collapse)
    layers: list[dict[str, Any]] = []
    for node, _ in walk(roots):
        rows = [r for r in node.rows if r["calls"] > 0 or r["hook_point"] == OUTSIDE_POINTS]
        own_macs = sum(int(r["self_macs"]) for r in rows)
        if not rows or (node.children and not own_macs):
            continue
        suffix = f" ×{node.count}" if node.count > 1 else ""
        outputs = sum(int(r["activation_bytes"]) for r in rows)
        layers.append(
            {
                "layer": node.path + (" (own ops)" if node.children else "") + suffix,
                "activation_bytes": 0 if node.children else outputs,
                "macs": own_macs,
            }
        )
    return pd.DataFrame(layers, columns=["layer", "activation_bytes", "macs"])


def layer_costs_figure(
    source: Report | pd.DataFrame, *, title: str | None = None, collapse: bool = True
) -> Figure:
    """Two bar charts per layer: activation memory (MiB) and MACs (millions). From a report,
    repeated blocks are collapsed as in its table (one bar ``h.0–11.mlp.fc ×12`` with the
    twelve layers' costs summed) unless ``collapse=False``.

    Example:
        >>> fig = layer_costs_figure(hs.estimate_layerwise_stats(model, 32))  # doctest: +SKIP
    """
    table = _cost_table(source, collapse)
    figure = _new_figure(9, 2.2 + 0.28 * len(table))
    memory, macs = figure.subplots(1, 2, sharey=True)
    labels = [str(layer) for layer in table["layer"]]
    memory.barh(labels, table["activation_bytes"] / _MIB, color="tab:blue")
    memory.set_xlabel("activation memory (MiB)")
    macs.barh(labels, table["macs"] / 1e6, color="tab:orange")
    macs.set_xlabel("MACs (millions)")
    memory.invert_yaxis()
    figure.suptitle(title or "Per-layer costs")
    return figure


def plot_layer_costs(
    source: Report | pd.DataFrame,
    path: str | PathLike[str],
    *,
    title: str | None = None,
    collapse: bool = True,
) -> Path:
    """Write :func:`layer_costs_figure` (the seed pipeline's memory and MAC plots) to ``path``.

    Example:
        >>> report = hs.profile(model, input_shape=(1, 28, 28))  # doctest: +SKIP
        >>> plot_layer_costs(report, "costs.svg")  # doctest: +SKIP
    """
    return _save(layer_costs_figure(source, title=title, collapse=collapse), path)


def _select(
    frame: pd.DataFrame, metric: str | Sequence[str] | None, points: str | Sequence[str] | None
) -> pd.DataFrame:
    missing = {"step", "hook_point", "metric", "value"} - set(frame.columns)
    if missing:
        raise HookstatsError(
            f"metric history needs tidy records (store.to_frame()); missing {sorted(missing)}."
        )
    if metric is not None:
        wanted = [metric] if isinstance(metric, str) else list(metric)
        unknown = sorted(set(wanted) - set(frame["metric"]))
        if unknown:
            raise HookstatsError(
                f"no metric {unknown} in the records; they hold "
                f"{sorted(set(frame['metric']))[:12]}."
            )
        frame = frame[frame["metric"].isin(wanted)]
    if points is not None:
        globs = [points] if isinstance(points, str) else list(points)
        frame = frame[[any(fnmatch.fnmatchcase(p, g) for g in globs) for p in frame["hook_point"]]]
        if frame.empty:
            raise HookstatsError(f"points {globs} select no hook point of the records.")
    if frame.empty:
        raise HookstatsError("no metric records to plot: is the run empty?")
    return frame


def metric_history_figure(
    frame: pd.DataFrame,
    *,
    metric: str | Sequence[str] | None = None,
    points: str | Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """One panel per metric: its value over steps, one line per hook point (and per run when
    the records hold several).

    Args:
        frame: tidy records, e.g. ``store.to_frame(run="baseline")``.
        metric: which metric(s); default all in ``frame``.
        points: globs on hook points; default all (legend shown up to 16 lines).

    Example:
        >>> fig = metric_history_figure(store.to_frame(run="a"), metric="l2")  # doctest: +SKIP
    """
    frame = _select(frame, metric, points)
    metrics = list(dict.fromkeys(frame["metric"]))
    figure = _new_figure(8, 2.8 * len(metrics) + 0.6)
    axes = figure.subplots(len(metrics), 1, sharex=True, squeeze=False)[:, 0]
    runs = "run" in frame.columns and frame["run"].nunique() > 1
    keys = ["run", "hook_point"] if runs else ["hook_point"]  # several runs: a line per run too
    for axis, name in zip(axes, metrics, strict=True):
        groups = frame[frame["metric"] == name].groupby(keys, sort=False)
        for key, line in groups:
            line = line.sort_values("step")
            label = ": ".join(map(str, key)) if runs else str(key[0])
            axis.plot(line["step"], line["value"], marker=".", label=label)
        axis.set_ylabel(name)
        axis.grid(alpha=0.3)
        if groups.ngroups <= _MAX_LEGEND:
            axis.legend(fontsize="small", loc="best")
    axes[-1].set_xlabel("step")
    figure.suptitle(title or "Metric history")
    return figure


def plot_metric_history(
    frame: pd.DataFrame,
    path: str | PathLike[str],
    *,
    metric: str | Sequence[str] | None = None,
    points: str | Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Write :func:`metric_history_figure` to ``path`` (PNG/SVG/PDF by suffix).

    Example:
        >>> plot_metric_history(store.to_frame(run="a"), "l2.png", metric="l2")  # doctest: +SKIP
    """
    return _save(metric_history_figure(frame, metric=metric, points=points, title=title), path)


def activation_memory(
    model: Any, input_shape: tuple[int, ...], batch_sizes: Sequence[int], **profile_kwargs: Any
) -> pd.DataFrame:
    """Total activation bytes of :func:`hookstats.estimate_layerwise_stats` per batch size.

    Example:
        >>> activation_memory(model, (1, 28, 28), [1, 32])  # doctest: +SKIP
    """
    from .profiling import estimate_layerwise_stats

    totals = [
        int(
            estimate_layerwise_stats(
                model, batch_size=b, input_shape=input_shape, **profile_kwargs
            )["activation_bytes"].sum()
        )
        for b in batch_sizes
    ]
    return pd.DataFrame({"batch_size": list(batch_sizes), "activation_bytes": totals})


def memory_vs_batch_figure(
    model: Any,
    input_shape: tuple[int, ...],
    batch_sizes: Sequence[int] = (1, 8, 16, 32, 64),
    *,
    title: str | None = None,
    **profile_kwargs: Any,
) -> Figure:
    """The seed's example: total activation memory (MiB) against batch size.

    Example:
        >>> fig = memory_vs_batch_figure(model, (1, 28, 28))  # doctest: +SKIP
    """
    table = activation_memory(model, input_shape, batch_sizes, **profile_kwargs)
    figure = _new_figure(6, 4)
    axis = figure.subplots()
    axis.plot(table["batch_size"], table["activation_bytes"] / _MIB, marker="o")
    axis.set_xlabel("batch size")
    axis.set_ylabel("total activation memory (MiB)")
    axis.grid(alpha=0.3)
    axis.set_title(title or "Memory scaling with batch size")
    return figure


def plot_memory_vs_batch(
    model: Any,
    input_shape: tuple[int, ...],
    path: str | PathLike[str],
    batch_sizes: Sequence[int] = (1, 8, 16, 32, 64),
    *,
    title: str | None = None,
    **profile_kwargs: Any,
) -> Path:
    """Write :func:`memory_vs_batch_figure` to ``path`` (PNG/SVG/PDF by suffix).

    Example:
        >>> plot_memory_vs_batch(model, (1, 28, 28), "memory.png")  # doctest: +SKIP
    """
    figure = memory_vs_batch_figure(model, input_shape, batch_sizes, title=title, **profile_kwargs)
    return _save(figure, path)
