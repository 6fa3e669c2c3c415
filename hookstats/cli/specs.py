"""Command-line text into objects: model specs (``pkg.module:factory``, ``file.py:factory``) and
shapes (``1,3,224,224``), and :class:`CLIError`, the error for a wrong argument.

A spec is resolved by importing the module (the current folder is importable) or executing the
file once, then taking the named callable; :func:`build_from_spec` calls it to build the model.
Sweep workers receive ``functools.partial(build_from_spec, spec)`` and resolve it themselves.

May import: the standard library and :mod:`hookstats.errors`.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from ..errors import HookstatsError

__all__ = [
    "CLIError",
    "build_from_spec",
    "count_option",
    "load_factory",
    "parse_device",
    "parse_shape",
    "positive_int",
]


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
        raise CLIError(
            f"{text!r} is not a shape: write positive integers separated by commas, "
            "e.g. 1,3,224,224."
        )
    return shape


def positive_int(text: str) -> int:
    """An argparse ``type=``: a whole number >= 1 (``--batch-size``, ``--max-rows``)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def count_option(text: str) -> int:
    """An argparse ``type=``: a whole number >= 0 (``--workers``)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def parse_device(text: str | None) -> str | None:
    """``--device``: a device this torch can use (``cpu``, ``meta``, ``cuda[:n]``, ``mps``).

    Raises:
        CLIError: not a device name, or a device this machine's torch cannot reach.

    Example:
        >>> parse_device("meta"), parse_device(None)
        ('meta', None)
    """
    if text is None:
        return None
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise CLIError(
            f"--device {text!r} is not a device: use cpu, meta, cuda, cuda:1 or mps."
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else "no GPU visible"
        raise CLIError(
            f"--device {text}: this torch ({torch.__version__}) has {build}. Use --device cpu "
            "or --device meta, or install a CUDA build of torch."
        )
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise CLIError(
            f"--device {text}: there are {torch.cuda.device_count()} GPUs (cuda:0 ... "
            f"cuda:{torch.cuda.device_count() - 1})."
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise CLIError(f"--device {text}: MPS is not available on this machine.")
    return text


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
        raise CLIError(
            f"model {spec!r} names no factory: write package.module:factory or "
            "path/file.py:factory."
        )
    if where.endswith(".py") or "/" in where or "\\" in where:
        module = _import_file(Path(where))
    else:
        if "" not in sys.path and str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise CLIError(
                f"cannot import module {where!r} ({exc}). Check the name, or name a "
                "file: path/file.py:factory."
            ) from exc
    factory = getattr(module, attribute, None)
    if not callable(factory):
        names = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise CLIError(
            f"{where!r} has no callable {attribute!r}. Callables there: "
            f"{', '.join(names[:12]) or '(none)'}."
        )
    return cast("Callable[[], Any]", factory)


def build_from_spec(spec: str) -> Any:
    """Build the model named by ``spec`` (picklable as ``functools.partial(build_from_spec,
    spec)``, so sweep workers import the factory themselves)."""
    factory = load_factory(spec)
    try:
        return factory()
    except Exception as exc:
        raise CLIError(f"the factory {spec!r} raised {type(exc).__name__}: {exc}") from exc
