"""torch.compile'd models: track() is exact per hook point on every forward and never changes
what Dynamo compiled (no recompilation, no frame skipped); profile() counts the eager model.
CI uses the "eager" and "aot_eager" backends (no C compiler needed)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hookstats as hs
from hookstats.errors import TrackError

from models import TinyTransformer

dynamo_testing = pytest.importorskip("torch._dynamo.testing", reason="needs torch.compile")


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize("timing", [False, True])
@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_compiled_model_is_tracked_exactly_without_recompiling(fresh_dynamo, backend, timing):
    torch.manual_seed(0)
    model = TinyTransformer().eval()
    counter = dynamo_testing.CompileCounterWithBackend(backend)
    compiled = torch.compile(model, backend=counter)
    first, second = torch.randint(0, 32, (2, 6)), torch.randint(0, 32, (3, 4))
    with torch.no_grad():
        compiled(first)
        compiled(second)
    frames = counter.frame_count
    reference = {
        name: 3 * int(a) + 2 * int(b)
        for (name, a), b in zip(
            hs.profile(model, inputs=first).to_frame()[["hook_point", "macs"]].values,
            hs.profile(model, inputs=second).to_frame()["macs"],
            strict=True,
        )
    }
    with torch.no_grad(), hs.track(compiled, timing=timing) as tracker:
        for x in (first, first, second, first, second):
            out = compiled(x)
    frame = tracker.to_frame().set_index("hook_point")
    assert {name: int(frame.loc[name, "macs"]) for name in reference} == reference
    assert frame.loc["blocks.0.attn", "calls"] == 5  # per-point records, every forward
    assert tracker.report.counted_forwards == 2  # one shadow forward per new signature
    with torch.no_grad():
        torch.testing.assert_close(compiled(first), model(first))
        compiled(second)
    assert counter.frame_count == frames  # nothing recompiled, nothing skipped for good
    assert hook_count(compiled) == 0
    assert out.shape == (3, 4, 32)


def test_compiled_call_under_the_counter_is_not_skipped(fresh_dynamo):
    """The counter is transparent to torch.compile: code compiled inside it is compiled."""
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    counter = dynamo_testing.CompileCounter()
    compiled = torch.compile(model, backend=counter)
    report = hs.profile(nn.Sequential(compiled), input_shape=(8,), batch_size=2)
    assert report.total("macs") == 2 * (8 * 16 + 16 * 4)  # 320
    assert counter.frame_count == 1


def test_profile_of_a_compiled_model_counts_its_eager_module(fresh_dynamo):
    model = TinyTransformer().eval()
    compiled = torch.compile(model, backend="eager")
    x = torch.randint(0, 32, (2, 6))
    assert hs.profile(compiled, inputs=x).total("macs") == hs.profile(model, inputs=x).total("macs")


def test_model_compiled_in_place_is_refused_with_what_to_do(fresh_dynamo):
    model = nn.Linear(4, 4)
    model.compile(backend="eager")
    with pytest.raises(TrackError, match=r"compiled in place.*torch.compile\(model\)"):
        hs.track(model)
