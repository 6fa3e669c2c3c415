"""Attention (SDPA kernels, MHA and encoder fast paths), RNNs and GPT-2: exact MACs, CPU == meta."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import hookstats as hs

from models import TinyAttention, TinyTransformer


class OpLog(TorchDispatchMode):
    """Records op names; entered outside profile() it sees every op the counter passes on."""

    def __init__(self):
        super().__init__()
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def macs(model, device="cpu", **kwargs):
    return hs.profile(model, device=device, **kwargs).total("macs")


def test_sdpa_cpu_kernel_and_meta_math_path_agree():
    model = TinyAttention(dim=16, heads=2)
    x = torch.randn(3, 5, 16)
    with OpLog() as log:
        cpu = macs(model, inputs=x)
    assert "_scaled_dot_product_flash_attention_for_cpu" in log.ops
    # qkv 3*5*16*48 + attention 3 batch * 2 heads * 5*5 * (8+8) + out 3*5*16*16
    assert cpu == 11_520 + 2_400 + 3_840
    with OpLog() as log:
        assert macs(model, "meta", inputs=x) == cpu
    assert "bmm" in log.ops  # meta runs the math decomposition


def test_multihead_attention_fast_path():
    mha = nn.MultiheadAttention(8, 2, batch_first=True)
    x = torch.randn(2, 4, 8)
    with OpLog() as log:
        cpu = macs(mha, inputs=(x, x, x))
    assert "_native_multi_head_attention" in log.ops
    # in-proj 2*4*3*8*8 = 1536, QK^T and PV 2 * 2*4*4*8 = 512, out-proj 2*4*8*8 = 512
    assert cpu == 2_560
    assert macs(mha, "meta", inputs=(x, x, x)) == cpu
    # cross-attention with a longer memory: q 2*4*8*8 + k,v 2 * 2*6*8*8 + 2*2*4*6*8 + out 512
    memory = torch.randn(2, 6, 8)
    assert macs(mha, inputs=(x, memory, memory)) == 512 + 1_536 + 768 + 512


def test_encoder_layer_fast_path_when_only_its_container_is_hooked():
    layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
    model = nn.Sequential(nn.TransformerEncoder(layer, 2, enable_nested_tensor=False))
    x = torch.randn(2, 4, 8)
    with OpLog() as log:
        fused = macs(model, inputs=x, points="0")
    assert "_transformer_encoder_layer_fwd" in log.ops
    # per layer: tokens 8 * (4*8*8 + 2*8*16) + 2 * 2*4*4*8 = 4_096 + 512 ; two layers
    assert fused == 2 * 4_608
    # hooking every module makes PyTorch take the unfused path: the same MACs
    with OpLog() as log:
        assert macs(model, inputs=x) == fused
    assert "_transformer_encoder_layer_fwd" not in log.ops
    assert macs(model, "meta", inputs=x) == fused


def test_lstm_issue_example_on_cpu_and_meta():
    lstm = nn.LSTM(300, 512, num_layers=2)
    x = torch.randn(100, 2, 300)
    # 200 tokens * (2048*300 + 2048*512 + 2048*512 + 2048*512) = 752_025_600
    assert macs(lstm, inputs=x) == 752_025_600
    assert macs(lstm, "meta", inputs=x) == 752_025_600


@pytest.mark.parametrize(("cls", "gates"), [(nn.GRU, 3), (nn.RNN, 1), (nn.LSTM, 4)])
def test_bidirectional_batch_first_rnns(cls, gates):
    rnn = cls(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    x = torch.randn(2, 5, 3)
    # layer 1: 2 dirs * (G*4*3 + G*4*4); layer 2 input is 8 wide: 2 * (G*4*8 + G*4*4); 10 tokens
    expected = 10 * gates * (2 * (12 + 16) + 2 * (32 + 16))
    assert macs(rnn, inputs=x) == expected
    assert macs(rnn, "meta", inputs=x) == expected


def test_lstm_with_projections_and_packed_sequences():
    lstm = nn.LSTM(3, 6, proj_size=2)
    # per token: w_ih 24*3 + w_hh 24*2 + w_hr 2*6 = 132 ; 4*2 tokens
    assert macs(lstm, inputs=torch.randn(4, 2, 3)) == 8 * 132
    packed = nn.utils.rnn.pack_padded_sequence(torch.randn(4, 2, 3), [4, 2])
    assert macs(nn.LSTM(3, 6), inputs=(packed,)) == 6 * (24 * 3 + 24 * 6)  # 6 real tokens


def test_tiny_transformer_cpu_equals_meta():
    model = TinyTransformer(vocab=32, dim=16, heads=2, layers=2)
    ids = torch.zeros(2, 6, dtype=torch.long)
    tokens, d = 12, 16
    # per block: qkv 3d^2 + out d^2 + mlp 8d^2 per token, attention 2 * 2 heads * 6*6 * (8+8)
    per_block = tokens * 12 * d * d + 2 * 2 * 6 * 6 * 16
    expected = 2 * per_block + tokens * d * 32
    assert macs(model, inputs=ids) == expected
    assert macs(model, "meta", inputs=ids) == expected


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_gpt2_matches_the_closed_form(impl):
    transformers = pytest.importorskip("transformers")
    L, d, V, T = 2, 64, 100, 16
    config = transformers.GPT2Config(
        n_layer=L, n_embd=d, n_head=4, vocab_size=V, n_positions=32, bos_token_id=0, eos_token_id=0
    )
    config._attn_implementation = impl
    model = transformers.GPT2LMHeadModel(config)
    ids = torch.randint(0, V, (1, T))
    with OpLog() as log:
        report = hs.profile(model, inputs=ids)
    fused = "_scaled_dot_product_flash_attention_for_cpu" in log.ops
    assert fused == (impl == "sdpa")
    n_params = 12 * L * d * d
    # T*N + T*d*V + L*2*T^2*d = 16*98_304 + 16*64*100 + 2*2*256*64
    assert report.total("macs") == T * n_params + T * d * V + L * 2 * T * T * d == 1_740_800
    assert not report.uncounted_ops
    assert hs.profile(model, inputs=ids, device="meta").total("macs") == 1_740_800
