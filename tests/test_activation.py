"""Activation metrics (category 3): exact against float64 numpy over every call, in every autograd
mode and in bf16; hand-made outputs; the monitor owns its hooks and changes nothing."""

from __future__ import annotations

import math
import threading
from collections import defaultdict

import numpy as np
import pytest
import torch
from torch import nn

import hookstats as hs
from hookstats.errors import ForwardError, MetricError, PointSelectionError
from hookstats.metrics import moments as moments_module
from hookstats.metrics.activation import output_tensors
from hookstats.metrics.moments import MomentAccumulator, Moments, tensor_moments

from models import MLP, SharedLayer

BUILTINS = ["act_mean", "act_std", "act_rms", "act_absmax", "act_zero_frac", "act_kurtosis"]


def reference(arrays: list[np.ndarray]) -> dict[str, float]:
    """The six built-ins from every output element pooled, in float64 numpy."""
    x = np.concatenate([a.ravel() for a in arrays]).astype(np.float64)
    mean = x.mean()
    d = x - mean
    m2, m4 = np.mean(d**2), np.mean(d**4)
    return {
        "act_mean": mean,
        "act_std": math.sqrt(m2),
        "act_rms": math.sqrt(np.mean(x**2)),
        "act_absmax": np.abs(x).max(),
        "act_zero_frac": np.count_nonzero(x == 0) / x.size,
        "act_kurtosis": m4 / m2**2 - 3.0,
    }


class Capture:
    """An independent reference: float64 copies of every selected module's outputs."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        self.outputs: dict[str, list[np.ndarray]] = defaultdict(list)
        modules = dict(model.named_modules())
        self.handles = [modules[n].register_forward_hook(self._hook(n)) for n in names]

    def _hook(self, name):
        def hook(module, args, output):
            self.outputs[name].append(output.detach().double().cpu().numpy().copy())

        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def assert_matches(frame, outputs: dict[str, list[np.ndarray]]) -> None:
    got = {(r.hook_point, r.metric): r.value for r in frame.itertuples()}
    assert set(got) == {(p, m) for p in outputs for m in BUILTINS}
    for point, arrays in outputs.items():
        want = reference(arrays)
        scale = want["act_rms"]
        for metric, value in want.items():
            assert math.isclose(
                got[(point, metric)], value, rel_tol=1e-10, abs_tol=1e-13 * scale
            ), (
                point,
                metric,
                got[(point, metric)],
                value,
            )


def mlp(dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(0)
    return MLP((8, 32, 16)).to(dtype)


POINTS = ["layers.0", "layers.1", "act"]
MODES = {
    "inference_mode": torch.inference_mode,
    "no_grad": torch.no_grad,
    "grad": torch.enable_grad,
}


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_exact_against_float64_numpy_over_calls_of_differing_batch(mode, dtype):
    model = mlp(dtype)
    capture = Capture(model, POINTS)
    torch.manual_seed(1)
    batches = [torch.randn(b, 8, dtype=dtype) * 3 + 1 for b in (1, 5, 17, 64)]
    try:
        with MODES[mode](), hs.ActivationMonitor(model, POINTS) as monitor:
            for batch in batches:
                out = model(batch)
                if mode == "grad":
                    out.sum().backward()
    finally:
        capture.remove()
    assert [monitor.calls(p) for p in POINTS] == [4, 4, 8]  # ReLU is shared by both layers
    assert [monitor.moments(p).count for p in POINTS] == [87 * 32, 87 * 16, 87 * 48]
    # 1 + 5 + 17 + 64 = 87 rows; ReLU sees both layers: 32 + 16 = 48 elements per row
    assert_matches(monitor.to_frame(), capture.outputs)
    assert (
        0.0
        < monitor.to_frame()
        .set_index(["hook_point", "metric"])
        .loc[("act", "act_zero_frac"), "value"]
        < 1.0
    )  # the ReLU really zeroes some elements
    assert all(not p._forward_hooks for p in model.modules())


def test_chunked_and_folded_paths_are_exact(monkeypatch):
    monkeypatch.setattr(moments_module, "CHUNK", 7)  # every output is split into 7-element chunks
    monkeypatch.setattr(moments_module, "CPU_CHUNK", 7)  # (on the CPU too)
    monkeypatch.setattr(moments_module, "FOLD", 3)  # parts are pooled every 3 calls
    model = mlp()
    capture = Capture(model, POINTS)
    torch.manual_seed(2)
    try:
        with torch.no_grad(), hs.ActivationMonitor(model, POINTS) as monitor:
            for b in (3, 1, 4, 1, 5, 9, 2):
                model(torch.randn(b, 8) * 100 + 1e4)  # a large offset: naive sums would cancel
    finally:
        capture.remove()
    assert_matches(monitor.to_frame(), capture.outputs)


def test_hand_made_zero_frac_and_kurtosis():
    ident = nn.Identity()
    with hs.ActivationMonitor(ident, None, ["act_zero_frac", "act_kurtosis"]) as monitor:
        ident(torch.tensor([0.0, 0.0, 0.0, 0.0]))
        ident(torch.tensor([-0.0, 5.0]))
    values = monitor.to_frame()["value"].tolist()
    # x = [0, 0, 0, 0, -0, 5]: 5 zeros of 6 elements (-0.0 == 0)
    # mean = 5/6; d = [-5/6] * 5 + [25/6]; m2 = (5 * 25/36 + 625/36) / 6 = 750/216
    # m4 = (5 * 625/1296 + 390625/1296) / 6 = 393750/7776
    # kurtosis = m4 / m2**2 - 3 = (393750/7776) / (750/216)**2 - 3 = 4.2 - 3 = 1.2
    assert values[0] == pytest.approx(5 / 6, rel=1e-15)
    assert values[1] == pytest.approx(1.2, rel=1e-12)

    x = torch.tensor([1.0, 3.0, 1.0, 3.0], dtype=torch.float64)
    with hs.ActivationMonitor(ident, None, ["act_kurtosis", "act_std", "act_rms"]) as monitor:
        ident(x)
    # two points around mean 2: d = +-1, m2 = 1, m4 = 1, kurtosis 1/1 - 3 = -2; std 1;
    # rms = sqrt((1 + 9 + 1 + 9) / 4) = sqrt(5)
    assert monitor.to_frame()["value"].tolist() == [-2.0, 1.0, math.sqrt(5.0)]
    assert x.tolist() == [1.0, 3.0, 1.0, 3.0]  # a float64 output is measured, not shifted


def test_undefined_cases_are_nan_with_a_note():
    class Parts(nn.Module):
        def __init__(self):
            super().__init__()
            self.ids = nn.Identity()
            self.const = nn.Identity()
            self.bad = nn.Identity()
            self.never = nn.Identity()

        def forward(self, x):
            self.ids(x.long())
            self.const(torch.ones(3))
            return self.bad(x / 0)

    model = Parts()
    with hs.ActivationMonitor(model, ["ids", "const", "bad", "never"], "act_kurtosis") as mon:
        model(torch.tensor([1.0, 0.0]))
    notes = dict(zip(mon.to_frame()["hook_point"], mon.to_frame()["note"], strict=True))
    assert notes == {
        "ids": "no outputs to measure: the hook point returned no floating-point tensor",
        "const": "constant outputs: variance 0, kurtosis undefined",
        "bad": "non-finite values (NaN/Inf) in the outputs",
        "never": "no outputs to measure: the hook point never ran",
    }
    assert mon.to_frame()["value"].isna().all()


def test_nested_outputs_each_float_tensor_once():
    class Nested(nn.Module):
        def forward(self, x):
            return {"a": x, "again": (x, [x * 2]), "mask": x > 0, "n": 3}

    x = torch.tensor([1.0, -3.0])
    assert [t.tolist() for t in output_tensors(Nested()(x))] == [[1.0, -3.0], [2.0, -6.0]]
    frame = hs.activation_stats(Nested(), None, ["act_mean", "act_absmax"], inputs=x)
    # x once and 2x: [1, -3, 2, -6]: mean -6/4 = -1.5, absmax 6
    assert frame["value"].tolist() == [-1.5, 6.0]


def test_transformers_model_outputs_against_reference():
    transformers = pytest.importorskip("transformers", reason="a real HF model with ModelOutput")
    config = transformers.GPT2Config(
        n_layer=2, n_head=2, n_embd=16, vocab_size=50, n_positions=32, attn_implementation="eager"
    )
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval()
    names = ["transformer.h.0.mlp", "transformer.h.1.mlp.act", "transformer.ln_f"]
    capture = Capture(model, names)
    ids = [torch.randint(0, 50, (b, s)) for b, s in ((1, 5), (2, 9), (3, 4))]
    try:
        with torch.inference_mode(), hs.ActivationMonitor(model, names) as monitor:
            for batch in ids:
                model(batch)
    finally:
        capture.remove()
    assert_matches(monitor.to_frame(), capture.outputs)


def test_several_threads_pool_every_call():
    model = mlp()
    capture = Capture(model, ["layers.0"])
    batches = [torch.randn(b, 8, generator=torch.Generator().manual_seed(b)) for b in range(1, 41)]
    try:
        with torch.no_grad(), hs.ActivationMonitor(model, "layers.0") as monitor:
            threads = [
                threading.Thread(target=lambda part=part: [model(b) for b in part])
                for part in (batches[0::2], batches[1::2])
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    finally:
        capture.remove()
    assert monitor.calls("layers.0") == 40
    assert_matches(monitor.to_frame(), capture.outputs)


def test_model_unchanged_no_graph_kept_and_hooks_removed_when_forward_raises():
    model = mlp()
    x = torch.randn(4, 8)
    reference_out = model(x)
    reference_out.sum().backward()
    want_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    model.train()

    with hs.ActivationMonitor(model) as monitor:
        out = model(x)
        out.sum().backward()
    assert torch.equal(out, reference_out)
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), want_grads, strict=True))
    parts = [part for acc in monitor._accumulators.values() for part in acc._parts]
    assert parts and not any(p.requires_grad or p.grad_fn is not None for p in parts)
    assert all(m.training for m in model.modules())

    with pytest.raises(RuntimeError, match="mat1 and mat2"), hs.ActivationMonitor(model):
        model(torch.randn(2, 3))
    assert all(not m._forward_hooks for m in model.modules())

    with pytest.raises(ForwardError, match="forward raised RuntimeError.*no hook was left"):
        hs.activation_stats(model, inputs=torch.randn(2, 3))
    assert all(not m._forward_hooks for m in model.modules())
    assert all(m.training for m in model.modules())  # eval mode only during the forward


def test_activation_stats_runs_one_forward_in_eval_mode_without_grad():
    model = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.9))
    model.train()
    seen = []
    model[1].register_forward_hook(lambda m, a, o: seen.append((m.training, o.requires_grad)))
    x = torch.ones(2, 3)
    frame = hs.activation_stats(model, "1", "act_mean", inputs=(x,))
    with torch.no_grad():
        want = model[0](x).mean().item()  # dropout off in eval mode: the linear's output
    assert seen == [(False, False)] and model.training
    assert frame["value"].item() == pytest.approx(want, rel=1e-6)


def test_shared_module_pools_both_calls():
    model = SharedLayer(6)
    capture = Capture(model, ["fc"])
    try:
        with hs.ActivationMonitor(model, "fc") as monitor:
            model(torch.randn(3, 6))
    finally:
        capture.remove()
    assert monitor.calls("fc") == 2 and len(capture.outputs["fc"]) == 2
    assert_matches(monitor.to_frame(), capture.outputs)


def test_user_plugin_and_category_errors():
    @hs.register_metric("act_skew", category="activation")
    def act_skew(ctx: hs.ActivationContext) -> float:
        """Skewness of the outputs."""
        return ctx.central_moment(3) / ctx.central_moment(2) ** 1.5

    try:
        assert hs.metric_registry.get("act_skew").category == 3
        assert "act_skew" in hs.metric_registry.names(3)
        assert "act_skew" in hs.metric_registry.names("activation")
        ident = nn.Identity()
        frame = hs.activation_stats(ident, None, ["act_skew"], inputs=torch.tensor([0.0, 0, 3]))
        # mean 1, d = [-1, -1, 2]: m2 = 6/3 = 2, m3 = (-1 - 1 + 8)/3 = 2; 2 / 2**1.5 = 0.7071...
        assert frame["value"].item() == pytest.approx(2 / 2**1.5, rel=1e-14)
    finally:
        hs.unregister_metric("act_skew")

    with pytest.raises(MetricError, match="activation metric reads only .* declares no needs"):
        hs.register_metric("act_bad", category="activation", needs=("weights",))(lambda c: 0.0)
    with pytest.raises(MetricError, match="category must be 1 or 'weights'"):
        hs.register_metric("act_bad", category="activations")(lambda c: 0.0)
    assert "act_bad" not in hs.metric_registry

    with pytest.raises(MetricError, match=r"'act_rms' is an activation metric.*activation_stats"):
        hs.compute_metrics(mlp(), metrics=["l1", "act_rms"])
    assert hs.track(mlp(), metrics=["act_rms"]) is not None  # track streams them (issue 15c)
    with pytest.raises(MetricError, match=r"'l1' is category 1 \(weights\).*only category 3"):
        hs.ActivationMonitor(mlp(), None, ["l1"])
    with pytest.raises(MetricError, match="unknown metric.*Did you mean: .*act_rms"):
        hs.ActivationMonitor(mlp(), None, ["act_rmss"])
    with pytest.raises(PointSelectionError, match="selects no module"):
        hs.ActivationMonitor(mlp(), "nope")
    assert "act_rms" not in hs.compute_metrics(mlp())["metric"].unique()  # not a default


def test_monitor_defaults_reset_and_single_attachment():
    model = mlp()
    monitor = hs.ActivationMonitor(model, "layers.1")
    assert [s.name for s in monitor.specs] == BUILTINS  # metrics=None: every activation metric
    with monitor:
        with pytest.raises(MetricError, match="already attached"):
            monitor.attach()
        model(torch.randn(2, 8))
        monitor.reset()
        model(torch.ones(1, 8))
    assert monitor.calls("layers.1") == 1 and monitor.moments("layers.1").count == 16
    assert not monitor.attached and not model.layers[1]._forward_hooks


def test_moments_pool_and_accumulator_match_one_pass():
    torch.manual_seed(3)
    pieces = [torch.randn(n) * 1e3 + 1e6 for n in (1, 2, 3, 50)]
    acc = MomentAccumulator()
    for piece in pieces:
        acc.add(piece)
    acc.add(torch.empty(0))  # nothing
    pooled = acc.result()
    one = Moments.of(tensor_moments(torch.cat(pieces)))
    whole = torch.cat(pieces).double().numpy()
    assert pooled.count == one.count == 56 and pooled.zeros == 0
    assert pooled.mean == pytest.approx(whole.mean(), rel=1e-15)
    assert pooled.m2 == pytest.approx(((whole - whole.mean()) ** 2).sum(), rel=1e-11)
    assert pooled.m4 == pytest.approx(((whole - whole.mean()) ** 4).sum(), rel=1e-11)
    assert (pooled.min, pooled.max) == (whole.min(), whole.max())
    assert Moments.pooled([]).count == 0 and MomentAccumulator().result().count == 0


def test_compiled_model_every_call_seen():
    model = mlp()
    compiled = torch.compile(model, backend="eager")  # dynamo traces the module, hooks included
    x = torch.randn(5, 8, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        want = torch.cat([model.layers[0](x), model.layers[0](x * 2)]).double()
    with torch.no_grad(), hs.ActivationMonitor(model, "layers.0", ["act_mean", "act_absmax"]) as m:
        compiled(x)
        compiled(x * 2)
    assert m.calls("layers.0") == 2
    got = m.to_frame()["value"].tolist()
    assert got[0] == pytest.approx(want.mean().item(), rel=1e-12)
    assert got[1] == want.abs().max().item()
    compiled(x)  # runs without the monitor's hooks: none is left
    assert all(not mod._forward_hooks for mod in model.modules())
