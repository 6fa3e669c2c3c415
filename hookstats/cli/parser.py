"""The ``hookstats`` command line (also ``python -m hookstats``): profile, metrics, sweep, show,
plot.

A model is named as ``package.module:factory`` or ``path/to/file.py:factory`` (a function or
class that builds the ``nn.Module``). Shapes are comma-separated: ``--input-shape 1,3,224,224``
is the whole input tensor, batch dimension first; ``--batch-size`` replaces that first number.
Every error is one line ``hookstats: error: ...`` on stderr and exit code 2 (set
``HOOKSTATS_TRACEBACK=1`` to see the traceback of an unexpected one); a sweep with failed
checkpoints exits with 1.
"""
# This module owns main() and the argument parser (sub-commands, options, help and examples);
# the docstring above is also the parser's description. The sub-commands run in
# hookstats/cli/commands.py; model specs and shapes are read by hookstats/cli/specs.py.
# May import: argparse, rich, hookstats.errors and the hookstats.cli siblings.

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from rich.console import Console

from ..errors import HookstatsError
from .commands import cmd_metrics, cmd_plot, cmd_profile, cmd_show, cmd_sweep
from .specs import count_option, positive_int
from .tables import TOKEN_DTYPES, parse_depth

__all__ = ["build_parser", "main"]

USAGE_ERROR = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 failed checkpoints, 2 usage).

    Example:
        >>> main(["profile", "examples/small_cnn.py:build_model", "--input-shape", "1,1,28,28"])
        ... # doctest: +SKIP
        0
    """
    try:
        args = build_parser().parse_args(argv)
    except _UsageError as exc:
        return _fail(str(exc))
    console = Console()
    commands = {
        "profile": cmd_profile,
        "metrics": cmd_metrics,
        "sweep": cmd_sweep,
        "show": cmd_show,
        "plot": cmd_plot,
    }
    try:
        return commands[args.command](args, console)
    except KeyboardInterrupt:
        print(
            "hookstats: interrupted (a sweep resumes where it stopped when run again)",
            file=sys.stderr,
        )
        return 130
    except (HookstatsError, OSError) as exc:
        return _fail(str(exc))
    except Exception as exc:  # a bug, or an error of the user's own model code
        if os.environ.get("HOOKSTATS_TRACEBACK"):
            raise
        return _fail(
            f"unexpected {type(exc).__name__}: {exc} (set HOOKSTATS_TRACEBACK=1 to see where)"
        )


def _fail(message: str) -> int:
    """Print one line ``hookstats: error: ...`` on stderr; the usage-error exit code."""
    print(f"hookstats: error: {' '.join(message.split())}", file=sys.stderr)
    return USAGE_ERROR


class _UsageError(Exception):
    """An argument argparse refused; :func:`main` prints it as one line."""


class _Parser(argparse.ArgumentParser):
    """argparse with its errors raised (one line from :func:`main`) instead of printing the
    usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


_EXAMPLES = {
    "profile": """examples:
  hookstats profile examples/small_cnn.py:build_model --input-shape 32,1,28,28
  hookstats profile torchvision.models:resnet18 --input-shape 1,3,224,224 --device meta
  hookstats profile mypkg.models:build --input-shape 1,3,32,32 --points 'layer*' --csv costs.csv
  hookstats profile pkg.models:build --input-shape 8,3,224,224 --device meta --train --optimizer sgd
  hookstats profile mypkg.llm:build_gpt2 --input-shape 1,128 --input-dtype int64 --vocab 50257 \\
      --device meta --depth 3""",
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
  hookstats show runs.sqlite --run baseline --point '*' --depth 2 --no-collapse
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
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=_HELP[name],
        description=_HELP[name],
        epilog=_EXAMPLES[name],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def _add_shape(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument(
        "--input-shape",
        required=required,
        metavar="SHAPE",
        help="input tensor shape, batch first, e.g. 1,3,224,224",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="replace the first number of --input-shape",
    )
    parser.add_argument("--device", default=None, help="cpu (default), meta or cuda")


def _add_selection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--points",
        action="append",
        metavar="GLOB",
        help="hook points to include (repeatable), e.g. 'blocks.*'",
    )


def _add_metric_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics", help="comma-separated metric names (default: all)")
    _add_selection(parser)
    parser.add_argument("--precision", default="float32", help="float32 (default) or float64")
    parser.add_argument(
        "--task",
        metavar="FACTORY",
        help="category-2 metrics: a factory "
        "(pkg.module:make_task or file.py:make_task) returning the task",
    )
    parser.add_argument(
        "--safe-globals",
        action="append",
        metavar="MODULE:NAME",
        help="a class or function you trust that checkpoints' pickles need (repeatable)",
    )


def _add_tree_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--depth",
        type=parse_depth,
        default=None,
        metavar="N",
        help="tree levels shown below the top, or 'all' (default: as many as fit 50 rows)",
    )
    parser.add_argument(
        "--no-collapse",
        action="store_true",
        help="one row per repeated block instead of one row 'layers.0–31 ×32'",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of :func:`main` (one sub-command per task, each with examples)."""
    parser = _Parser(
        prog="hookstats",
        description=__doc__.split("\n\n")[1].replace("\n", " ").replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    prof = _subparser(commands, "profile")
    prof.add_argument("model", help="package.module:factory or path/file.py:factory")
    _add_shape(prof)
    _add_selection(prof)
    prof.add_argument(
        "--train",
        action="store_true",
        help="profile a training step: backward MACs, saved bytes, peak memory",
    )
    prof.add_argument(
        "--optimizer",
        help="with --train: count this optimizer's state, e.g. sgd, sgd_momentum, adam, adamw",
    )
    prof.add_argument("--csv", help="also write the table as CSV")
    prof.add_argument("--per-call", action="store_true", help="CSV: one row per call")
    prof.add_argument(
        "--input-dtype",
        choices=["float", *TOKEN_DTYPES],
        default="float",
        help="float (default: a random input in the model's dtype) or int64/int32 token ids "
        "for language models",
    )
    prof.add_argument(
        "--vocab",
        type=positive_int,
        metavar="N",
        help="token ids are drawn from 0..N-1 (default: the smallest nn.Embedding of the model)",
    )
    met = _subparser(commands, "metrics")
    met.add_argument("model", help="package.module:factory or path/file.py:factory")
    met.add_argument("--checkpoint", help="load these weights first (.pt/.safetensors)")
    met.add_argument("--csv", help="also write the tidy rows as CSV")
    sw = _subparser(commands, "sweep")
    sw.add_argument("model", help="package.module:factory or path/file.py:factory")
    sw.add_argument("checkpoints", nargs="+", help="files, folders or quoted globs")
    sw.add_argument("--store", required=True, help="the SQLite store (created if missing)")
    sw.add_argument("--run", required=True, help="the run's name")
    sw.add_argument("--workers", type=count_option, default=0, help="local processes (0: this one)")
    sw.add_argument("--dask", metavar="ADDRESS", help="a Dask scheduler, e.g. tcp://host:8786")
    sw.add_argument("--no-progress", action="store_true", help="no progress bar")
    for sub in (met, sw):
        _add_metric_options(sub)
    show = _subparser(commands, "show")
    show.add_argument("store", help="the SQLite store")
    show.add_argument("--run", help="show this run's metrics per step")
    show.add_argument("--metric", help="comma-separated metric names")
    show.add_argument("--point", help="hook point (glob) for --run (default: (model))")
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
    plot.add_argument(
        "--no-collapse",
        action="store_true",
        help="costs: a bar per module instead of one per kind of module in repeated blocks",
    )
    for sub in (prof, met, show):
        sub.add_argument(
            "--max-rows", type=positive_int, default=60, help="rows shown (default 60)"
        )
    for sub in (prof, show):
        _add_tree_options(sub)
    return parser
