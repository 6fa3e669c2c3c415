"""The training step, ``profile(..., train=True)``: backward MACs per hook point against hand
arithmetic and FlopCounterMode, saved bytes against ``saved_tensors_hooks``, the peak against
torch's MemTracker, optimizer state, mixed precision, checkpointing, meta == CPU, the hardware
view, the CLI, and the model given back exactly as it was."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from training_refs import flop_counter_macs, memtracker_peak, saved_bytes

import hookstats as hs
from hookstats import ForwardError, InputSpecError
from hookstats.cli import main

from models import MLP, RaisesInside, SmallCNN, TinyAttention, TinyTransformer


def train(model, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # checkpoint's use_reentrant notes
        return hs.profile(model, inputs=args, train=True, **kwargs)


def step_macs(report) -> int:
    """Forward (loss function included) + backward MACs of the whole step."""
    return report.training.forward_macs + report.total("backward_macs")


def column(report, name) -> dict[str, int]:
    frame = report.to_frame()
    return dict(zip(frame["hook_point"], frame[name], strict=True))


class ConvTransposeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.BatchNorm2d(8)
        self.up = nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(F.relu(self.norm(self.conv(x))))


class Checkpointed(nn.Module):
    """``a`` (Linear 16->64, GELU, Linear 64->16) optionally under activation checkpointing."""

    def __init__(self, reentrant: bool | None):
        super().__init__()
        self.a = nn.Sequential(nn.Linear(16, 64), nn.GELU(), nn.Linear(64, 16))
        self.b = nn.Linear(16, 4)
        self.reentrant = reentrant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reentrant is None:
            return self.b(self.a(x))
        return self.b(checkpoint(self.a, x, use_reentrant=self.reentrant))


def mean_of_squares(out):
    return out.float().pow(2).mean()


# --- backward MACs: hand arithmetic ---------------------------------------------------------


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_linear_backward_is_1x_its_forward_without_input_grad_and_2x_with(device):
    linear = nn.Linear(8, 4)
    x = torch.randn(2, 3, 8)
    plain = train(linear, x, device=device)
    assert plain.total("macs") == 192  # 2*3 tokens * 8 * 4
    assert plain.total("backward_macs") == 192  # weight gradient only: 6 * 8 * 4
    needs_grad = train(linear, x.clone().requires_grad_(), device=device)
    assert needs_grad.total("backward_macs") == 384  # + input gradient 6 * 4 * 8


def test_mlp_per_point_backward_macs_saved_bytes_and_memory():
    report = train(MLP((8, 16, 4)), torch.randn(2, 8), optimizer="adamw")
    backward = column(report, "self_backward_macs")
    assert backward["layers.0"] == 256  # input needs no grad: dW only, 2 * 8 * 16
    assert backward["layers.1"] == 256  # dX + dW: 2 * (2 * 16 * 4)
    assert column(report, "backward_macs")["(model)"] == 512
    saved = column(report, "self_saved_bytes")
    assert saved["layers.0"] == 64  # its input x: 2 * 8 * 4 bytes (the weight is a parameter)
    assert saved["act"] == 160  # ReLU saves its outputs, called twice: (2*16 + 2*4) * 4
    assert saved["layers.1"] == 0  # its input is act's output, saved already (one storage)
    memory = report.memory
    assert memory.parameters == 848  # (8*16 + 16 + 16*4 + 4) * 4 bytes
    assert memory.gradients == 848
    assert memory.optimizer_state == 1712  # 2 * 848 + 4 step counters * 4 bytes (CPU)
    assert memory.inputs == 64 and memory.saved_activations == 224
    assert report.total("gradient_bytes") == 848
    assert column(report, "gradient_bytes") == {
        "(model)": 848, "layers.0": 576, "act": 0, "layers.1": 272, "layers": 848,
    }  # fmt: skip


def test_small_cnn_conv_backward_by_hand():
    report = train(SmallCNN(), torch.randn(2, 1, 28, 28))
    conv1 = 2 * 28 * 28 * 16 * 1 * 3 * 3  # 225_792, its input needs no grad: dW only
    conv2 = 2 * 14 * 14 * 32 * 16 * 3 * 3  # 1_806_336, dX + dW
    fc = 2 * 1568 * 10  # 31_360, dX + dW
    assert report.total("macs") == conv1 + conv2 + fc == 2_063_488
    assert report.total("backward_macs") == conv1 + 2 * conv2 + 2 * fc == 3_901_184


def test_conv_transpose_input_and_weight_gradients():
    up = nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1)
    x = torch.randn(2, 8, 5, 5)
    forward = 2 * 5 * 5 * 8 * 4 * 4 * 4  # every input position through the kernel: 25_600
    assert train(up, x).total("macs") == forward
    assert train(up, x).total("backward_macs") == forward  # weight gradient only
    assert train(up, x.clone().requires_grad_()).total("backward_macs") == 2 * forward


def test_cpu_sdpa_is_exact_where_flop_counter_misses_it():
    model = TinyAttention(dim=16, heads=2)
    x = torch.randn(3, 5, 16)
    report = train(model, x)
    sdpa_forward = 3 * 2 * 5 * 5 * (8 + 8)  # 2_400
    sdpa_backward = 3 * 2 * 5 * 5 * (3 * 8 + 2 * 8)  # QK^T again, dO V^T, P^T dO, dS K, dS^T Q
    qkv, out = 3 * 5 * 16 * 48, 3 * 5 * 16 * 16  # 11_520, 3_840
    assert report.total("macs") == qkv + sdpa_forward + out == 17_760
    assert report.total("backward_macs") == qkv + sdpa_backward + 2 * out == 25_200
    # FlopCounterMode has no formula for the CPU flash kernel, forward or backward
    reference = flop_counter_macs(model, (x,), lambda o: o.mean())
    assert step_macs(report) - reference == sdpa_forward + sdpa_backward == 8_400
    assert step_macs(train(model, x, device="meta")) == step_macs(report)


def onednn_workspace_bytes(lstm: nn.LSTM, x: torch.Tensor) -> int:
    """Bytes of the workspaces oneDNN's LSTM layers return on this CPU (only oneDNN knows)."""
    total, layer_input = 0, x
    for layer in range(lstm.num_layers):
        weights = [
            getattr(lstm, f"{kind}_l{layer}").detach() for kind in ("weight_ih", "weight_hh")
        ]
        biases = [getattr(lstm, f"{kind}_l{layer}").detach() for kind in ("bias_ih", "bias_hh")]
        state = torch.zeros(x.shape[1], lstm.hidden_size)
        # in grad mode (under no_grad oneDNN returns no workspace); reverse, batch_sizes, mode
        # (LSTM), hidden, layers, has_biases, bidirectional, batch_first, train
        out, _, _, workspace = torch.ops.aten.mkldnn_rnn_layer(
            layer_input, *weights, *biases, state, state, False, [], 2, lstm.hidden_size,
            1, True, False, False, True,
        )  # fmt: skip
        total += workspace.untyped_storage().nbytes()
        layer_input = out
    return total


def test_lstm_fused_backward_on_cpu_and_meta():
    lstm = nn.LSTM(30, 50, num_layers=2)
    x = torch.randn(10, 2, 30)
    loss = lambda out: out[0].mean()  # noqa: E731
    cpu = train(lstm, x, loss_fn=loss)
    # 20 tokens * (200*30 + 200*50 | 200*50 + 200*50)
    assert cpu.total("macs") == 20 * (6_000 + 10_000 + 10_000 + 10_000) == 720_000
    # oneDNN's backward computes the input, hidden and weight gradients of every layer
    assert cpu.total("backward_macs") == 2 * 720_000
    assert flop_counter_macs(lstm, (x,), loss) == 0  # no rule for oneDNN's LSTM
    meta = train(lstm, x, loss_fn=loss, device="meta")  # fake CPU tensors: oneDNN's kernel too
    assert meta.total("macs") == 720_000 and meta.total("backward_macs") == 1_440_000
    # the one difference: the workspace oneDNN saves, whose size only oneDNN knows
    workspace = onednn_workspace_bytes(lstm, x)
    assert workspace > 0
    assert meta.total("saved_bytes") == cpu.total("saved_bytes") - workspace


# --- against independent references ----------------------------------------------------------


CASES = {
    "mlp": (lambda: MLP((8, 16, 4)), lambda: torch.randn(2, 8)),
    "small_cnn": (SmallCNN, lambda: torch.randn(4, 1, 28, 28)),
    "eager_attention": (
        lambda: nn.Sequential(nn.Linear(16, 16), TinyAttention(eager=True)),
        lambda: torch.randn(3, 5, 16),
    ),
    "conv_transpose_bn": (ConvTransposeNet, lambda: torch.randn(4, 3, 16, 16)),
    "checkpoint": (lambda: Checkpointed(reentrant=False), lambda: torch.randn(8, 16)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_step_macs_equal_flop_counter_and_saved_bytes_equal_saved_tensors_hooks(case):
    build, make_input = CASES[case]
    torch.manual_seed(0)
    model, x = build(), make_input()
    report = train(model, x, loss_fn=mean_of_squares)
    assert step_macs(report) == flop_counter_macs(model, (x,), mean_of_squares)
    assert report.total("saved_bytes") == saved_bytes(model, (x,), mean_of_squares)


@pytest.mark.parametrize(
    ("case", "optimizer"),
    [("mlp", "adamw"), ("small_cnn", None), ("eager_attention", "sgd_momentum"),
     ("conv_transpose_bn", "adam"), ("checkpoint", "adamw")],
)  # fmt: skip
def test_peak_matches_memtracker_on_the_real_step(case, optimizer):
    build, make_input = CASES[case]
    model, x = build(), make_input()
    factories = {
        "adamw": torch.optim.AdamW,
        "adam": torch.optim.Adam,
        "sgd_momentum": lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.9),
        None: None,
    }
    report = train(model, x, loss_fn=mean_of_squares, optimizer=optimizer)
    reference = memtracker_peak(model, (x,), mean_of_squares, factories[optimizer])
    assert report.memory.peak == pytest.approx(reference, rel=0.01)  # issue: within 10%


def test_saved_bytes_and_peak_of_a_transformer_and_an_lstm_against_the_references():
    model = TinyTransformer()
    ids = torch.randint(0, 32, (2, 8))
    loss = lambda out: out.mean()  # noqa: E731
    report = train(model, ids, loss_fn=loss, optimizer="adamw")
    assert report.total("saved_bytes") == saved_bytes(model, (ids,), loss)
    peak = memtracker_peak(model, (ids,), loss, torch.optim.AdamW)
    assert report.memory.peak == pytest.approx(peak, rel=0.01)
    lstm = nn.LSTM(12, 16, 2)
    x = torch.randn(5, 3, 12)
    loss = lambda out: out[0].mean()  # noqa: E731
    report = train(lstm, x, loss_fn=loss)
    assert report.total("saved_bytes") == saved_bytes(lstm, (x,), loss)
    assert report.memory.peak == pytest.approx(memtracker_peak(lstm, (x,), loss, None), rel=0.01)


# --- checkpointing, precision, meta ------------------------------------------------------------


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_activation_checkpointing_lowers_saved_bytes_and_recomputes(device):
    x = torch.randn(8, 16, requires_grad=True)
    plain = train(Checkpointed(None), x, device=device)
    # a.0 saves x (8*16*4), GELU its input (8*64*4), a.2 its input (8*64*4), b its input (8*16*4)
    assert plain.total("saved_bytes") == 512 + 2_048 + 2_048 + 512
    # a.0, a.2: dX + dW, 2 * 8*16*64 each; b: 2 * 8*16*4
    assert plain.total("backward_macs") == 16_384 + 16_384 + 1_024
    for reentrant, recomputed in ((False, 8_192), (True, 16_384)):
        report = train(Checkpointed(reentrant), x, device=device)
        assert report.total("saved_bytes") == 512 + 512  # the region's input, and b's
        # non-reentrant stops recomputing after a.0 + GELU (a.2's output is not needed)
        assert report.training.recompute_macs == recomputed
        assert report.total("backward_macs") == 33_792 + recomputed
        assert column(report, "self_backward_macs")["a.0"] == 16_384 + 8_192  # its recompute


def test_bfloat16_halves_the_bytes_not_the_macs():
    model, x = MLP((8, 16, 4)), torch.randn(2, 8)
    fp32 = train(model, x, optimizer="adamw", device="meta")
    bf16 = train(model, x, optimizer="adamw", device="meta", dtype=torch.bfloat16)
    assert step_macs(bf16) == step_macs(fp32) == 896
    assert bf16.total("saved_bytes") * 2 == fp32.total("saved_bytes") == 224
    assert bf16.memory.parameters == bf16.memory.gradients == 424  # 212 * 2 bytes
    assert bf16.memory.optimizer_state == 2 * 424  # AdamW: exp_avg, exp_avg_sq in bf16
    assert bf16.memory.peak < fp32.memory.peak


def test_autocast_changes_saved_bytes_not_macs():
    model, x = MLP((8, 16, 4)), torch.randn(2, 8)
    fp32 = train(model, x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = train(model, x)
        reference = saved_bytes(model, (x,), lambda o: o.mean())
    assert step_macs(mixed) == step_macs(fp32)
    assert mixed.total("saved_bytes") == reference != fp32.total("saved_bytes")


def test_meta_equals_cpu_for_a_transformer():
    model = TinyTransformer()
    ids = torch.randint(0, 32, (2, 8))
    cpu = train(model, ids, optimizer="adamw")
    meta = train(model, ids, optimizer="adamw", device="meta")
    assert meta.fallback is None
    for name in ("macs", "backward_macs", "saved_bytes", "gradient_bytes"):
        assert meta.total(name) == cpu.total(name), name
    assert meta.to_frame().equals(cpu.to_frame())
    # the only difference: AdamW's step counters live on the CPU (4 bytes per tensor)
    steps = 4 * len(list(model.parameters()))
    assert cpu.memory.optimizer_state - meta.memory.optimizer_state == steps
    assert cpu.memory.peak - meta.memory.peak == steps


def test_meta_equals_cpu_through_multihead_attention():
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
    model = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    x = torch.randn(2, 5, 16)
    cpu, meta = train(model, x), train(model, x, device="meta")
    # SDPA inside F.multi_head_attention_forward: the CPU flash kernel on both, per layer
    # 2 batch * 2 heads * 5 * 5 * (8 + 8) forward and * (3 * 8 + 2 * 8) backward
    assert step_macs(cpu) - flop_counter_macs(model, (x,), lambda o: o.mean()) == 2 * (
        1_600 + 4_000
    )
    for name in ("macs", "backward_macs", "saved_bytes"):
        assert meta.total(name) == cpu.total(name), name
    assert meta.memory.peak == cpu.memory.peak


def test_tiny_llama_on_meta_matches_cpu():
    transformers = pytest.importorskip("transformers", reason="needs transformers")
    config = transformers.LlamaConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=100, attn_implementation="sdpa",
    )  # fmt: skip
    model = transformers.LlamaForCausalLM(config)
    ids = torch.randint(0, 100, (2, 16))
    loss = lambda out: out.logits.mean()  # noqa: E731
    cpu = train(model, ids, loss_fn=loss)
    meta = train(model, ids, loss_fn=loss, device="meta")
    assert not cpu.uncounted_ops and meta.fallback is None
    for name in ("macs", "backward_macs", "saved_bytes"):
        assert meta.total(name) == cpu.total(name), name
    assert meta.memory.peak == cpu.memory.peak
    assert cpu.total("saved_bytes") == saved_bytes(model, (ids,), loss)


# --- what the step is made of ------------------------------------------------------------------


def test_optimizer_state_per_optimizer():
    model, x = MLP((8, 16, 4)), torch.randn(2, 8)
    params = 848  # bytes of the 4 parameter tensors
    expected = {
        "sgd": 0,
        "sgd_momentum": params,  # momentum buffer
        "adam": 2 * params + 16,  # exp_avg, exp_avg_sq, 4 float32 step counters
        "rmsprop": params + 16,
        torch.optim.Adagrad: params + 16,
        (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)): params,
    }
    for optimizer, state in expected.items():
        assert train(model, x, optimizer=optimizer).memory.optimizer_state == state, optimizer


def test_work_of_the_loss_function_is_outside_every_hook_point():
    weight = torch.randn(4, 3)
    report = train(nn.Linear(8, 4), torch.randn(2, 8), loss_fn=lambda out: (out @ weight).sum())
    assert report.unattributed_macs == 2 * 4 * 3  # the loss's matmul, forward
    assert report.training.forward_macs == report.total("macs") + 24 == 64 + 24
    assert report.training.outside.self_backward_macs == 2 * 3 * 4  # its grad: dL/dout only
    assert report.total("backward_macs") == 64 + 24  # the Linear's dW, and the loss's


def test_frame_columns_totals_and_peak():
    report = train(SmallCNN(), torch.randn(2, 1, 28, 28))
    frame = report.to_frame()
    for name in ("backward_macs", "self_backward_macs", "saved_bytes", "self_saved_bytes"):
        assert name in frame.columns
        assert report.total(name) == frame[f"self_{name.removeprefix('self_')}"].sum()
    assert report.memory.peak_phase == "backward"
    assert report.memory.peak >= report.memory.parameters + report.memory.saved_activations
    inference = hs.profile(SmallCNN(), input_shape=(1, 28, 28))
    assert "backward_macs" not in inference.to_frame().columns and inference.training is None
    with pytest.raises(KeyError, match="totals exist for"):
        inference.total("backward_macs")


class MakesCpuTensors(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x + torch.arange(4.0))  # a CPU tensor: meta fails, fake tensors work


class ReadsValues(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        y = self.fc(x)
        return y[y > 0]  # a boolean mask needs values


def test_meta_runs_on_fake_tensors_or_says_why_not():
    x = torch.randn(2, 4, requires_grad=True)
    report = train(MakesCpuTensors(), x, device="meta")
    assert report.device == "meta"
    assert report.total("backward_macs") == 2 * 2 * 4 * 4  # dX + dW, the input needs grad
    with pytest.raises(hs.MetaDeviceError, match="cannot run without real data"):
        train(ReadsValues(), x, loss_fn=lambda out: out.sum(), device="meta")


def test_sparse_gradients_run_but_are_not_counted():
    model = nn.Sequential(nn.Embedding(20, 8, sparse=True), nn.Linear(8, 4))
    report = train(model, torch.randint(0, 20, (2, 5)), optimizer="sgd")
    assert report.memory.gradients == (8 * 4 + 4) * 4  # the Linear's; the sparse one is not
    assert report.memory.parameters == (20 * 8 + 8 * 4 + 4) * 4


def test_inference_mode_and_no_grad_callers():
    linear, x = nn.Linear(8, 4), torch.randn(2, 8)
    with torch.inference_mode():
        assert train(linear, torch.randn(2, 8)).total("backward_macs") == 64
    with torch.no_grad():
        assert train(linear, x).total("backward_macs") == 64


def test_points_subset_puts_the_rest_outside():
    report = train(MLP((8, 16, 4)), torch.randn(2, 8), points="layers.1")
    # layers.1: 2 * (2 * 16 * 4); layers.0, outside every point: its weight gradient only
    assert column(report, "backward_macs") == {"layers.1": 256, hs.OUTSIDE_POINTS: 256}
    assert report.training.outside.self_backward_macs == 256  # layers.0, outside every point
    assert report.total("backward_macs") == 512


def test_compiled_module_and_threads_count_the_same():
    import threading

    model, x = MLP((8, 16, 4)), torch.randn(2, 8)
    expected = train(model, x)
    compiled = train(torch.compile(model, backend="eager"), x)
    for name in ("macs", "backward_macs", "saved_bytes"):
        assert compiled.total(name) == expected.total(name), name
    results: dict[int, tuple[int, int, int]] = {}

    def work(index: int) -> None:
        report = train(TinyTransformer(), torch.randint(0, 32, (2, 8)))
        results[index] = (
            report.total("backward_macs"), report.total("saved_bytes"), report.memory.peak,
        )  # fmt: skip

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    alone = train(TinyTransformer(), torch.randint(0, 32, (2, 8)))
    assert set(results.values()) == {
        (alone.total("backward_macs"), alone.total("saved_bytes"), alone.memory.peak)
    }


# --- the model comes back as it was ------------------------------------------------------------


class RaisesInBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("backward boom")


class Net(nn.Module):
    def __init__(self, backward_raises: bool = False):
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.norm = nn.BatchNorm1d(6)
        self.frozen = nn.Linear(6, 2)
        self.frozen.requires_grad_(False)
        self.backward_raises = backward_raises

    def forward(self, x):
        h = self.norm(F.dropout(self.fc(x), 0.5, self.training))
        if self.backward_raises:
            h = RaisesInBackward.apply(h)
        return self.frozen(h)


def snapshot(model: nn.Module) -> dict:
    return {
        "hooks": sum(
            len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
            + len(m._backward_pre_hooks) for m in model.modules()
        ),
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [
            None if p.grad is None else (id(p.grad), p.grad.clone()) for p in model.parameters()
        ],
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "rng": torch.get_rng_state(),
    }  # fmt: skip


def assert_unchanged(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert after["hooks"] == 0
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    for old, new in zip(before["grads"], after["grads"], strict=True):
        assert (old is None and new is None) or (old[0] == new[0] and torch.equal(old[1], new[1]))
    for name, value in before["state"].items():
        assert torch.equal(after["state"][name], value), name  # batch norm statistics too
    assert torch.equal(after["rng"], before["rng"])  # dropout drew from a forked RNG


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_model_unchanged_after_a_step(device):
    model = Net()
    model.eval()
    model.fc.train()  # mixed flags come back exactly
    model.fc.weight.grad = torch.ones(6, 6)  # an existing gradient is neither used nor changed
    x = torch.randn(4, 6)
    before = snapshot(model)
    train(model, x, optimizer="adamw", device=device)
    assert_unchanged(model, before)


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_model_unchanged_when_forward_loss_fn_or_backward_raises(device):
    model, x = Net(), torch.randn(4, 6)
    before = snapshot(model)
    with pytest.raises(ForwardError, match="loss_fn raised ZeroDivisionError"):
        train(model, x, loss_fn=lambda out: 1 / 0, device=device)
    assert_unchanged(model, before)
    model = Net(backward_raises=True)
    before = snapshot(model)
    with pytest.raises(ForwardError, match="backward raised RuntimeError.*backward boom"):
        train(model, x, device=device)
    assert_unchanged(model, before)
    model, x = RaisesInside(), torch.randn(2, 4)
    before = snapshot(model)
    with pytest.raises(ForwardError, match="in module 'bad'") as raised:
        train(model, x, device=device)
    assert raised.value.hook_point == "bad"
    assert_unchanged(model, before)


def test_user_input_gradient_is_not_touched():
    x = torch.randn(2, 8, requires_grad=True)
    train(nn.Linear(8, 4), x)
    assert x.grad is None


# --- errors --------------------------------------------------------------------------------------


def test_errors_name_the_argument_and_the_fix():
    model, x = nn.Linear(8, 4), torch.randn(2, 8)
    with pytest.raises(InputSpecError, match="pass train=True"):
        hs.profile(model, inputs=x, loss_fn=lambda out: out.mean())
    with pytest.raises(InputSpecError, match="one-element tensor, got \\(2, 4\\)"):
        train(model, x, loss_fn=lambda out: out)
    with pytest.raises(InputSpecError, match="not a known optimizer name.*adamw"):
        train(model, x, optimizer="adamx")
    with pytest.raises(InputSpecError, match="on the parameters it is given"):
        train(model, x, optimizer=lambda params: torch.optim.SGD(model.parameters(), lr=0.1))
    assert model.weight.grad is None
    frozen = nn.Linear(8, 4).requires_grad_(False)
    with pytest.raises(InputSpecError, match="needs no gradient"):
        train(frozen, x)


# --- hardware and the command line ---------------------------------------------------------------


def test_training_step_roofline_and_mfu():
    report = train(nn.Linear(8, 4), torch.randn(2, 8), optimizer="sgd_momentum")
    hw = hs.summarize_hardware(report, latency_ms=1.0, memory_bandwidth_gbps=100, peak_tflops=1.0)
    rows = hw.to_frame().set_index("hook_point")
    assert rows.loc["(model)", "bytes_moved"] == 144 + 64 + 32  # weights, input, output
    # weights again 144; reads saved x 64 + dL/dout 32; writes dL/dx 64 + dL/dW 144
    assert rows.loc["(backward)", "bytes_moved"] == 144 + 96 + 208
    # reads params 144, grads 144, momentum 144; writes params and momentum
    assert rows.loc["(optimizer)", "bytes_moved"] == 3 * 144 + 2 * 144
    assert hw.total("bytes_moved") == 240 + 448 + 720
    assert hw.total("macs") == 64 + 64
    assert hw.total("model_flops") == 2 * 128
    assert hw.total("mfu") == pytest.approx(256 / 1e-3 / 1e12)  # flops / step time / peak
    table = hs.precision_tradeoffs(report, 1.0, 100, 1.0, precisions=("fp32", "bf16"))
    assert table["bytes_moved"].tolist() == [1408, 704] and table["macs"].tolist() == [128, 128]


def test_cli_profile_train(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    code = main(
        ["profile", "models:SmallCNN", "--input-shape", "2,1,28,28", "--train", "--optimizer",
         "adamw", "--device", "meta"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "backward MACs" in out and "3.90 M" in out  # 3_901_184, as by hand above
    assert "optimizer state (adamw)" in out
    no_train = ["profile", "models:SmallCNN", "--input-shape", "2,1,28,28", "--optimizer", "sgd"]
    assert main(no_train) == 2
    assert "add --train" in capsys.readouterr().err
