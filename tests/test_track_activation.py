"""Activation metrics in track(): exact against float64 numpy over every tracked call (batches of
differing size, inference_mode / no_grad / grad mode, two threads, KV-cache generate), beside
weight metrics; the per-forward MACs unchanged; hooks removed on every exit; outputs, gradients
and the autograd graph unchanged; compiled models; snapshots taken while forwards run."""

from __future__ import annotations

import contextlib
import io
import math
import threading
from collections import defaultdict

import numpy as np
import pytest
import torch
from rich.console import Console
from table_text import rows
from test_activation import BUILTINS, reference
from test_track_exact import ProfileEveryForward, assert_same_per_point, tiny_llama
from torch import nn

import hookstats as hs
from hookstats.errors import MetricError, TrackError
from hookstats.metrics import moments as moments_module
from hookstats.metrics.moments import MomentAccumulator, tensor_moments
from hookstats.tracking.activations import COMPILED_NOTE

from models import MLP

pytestmark = [
    pytest.mark.filterwarnings("ignore:`past_key_values` is deprecated:FutureWarning"),
]

BATCHES = [1, 5, 3, 5, 5, 2, 5, 5, 1, 7] * 4  # 40 forwards: new, repeated and predicted shapes
MODES = {
    "inference": torch.inference_mode,
    "no_grad": torch.no_grad,
    "grad": contextlib.nullcontext,
}


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


class Capture:
    """The reference: float64 numpy copies of every output of the named modules, by plain
    hooks of the test's own (the root is ``(model)``)."""

    def __init__(self, model: nn.Module, names: list[str] | None = None) -> None:
        modules = {name or "(model)": m for name, m in model.named_modules()}
        self.outputs: dict[str, list[np.ndarray]] = defaultdict(list)
        self.handles = [modules[n].register_forward_hook(self._hook(n)) for n in names or modules]

    def _hook(self, name):
        def hook(module, args, output):
            self.outputs[name].append(output.detach().double().cpu().numpy().copy())

        return hook

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()


def assert_exact(frame, outputs, metrics=BUILTINS) -> None:
    """Every metric of every point equals float64 numpy on all its outputs pooled."""
    frame = frame.set_index("hook_point")
    for point, arrays in outputs.items():
        want = reference(arrays)
        for metric in metrics:
            got = frame.loc[point, metric]
            tol = 1e-13 * want["act_rms"]
            assert math.isclose(got, want[metric], rel_tol=1e-10, abs_tol=tol), (point, metric)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return MLP((8, 32, 16))  # its ReLU is called twice per forward


def graph_size(tensor: torch.Tensor) -> int:
    seen, todo = set(), [tensor.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and node not in seen:
            seen.add(node)
            todo.extend(next_fn for next_fn, _ in node.next_functions)
    return len(seen)


@pytest.mark.parametrize("timing", [False, True])
@pytest.mark.parametrize("mode", list(MODES))
def test_every_call_is_measured_exactly_beside_weight_metrics(mode, timing):
    model = mlp()
    torch.manual_seed(1)
    inputs = [torch.randn(b, 8) for b in BATCHES]
    metrics = ["l2", *BUILTINS]
    with MODES[mode](), hs.track(model, metrics=metrics, timing=timing) as tracker:
        tracked = [model(x) for x in inputs]
        assert hook_count(model) > 0
    assert hook_count(model) == 0
    with MODES[mode](), Capture(model) as capture:
        plain = [model(x) for x in inputs]
    assert all(torch.equal(a, b) for a, b in zip(tracked, plain, strict=True))  # unchanged
    frame = tracker.to_frame()
    assert_exact(frame, capture.outputs)
    assert frame.columns[-7:].tolist() == metrics  # weight, then activation metrics, as given
    by_point = frame.set_index("hook_point")
    assert by_point.loc["act", "calls"] == 80  # 40 forwards * 2 calls of the shared ReLU
    weight = model.layers[0].weight.detach().double().numpy()
    assert by_point.loc["layers.0", "l2"] == pytest.approx(np.sqrt((weight**2).sum()), rel=1e-9)
    if timing is False:
        assert tracker.report.counted_forwards < len(BATCHES)  # the steady state ran too
    if mode == "grad":
        assert graph_size(tracked[0]) == graph_size(plain[0])  # the graph is not extended
        assert tracked[0].requires_grad and tracked[0].grad_fn is not None


def test_gradients_are_unchanged_in_a_training_step():
    def step(tracked: bool):
        model = mlp()
        torch.manual_seed(2)
        x = torch.randn(6, 8)
        block = hs.track(model, metrics=BUILTINS) if tracked else contextlib.nullcontext()
        with block:
            model(x).square().sum().backward()
        return [p.grad.clone() for p in model.parameters()]

    assert all(torch.equal(a, b) for a, b in zip(step(True), step(False), strict=True))


@pytest.mark.parametrize("timing", [False, True])
def test_per_forward_macs_are_what_profile_counts(timing):
    """The reductions run with the MAC counter hidden: a counted forward's MACs and uncounted
    ops are the model's only (their dot products would add 2 x elements per output)."""
    model = mlp()
    torch.manual_seed(3)
    with torch.no_grad(), ProfileEveryForward(model) as want:
        for b in BATCHES:
            model(torch.randn(b, 8))
    torch.manual_seed(3)
    with torch.no_grad(), hs.track(model, metrics=BUILTINS, timing=timing) as tracker:
        for b in BATCHES:
            model(torch.randn(b, 8))
    assert_same_per_point(tracker, want)
    assert tracker.report.uncounted_ops == {} and tracker.report.value_reads == {}
    assert tracker.report.counted_forwards >= 3  # new shapes and check forwards were counted


def test_two_threads_are_each_measured_in_full():
    model = mlp()
    torch.manual_seed(4)
    work = {0: [torch.randn(b, 8) for b in (3, 1, 3) * 10], 1: [torch.randn(4, 8)] * 30}
    start = threading.Barrier(2)

    def serve(i):
        start.wait()
        with torch.inference_mode():
            for x in work[i]:
                model(x)

    with hs.track(model, nn.Linear, BUILTINS, timing=False) as tracker:
        threads = [threading.Thread(target=serve, args=(i,)) for i in work]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    with torch.inference_mode(), Capture(model, ["layers.0", "layers.1"]) as capture:
        for x in work[0] + work[1]:
            model(x)
    frame = tracker.to_frame()
    assert frame.set_index("hook_point").loc["layers.1", "calls"] == 60
    assert_exact(frame, capture.outputs)


class FailsOn(nn.Module):
    """Raises ``error`` for a batch of ``size`` rows, after the first layer ran."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        h = self.fc(x)
        if x.shape[0] == 7:
            raise ValueError("seven")
        if x.shape[0] == 9:
            raise KeyboardInterrupt
        return self.out(h)


def test_failed_and_interrupted_forwards_are_dropped_and_hooks_removed():
    torch.manual_seed(5)
    model = FailsOn()
    good = [torch.randn(b, 4) for b in (2, 3, 2)]
    with hs.track(model, metrics=["act_mean", "act_absmax"], timing=False) as tracker:
        model(good[0])
        with pytest.raises(ValueError):
            model(torch.full((7, 4), 100.0))
        with contextlib.suppress(KeyboardInterrupt):
            model(torch.full((9, 4), 100.0))  # PyTorch runs no hook: repaired at the next
        model(good[1])
        model(good[2])
    assert hook_count(model) == 0
    assert tracker.report.failed_forwards == 2
    with Capture(model, ["fc", "out"]) as capture:
        for x in good:
            model(x)
    assert_exact(tracker.to_frame(), capture.outputs, ["act_mean", "act_absmax"])

    with pytest.raises(KeyboardInterrupt), hs.track(model, metrics=["act_rms"]) as tracker:
        model(good[0])
        model(torch.full((9, 4), 1.0))
    assert hook_count(model) == 0
    assert tracker.to_frame().set_index("hook_point").loc["fc", "act_rms"] == pytest.approx(
        math.sqrt(np.mean(capture.outputs["fc"][0] ** 2)), rel=1e-12
    )  # the frame is kept when the block is left by an exception


def test_submodules_called_directly_are_not_tracked():
    model = mlp()
    x = torch.randn(3, 8)
    with torch.no_grad(), hs.track(model, nn.Linear, ["act_absmax"]) as tracker:
        model(x)
        model.layers[0](torch.full((2, 8), 1e6))  # not through model(...): not tracked
    with torch.no_grad(), Capture(model, ["layers.0"]) as capture:
        model(x)
    assert_exact(tracker.to_frame(), capture.outputs, ["act_absmax"])


def test_kv_cache_generate_is_measured_on_every_decoding_step():
    model = tiny_llama()
    ids = torch.randint(0, 100, (1, 6))

    def generate():
        return model.generate(
            ids, max_new_tokens=12, min_new_tokens=12, do_sample=False, pad_token_id=0
        )

    with torch.inference_mode(), hs.track(model, nn.Linear, BUILTINS, timing=False) as tracker:
        out = generate()
    names = [p.name for p in hs.select_points(model, nn.Linear)]
    with torch.inference_mode(), Capture(model, names) as capture:
        assert torch.equal(generate(), out)
    frame = tracker.to_frame().query("hook_point != '(outside hook points)'")
    assert tracker.report.forwards == 12 and tracker.report.counted_forwards < 12
    calls = frame.set_index("hook_point")["calls"]
    assert len(names) == 15 and calls.to_dict() == {n: 12 for n in names}  # every step
    assert {n: len(a) for n, a in capture.outputs.items()} == calls.to_dict()
    assert_exact(frame, capture.outputs)


def test_compiled_model_measures_its_own_output_and_never_recompiles():
    dynamo_testing = pytest.importorskip("torch._dynamo.testing", reason="needs torch.compile")
    torch._dynamo.reset()
    try:
        model = mlp()
        counter = dynamo_testing.CompileCounterWithBackend("eager")
        compiled = torch.compile(model, backend=counter)
        inputs = [torch.randn(b, 8) for b in (3, 3, 5, 3)]
        with torch.no_grad():
            compiled(inputs[0])
            compiled(inputs[2])
        frames = counter.frame_count
        with torch.no_grad(), hs.track(compiled, metrics=["l2", "act_rms"]) as tracker:
            outs = [compiled(x) for x in inputs]
        assert hook_count(compiled) == 0
        with torch.no_grad():
            assert all(torch.equal(o, compiled(x)) for o, x in zip(outs, inputs, strict=True))
        assert counter.frame_count == frames  # nothing recompiled
        frame = tracker.to_frame().set_index("hook_point")
        want = math.sqrt(np.mean(np.concatenate([o.double().ravel().numpy() for o in outs]) ** 2))
        assert frame.loc["(model)", "act_rms"] == pytest.approx(want, rel=1e-12)
        assert math.isnan(frame.loc["layers.0", "act_rms"])
        assert not math.isnan(frame.loc["layers.0", "l2"])
        notes = tracker.report.metrics.set_index(["hook_point", "metric"])["note"]
        assert notes[("layers.0", "act_rms")] == COMPILED_NOTE
    finally:
        torch._dynamo.reset()


def test_snapshots_during_the_block_are_exact_so_far_and_never_wait_for_a_forward():
    model = mlp()
    torch.manual_seed(6)
    first, later = [torch.randn(2, 8)] * 3, [torch.randn(b, 8) for b in (4, 1)]
    inside, release = threading.Event(), threading.Event()

    def blocked(module, args, output):
        if args[0].shape[0] == 1:
            inside.set()
            release.wait(10)

    with torch.no_grad(), hs.track(model, nn.Linear, ["act_std"]) as tracker:
        for x in first:
            model(x)
        early = tracker.to_frame()
        handle = model.layers[1].register_forward_hook(blocked)
        model(later[0])
        worker = threading.Thread(target=lambda: model(later[1]))
        worker.start()
        assert inside.wait(10)
        during = tracker.report  # the forward in flight is not part of it, nor waited for
        release.set()
        worker.join()
        handle.remove()
    with torch.no_grad(), Capture(model, ["layers.0", "layers.1"]) as capture:
        for x in first:
            model(x)
        so_far = {n: list(a) for n, a in capture.outputs.items()}
        model(later[0])
    assert_exact(early, so_far, ["act_std"])
    assert during.to_frame().set_index("hook_point").loc["layers.0", "calls"] == 4
    assert_exact(during.to_frame(), capture.outputs, ["act_std"])


def test_an_accumulator_pools_for_a_reader_outside_its_lock(monkeypatch):
    accumulator = MomentAccumulator()
    for value in (1.0, 2.0):
        accumulator.add(torch.tensor([value]))
    pooling, done = threading.Event(), threading.Event()
    real = moments_module.pool_moments

    def slow_pool(parts):
        pooling.set()
        assert done.wait(10)  # the reader pools while a writer adds
        return real(parts)

    monkeypatch.setattr(moments_module, "pool_moments", slow_pool)
    reader = threading.Thread(target=accumulator.part)
    reader.start()
    assert pooling.wait(10)
    accumulator.add_part(tensor_moments(torch.tensor([6.0])))  # does not wait for the reader
    done.set()
    reader.join()
    monkeypatch.setattr(moments_module, "pool_moments", real)
    result = accumulator.result()
    assert (result.count, result.mean, result.max) == (3, 3.0, 6.0)  # (1 + 2 + 6) / 3


def test_table_and_live_view_show_activation_columns():
    model = mlp()
    console = Console(file=io.StringIO(), width=160, color_system=None)
    x = torch.ones(2, 8)
    with torch.no_grad(), hs.track(model, nn.Linear, ["act_rms"], console=console) as tracker:
        model(x)
        live = rows(render(tracker.table()))  # what the live view renders
        model(x)
    frame = tracker.to_frame().set_index("hook_point")
    want = f"{frame.loc['layers.0', 'act_rms']:.4g}"
    assert live["layers.0"]["act rms"] == want  # the same input twice: the same value
    assert rows(console.file.getvalue())["layers.0"]["act rms"] == want
    assert rows(render(tracker))["layers.1"]["act rms"] == f"{frame.loc['layers.1', 'act_rms']:.4g}"


def render(renderable) -> str:
    console = Console(file=io.StringIO(), width=160, color_system=None)
    console.print(renderable)
    return console.file.getvalue()


def test_plugins_and_errors():
    @hs.register_metric("act_skew_track", category="activation")
    def act_skew_track(ctx: hs.ActivationContext) -> float:
        """Skewness of the outputs."""
        return ctx.central_moment(3) / ctx.central_moment(2) ** 1.5

    try:
        model = nn.Identity()
        with hs.track(model, None, ["act_skew_track", "act_skew_track"]) as tracker:
            model(torch.tensor([0.0, 0.0, 3.0]))
        # mean 1, d = [-1, -1, 2]: m2 = 6/3 = 2, m3 = (-1 - 1 + 8)/3 = 2; 2 / 2**1.5
        frame = tracker.to_frame()
        assert frame["act_skew_track"].item() == pytest.approx(2 / 2**1.5, rel=1e-14)
    finally:
        hs.unregister_metric("act_skew_track")
    with pytest.raises(MetricError, match="unknown metric.*act_rmss"):
        hs.track(mlp(), metrics=["act_rmss"])
    with pytest.raises(TrackError, match="track.metrics=. computes weight and activation"):
        hs.track(mlp(), metrics=["gradient_symmetricity", "act_rms"])


@pytest.mark.parametrize("chunk", [None, 5])
@pytest.mark.parametrize("metric", BUILTINS)
def test_each_metric_alone_measures_only_what_it_needs_and_stays_exact(metric, chunk, monkeypatch):
    """act_rms needs no extremes, zeros or fourth moments: its parts leave them out (NaN), and
    every metric alone is still exact -- also from 5-element chunks pooled."""
    if chunk:
        monkeypatch.setattr(moments_module, "CPU_CHUNK", chunk)
    model = mlp()
    inputs = [torch.randn(b, 8) for b in (3, 1, 4)]
    with torch.no_grad(), hs.track(model, metrics=[metric]) as tracker:
        for x in inputs:
            model(x)
    with torch.no_grad(), Capture(model) as capture:
        for x in inputs:
            model(x)
    assert_exact(tracker.to_frame(), capture.outputs, [metric])
    monitor = hs.ActivationMonitor(model, "layers.0", [metric])
    with torch.no_grad(), monitor:
        model(inputs[0])
    measured = monitor.moments("layers.0")
    assert math.isnan(measured.m4) == (metric != "act_kurtosis")
    assert math.isnan(measured.max) == (metric != "act_absmax")
    assert (measured.zeros is None) == (metric != "act_zero_frac")


def test_a_plugin_or_a_replaced_builtin_gets_every_measure():
    from hookstats.metrics.activation import act_rms, measures_for

    spec = hs.metric_registry.get("act_rms")
    assert measures_for([spec]) == frozenset()

    @hs.register_metric("act_rms", category="activation", replace=True)
    def my_rms(ctx: hs.ActivationContext) -> float:
        """RMS from the extremes (a plugin may read anything)."""
        return ctx.absmax

    try:
        assert measures_for([hs.metric_registry.get("act_rms")]) == {"m4", "range", "zeros"}
        model = nn.Identity()
        with hs.track(model, None, ["act_rms"]) as tracker:
            model(torch.tensor([-3.0, 1.0]))
        assert tracker.to_frame()["act_rms"].item() == 3.0
    finally:
        hs.register_metric("act_rms", category="activation", replace=True)(act_rms)
    assert measures_for([hs.metric_registry.get("act_rms")]) == frozenset()
    ctx = hs.ActivationContext("x", 1, hs.metrics.Moments.of(tensor_moments(torch.ones(2), ())))
    assert hs.metrics.registry.evaluate(hs.metric_registry.get("act_absmax"), ctx) == (
        pytest.approx(math.nan, nan_ok=True),
        "absmax not measured: no metric of this run needs it",
    )
