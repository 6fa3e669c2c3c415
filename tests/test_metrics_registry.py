"""The metric registry: user plugins, validation at registration, failures recorded per metric,
category-2 metrics and their task."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from hookstats.errors import HookstatsError, MetricError
from hookstats.metrics import (
    MetricContext,
    MetricRegistry,
    compute_metrics,
    metric_registry,
    register_metric,
    unregister_metric,
)
from hookstats.metrics.context import MetricUndefined

from models import MLP


@pytest.fixture
def registered():
    """Names registered by a test, removed afterwards even if it fails."""
    names: list[str] = []
    yield names
    for name in names:
        if name in metric_registry:
            unregister_metric(name)


def model() -> nn.Module:
    torch.manual_seed(0)
    return MLP((4, 3, 2))  # layers.0: 3x4 + bias 3, layers.1: 2x3 + bias 2


def test_user_metric_appears_in_listing_and_output(registered):
    @register_metric("max_abs", needs=("weights",))
    def max_abs(ctx: MetricContext) -> float:
        """Largest absolute weight."""
        return max(float(w.abs().max()) for w in ctx.weights)

    registered.append("max_abs")

    assert "max_abs" in metric_registry.names() and "max_abs" in metric_registry.names(1)
    assert metric_registry.get("max_abs").description == "Largest absolute weight."
    net = model()
    df = compute_metrics(net, metrics=["max_abs", "l1"])
    got = {(r.hook_point, r.metric): r.value for r in df.itertuples()}
    w0, w1 = net.layers[0].weight.abs().max().item(), net.layers[1].weight.abs().max().item()
    assert got[("(model)", "max_abs")] == max(w0, w1)
    assert got[("layers.0", "max_abs")] == w0 and got[("layers.1", "max_abs")] == w1
    assert math.isnan(got[("act", "max_abs")])  # ReLU has no weights
    assert "max_abs" in compute_metrics(net)["metric"].unique()  # metrics=None: all category 1


def test_per_matrix_values_are_cached_across_hook_points(registered):
    calls = []

    @register_metric("fro_sum", needs=("matrices",))
    def fro_sum(ctx: MetricContext) -> float:
        return sum(ctx.per_matrix("fro", lambda w: calls.append(w.shape) or float(w.norm())))

    registered.append("fro_sum")

    df = compute_metrics(model(), metrics=["fro_sum"])
    assert sorted(calls) == [(2, 3), (3, 4)]  # each matrix once, for 4 hook points
    assert df["value"].notna().sum() == 4  # (model), layers, layers.0, layers.1


@pytest.mark.parametrize(
    "fn, match",
    [
        (lambda: 1.0, "cannot be called with one MetricContext"),
        (lambda ctx, extra: 1.0, "cannot be called with one MetricContext"),
        ("not a function", "expected a function fn"),
    ],
)
def test_wrong_signature_is_refused_at_registration(fn, match):
    with pytest.raises(MetricError, match=match):
        register_metric("bad_signature")(fn)
    assert "bad_signature" not in metric_registry


def test_registration_validates_name_category_needs_and_duplicates():
    with pytest.raises(MetricError, match=r"'l1' is already registered.*replace=True"):
        register_metric("l1")(lambda ctx: 0.0)
    with pytest.raises(MetricError, match="category must be 1 or 'weights'.* or 3 or 'activation'"):
        register_metric("cat3", category=4)(lambda ctx: 0.0)
    with pytest.raises(MetricError, match=r"unknown needs \['svd'\]; choose from"):
        register_metric("needs_svd", needs=("svd",))(lambda ctx: 0.0)
    with pytest.raises(MetricError, match="identifier-like"):
        register_metric("has space")(lambda ctx: 0.0)
    assert not {"cat3", "needs_svd", "has space"} & set(metric_registry.names())


def test_unknown_names_list_the_available_ones():
    with pytest.raises(
        MetricError,
        match=r"unknown metric\(s\) 'spectral'.*Did you mean: "
        r"spectral_norm.*Available: l1, l2, l1_l2",
    ):
        compute_metrics(model(), metrics=["l1", "spectral"])
    with pytest.raises(MetricError, match="metrics= is empty"):
        compute_metrics(model(), metrics=[])
    with pytest.raises(MetricError, match="unknown metric"):
        unregister_metric("never_registered")
    assert issubclass(MetricError, HookstatsError)


def test_failing_plugin_gives_nan_and_recorded_error(registered):
    @register_metric("boom")
    def boom(ctx: MetricContext) -> float:
        raise ZeroDivisionError("plugin bug")

    @register_metric("not_a_number")
    def not_a_number(ctx: MetricContext) -> float:
        return "x"  # type: ignore[return-value]

    @register_metric("only_big")
    def only_big(ctx: MetricContext) -> float:
        if len(ctx.matrices) < 2:
            raise MetricUndefined("needs two matrices")
        return 1.0

    registered.extend(["boom", "not_a_number", "only_big"])

    df = compute_metrics(
        model(), metrics=["boom", "l2", "not_a_number", "only_big"], points="layers.0"
    )
    rows = {(r.hook_point, r.metric): (r.value, r.note) for r in df.itertuples()}
    assert math.isnan(rows[("(model)", "boom")][0])
    assert rows[("(model)", "boom")][1] == "error: ZeroDivisionError: plugin bug"
    assert rows[("(model)", "not_a_number")][1] == "error: metric returned str, expected a float"
    assert rows[("(model)", "only_big")] == (1.0, "")
    assert rows[("layers.0", "only_big")][1] == "needs two matrices"
    assert not math.isnan(rows[("layers.0", "l2")][0])  # the other metrics still ran


def test_category_two_needs_task_and_gets_model_row_only(registered):
    seen = []

    @register_metric("task_metric", category=2, task_hint="ModularAdditionTask(p=7)")
    def task_metric(ctx: MetricContext) -> float:
        seen.append((ctx.point, ctx.model is ctx.module, ctx.task))
        return float(ctx.task["scale"]) * sum(p.numel() for p in ctx.model.parameters())

    registered.append("task_metric")

    assert "task_metric" not in metric_registry.names(category=1)
    assert metric_registry.get("task_metric").needs == {"task"}
    net = model()
    with pytest.raises(
        MetricError,
        match=r"'task_metric' is category 2.*"
        r"task=ModularAdditionTask\(p=7\)",
    ):
        compute_metrics(net, metrics=["l1", "task_metric"])
    df = compute_metrics(net, metrics=["l1", "task_metric"], task={"scale": 2.0})
    assert df[df["metric"] == "task_metric"][["hook_point", "value"]].values.tolist() == [
        ["(model)", 46.0]
    ]  # 2 * (12 + 3 + 6 + 2)
    assert seen == [("(model)", True, {"scale": 2.0})]
    assert "task_metric" not in compute_metrics(net)["metric"].unique()  # default: category 1


def test_a_private_registry_is_independent():
    registry = MetricRegistry()

    @registry.register_metric("ones")
    def ones(ctx: MetricContext) -> float:
        return 1.0

    assert registry.names() == ["ones"] and "ones" not in metric_registry
    assert [s.name for s in registry.resolve(None)] == ["ones"]
    registry.unregister("ones")
    assert len(registry) == 0
