"""track(): counts across forward calls, the signature cache, hook ownership, nesting, errors,
CUDA timing helpers (with fakes) and metrics on exit."""

from __future__ import annotations

import importlib
import math

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

from hookstats import track
from hookstats.errors import TrackError
from hookstats.instrument import PointStats
from hookstats.points import select_points
from hookstats.tracking.cuda_timing import CudaEventTimer, add_sync_hooks

from models import MLP, RaisesInside, SharedLayer

# the module, not the function hookstats exports under the same name
track_module = importlib.import_module("hookstats.tracking.tracker")


class Branchy(nn.Module):
    """Value-dependent control flow: ``fc`` runs twice when the input sum is positive."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        twice = bool(x.sum() > 0)
        x = self.fc(x)
        return self.fc(x) if twice else x


class FailsOnNegative(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() < 0:
            raise ValueError("negative input")
        return self.fc(x)


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize("timing", [True, False])
def test_counts_shapes_bytes_and_macs_across_calls(timing):
    model = MLP((8, 16, 4))
    with track(model, timing=timing) as t:
        for batch in (3, 3, 5, 3):
            model(torch.zeros(batch, 8))
    frame = t.to_frame().set_index("hook_point")
    # 4 forwards of 3 + 3 + 5 + 3 = 14 samples
    assert t.report.forwards == 4 and t.report.samples == 14 and t.report.signatures == 2
    first = frame.loc["layers.0"]
    assert first["calls"] == 4
    assert first["output_shapes"] == {(3, 16): 3, (5, 16): 1}
    assert first["output_shape"] == (3, 16)  # the most frequent
    assert first["macs"] == 14 * 8 * 16  # 1792
    assert first["activation_bytes"] == 14 * 16 * 4  # 896
    assert first["input_bytes"] == 14 * 8 * 4  # 448
    assert frame.loc["layers.1", "macs"] == 14 * 16 * 4  # 896
    assert frame.loc["act", "calls"] == 8  # the ReLU runs twice per forward
    assert frame.loc["(model)", "macs"] == 1792 + 896
    assert frame.loc["(model)", "self_macs"] == 0
    assert t.report.total("macs") == 2688  # 1792 + 896, each op once
    assert t.report.total("calls") == 4 + 8 + 4 + 4  # root, act, two linears (ModuleList: 0)
    assert frame.loc["layers", "calls"] == 0
    assert math.isnan(frame.loc["layers.0", "latency_ms"]) is (not timing)


def _count_counters(monkeypatch) -> list:
    """Make track() use a MacCounter that records each instance; return that list."""
    counters = []

    class CountingCounter(track_module.MacCounter):
        def __init__(self, sink):
            super().__init__(sink)
            counters.append(self)

    monkeypatch.setattr(track_module, "MacCounter", CountingCounter)
    return counters


def test_steady_state_has_no_module_hooks_and_no_counter(monkeypatch):
    counters = _count_counters(monkeypatch)
    model = MLP((8, 16, 4))
    with track(model, timing=False) as t:
        for _ in range(10):
            model(torch.zeros(2, 8))
            assert hook_count(model.layers[0]) == 0  # hooks only during recorded forwards
            assert _get_current_dispatch_mode_stack() == []
        model(torch.zeros(7, 8))
    assert len(counters) == 2  # one per signature: (2, 8) and (7, 8)
    assert t.to_frame().set_index("hook_point").loc["layers.0", "macs"] == (20 + 7) * 8 * 16


def test_timing_keeps_recorder_hooks_but_counts_once(monkeypatch):
    counters = _count_counters(monkeypatch)
    model = MLP((8, 16, 4))
    with track(model, timing=True) as t:
        for _ in range(5):
            model(torch.zeros(2, 8))
        assert hook_count(model.layers[0]) == 2  # the recorder's pre- and post-hook
    frame = t.to_frame().set_index("hook_point")
    assert len(counters) == 1
    assert frame.loc["layers.0", "macs"] == 5 * 2 * 8 * 16  # 1280
    assert (frame.loc[["layers.0", "layers.1", "(model)"], "latency_ms"] > 0).all()


@pytest.mark.parametrize("timing", [True, False])
def test_value_dependent_control_flow_is_detected(timing):
    model = Branchy()
    per_call = 3 * 4 * 4  # batch 3, Linear(4, 4): 48 MACs per call
    with track(model, points="fc", timing=timing) as t:
        model(torch.ones(3, 4))  # fc twice: counted and cached
        for _ in range(4):
            model(torch.zeros(3, 4))  # same signature, fc once: forward 2 shows the mismatch
    row = t.to_frame().set_index("hook_point").loc["fc"]
    assert row["calls"] == 2 + 4 * 1
    assert row["macs"] == (2 + 4) * per_call  # 288: each forward's actual calls


def test_shared_module_one_point_two_calls_per_forward():
    model = SharedLayer(6)
    with track(model, points="fc", timing=False) as t:
        for _ in range(3):
            model(torch.zeros(2, 6))
    row = t.to_frame().iloc[0]
    assert (row["calls"], row["macs"]) == (6, 6 * 2 * 6 * 6)  # 3 forwards x 2 calls; 432


def test_hooks_removed_after_block_and_when_forward_raises():
    model = RaisesInside()
    with pytest.raises(ValueError, match="boom"), track(model):
        model(torch.zeros(1, 4))
    assert hook_count(model) == 0
    assert _get_current_dispatch_mode_stack() == []
    assert model not in track_module._ACTIVE
    with track(model, timing=False):  # the same model can be tracked again
        pass
    assert hook_count(model) == 0


@pytest.mark.parametrize("timing", [True, False])
def test_failed_forward_inside_block_is_dropped_and_tracking_goes_on(timing):
    model = FailsOnNegative()
    with track(model, timing=timing) as t:
        with pytest.raises(ValueError, match="negative"):
            model(-torch.ones(3, 4))  # new signature: raises with the counter active
        assert _get_current_dispatch_mode_stack() == []
        for _ in range(2):
            model(torch.ones(3, 4))
        with pytest.raises(ValueError, match="negative"):
            model(-torch.ones(3, 4))
    report = t.report
    assert (report.forwards, report.failed_forwards) == (2, 2)
    assert t.to_frame().set_index("hook_point").loc["fc", "macs"] == 2 * 3 * 4 * 2  # 48
    assert hook_count(model) == 0


def test_nested_track_on_same_model_raises_and_submodule_composes():
    model = MLP((8, 16, 4))
    with track(model, timing=False) as outer:
        with pytest.raises(TrackError, match="already active on this MLP.*submodule"), track(model):
            pass
        with track(model.layers[1], timing=False) as inner:
            model(torch.zeros(2, 8))
    assert outer.report.total("macs") == 2 * 8 * 16 + 2 * 16 * 4  # 320
    assert inner.report.total("macs") == 2 * 16 * 4  # 128
    assert hook_count(model) == 0


def test_tracker_is_single_use():
    model = nn.Linear(2, 2)
    tracker = track(model)
    with tracker:
        pass
    with pytest.raises(TrackError, match="single-use"), tracker:
        pass


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sort_by": "speed"}, "sort_by must be one of 'latency', 'self_time'"),
        ({"top": 0}, "top must be a positive int"),
        ({"cuda_timing": "nvtx"}, "cuda_timing must be 'sync' or 'events'"),
    ],
)
def test_bad_options_are_named(kwargs, message):
    with pytest.raises(TrackError, match=message):
        track(nn.Linear(2, 2), **kwargs)


def test_kwargs_and_scalar_arguments_are_part_of_the_signature():
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor, *, repeat: int = 1) -> torch.Tensor:
            for _ in range(repeat):
                x = self.fc(x)
            return x

    model = Scaled()
    with track(model, points="fc", timing=False) as t:
        model(torch.zeros(1, 4), repeat=1)
        model(torch.zeros(1, 4), repeat=3)
        model(torch.zeros(1, 4), repeat=3)
    assert t.report.signatures == 2
    assert t.to_frame().loc[0, "macs"] == (1 + 3 + 3) * 16  # 112


def test_cuda_sync_hooks_synchronize_around_each_call(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: calls.append(1))
    model = MLP((8, 16, 4))
    handles = add_sync_hooks([model.layers[0], model.layers[1]])
    model(torch.zeros(1, 8))
    for handle in handles:
        handle.remove()
    assert len(calls) == 4  # a pre- and a post-sync for each of the two modules
    assert hook_count(model) == 0


class FakeEvent:
    clock = 0.0

    def record(self):
        FakeEvent.clock += 1.5
        self.at = FakeEvent.clock

    def query(self):
        return True

    def synchronize(self):
        pass

    def elapsed_time(self, end):
        return end.at - self.at  # milliseconds, like torch.cuda.Event


def test_cuda_event_timer_adds_completed_pairs():
    model = MLP((8, 16, 4))
    points = select_points(model, "layers.0")
    timer = CudaEventTimer(FakeEvent)
    handles = timer.add_hooks(points)
    stats = {"layers.0": PointStats()}
    model(torch.zeros(1, 8))
    timer.resolve(stats, wait=False)
    assert stats["layers.0"].latency_s == 0.0  # still open: the forward is not committed
    timer.commit()
    timer.resolve(stats, wait=False)
    for handle in handles:
        handle.remove()
    assert stats["layers.0"].latency_s == pytest.approx(1.5e-3)  # events 1.5 ms apart


def test_metrics_are_computed_once_on_exit_and_join_the_frame(monkeypatch):
    calls = []
    real = track_module.compute_metrics
    monkeypatch.setattr(
        track_module, "compute_metrics", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    model = MLP((8, 16, 4))
    with torch.no_grad():
        model.layers[0].weight.fill_(0.5)
    with track(model, points=nn.Linear, metrics=["l1"], timing=False) as t:
        for _ in range(3):
            model(torch.zeros(1, 8))
        assert calls == []  # nothing while inference runs
    assert len(calls) == 1
    frame = t.to_frame().set_index("hook_point")
    assert frame.loc["layers.0", "l1"] == pytest.approx(16 * 8 * 0.5)  # ||W||_1 = 64
    assert frame.loc["layers.0", "calls"] == 3
    assert t.report.metrics.query("hook_point == '(model)'").shape[0] == 1  # kept in the long form


def test_unknown_or_task_metrics_fail_before_the_block():
    from hookstats.errors import MetricError
    from hookstats.metrics import register_metric, unregister_metric

    with pytest.raises(MetricError, match="unknown metric.*'l7'"):
        track(nn.Linear(2, 2), metrics=["l7"])

    @register_metric("needs_task_test", category=2, needs=("task",))
    def needs_task_test(ctx):
        "A category-2 test metric."
        return 0.0

    try:
        with pytest.raises(TrackError, match="needs_task_test need.*a task.*compute_metrics"):
            track(nn.Linear(2, 2), metrics=["needs_task_test"])
    finally:
        unregister_metric("needs_task_test")
