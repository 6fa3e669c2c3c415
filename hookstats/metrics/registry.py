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

Categories say where a metric's input comes from. They are numbered, and each number has a
name that reads better in a decorator; both spellings are accepted everywhere:

* ``1`` or ``"weights"`` -- ``fn(ctx: MetricContext)`` reads a hook point's weights (the default);
* ``2`` or ``"task"`` -- ``fn(ctx: MetricContext)`` needs the model and ``task=``;
* ``3`` or ``"activation"`` -- ``fn(ctx: ActivationContext)`` reads the statistics streamed from
  a hook point's outputs during forwards (:mod:`hookstats.metrics.activation`); it declares no
  needs. ``compute_metrics`` (weights only) refuses these with a pointer to
  :func:`~hookstats.metrics.activation.activation_stats`.

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
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, SupportsFloat, TypeVar

from ..errors import MetricError
from .context import MetricUndefined

MetricFn = Callable[[Any], float]
"""``fn(ctx) -> float``: ``ctx`` is a MetricContext (category 1, 2) or ActivationContext (3)."""
F = TypeVar("F", bound=Callable[[Any], float])

NEEDS = frozenset({"weights", "biases", "matrices", "spectrum", "sigma_max", "median", "task"})
WEIGHTS, TASK, ACTIVATION = 1, 2, 3
CATEGORIES = (WEIGHTS, TASK, ACTIVATION)
CATEGORY_NAMES = {WEIGHTS: "weights", TASK: "task", ACTIVATION: "activation"}
"""The name of each category number; ``category=`` takes either."""
Category = int | str
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")

__all__ = [
    "ACTIVATION",
    "CATEGORIES",
    "CATEGORY_NAMES",
    "NEEDS",
    "TASK",
    "WEIGHTS",
    "Category",
    "MetricRegistry",
    "MetricSpec",
    "category_number",
    "evaluate",
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
        category: 1 (reads a hook point's weights), 2 (needs the model and a task) or 3
            (reads a hook point's streamed outputs); see :data:`CATEGORY_NAMES`.
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


def category_number(category: Category, *, what: str = "category") -> int:
    """The number of a category given as a number or a name (see :data:`CATEGORY_NAMES`).

    Raises:
        MetricError: neither a known number nor a known name.

    Example:
        >>> category_number("activation"), category_number(1)
        (3, 1)
    """
    if isinstance(category, str):
        for number, label in CATEGORY_NAMES.items():
            if category == label:
                return number
    elif isinstance(category, int) and not isinstance(category, bool) and category in CATEGORIES:
        return category
    raise MetricError(
        f"{what} must be 1 or 'weights' (reads weights), 2 or 'task' (model + task), or 3 or "
        f"'activation' (streams hook-point outputs), got {category!r}."
    )


def _make_spec(
    name: str,
    fn: MetricFn,
    category: Category,
    needs: Iterable[str],
    description: str,
    task_hint: str,
) -> MetricSpec:
    if not isinstance(name, str) or not _NAME.match(name):
        raise MetricError(
            f"metric name must be a non-empty identifier-like string (letters, digits, '_', "
            f"'.', '-'), got {name!r}."
        )
    number = category_number(category, what=f"metric {name!r}: category")
    if isinstance(needs, str):
        needs = (needs,)
    needs_set = frozenset(needs)
    unknown = sorted(needs_set - NEEDS)
    if unknown:
        raise MetricError(f"metric {name!r}: unknown needs {unknown}; choose from {sorted(NEEDS)}.")
    if number == ACTIVATION and needs_set:
        raise MetricError(
            f"metric {name!r}: an activation metric reads only the statistics streamed from the "
            f"hook point's outputs (its ActivationContext), so it declares no needs; got "
            f"needs={sorted(needs_set)}. Drop needs=, or register it as category 1."
        )
    if number == TASK:
        needs_set |= {"task"}
    _check_signature(name, fn)
    doc = inspect.getdoc(fn) or ""
    return MetricSpec(
        name=name,
        fn=fn,
        category=number,
        needs=needs_set,
        description=description or (doc.splitlines()[0] if doc else ""),
        task_hint=task_hint,
    )


def _wrong_category(spec: MetricSpec, allowed: list[int]) -> MetricError:
    if spec.category == ACTIVATION:
        return MetricError(
            f"metric {spec.name!r} is an activation metric (category 3): it is computed from the "
            "outputs each hook point produces during forwards, not from weights. Use "
            f"hs.activation_stats(model, points, [{spec.name!r}], inputs=...), "
            f"hs.ActivationMonitor, or hs.track(model, points, metrics=[{spec.name!r}]) around "
            "your forwards; or leave it out of metrics=."
        )
    wanted = " or ".join(f"{n} ({CATEGORY_NAMES[n]})" for n in allowed)
    return MetricError(
        f"metric {spec.name!r} is category {spec.category} ({CATEGORY_NAMES[spec.category]}); "
        f"only category {wanted} metrics can be computed here. Leave it out of metrics=."
    )


def evaluate(spec: MetricSpec, ctx: Any) -> tuple[float, str]:
    """Run one metric on its context: ``(value, note)``; never raises for a plugin's failure.

    An undefined case (:class:`~hookstats.metrics.context.MetricUndefined`) gives NaN with its
    message as note; any other exception gives NaN with ``"error: <Type>: <message>"``.

    Example:
        >>> spec = metric_registry.get("act_mean")
        >>> evaluate(spec, object())[1]
        "error: AttributeError: 'object' object has no attribute 'mean'"
    """
    try:
        result: Any = spec.fn(ctx)
    except MetricUndefined as exc:
        return math.nan, str(exc)
    except Exception as exc:  # a broken plugin must not fail the run
        return math.nan, f"error: {type(exc).__name__}: {exc}"
    try:
        if isinstance(result, str | bytes) or not isinstance(result, SupportsFloat):
            raise TypeError
        value = float(result)
    except (TypeError, ValueError, RuntimeError):
        return math.nan, f"error: metric returned {type(result).__name__}, expected a float"
    return value, ("" if value == value else "metric returned NaN")


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
        category: Category = WEIGHTS,
        needs: Iterable[str] = (),
        *,
        description: str = "",
        task_hint: str = "",
        replace: bool = False,
    ) -> Callable[[F], F]:
        """Decorator registering ``fn(ctx) -> float`` as metric ``name`` (see the module doc).

        Raises:
            MetricError: the name is taken or malformed, the category or needs are unknown, or
                the function cannot be called with one argument.
        """

        def decorator(fn: F) -> F:
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

    def names(self, category: Category | None = None) -> list[str]:
        """Registered names in registration order, optionally of one category (number or name).

        Example:
            >>> metric_registry.names("activation")[:2]
            ['act_mean', 'act_std']
        """
        if category is None:
            return list(self._specs)
        number = category_number(category)
        return [n for n, s in self._specs.items() if s.category == number]

    def resolve(
        self,
        metrics: str | Iterable[str] | None,
        *,
        categories: Iterable[Category] = (WEIGHTS, TASK),
    ) -> list[MetricSpec]:
        """Turn a ``metrics=`` argument into specs: ``None`` means every category-1 metric,
        or every metric of the first of ``categories`` when category 1 is not among them.

        ``categories`` are those the caller can compute: weight metrics by default, so an
        activation metric given to ``compute_metrics`` gets an error naming the function that
        computes it.

        Raises:
            MetricError: an empty list, a non-string entry, names that are not registered
                (the message lists the available names and close matches), or a metric of a
                category the caller cannot compute.
        """
        allowed = [category_number(c) for c in categories]
        if metrics is None:
            default = WEIGHTS if WEIGHTS in allowed else allowed[0]
            return [s for s in self._specs.values() if s.category == default]
        if not isinstance(metrics, str | Iterable) or isinstance(metrics, bytes | Mapping):
            raise MetricError(
                f"metrics= must be a metric name, a list of names, or None (all); got "
                f"{type(metrics).__name__} {metrics!r:.60}."
            )
        names = [metrics] if isinstance(metrics, str) else list(metrics)
        if not names:
            raise MetricError("metrics= is empty: name at least one metric, or pass None for all.")
        bad = [n for n in names if not isinstance(n, str)]
        if bad:
            raise MetricError(f"metrics= must hold metric names (strings), got {bad[0]!r}.")
        unknown = [n for n in names if n not in self._specs]
        if unknown:
            raise self._unknown(unknown)
        specs = [self._specs[n] for n in dict.fromkeys(names)]
        for spec in specs:
            if spec.category not in allowed:
                raise _wrong_category(spec, allowed)
        return specs

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
    category: Category = WEIGHTS,
    needs: Iterable[str] = (),
    *,
    description: str = "",
    task_hint: str = "",
    replace: bool = False,
) -> Callable[[F], F]:
    """Register ``fn(ctx) -> float`` as metric ``name`` in the global registry.

    Args:
        name: the metric's name in ``compute_metrics`` output.
        category: 1 or ``"weights"`` = computed from each hook point's weights (and for the
            whole model); 2 or ``"task"`` = needs the model and ``task=``, computed on the
            ``(model)`` row only; 3 or ``"activation"`` = ``fn(ctx: ActivationContext)``, from
            the statistics of each hook point's outputs streamed during forwards.
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
        >>> @register_metric("act_m2", category="activation")
        ... def act_m2(ctx):
        ...     "Mean of the squared outputs."
        ...     return ctx.mean**2 + ctx.variance
        >>> unregister_metric("n_matrices"); unregister_metric("act_m2")
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
