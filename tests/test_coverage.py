"""What the counter counts in the field: grad mode, no_grad and ``torch.inference_mode()``
(where composite ops arrive undecomposed), the allowlist of ops that do no MAC work (every
other op is listed, never a silent 0), ``flex_attention``, grouped MoE products and dynamically
quantized linears. References: hand arithmetic and PyTorch's own FlopCounterMode."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import hookstats as hs
from hookstats.counting import MacCounter, OpKind, classify_op, formula_for, grouped_mm_macs

from models import MLP, SmallCNN, TinyTransformer

MODES = {
    "grad": torch.enable_grad,
    "no_grad": torch.no_grad,
    "inference_mode": torch.inference_mode,
}


class Sink:
    current_point = None

    def __init__(self) -> None:
        self.macs = 0

    def add_macs(self, macs: int) -> None:
        self.macs += macs


def counted(fn) -> tuple[int, MacCounter]:
    sink = Sink()
    with MacCounter(sink) as counter:
        fn()
    return sink.macs, counter


def flop_counter_macs(fn) -> int:
    with FlopCounterMode(display=False) as flops:
        fn()
    return flops.get_total_flops() // 2  # one MAC is two FLOPs


COMPOSITES = {
    # conv2d: 2 * 4 * 6*6 out positions * 3*3*3 = 7_776
    "conv2d": (nn.Conv2d(3, 4, 3), lambda m: m(torch.randn(2, 3, 8, 8)), 7_776),
    # conv_transpose2d: 2 * 5*5 in positions * (4*2*2*2 weight) = 1_600
    "conv_transpose2d": (
        nn.ConvTranspose2d(4, 2, 2, stride=2),
        lambda m: m(torch.randn(2, 4, 5, 5)),
        1_600,
    ),
    # linear: 5 * 8 * 3 = 120
    "linear": (nn.Linear(8, 3), lambda m: m(torch.randn(5, 8)), 120),
    # einsum as a batched matmul: 2 * 3*4*5 = 120
    "einsum": (
        None,
        lambda m: torch.einsum("bij,bjk->bik", torch.randn(2, 3, 4), torch.randn(2, 4, 5)),
        120,
    ),
    # matmul with broadcast: 2 * 3*4*5 = 120
    "matmul": (None, lambda m: torch.randn(2, 3, 4) @ torch.randn(4, 5), 120),
}


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("name", sorted(COMPOSITES))
def test_composites_count_the_same_in_every_grad_mode_as_flop_counter(name, mode):
    module, call, expected = COMPOSITES[name]
    with MODES[mode]():
        macs, counter = counted(lambda: call(module))
        reference = flop_counter_macs(lambda: call(module))
    assert macs == expected == reference
    assert counter.uncounted == {}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_bilinear_is_counted_not_a_silent_zero(mode):
    """``nn.Bilinear`` runs ``aten._trilinear``; FlopCounterMode counts it as 0."""
    layer = nn.Bilinear(3, 4, 5)
    with MODES[mode]():
        macs, counter = counted(lambda: layer(torch.randn(2, 3), torch.randn(2, 4)))
    assert macs == 2 * 5 * 3 * 4  # batch * out * in1 * in2 = 120
    assert counter.uncounted == {}


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_profile_and_track_under_inference_mode_count_the_convolutions(mode):
    # seed CNN at batch 2: 2*16*28*28*9 + 2*32*14*14*16*9 + 2*1568*10 = 2_063_488
    model = SmallCNN(16, 32).eval()
    with MODES[mode]():
        assert hs.profile(model, input_shape=(1, 28, 28), batch_size=2).total("macs") == 2_063_488
        with hs.track(model, timing=False) as tracker:
            for _ in range(3):
                model(torch.randn(2, 1, 28, 28))
    assert tracker.report.total("macs") == 3 * 2_063_488


def test_an_op_without_formula_outside_the_allowlist_is_listed():
    """``linalg.solve`` does work but no MAC formula: listed, not 0 (it matched no name)."""

    class Solve(nn.Module):
        def forward(self, a: torch.Tensor) -> torch.Tensor:
            return torch.linalg.solve(a, a)

    with pytest.warns(hs.UncountedOpsWarning, match=r"_linalg_solve_ex x1 in \(model\)"):
        report = hs.profile(Solve(), inputs=torch.eye(3) + 1)
    assert report.uncounted_ops["aten._linalg_solve_ex"].calls == 1


def test_allowlist_classification_of_some_ops():
    aten = torch.ops.aten
    assert classify_op(aten.relu.default, False) is OpKind.NO_MACS  # pointwise tag
    assert classify_op(aten.cos.out, False) is OpKind.NO_MACS  # tag on another overload
    assert classify_op(aten.view.default, False) is OpKind.NO_MACS  # a view
    assert classify_op(aten._softmax.default, False) is OpKind.NO_MACS  # by name
    assert classify_op(aten.einsum.default, False) is OpKind.DECOMPOSE  # composite
    assert classify_op(aten._local_scalar_dense.default, False) is OpKind.READS_VALUES
    assert classify_op(aten._linalg_svd.default, False) is OpKind.UNCOUNTED
    assert classify_op(aten.mm.default, formula_for(aten.mm.default) is not None) is (
        OpKind.COUNTED
    )


def _tiny_hf_models():
    transformers = pytest.importorskip("transformers", reason="transformers is in [dev]")
    torch.manual_seed(0)
    llama = transformers.LlamaForCausalLM(
        transformers.LlamaConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=50,
        )
    )
    gpt2 = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(n_layer=1, n_embd=32, n_head=4, vocab_size=50, n_positions=32)
    )
    bert = transformers.BertModel(
        transformers.BertConfig(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=4,
            intermediate_size=64,
            vocab_size=50,
        )
    )
    return {"llama": llama, "gpt2": gpt2, "bert": bert}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_common_models_leave_no_op_uncounted(mode):
    """Every op of these models has a formula or is on the allowlist (no spurious warning)."""
    ids = torch.randint(0, 50, (2, 6))
    cases = [
        (SmallCNN(), torch.randn(2, 1, 28, 28)),
        (TinyTransformer(), torch.zeros(2, 5, dtype=torch.long)),
        (MLP(), torch.randn(2, 8)),
        (nn.GRU(4, 8, batch_first=True), torch.randn(2, 3, 4)),
        *((model, ids) for model in _tiny_hf_models().values()),
    ]
    for model, x in cases:
        with MODES[mode](), warnings.catch_warnings():
            warnings.simplefilter("error", hs.UncountedOpsWarning)
            _, counter = counted(lambda model=model, x=x: model.eval()(x))
        assert counter.uncounted == {}, type(model).__name__


# --- flex_attention -------------------------------------------------------------------------


class FlexAttention(nn.Module):
    """A projection, then flex attention over 2 heads of 128 positions and width 8."""

    def __init__(self, block_mask=None) -> None:
        super().__init__()
        self.proj = nn.Linear(16, 16)
        self.block_mask = block_mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from torch.nn.attention.flex_attention import flex_attention

        q = self.proj(x).view(1, 128, 2, 8).transpose(1, 2)
        return flex_attention(q, q, q, block_mask=self.block_mask)


def causal_mask():
    from torch.nn.attention.flex_attention import create_block_mask

    def causal(b, h, q_index, kv_index):
        return q_index >= kv_index

    return create_block_mask(causal, 1, 2, 128, 128, device="cpu", BLOCK_SIZE=32)


PROJECTION = 128 * 16 * 16  # 32_768


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_flex_attention_dense_and_block_sparse():
    x = torch.randn(1, 128, 16)
    # dense: 2 heads * 128*128 * (8 + 8) = 524_288
    assert hs.profile(FlexAttention(), inputs=x).total("macs") == PROJECTION + 524_288
    # causal 4x4 blocks of 32: 10 blocks listed per head, each 32*32 * (8 + 8)
    block = hs.profile(FlexAttention(causal_mask()), inputs=x)
    assert block.total("macs") == PROJECTION + 2 * 10 * 32 * 32 * 16
    assert block.uncounted_ops == {}


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])  # no CPU backward for flex
def test_flex_attention_never_breaks_the_users_forward_under_track(mode):
    model = FlexAttention(causal_mask())
    x = torch.randn(1, 128, 16)
    with torch.no_grad():
        expected = model(x)
    with MODES[mode](), hs.track(model, timing=False) as tracker:
        out = model(x)
        model(x)
    torch.testing.assert_close(out, expected)
    assert tracker.report.total("macs") == 2 * (PROJECTION + 2 * 10 * 32 * 32 * 16)


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_flex_attention_on_meta_is_listed_with_its_dense_bound():
    with pytest.warns(hs.UncountedOpsWarning, match=r"at most 524.29 K MACs"):
        report = hs.profile(
            FlexAttention(causal_mask()), inputs=torch.randn(1, 128, 16), device="meta"
        )
    assert report.total("macs") == PROJECTION
    assert report.uncounted_ops["higher_order.flex_attention"].bound_macs == 524_288


# --- mixture of experts and quantized models -------------------------------------------------


def test_grouped_mm_formula_by_hand():
    assert grouped_mm_macs((10, 16), (4, 16, 8), (10, 8)) == 10 * 16 * 8  # tokens x experts
    assert grouped_mm_macs((4, 3, 16), (4, 16, 8), (4, 3, 8)) == 4 * 3 * 16 * 8  # batched
    assert grouped_mm_macs((3, 32), (32, 8), (4, 3, 8)) == 3 * 32 * 8  # groups along K
    a = torch.randn(10, 16)
    b = torch.randn(4, 16, 8)
    offs = torch.tensor([2, 5, 7, 10], dtype=torch.int32)
    macs, counter = counted(lambda: torch._grouped_mm(a, b, offs=offs))
    assert macs == 1_280 and counter.uncounted == {}


def mixtral_macs(config, tokens: int, seq: int, batch: int) -> int:
    """Hand count of a Mixtral forward: attention projections and scores, router, top-k
    experts (gate, up, down) per token, and the LM head."""
    d, i = config.hidden_size, config.intermediate_size
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    head_dim = d // heads
    attention = tokens * d * heads * head_dim * 2  # q and o
    attention += tokens * d * kv_heads * head_dim * 2  # k and v
    attention += batch * heads * seq * seq * head_dim * 2  # QK^T and PV
    moe = tokens * d * config.num_local_experts  # router
    moe += 3 * tokens * config.num_experts_per_tok * d * i  # gate, up, down per routed token
    return config.num_hidden_layers * (attention + moe) + tokens * d * config.vocab_size


def test_mixtral_grouped_experts_counted_on_cpu_and_on_meta():
    transformers = pytest.importorskip("transformers", reason="transformers is in [dev]")
    config = transformers.MixtralConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=100,
        num_local_experts=4,
        num_experts_per_tok=2,
    )
    torch.manual_seed(0)
    model = transformers.MixtralForCausalLM(config).eval()
    ids = torch.randint(0, 100, (2, 8))
    expected = mixtral_macs(config, tokens=16, seq=8, batch=2)  # 2_109_440
    assert hs.profile(model, inputs=ids).total("macs") == expected == 2_109_440
    meta = hs.profile(model, inputs=ids, device="meta")  # the fp32 meta kernel refuses
    assert meta.total("macs") == expected and meta.uncounted_ops == {}


def test_mixtral_experts_loop_on_meta_says_what_works():
    transformers = pytest.importorskip("transformers", reason="transformers is in [dev]")
    config = transformers.MixtralConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=50,
        num_local_experts=4,
        num_experts_per_tok=2,
    )
    config._experts_implementation = "eager"  # a loop over experts with nonzero
    model = transformers.MixtralForCausalLM(config).eval()
    ids = torch.randint(0, 50, (1, 4))
    assert hs.profile(model, inputs=ids).total("macs") > 0  # fine with values
    with pytest.raises(hs.MetaDeviceError, match=r"reads tensor values.*grouped experts"):
        hs.profile(model, inputs=ids, device="meta")


@pytest.mark.slow
def test_mixtral_8x7b_on_meta_counts_every_routed_token():
    transformers = pytest.importorskip("transformers", reason="transformers is in [dev]")
    config = transformers.MixtralConfig()  # the 8x7B shapes, never allocated
    report = hs.profile(
        lambda: transformers.MixtralForCausalLM(config),
        inputs=torch.zeros(1, 128, dtype=torch.long),
        device="meta",
    )
    assert report.total("macs") == mixtral_macs(config, tokens=128, seq=128, batch=1)
    assert report.total("macs") == 1_636_114_104_320


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_dynamically_quantized_linears_count_macs_and_packed_weights():
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    quantized = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    report = hs.profile(quantized, input_shape=(8,), batch_size=3)
    assert report.total("macs") == 3 * (8 * 16 + 16 * 4)  # 576
    assert report.total("parameters") == (8 * 16 + 16) + (16 * 4 + 4)  # 212
    # int8 weights at 1 byte, float32 biases at 4: 128 + 64 + (16 + 4) * 4 = 272
    assert report.total("parameter_bytes") == 272
    seed = hs.estimate_layerwise_stats(quantized, batch_size=3, input_shape=(8,))
    assert list(seed["layer"]) == ["0", "2"]
    assert list(seed["macs"]) == [3 * 8 * 16, 3 * 16 * 4]
    assert list(seed["parameter_bytes"]) == [128 + 64, 64 + 16]
