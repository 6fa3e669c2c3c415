"""The metric registry: one place where every metric, built-in or user-made, is registered.

A metric is a plain function of a :class:`~hookstats.metrics.context.MetricContext` that returns
a float. :func:`register_metric` wraps it in a :class:`MetricSpec` and validates it at
registration time (name, category, declared needs, signature), so a broken plugin fails when it
is defined, not in the middle of a run. The built-in metrics register through the same
decorator as user plugins.

``needs`` declares what a metric reads, so :func:`~hookstats.metrics.compute_metrics` can
compute the expensive shared inputs once, in bulk, before any metric runs:

* ``"weights"``, ``"biases"``, ``"matrices"`` -- the hook point's parameters (no prefetch);
* ``"spectrum"`` -- every singular value of every matrix (one Gram eigen-solve per matrix);
* ``"sigma_max"`` -- only the largest singular value (Lanczos, no full spectrum);
* ``"median"`` -- pooled medians of weights and biases (one radix pass over every tensor);
* ``"task"`` -- a category-2 metric that needs the model and ``task=``.

Undeclared needs still work (the context computes what is touched, lazily); declaring them
only makes a run faster.

Example:
    >>> from hookstats.metrics import register_metric, unregister_metric
    >>> @register_metric("max_abs", needs=("weights",))
    ... def max_abs(ctx):
    ...     "Largest absolute weight."
    ...     return max(float(w.abs().max()) for w in ctx.weights)
    >>> "max_abs" in metric_registry
    True
    >>> unregister_metric("max_abs")
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import MetricError

if TYPE_CHECKING:
    from .context import MetricContext

MetricFn = Callable[["MetricContext"], float]

NEEDS = frozenset({"weights", "biases", "matrices", "spectrum", "sigma_max", "median", "task"})
CATEGORIES = (1, 2)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")

__all__ = [
    "NEEDS",
    "MetricRegistry",
    "MetricSpec",
    "metric_registry",
    "register_metric",
    "unregister_metric",
]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One registered metric.

    Attributes:
        name: the metric's name, the ``metric`` column of ``compute_metrics``.
        fn: ``fn(ctx) -> float``.
        category: 1 (reads a hook point's weights) or 2 (needs the model and a task).
        needs: what the metric reads (see the module docstring), used to prefetch.
        description: one line, from the function's docstring unless given.
        task_hint: for category 2, what to pass as ``task=`` (used in error messages).
    """

    name: str
    fn: MetricFn
    category: int
    needs: frozenset[str]
    description: str = ""
    task_hint: str = ""


def _check_signature(name: str, fn: Any) -> None:
    if not callable(fn):
        raise MetricError(f"metric {name!r}: expected a function fn(ctx) -> float, got {fn!r}.")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature: accept, they will be called
        return
    try:
        signature.bind(object())
    except TypeError as exc:
        raise MetricError(
            f"metric {name!r}: {getattr(fn, '__qualname__', fn)}{signature} cannot be called "
            f"with one MetricContext ({exc}). Write it as `def {name}(ctx): ...` and read the "
            "weights from ctx."
        ) from None


def _make_spec(
    name: str, fn: MetricFn, category: int, needs: Iterable[str], description: str, task_hint: str
) -> MetricSpec:
    if not isinstance(name, str) or not _NAME.match(name):
        raise MetricError(
            f"metric name must be a non-empty identifier-like string (letters, digits, '_', "
            f"'.', '-'), got {name!r}."
        )
    if category not in CATEGORIES:
        raise MetricError(
            f"metric {name!r}: category must be 1 (weights) or 2 (model + task), got {category!r}."
        )
    if isinstance(needs, str):
        needs = (needs,)
    needs_set = frozenset(needs)
    unknown = sorted(needs_set - NEEDS)
    if unknown:
        raise MetricError(f"metric {name!r}: unknown needs {unknown}; choose from {sorted(NEEDS)}.")
    if category == 2:
        needs_set |= {"task"}
    _check_signature(name, fn)
    doc = inspect.getdoc(fn) or ""
    return MetricSpec(
        name=name,
        fn=fn,
        category=category,
        needs=needs_set,
        description=description or (doc.splitlines()[0] if doc else ""),
        task_hint=task_hint,
    )


class MetricRegistry:
    """An ordered collection of :class:`MetricSpec`, by name.

    Example:
        >>> registry = MetricRegistry()
        >>> @registry.register_metric("ones")
        ... def ones(ctx):
        ...     return 1.0
        >>> registry.names()
        ['ones']
    """

    def __init__(self) -> None:
        self._specs: dict[str, MetricSpec] = {}

    def register_metric(
        self,
        name: str,
        category: int = 1,
        needs: Iterable[str] = (),
        *,
        description: str = "",
        task_hint: str = "",
        replace: bool = False,
    ) -> Callable[[MetricFn], MetricFn]:
        """Decorator registering ``fn(ctx) -> float`` as metric ``name`` (see the module doc).

        Raises:
            MetricError: the name is taken or malformed, the category or needs are unknown, or
                the function cannot be called with one argument.
        """

        def decorator(fn: MetricFn) -> MetricFn:
            self.add(_make_spec(name, fn, category, needs, description, task_hint), replace=replace)
            return fn

        return decorator

    def add(self, spec: MetricSpec, *, replace: bool = False) -> None:
        """Add an already built spec; a name is registered once unless ``replace=True``."""
        if spec.name in self._specs and not replace:
            existing = self._specs[spec.name].fn
            raise MetricError(
                f"metric {spec.name!r} is already registered (by "
                f"{getattr(existing, '__module__', '?')}.{getattr(existing, '__qualname__', '?')})."
                f" Pick another name, or pass replace=True to override it."
            )
        self._specs[spec.name] = spec

    def unregister(self, name: str) -> MetricSpec:
        """Remove metric ``name`` and return its spec."""
        if name not in self._specs:
            raise self._unknown([name])
        return self._specs.pop(name)

    def get(self, name: str) -> MetricSpec:
        """The spec of ``name``; unknown names raise :class:`MetricError`."""
        if name not in self._specs:
            raise self._unknown([name])
        return self._specs[name]

    def names(self, category: int | None = None) -> list[str]:
        """Registered names in registration order, optionally of one category."""
        return [n for n, s in self._specs.items() if category is None or s.category == category]

    def resolve(self, metrics: str | Iterable[str] | None) -> list[MetricSpec]:
        """Turn a ``metrics=`` argument into specs: ``None`` means every category-1 metric.

        Raises:
            MetricError: an empty list, a non-string entry, or names that are not registered
                (the message lists the available names and close matches).
        """
        if metrics is None:
            return [s for s in self._specs.values() if s.category == 1]
        names = [metrics] if isinstance(metrics, str) else list(metrics)
        if not names:
            raise MetricError("metrics= is empty: name at least one metric, or pass None for all.")
        bad = [n for n in names if not isinstance(n, str)]
        if bad:
            raise MetricError(f"metrics= must hold metric names (strings), got {bad[0]!r}.")
        unknown = [n for n in names if n not in self._specs]
        if unknown:
            raise self._unknown(unknown)
        return [self._specs[n] for n in dict.fromkeys(names)]

    def _unknown(self, names: list[str]) -> MetricError:
        available = self.names()
        close = sorted({c for n in names for c in difflib.get_close_matches(n, available, n=3)})
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        return MetricError(
            f"unknown metric(s) {', '.join(map(repr, names))}.{hint} "
            f"Available: {', '.join(available)}. Register new ones with @register_metric."
        )

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[MetricSpec]:
        return iter(list(self._specs.values()))

    def __len__(self) -> int:
        return len(self._specs)

    def __repr__(self) -> str:
        return f"MetricRegistry({self.names()})"


metric_registry = MetricRegistry()
"""The global registry that :func:`compute_metrics` reads."""


def register_metric(
    name: str,
    category: int = 1,
    needs: Iterable[str] = (),
    *,
    description: str = "",
    task_hint: str = "",
    replace: bool = False,
) -> Callable[[MetricFn], MetricFn]:
    """Register ``fn(ctx) -> float`` as metric ``name`` in the global registry.

    Args:
        name: the metric's name in ``compute_metrics`` output.
        category: 1 = computed from each hook point's weights (and for the whole model);
            2 = needs the model and ``task=``, computed on the ``(model)`` row only.
        needs: what the metric reads, from ``NEEDS``; lets compute_metrics prefetch in bulk.
        description: one line for listings (default: first line of the docstring).
        task_hint: category 2 only: what to pass as ``task=``, quoted in the error when missing.
        replace: override a metric already registered under ``name`` (a built-in, say);
            without it a second registration is an error, as for MAC formulas.

    Raises:
        MetricError: duplicate (without ``replace=True``) or malformed name, unknown
            category/needs, or a function that cannot be called as ``fn(ctx)``.

    Example:
        >>> @register_metric("n_matrices", needs=("matrices",))
        ... def n_matrices(ctx):
        ...     return float(len(ctx.matrices))
        >>> unregister_metric("n_matrices")
    """
    return metric_registry.register_metric(
        name, category, needs, description=description, task_hint=task_hint, replace=replace
    )


def unregister_metric(name: str) -> None:
    """Remove metric ``name`` from the global registry (tests remove what they register).

    Example:
        >>> @register_metric("tmp_metric")
        ... def tmp_metric(ctx):
        ...     return 0.0
        >>> unregister_metric("tmp_metric")
    """
    metric_registry.unregister(name)
