"""The ``hookstats`` sub-commands: profile, metrics, sweep, show and plot.

Each ``cmd_<name>(args, console)`` runs one sub-command from the parsed arguments of
:func:`hookstats.cli.parser.build_parser`, prints to ``console`` and returns the exit code (a
user error is raised as a :class:`~hookstats.errors.HookstatsError` for
:func:`hookstats.cli.main` to report). Also here: reading shared options (shapes, metric lists,
``--task``, executors) and showing a frame as a rich table (tidy rows pivoted to one column per
metric).

May import: every hookstats subpackage (lazily, per command) and :mod:`hookstats.cli.specs`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
from collections.abc import Iterator
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from ..units import format_number
from .specs import CLIError, build_from_spec, load_factory, parse_device, parse_shape

__all__ = ["cmd_metrics", "cmd_plot", "cmd_profile", "cmd_show", "cmd_sweep"]


# -- options -------------------------------------------------------------------------------


def _task(args: argparse.Namespace) -> Any:
    return build_from_spec(args.task) if args.task else None


def _points(values: list[str] | None) -> list[str] | None:
    return values or None


def _metrics(text: str | None) -> list[str] | None:
    return [m.strip() for m in text.split(",") if m.strip()] if text else None


def _profile_args(args: argparse.Namespace, model: Any = None) -> dict[str, Any]:
    shape = _input_shape(args)
    options: dict[str, Any] = {
        "input_shape": shape[1:],
        "batch_size": args.batch_size or shape[0],
        "device": parse_device(args.device),
        "points": _points(args.points),
    }
    if getattr(args, "input_dtype", "float") != "float":  # token ids for language models
        from .tables import token_inputs

        batch = (options.pop("batch_size"), *options.pop("input_shape"))
        options["inputs"] = token_inputs(model, batch, args.input_dtype, args.vocab)
    return options


def _build_for(args: argparse.Namespace) -> Any:
    """The model, built on the meta device (nothing allocated) with ``--device meta``."""
    if args.device != "meta":
        return build_from_spec(args.model)
    import torch

    with torch.device("meta"):
        return build_from_spec(args.model)


def _safe_globals(args: argparse.Namespace) -> list[Any] | None:
    """``--safe-globals module:Name`` (repeatable) as the objects themselves."""
    specs = getattr(args, "safe_globals", None) or []
    return [load_factory(spec.replace(".py.", ".py:", 1)) for spec in specs] or None


def _store_file(path: str) -> Path:
    """The store a reading command names: it must be an existing file."""
    file = Path(path)
    if file.is_dir():
        raise CLIError(f"'{path}' is a folder, not a store: name the .sqlite file inside it.")
    if not file.is_file():
        raise CLIError(f"store '{path}' not found. Check the path.")
    return file


def _input_shape(args: argparse.Namespace) -> tuple[int, ...]:
    if args.input_shape is None:
        raise CLIError(
            f"{args.command} {getattr(args, 'kind', '')} needs --input-shape, the "
            "whole input batch first, e.g. --input-shape 32,1,28,28."
        )
    return parse_shape(args.input_shape)


# -- output --------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    return format_number(value, ".6g") if isinstance(value, float | None) else str(value)


def _table(frame: pd.DataFrame, title: str, max_rows: int) -> Table:
    table = Table(title=title, header_style="bold")
    for column in frame.columns:
        numeric = pd.api.types.is_numeric_dtype(frame[column])
        table.add_column(str(column), justify="right" if numeric else "left")
    for row in frame.head(max_rows).itertuples(index=False):
        table.add_row(*(_cell(v) for v in row))
    if len(frame) > max_rows:
        table.caption = f"… {len(frame) - max_rows} more rows (--max-rows)"
    return table


def _wide(frame: pd.DataFrame, index: list[str]) -> pd.DataFrame:
    """Tidy rows -> one row per ``index`` value, one column per metric, in computed order.
    Two checkpoints with one step are told apart by their ``checkpoint`` column."""
    if "step" in index and frame.duplicated([*index, "metric"]).any():
        index = [index[0], "checkpoint", *index[1:]]
    wide = frame.pivot(index=index, columns="metric", values="value")
    order = frame[index].drop_duplicates()
    wide = wide.reindex(pd.MultiIndex.from_frame(order) if len(index) > 1 else order[index[0]])
    return wide[list(dict.fromkeys(frame["metric"]))].reset_index()


def _write_frame(frame: pd.DataFrame, csv: str | None, console: Console) -> None:
    if csv:
        frame.to_csv(csv, index=False)
        console.print(f"wrote {csv}")


# -- sub-commands --------------------------------------------------------------------------


def cmd_profile(args: argparse.Namespace, console: Console) -> int:
    from ..profiling import profile

    if args.optimizer and not args.train:
        raise CLIError("--optimizer describes a training step: add --train.")
    training = {"train": True, "optimizer": args.optimizer} if args.train else {}
    model = _build_for(args)
    report = profile(model, **_profile_args(args, model), **training)
    console.print(
        report.table(depth=args.depth, collapse=not args.no_collapse, max_rows=args.max_rows)
    )
    if report.memory is not None:
        console.print(_memory_table(report), highlight=False)
    if args.csv:
        report.to_csv(args.csv, per_call=args.per_call)
        console.print(f"wrote {args.csv}")
    return 0


def _memory_table(report: Any) -> Table:
    """The training step's totals and memory (``profile --train``)."""
    from ..units import format_bytes, format_count

    memory = report.memory
    table = Table(title="training step", header_style="bold", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    rows = [
        ("forward MACs", format_count(report.training.forward_macs)),
        ("backward MACs", format_count(report.total("backward_macs"))),
        ("parameters", format_bytes(memory.parameters)),
        ("gradients", format_bytes(memory.gradients)),
        (f"optimizer state ({memory.optimizer or 'none'})", format_bytes(memory.optimizer_state)),
        ("saved for backward", format_bytes(memory.saved_activations)),
        ("peak", format_bytes(memory.peak)),
        ("peak during", f"{memory.peak_phase} ({memory.peak_hook_point or '-'})"),
    ]
    for what, value in rows:
        table.add_row(what, value)
    return table


def _load_weights(model: Any, checkpoint: str, safe_globals: list[Any] | None) -> None:
    from ..runs import load_checkpoint, load_into

    load_into(model, load_checkpoint(checkpoint, safe_globals=safe_globals))


def cmd_metrics(args: argparse.Namespace, console: Console) -> int:
    from ..metrics import compute_metrics

    model = build_from_spec(args.model)
    if args.checkpoint:
        _load_weights(model, args.checkpoint, _safe_globals(args))
    frame = compute_metrics(
        model,
        _points(args.points),
        _metrics(args.metrics),
        task=_task(args),
        precision=args.precision,
    )
    console.print(_table(_wide(frame, ["hook_point"]), f"metrics of {args.model}", args.max_rows))
    _write_frame(frame, args.csv, console)
    return 0


@contextlib.contextmanager
def _executor(args: argparse.Namespace) -> Iterator[tuple[Executor | None, int | None]]:
    """The executor of ``--dask``/``--workers`` and its window (jobs in flight), shut down
    (and a Dask client closed) when the command ends."""
    if args.dask:
        try:
            from distributed import Client
        except ImportError:
            raise CLIError("--dask needs dask.distributed: pip install hookstats[dask]") from None
        with Client(args.dask) as client:  # type: ignore[no-untyped-call]
            executor = client.get_executor()
            try:
                yield executor, 2 * max(1, sum(client.nthreads().values()))
            finally:
                executor.shutdown(wait=True)
    elif args.workers > 0:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # never fork: the progress bar's refresh thread may hold a lock at fork time
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        with ProcessPoolExecutor(args.workers, mp_context=context) as pool:
            yield pool, 2 * args.workers
    else:
        yield None, None


def cmd_sweep(args: argparse.Namespace, console: Console) -> int:
    from ..runs import sweep

    where, _, attribute = args.model.rpartition(":")
    spec = f"{Path(where).resolve()}:{attribute}" if where.endswith(".py") else args.model
    build = functools.partial(build_from_spec, spec)  # workers import it themselves
    with _executor(args) as (executor, in_flight):
        summary = sweep(
            args.checkpoints,
            build,
            args.store,
            args.run,
            _points(args.points),
            _metrics(args.metrics),
            executor=executor,
            max_in_flight=in_flight,
            task=_task(args),
            precision=args.precision,
            progress=not args.no_progress,
            console=Console(stderr=True),
            safe_globals=_safe_globals(args),
        )
    for checkpoint, error in summary.failures:
        console.print(f"[red]failed[/] {checkpoint}: {error}", highlight=False)
    return 0 if summary.ok else 1


def cmd_show(args: argparse.Namespace, console: Console) -> int:
    from ..runs import MetricStore

    if args.point is not None and args.run is None:
        raise CLIError("--point selects hook points of a run: give --run too.")
    point = args.point or "(model)"
    with MetricStore(_store_file(args.store), read_only=True, quick_check=True) as store:
        if args.csv or args.parquet:
            filters = {"run": args.run, "metric": _metrics(args.metric)}
            if args.csv:
                store.to_csv(args.csv, **filters)
            if args.parquet:
                store.to_parquet(args.parquet, **filters)
            console.print(f"wrote {args.csv or ''} {args.parquet or ''}".strip())
        elif args.failures:
            frame = store.failures(args.run)
            console.print(
                _table(
                    frame[["run", "checkpoint", "step", "error", "message"]],
                    "failed checkpoints",
                    args.max_rows,
                )
            )
        elif args.run is None:
            frame = store.runs().drop(columns=["config", "settings"])
            console.print(_table(frame, f"runs in {args.store}", args.max_rows))
        else:
            from .tables import metrics_tree_table

            frame = store.to_frame(run=args.run, metric=_metrics(args.metric), hook_point=point)
            if frame.empty and not store.to_frame(run=args.run).empty:
                known = store.to_frame(run=args.run)["hook_point"].unique().tolist()
                raise CLIError(
                    f"--point {point!r} matches no hook point of run {args.run!r}. Its "
                    f"hook points: {', '.join(known[:12])}{' …' if len(known) > 12 else ''}."
                )
            console.print(
                metrics_tree_table(
                    _wide(frame, ["step", "hook_point"]),
                    title=f"run {args.run!r}, hook points {point}",
                    depth=args.depth,
                    collapse=not args.no_collapse,
                    max_rows=args.max_rows,
                )
            )
    return 0


def cmd_plot(args: argparse.Namespace, console: Console) -> int:
    from .. import plots

    if args.kind == "history":
        from ..runs import MetricStore

        with MetricStore(_store_file(args.source), read_only=True) as store:
            frame = store.to_frame(run=args.run, metric=_metrics(args.metric))
        path = plots.plot_metric_history(frame, args.output, points=_points(args.points))
    elif args.kind == "costs":
        from ..profiling import profile

        report = profile(build_from_spec(args.source), **_profile_args(args))
        path = plots.plot_layer_costs(report, args.output, collapse=not args.no_collapse)
    else:
        shape = _input_shape(args)
        sizes = [int(b) for b in parse_shape(args.batch_sizes)]
        path = plots.plot_memory_vs_batch(
            build_from_spec(args.source),
            shape[1:],
            args.output,
            sizes,
            device=parse_device(args.device),
        )
    console.print(f"wrote {path}")
    return 0
