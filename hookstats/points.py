"""Hook points: which named modules of a model are instrumented, and what they are called.

A hook point is a module's qualified name from ``model.named_modules()``; the root is
``(model)``. A selection (``points=``) may be

* ``None`` -- every module;
* a glob string such as ``"layer*.conv?"`` or ``"blocks.*.attn"``;
* a module class such as ``nn.Linear`` (subclasses match too);
* a module instance of the model (``model.blocks[0]``);
* a predicate ``f(name, module) -> bool``;
* a list mixing globs, classes and instances (a module is selected when any entry matches).

Selections are normalised once into a predicate by :func:`compile_selection`, and
:func:`select_points` applies it. A glob or class that matches nothing is an error that lists
close names, so a typo never silently profiles nothing. :func:`innermost_flags` is the one
rule for which selected points hold no other selected point.

May import: :mod:`hookstats.errors`.

Example:
    >>> import torch.nn as nn
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> [p.name for p in select_points(model, nn.Linear)]
    ['0', '2']
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from torch import nn

from .errors import PointSelectionError

ROOT_NAME = "(model)"

Predicate = Callable[[str, nn.Module], bool]
Entry = str | type | nn.Module
PointSpec = str | type | nn.Module | Predicate | Sequence[Entry] | None

__all__ = [
    "ROOT_NAME",
    "HookPoint",
    "PointSpec",
    "compile_selection",
    "display_name",
    "innermost_flags",
    "select_points",
]


@dataclass(frozen=True, slots=True)
class HookPoint:
    """One named module of a model that hookstats instruments.

    Attributes:
        name: qualified name from ``named_modules()``, ``"(model)"`` for the root.
        module: the module itself.
        depth: 0 for the root, 1 for its children, and so on.
        is_leaf: True when the module has no child modules.
    """

    name: str
    module: nn.Module
    depth: int
    is_leaf: bool

    @property
    def type_name(self) -> str:
        """The module's class name, e.g. ``"Conv2d"``."""
        return type(self.module).__name__


def display_name(qualified_name: str) -> str:
    """Turn a ``named_modules()`` name into a hook point name (root becomes ``(model)``)."""
    return qualified_name if qualified_name else ROOT_NAME


def innermost_flags(names: Sequence[str]) -> list[bool]:
    """For each hook point name, True when no other name of ``names`` lies under it.

    This is the one rule for "innermost selected hook point", by dotted name: ``blocks.0``
    holds ``blocks.0.attn``, and the root ``(model)`` holds every other name. Totals of sizes
    sum the innermost points only, so nothing is counted twice.

    >>> innermost_flags(["(model)", "blocks.0", "blocks.0.attn", "head"])
    [False, False, True, True]
    """
    present = set(names)
    parents: set[str] = {ROOT_NAME} if len(present) > 1 else set()
    for name in present:
        if name == ROOT_NAME:
            continue
        parts = name.split(".")
        parents.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return [name not in parents for name in names]


def _depth(qualified_name: str) -> int:
    return 0 if not qualified_name else qualified_name.count(".") + 1


def _check_entry(entry: object) -> None:
    if isinstance(entry, str | nn.Module) or (
        isinstance(entry, type) and issubclass(entry, nn.Module)
    ):
        return
    raise PointSelectionError(
        f"points= entries must be glob strings, nn.Module subclasses or modules of the model, "
        f"got {entry!r:.80} ({type(entry).__name__}). Example: points=['blocks.*', nn.Linear]."
    )


def _entry_matches(entry: Entry, name: str, module: nn.Module) -> bool:
    if isinstance(entry, str):
        return fnmatch.fnmatchcase(name, entry)
    if isinstance(entry, nn.Module):
        return module is entry
    return isinstance(module, entry)


def _checked_predicate(points: Callable[..., object]) -> Predicate:
    """A user predicate, checked to take ``(name, module)``, whose failures name the module."""
    try:
        inspect.signature(points).bind("name", nn.Module())
    except TypeError as exc:
        raise PointSelectionError(
            f"a points= predicate is called as f(name, module) -> bool; {points!r:.80} cannot "
            f"be ({exc}). Example: points=lambda name, module: name.endswith('attn')."
        ) from None
    except ValueError:  # no signature (a builtin): it will be called as it is
        pass

    def predicate(name: str, module: nn.Module) -> bool:
        try:
            return bool(points(name, module))
        except Exception as exc:
            raise PointSelectionError(
                f"the points= predicate raised {type(exc).__name__} on module {name!r}: {exc}. "
                "Fix the predicate (it must return True or False for every module)."
            ) from exc

    return predicate


def compile_selection(points: PointSpec) -> tuple[Predicate, list[Entry]]:
    """Normalise a ``points=`` value into one predicate over ``(name, module)``.

    Returns the predicate and the list of glob/class entries it was built from (empty for
    ``None`` and predicates), which :func:`select_points` checks each select something.
    """
    if points is None:
        return (lambda name, module: True), []
    if isinstance(points, str | type | nn.Module):
        points = [points]
    if callable(points) and not isinstance(points, Sequence):
        return _checked_predicate(points), []
    if not isinstance(points, Iterable) or isinstance(points, bytes | bytearray | Mapping):
        raise PointSelectionError(
            f"points= must be a glob, a module class, a list of those, or a predicate "
            f"f(name, module) -> bool; got {type(points).__name__}."
        )
    entries = list(points)
    if not entries:
        raise PointSelectionError("points= is an empty list: name at least one glob or class.")
    for entry in entries:
        _check_entry(entry)

    def predicate(name: str, module: nn.Module) -> bool:
        return any(_entry_matches(entry, name, module) for entry in entries)

    return predicate, entries


def _no_match_error(entry: Entry, names: list[str]) -> PointSelectionError:
    if isinstance(entry, nn.Module):
        return PointSelectionError(
            f"points= names a {type(entry).__name__} module that is not part of this model. "
            "Pass a module reached from the model (model.blocks[0]) or its name."
        )
    if isinstance(entry, str):
        close = difflib.get_close_matches(entry, names, n=5, cutoff=0.4)
        hint = f" Close names: {', '.join(close)}." if close else ""
        return PointSelectionError(
            f"points pattern {entry!r} selects no module.{hint} "
            f"Names are dotted paths from model.named_modules(), e.g. {names[1:4] or names}; "
            "use '*' for any part of a name."
        )
    return PointSelectionError(
        f"points class {entry.__name__} selects no module: the model has no {entry.__name__}. "
        "Pass a class the model uses, or a glob on module names."
    )


def select_points(model: nn.Module, points: PointSpec = None) -> list[HookPoint]:
    """Return the hook points of ``model`` chosen by ``points``, in ``named_modules()`` order.

    A module reachable under several names (shared) is one hook point, under its first name.

    Raises:
        PointSelectionError: the selection is malformed, or one of its globs/classes matches no
            module (the message lists close names), or it selects nothing at all.
    """
    if not isinstance(model, nn.Module):
        raise PointSelectionError(
            f"expected an nn.Module, got {type(model).__name__}. Pass the model instance "
            "(or, for profile(), a factory that returns one)."
        )
    predicate, entries = compile_selection(points)
    named = list(model.named_modules())
    all_names = [display_name(name) for name, _ in named]
    for entry in entries:
        if not any(_entry_matches(entry, display_name(n), m) for n, m in named):
            raise _no_match_error(entry, all_names)
    selected = [
        HookPoint(
            name=display_name(name),
            module=module,
            depth=_depth(name),
            is_leaf=next(iter(module.children()), None) is None,
        )
        for name, module in named
        if predicate(display_name(name), module)
    ]
    if not selected:
        raise PointSelectionError(
            "points= selects no module of this model. "
            f"Its modules are: {', '.join(all_names[:12])}{' …' if len(all_names) > 12 else ''}."
        )
    return selected
