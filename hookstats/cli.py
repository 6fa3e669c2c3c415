"""The ``hookstats`` command line (also ``python -m hookstats``): profile, metrics, sweep, show,
plot.

A model is named as ``package.module:factory`` or ``path/to/file.py:factory`` (a function or
class that builds the ``nn.Module``). Shapes are comma-separated: ``--input-shape 1,3,224,224``
is the whole input tensor, batch dimension first; ``--batch-size`` replaces that first number.
A user error is one line ``hookstats: error: ...`` on stderr and exit code 2; a sweep with
failed checkpoints exits with 1.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from .errors import HookstatsError

__all__ = ["build_from_spec", "load_factory", "main", "parse_shape"]

USAGE_ERROR = 2


class CLIError(HookstatsError, ValueError):
    """A command-line argument is wrong (bad model spec, shape, file)."""


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1,3,224,224"`` -> ``(1, 3, 224, 224)``.

    Example:
        >>> parse_shape("32, 1, 28, 28")
        (32, 1, 28, 28)
    """
    try:
        shape = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        shape = ()
    if not shape or any(size <= 0 for size in shape):
        raise CLIError(f"{text!r} is not a shape: write positive integers separated by commas, "
                       "e.g. 1,3,224,224.")
    return shape


def _import_file(path: Path) -> Any:
    if not path.is_file():
        raise CLIError(f"model file '{path}' not found. Name a model as path/file.py:factory.")
    name = f"_hookstats_user_{abs(hash(str(path.resolve())))}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    except Exception as exc:
        del sys.modules[name]
        raise CLIError(f"importing '{path}' raised {type(exc).__name__}: {exc}") from exc
    return module


@functools.lru_cache(maxsize=16)
def load_factory(spec: str) -> Callable[[], Any]:
    """Resolve ``"pkg.module:factory"`` or ``"path/file.py:factory"`` to the factory.

    Raises:
        CLIError: no ``:factory`` part, the module or file cannot be imported, or it has no such
            attribute (the message lists its callables).

    Example:
        >>> load_factory("torch.nn:Identity")
        <class 'torch.nn.modules.linear.Identity'>
    """
    where, sep, attribute = spec.rpartition(":")
    if not sep or not where or not attribute:
        raise CLIError(f"model {spec!r} names no factory: write package.module:factory or "
                       "path/file.py:factory.")
    if where.endswith(".py") or "/" in where or "\\" in where:
        module = _import_file(Path(where))
    else:
        if "" not in sys.path and str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise CLIError(f"cannot import module {where!r} ({exc}). Check the name, or name a "
                           "file: path/file.py:factory.") from exc
    factory = getattr(module, attribute, None)
    if not callable(factory):
        names = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise CLIError(f"{where!r} has no callable {attribute!r}. Callables there: "
                       f"{', '.join(names[:12]) or '(none)'}.")
    return factory


def build_from_spec(spec: str) -> Any:
    """Build the model named by ``spec`` (picklable as ``functools.partial(build_from_spec,
    spec)``, so sweep workers import the factory themselves)."""
    factory = load_factory(spec)
    try:
        return factory()
    except Exception as exc:
        raise CLIError(f"the factory {spec!r} raised {type(exc).__name__}: {exc}") from exc


def _task(args: argparse.Namespace) -> Any:
    return build_from_spec(args.task) if args.task else None


def _points(values: list[str] | None) -> list[str] | None:
    return values or None


def _metrics(text: str | None) -> list[str] | None:
    return [m.strip() for m in text.split(",") if m.strip()] if text else None


def _profile_args(args: argparse.Namespace) -> dict[str, Any]:
    shape = _input_shape(args)
    return {"input_shape": shape[1:], "batch_size": args.batch_size or shape[0],
            "device": args.device, "points": _points(args.points)}


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-" if value is None else "nan"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _input_shape(args: argparse.Namespace) -> tuple[int, ...]:
    if args.input_shape is None:
        raise CLIError(f"{args.command} {getattr(args, 'kind', '')} needs --input-shape, the "
                       "whole input batch first, e.g. --input-shape 32,1,28,28.")
    return parse_shape(args.input_shape)


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
    """Tidy rows -> one row per ``index`` value, one column per metric, in computed order."""
    wide = frame.pivot(index=index, columns="metric", values="value")
    order = frame[index].drop_duplicates()
    wide = wide.reindex(pd.MultiIndex.from_frame(order) if len(index) > 1 else order[index[0]])
    return wide[list(dict.fromkeys(frame["metric"]))].reset_index()


def _write_frame(frame: pd.DataFrame, csv: str | None, console: Console) -> None:
    if csv:
        frame.to_csv(csv, index=False)
        console.print(f"wrote {csv}")


def cmd_profile(args: argparse.Namespace, console: Console) -> int:
    from .profile import profile

    report = profile(build_from_spec(args.model), **_profile_args(args))
    console.print(report)
    if args.csv:
        report.to_csv(args.csv, per_call=args.per_call)
        console.print(f"wrote {args.csv}")
    return 0


def _load_weights(model: Any, checkpoint: str) -> None:
    from .checkpoints import load_checkpoint, load_into

    load_into(model, load_checkpoint(checkpoint))


def cmd_metrics(args: argparse.Namespace, console: Console) -> int:
    from .metrics import compute_metrics

    model = build_from_spec(args.model)
    if args.checkpoint:
        _load_weights(model, args.checkpoint)
    frame = compute_metrics(model, _metrics(args.metrics), _points(args.points),
                            task=_task(args), precision=args.precision)
    console.print(_table(_wide(frame, ["hook_point"]), f"metrics of {args.model}",
                         args.max_rows))
    _write_frame(frame, args.csv, console)
    return 0


def _executor(args: argparse.Namespace) -> Any:
    if args.dask:
        try:
            from distributed import Client
        except ImportError:
            raise CLIError("--dask needs dask.distributed: pip install hookstats[dask]") from None
        return Client(args.dask).get_executor()
    if args.workers > 0:
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(args.workers)
    return None


def cmd_sweep(args: argparse.Namespace, console: Console) -> int:
    from .sweep import sweep

    where, _, attribute = args.model.rpartition(":")
    spec = f"{Path(where).resolve()}:{attribute}" if where.endswith(".py") else args.model
    build = functools.partial(build_from_spec, spec)  # workers import it themselves
    executor = _executor(args)
    try:
        summary = sweep(args.checkpoints, build, args.store, args.run, _metrics(args.metrics),
                        _points(args.points), executor, task=_task(args),
                        precision=args.precision,
                        progress=not args.no_progress, console=Console(stderr=True))
    finally:
        if executor is not None:
            executor.shutdown(wait=True)
            if hasattr(executor, "_client"):  # a Dask client made for this command
                executor._client.close()
    for checkpoint, error in summary.failures:
        console.print(f"[red]failed[/] {checkpoint}: {error}", highlight=False)
    return 0 if summary.ok else 1


def cmd_show(args: argparse.Namespace, console: Console) -> int:
    from .store import MetricStore

    if not Path(args.store).is_file():
        raise CLIError(f"store '{args.store}' not found. Check the path.")
    with MetricStore(args.store, read_only=True) as store:
        if args.csv or args.parquet:
            filters = {"run": args.run, "metric": _metrics(args.metric)}
            if args.csv:
                store.to_csv(args.csv, **filters)
            if args.parquet:
                store.to_parquet(args.parquet, **filters)
            console.print(f"wrote {args.csv or ''} {args.parquet or ''}".strip())
        elif args.failures:
            frame = store.failures(args.run)
            console.print(_table(frame[["run", "checkpoint", "step", "error", "message"]],
                                 "failed checkpoints", args.max_rows))
        elif args.run is None:
            frame = store.runs().drop(columns=["config", "settings"])
            console.print(_table(frame, f"runs in {args.store}", args.max_rows))
        else:
            frame = store.to_frame(run=args.run, metric=_metrics(args.metric),
                                   hook_point=args.point)
            console.print(_table(_wide(frame, ["step", "hook_point"]),
                                 f"run {args.run!r}, hook points {args.point}", args.max_rows))
    return 0


def cmd_plot(args: argparse.Namespace, console: Console) -> int:
    from . import plots

    if args.kind == "history":
        from .store import MetricStore

        if not Path(args.source).is_file():
            raise CLIError(f"store '{args.source}' not found. Check the path.")
        with MetricStore(args.source, read_only=True) as store:
            frame = store.to_frame(run=args.run, metric=_metrics(args.metric))
        path = plots.plot_metric_history(frame, args.output, points=_points(args.points))
    elif args.kind == "costs":
        from .profile import profile

        report = profile(build_from_spec(args.source), **_profile_args(args))
        path = plots.plot_layer_costs(report, args.output)
    else:
        shape = _input_shape(args)
        sizes = [int(b) for b in parse_shape(args.batch_sizes)]
        path = plots.plot_memory_vs_batch(build_from_spec(args.source), shape[1:], args.output,
                                          sizes, device=args.device)
    console.print(f"wrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 failed checkpoints, 2 usage).

    Example:
        >>> main(["profile", "examples/small_cnn.py:build_model", "--input-shape", "1,1,28,28"])
        ... # doctest: +SKIP
        0
    """
    args = build_parser().parse_args(argv)
    console = Console()
    commands = {"profile": cmd_profile, "metrics": cmd_metrics, "sweep": cmd_sweep,
                "show": cmd_show, "plot": cmd_plot}
    try:
        return commands[args.command](args, console)
    except KeyboardInterrupt:
        print("hookstats: interrupted (a sweep resumes where it stopped when run again)",
              file=sys.stderr)
        return 130
    except (HookstatsError, OSError) as exc:
        message = " ".join(str(exc).split())
        print(f"hookstats: error: {message}", file=sys.stderr)
        return USAGE_ERROR


_EXAMPLES = {
    "profile": """examples:
  hookstats profile examples/small_cnn.py:build_model --input-shape 32,1,28,28
  hookstats profile torchvision.models:resnet18 --input-shape 1,3,224,224 --device meta
  hookstats profile mypkg.models:build --input-shape 1,3,32,32 --points 'layer*' --csv costs.csv""",
    "metrics": """examples:
  hookstats metrics examples/small_cnn.py:build_model
  hookstats metrics mypkg.models:build --checkpoint ckpts/step_1000.pt --metrics l1,l2""",
    "sweep": """examples:
  hookstats sweep mypkg.models:build 'ckpts/*.pt' --store runs.sqlite --run baseline
  hookstats sweep model.py:build ckpts/ --store runs.sqlite --run a --workers 2 --metrics l2
  hookstats sweep model.py:build 'ckpts/*.pt' --store runs.sqlite --run a --dask tcp://host:8786
Run it again to resume: completed checkpoints are skipped, failed ones are retried.""",
    "show": """examples:
  hookstats show runs.sqlite                         # the runs
  hookstats show runs.sqlite --run baseline          # metrics of (model) per step
  hookstats show runs.sqlite --run baseline --point 'conv1' --metric l1,l2
  hookstats show runs.sqlite --failures
  hookstats show runs.sqlite --run baseline --csv baseline.csv --parquet baseline.parquet""",
    "plot": """examples:
  hookstats plot costs examples/small_cnn.py:build_model --input-shape 32,1,28,28 -o costs.png
  hookstats plot history runs.sqlite --run baseline --metric l2 --points 'conv*' -o l2.svg
  hookstats plot memory examples/small_cnn.py:build_model --input-shape 1,1,28,28 \\
      --batch-sizes 1,8,16,32,64 -o memory.png""",
}
_HELP = {
    "profile": "per-layer costs (MACs, bytes, shapes) from one forward pass",
    "metrics": "weight metrics per hook point of one model or checkpoint",
    "sweep": "metrics of many saved checkpoints into a store (resumable)",
    "show": "print a store's runs, metrics or failures; export CSV/Parquet",
    "plot": "write a PNG/SVG: layer costs, metric history, memory vs batch size",
}


def _subparser(commands: Any, name: str) -> argparse.ArgumentParser:
    return commands.add_parser(name, help=_HELP[name], description=_HELP[name],
                               epilog=_EXAMPLES[name],
                               formatter_class=argparse.RawDescriptionHelpFormatter)


def _add_shape(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--input-shape", required=required, metavar="SHAPE",
                        help="input tensor shape, batch first, e.g. 1,3,224,224")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="replace the first number of --input-shape")
    parser.add_argument("--device", default=None, help="cpu (default), meta or cuda")


def _add_selection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--points", action="append", metavar="GLOB",
                        help="hook points to include (repeatable), e.g. 'blocks.*'")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of :func:`main` (one sub-command per task, each with examples)."""
    parser = argparse.ArgumentParser(
        prog="hookstats",
        description=__doc__.split("\n\n")[1].replace("\n", " ").replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    prof = _subparser(commands, "profile")
    prof.add_argument("model", help="package.module:factory or path/file.py:factory")
    _add_shape(prof)
    _add_selection(prof)
    prof.add_argument("--csv", help="also write the table as CSV")
    prof.add_argument("--per-call", action="store_true", help="CSV: one row per call")
    met = _subparser(commands, "metrics")
    met.add_argument("model", help="package.module:factory or path/file.py:factory")
    met.add_argument("--checkpoint", help="load these weights first (.pt/.safetensors)")
    met.add_argument("--csv", help="also write the tidy rows as CSV")
    sw = _subparser(commands, "sweep")
    sw.add_argument("model", help="package.module:factory or path/file.py:factory")
    sw.add_argument("checkpoints", nargs="+", help="files, folders or quoted globs")
    sw.add_argument("--store", required=True, help="the SQLite store (created if missing)")
    sw.add_argument("--run", required=True, help="the run's name")
    sw.add_argument("--workers", type=int, default=0, help="local processes (0: this one)")
    sw.add_argument("--dask", metavar="ADDRESS", help="a Dask scheduler, e.g. tcp://host:8786")
    sw.add_argument("--no-progress", action="store_true", help="no progress bar")
    for sub in (met, sw):
        sub.add_argument("--metrics", help="comma-separated metric names (default: all)")
        _add_selection(sub)
        sub.add_argument("--precision", default="float32", help="float32 (default) or float64")
        sub.add_argument("--task", metavar="FACTORY", help="category-2 metrics: a factory "
                         "(pkg.module:make_task or file.py:make_task) returning the task")
    show = _subparser(commands, "show")
    show.add_argument("store", help="the SQLite store")
    show.add_argument("--run", help="show this run's metrics per step")
    show.add_argument("--metric", help="comma-separated metric names")
    show.add_argument("--point", default="(model)", help="hook point (glob) for --run")
    show.add_argument("--failures", action="store_true", help="list failed checkpoints")
    show.add_argument("--csv", help="export the tidy records (with --run/--metric filters)")
    show.add_argument("--parquet", help="export as Parquet (pip install hookstats[parquet])")
    plot = _subparser(commands, "plot")
    plot.add_argument("kind", choices=["costs", "history", "memory"], help="which plot")
    plot.add_argument("source", help="a model (costs, memory) or a store (history)")
    plot.add_argument("-o", "--output", required=True, help="output file: .png, .svg or .pdf")
    _add_shape(plot, required=False)
    _add_selection(plot)
    plot.add_argument("--run", help="history: the run")
    plot.add_argument("--metric", help="history: comma-separated metric names")
    plot.add_argument("--batch-sizes", default="1,8,16,32,64", help="memory: batch sizes")
    for sub in (prof, met, show):
        sub.add_argument("--max-rows", type=int, default=60, help="rows shown (default 60)")
    return parser
