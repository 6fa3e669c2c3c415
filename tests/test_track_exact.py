"""track() is exact on every forward: every tracked forward's MACs, per hook point, equal what
profile() counts for that same call -- KV-cache generation, chunked prefill, value-dependent
control flow (early exit, MoE routing), several threads -- in both timing modes; and it stays
safe: a KeyboardInterrupt inside the block, bounded state, scripted modules refused."""

from __future__ import annotations

import collections
import threading
import time

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

import hookstats as hs
from hookstats.errors import TrackError

from models import MLP, SmallCNN, TokenChoiceMoE

pytestmark = [
    pytest.mark.filterwarnings("ignore:`past_key_values` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
]


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


class ProfileEveryForward:
    """The reference: hs.profile() of every forward call of ``model`` made while active, with
    the forward's own arguments (profile copies them, so the real forward is unchanged)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.macs: collections.Counter[str] = collections.Counter()
        self.calls: collections.Counter[str] = collections.Counter()
        self.forwards = 0
        self._busy = False

    def _pre(self, module, args, kwargs):
        if self._busy:  # profile's own forward
            return
        self._busy = True
        try:
            frame = hs.profile(self.model, inputs=args, kwargs=kwargs).to_frame()
        finally:
            self._busy = False
        for row in frame.itertuples():
            self.macs[row.hook_point] += int(row.macs)
            self.calls[row.hook_point] += int(row.calls)
        self.forwards += 1

    def __enter__(self):
        self._handle = self.model.register_forward_pre_hook(self._pre, with_kwargs=True)
        return self

    def __exit__(self, *exc):
        self._handle.remove()


def assert_same_per_point(tracker, reference: ProfileEveryForward) -> None:
    frame = tracker.to_frame().set_index("hook_point")
    wrong = {
        name: (int(frame.loc[name, "macs"]), macs)
        for name, macs in reference.macs.items()
        if int(frame.loc[name, "macs"]) != macs
    }
    assert wrong == {}, "hook point: (tracked, profiled)"
    calls = {n: c for n, c in reference.calls.items() if int(frame.loc[n, "calls"]) != c}
    assert calls == {}
    assert tracker.report.forwards == reference.forwards


def tiny_llama():
    transformers = pytest.importorskip("transformers", reason="transformers is in [dev]")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=100,
    )
    return transformers.LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("timing", [False, True])
def test_kv_cache_generation_is_exact_on_every_decoding_step(timing):
    model = tiny_llama()
    ids = torch.randint(0, 100, (1, 6))

    def generate():
        return model.generate(
            ids, max_new_tokens=20, min_new_tokens=20, do_sample=False, pad_token_id=0
        )

    with torch.inference_mode(), ProfileEveryForward(model) as reference:
        expected = generate()
    with torch.inference_mode(), hs.track(model, timing=timing) as tracker:
        out = generate()
    assert torch.equal(out, expected)
    assert reference.forwards == 20  # the prompt and 19 decoding steps
    assert_same_per_point(tracker, reference)
    # cheap: decoding steps come from the cost model, only a few are counted
    report = tracker.report
    assert report.counted_forwards <= 6 and report.predicted_forwards >= 14


def test_chunked_prefill_into_one_cache_is_exact():
    transformers = pytest.importorskip("transformers", reason="transformers is in [dev]")
    model = tiny_llama()
    ids = torch.randint(0, 100, (1, 16))

    def prefill_in_chunks():
        cache = transformers.DynamicCache()
        for start in range(0, 16, 4):
            chunk = ids[:, start : start + 4]
            positions = torch.arange(start, start + 4).unsqueeze(0)
            model(chunk, past_key_values=cache, position_ids=positions, use_cache=True)
        return cache

    with torch.no_grad(), ProfileEveryForward(model) as reference:
        prefill_in_chunks()
    for timing in (False, True):
        with torch.no_grad(), hs.track(model, timing=timing) as tracker:
            cache = prefill_in_chunks()
        assert cache.get_seq_length() == 16
        assert_same_per_point(tracker, reference)
    # q and o: 16 tokens * 64 * 64 each; k and v: 16 * 64 * 32 each; scores and values: 4 heads
    # * 4 queries * (4 + 8 + 12 + 16 keys of the growing cache) * (16 + 16) = 20_480
    assert reference.macs["model.layers.0.self_attn"] == 2 * 65_536 + 2 * 32_768 + 20_480


class EarlyExit(nn.Module):
    """Adaptive depth: stops after the block whose output is small (a value decides)."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(nn.Linear(8, 8) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = torch.tanh(block(x))
            if x.abs().mean() < 0.3:
                break
        return x


SCALES = [0.1, 3, 0.1, 5, 0.2, 1, 2, 0.1, 4, 3, 0.5, 0.3] * 3  # same shapes, other values


@pytest.mark.parametrize("timing", [False, True])
@pytest.mark.parametrize("model_class", [EarlyExit, TokenChoiceMoE])
def test_value_dependent_control_flow_is_exact_per_point(model_class, timing):
    torch.manual_seed(0)
    model = model_class().eval()
    inputs = [torch.randn(5, 8) * scale for scale in SCALES]
    with torch.no_grad(), ProfileEveryForward(model) as reference:
        for x in inputs:
            model(x)
    with torch.no_grad(), hs.track(model, timing=timing) as tracker:
        for x in inputs:
            model(x)
    assert_same_per_point(tracker, reference)
    report = tracker.report
    assert report.value_reads  # the reason every forward is counted
    assert report.counted_forwards == report.forwards == len(inputs)


class BranchesOnAList(nn.Module):
    """Reads values through ``tolist()``, which the dispatcher does not see."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.fc(x)) if x.tolist()[0][0] > 0 else self.fc(x)


def test_values_read_behind_the_dispatchers_back_are_caught_with_timing():
    model = BranchesOnAList()
    with torch.no_grad(), hs.track(model, timing=True) as tracker:
        model(torch.ones(3, 4))  # counted: fc twice
        model(-torch.ones(3, 4))  # same signature, fc once: the light hooks see one call
        for _ in range(3):
            model(torch.ones(3, 4))  # counted from now on
    report = tracker.report
    assert (report.estimated_forwards, report.counted_forwards) == (1, 4)
    # 4 forwards with fc twice, 1 with fc once: 9 calls of 3 * 4 * 4 = 48 MACs
    assert tracker.to_frame().set_index("hook_point").loc["fc", "macs"] == 9 * 48


@pytest.mark.parametrize("timing", [False, True])
def test_several_threads_are_all_counted_exactly(timing):
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    start = threading.Barrier(2)

    def serve(batch: int) -> None:
        start.wait()
        for _ in range(100):
            model(torch.randn(batch, 16))

    with torch.no_grad(), hs.track(model, timing=timing) as tracker:
        threads = [threading.Thread(target=serve, args=(batch,)) for batch in (3, 5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    report = tracker.report
    frame = tracker.to_frame().set_index("hook_point")
    assert (report.forwards, report.failed_forwards, report.samples) == (200, 0, 100 * 8)
    assert frame.loc["0", "calls"] == 200 and frame.loc["2", "calls"] == 200
    # 100 * (3 + 5) rows through 16*32 + 32*4 weights = 512_000
    assert report.total("macs") == 512_000
    assert frame.loc["0", "macs"] == 100 * 8 * 16 * 32
    assert hook_count(model) == 0


class InterruptOnce(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.interrupt = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        if self.interrupt:
            self.interrupt = False
            raise KeyboardInterrupt
        return y


@pytest.mark.parametrize("timing", [False, True])
def test_a_caught_keyboard_interrupt_leaves_nothing_behind(timing):
    model = InterruptOnce()
    with hs.track(model, timing=timing) as tracker:
        with pytest.raises(KeyboardInterrupt):
            model(torch.zeros(2, 4))  # interrupted under the counter (a new signature)
        for _ in range(3):
            model(torch.zeros(2, 4))
            assert _get_current_dispatch_mode_stack() == []  # repaired, counting goes on
    report = tracker.report
    assert (report.forwards, report.failed_forwards) == (3, 1)
    assert report.total("macs") == 3 * 2 * 4 * 4  # 96
    assert hook_count(model) == 0


def test_an_interrupt_that_leaves_the_block_leaves_nothing_behind():
    model = InterruptOnce()
    with pytest.raises(KeyboardInterrupt), hs.track(model, timing=False):
        model(torch.zeros(2, 4))
    assert _get_current_dispatch_mode_stack() == []
    assert hook_count(model) == 0


def test_per_signature_state_is_bounded_and_totals_stay_exact():
    model = nn.Sequential(nn.Linear(8, 8))
    with torch.no_grad(), hs.track(model, timing=False) as tracker:
        cache = tracker._accounts.cache
        cache.max_entries = 16  # the bound (16_384 records / points), small for the test
        for length in range(1, 201):
            model(torch.zeros(length, 8))
        assert len(cache.entries) <= 16
        assert len(cache.families) <= 64
    # rows 1 + 2 + ... + 200 = 20_100, each through 8 * 8 MACs
    assert tracker.report.total("macs") == 20_100 * 64
    assert tracker.report.total("calls") == 2 * 200
    shapes = tracker.to_frame().set_index("hook_point").loc["0", "output_shapes"]
    assert len(shapes) == 64 + 1  # 64 distinct output shapes kept, the rest counted together
    assert shapes["other"] == 200 - 64 and shapes[(1, 8)] == 1


def test_scripted_module_is_refused_with_what_to_do():
    scripted = torch.jit.script(nn.Linear(3, 3))
    with pytest.raises(TrackError, match="TorchScript.*cannot take Python forward hooks.*eager"):
        hs.track(scripted)
    wrapper = nn.Sequential(nn.Linear(3, 3), torch.jit.script(nn.ReLU()))
    with pytest.raises(TrackError, match="module '1' is a TorchScript module"):
        hs.track(wrapper)
    with pytest.raises(hs.InputSpecError, match="module '1' is a TorchScript module.*eager"):
        hs.profile(wrapper, input_shape=(3,))


class Sleepy(nn.Module):
    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.seconds)
        return x


def test_self_time_is_the_time_outside_the_nested_points():
    model = nn.Sequential(nn.Sequential(Sleepy(0.02), Sleepy(0.01)), Sleepy(0.0))
    with hs.track(model, timing=True) as tracker:
        for _ in range(2):
            model(torch.zeros(1))
    frame = tracker.to_frame().set_index("hook_point")
    inner = frame.loc["0"]
    assert inner["latency_ms"] >= 2 * 30  # its two children sleep 30 ms per call
    assert inner["self_latency_ms"] < 0.25 * inner["latency_ms"]  # the children's time left out
    assert frame.loc["0.0", "self_latency_ms"] == pytest.approx(frame.loc["0.0", "latency_ms"])
    assert frame.loc["(model)", "self_latency_ms"] < 0.25 * frame.loc["(model)", "latency_ms"]
    assert (frame["self_latency_ms"] <= frame["latency_ms"] + 1e-9).all()


def test_work_outside_the_selected_points_is_its_own_row():
    model = SmallCNN(16, 32)
    with torch.no_grad(), hs.track(model, points=nn.Linear, timing=False) as tracker:
        for _ in range(3):
            model(torch.randn(2, 1, 28, 28))
    frame = tracker.to_frame().set_index("hook_point")
    assert tracker.report.total("macs") == 3 * 2_063_488  # the model's total, convs included
    assert frame.loc["classifier", "macs"] == 3 * 2 * 1568 * 10
    assert frame.loc[hs.OUTSIDE_POINTS, "macs"] == 3 * (2_063_488 - 2 * 1568 * 10)


def test_dtype_label_says_what_ran_under_autocast():
    model = MLP((8, 16, 4))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert hs.profile(model, input_shape=(8,)).dtype == "bfloat16"
        with hs.track(model, timing=False) as tracker:
            model(torch.zeros(2, 8))
    assert tracker.report.dtype == "bfloat16"
    with hs.track(model, timing=False) as plain:
        model(torch.zeros(2, 8))
    assert plain.report.dtype == "float32"


class Distances(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(DistanceBlock() for _ in range(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class DistanceBlock(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")[..., :3]


def test_track_warns_about_uncounted_ops_once_on_exit_at_the_with_statement():
    model = Distances()
    with pytest.warns(hs.UncountedOpsWarning) as caught, hs.track(model, timing=False):
        for _ in range(2):
            model(torch.randn(2, 4, 3))
    assert len(caught) == 1
    warning = caught[0]
    assert warning.filename == __file__
    message = str(warning.message)
    # one op, named once, its calls, the first 3 hook points and how many more
    assert message.count("aten._cdist_forward") == 1
    assert "x10 in blocks.0, blocks.1, blocks.2 … and 2 more" in message
    # at most 2 forwards * 5 calls * batch 2 * 4 * 4 pairs * 3 features = 960 MACs
    assert "at most 960 MACs" in message


def test_profile_warning_points_at_the_call_site():
    with pytest.warns(hs.UncountedOpsWarning, match="at most 96 MACs") as caught:
        hs.profile(DistanceBlock(), input_shape=(4, 3), batch_size=2)
    assert caught[0].filename == __file__
    with pytest.warns(hs.UncountedOpsWarning) as caught:
        hs.estimate_layerwise_stats(DistanceBlock(), batch_size=2, input_shape=(4, 3))
    assert caught[0].filename == __file__
