"""MAC formulas as pure functions: hand-computed values and brute-force counts.

The brute-force references are naive loop implementations that count one MAC per multiply they
perform, and are checked to compute the same result as torch, so the count is of real work.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from hookstats.counting import (
    carries_matrix_work,
    conv_macs,
    matmul_macs,
    mm_macs,
    rnn_macs,
    sdpa_macs,
)
from hookstats.counting.formulas import formula_for

aten = torch.ops.aten


def test_matrix_products_by_hand():
    assert mm_macs((4, 8), (8, 5)) == 160  # 4 * 8 * 5
    assert matmul_macs((2, 1, 4, 8), (3, 8, 5)) == 960  # batch 2*3, 4*8*5 = 160 each
    assert matmul_macs((8,), (8,)) == 8  # dot product
    assert matmul_macs((8,), (3, 8, 5)) == 120  # (1,8)@(3,8,5): 3 * 1*8*5
    assert matmul_macs((3, 4, 8), (8,)) == 96  # 3 * 4 * 8 * 1


def test_conv_by_hand():
    # seed conv1: 32 * 16 * 28 * 28 * 1 * 3 * 3 = 3_612_672
    assert conv_macs((32, 1, 28, 28), (16, 1, 3, 3), (32, 16, 28, 28)) == 3_612_672
    # grouped: 2 * 8*10*10 out positions * (8 out ch * 4/2 in ch * 3*3) = 2*100*8*2*9 = 28_800
    assert conv_macs((2, 4, 10, 10), (8, 2, 3, 3), (2, 8, 10, 10)) == 28_800
    # transposed: every input position times the whole kernel: 1 * 5*5 * (2*3*3*3) = 1350
    assert conv_macs((1, 2, 5, 5), (2, 3, 3, 3), (1, 3, 7, 7), transposed=True) == 1350


def test_attention_and_rnn_by_hand():
    # (B=1,H=2,L=4,E=8) self-attention: 2 * 4*4 * (8 + 8) = 512
    assert sdpa_macs((1, 2, 4, 8), (1, 2, 4, 8), (1, 2, 4, 8)) == 512
    # GQA: 8 query heads over 2 kv heads: 8 * 3*5 * (4 + 6) = 1200
    assert sdpa_macs((1, 8, 3, 4), (1, 2, 5, 4), (1, 2, 5, 6)) == 1200
    # LSTM(300, 512, 2 layers), T=100, batch 2: 200 tokens * (2048*300 + 2048*512 + 2*2048*512)
    params = [(2048, 300), (2048, 512), (2048,), (2048,), (2048, 512), (2048, 512)]
    assert rnn_macs(200, params) == 752_025_600


def _naive_conv(x, w, stride, padding, dilation, groups):
    """Direct convolution by loops over output positions; counts one MAC per multiply."""
    n, _, *size = x.shape
    cout, cin_g, *kernel = w.shape
    dims = len(size)
    xp = np.pad(x, [(0, 0), (0, 0)] + [(padding[d], padding[d]) for d in range(dims)])
    out_size = [
        (size[d] + 2 * padding[d] - dilation[d] * (kernel[d] - 1) - 1) // stride[d] + 1
        for d in range(dims)
    ]
    out = np.zeros((n, cout, *out_size))
    macs = 0
    cout_g = cout // groups
    for b, co, *pos in itertools.product(range(n), range(cout), *[range(s) for s in out_size]):
        g = co // cout_g
        for ci, *k in itertools.product(range(cin_g), *[range(s) for s in kernel]):
            idx = tuple(pos[d] * stride[d] + k[d] * dilation[d] for d in range(dims))
            out[(b, co, *pos)] += xp[(b, g * cin_g + ci, *idx)] * w[(co, ci, *k)]
            macs += 1
    return out, macs


def _naive_conv_transpose(x, w, stride, padding, groups):
    """Transposed convolution by scattering every input element through the kernel."""
    n, cin, *size = x.shape
    _, cout_g, *kernel = w.shape
    dims = len(size)
    full = [(size[d] - 1) * stride[d] + kernel[d] for d in range(dims)]
    out = np.zeros((n, cout_g * groups, *full))
    macs = 0
    cin_g = cin // groups
    for b, ci, *pos in itertools.product(range(n), range(cin), *[range(s) for s in size]):
        g = ci // cin_g
        for co, *k in itertools.product(range(cout_g), *[range(s) for s in kernel]):
            idx = tuple(pos[d] * stride[d] + k[d] for d in range(dims))
            out[(b, g * cout_g + co, *idx)] += x[(b, ci, *pos)] * w[(ci, co, *k)]
            macs += 1
    crop = tuple(slice(padding[d], full[d] - padding[d]) for d in range(dims))
    return out[(slice(None), slice(None), *crop)], macs


def _registered_conv_macs(x, w, out, transposed):
    formula = formula_for(aten.convolution.default)
    return formula(
        tuple(x.shape),
        tuple(w.shape),
        None,
        None,
        None,
        None,
        transposed,
        out_shape=tuple(out.shape),
    )


@settings(max_examples=25, deadline=None)
@given(
    dims=st.integers(1, 2),
    batch=st.integers(1, 2),
    groups=st.integers(1, 2),
    cin_g=st.integers(1, 2),
    cout_g=st.integers(1, 2),
    kernel=st.integers(1, 3),
    stride=st.integers(1, 2),
    padding=st.integers(0, 1),
    dilation=st.integers(1, 2),
    size=st.integers(3, 5),
)
def test_conv_formula_equals_brute_force(
    dims, batch, groups, cin_g, cout_g, kernel, stride, padding, dilation, size
):
    if dilation * (kernel - 1) + 1 > size + 2 * padding:
        return
    x = torch.randn(batch, cin_g * groups, *[size] * dims, dtype=torch.float64)
    w = torch.randn(cout_g * groups, cin_g, *[kernel] * dims, dtype=torch.float64)
    conv = (F.conv1d, F.conv2d)[dims - 1]
    out = conv(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups)
    ref, macs = _naive_conv(
        x.numpy(), w.numpy(), [stride] * dims, [padding] * dims, [dilation] * dims, groups
    )
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-9)  # the loop really is the conv
    assert _registered_conv_macs(x, w, out, False) == macs


@settings(max_examples=20, deadline=None)
@given(
    dims=st.integers(1, 2),
    groups=st.integers(1, 2),
    cin_g=st.integers(1, 2),
    cout_g=st.integers(1, 2),
    kernel=st.integers(1, 3),
    stride=st.integers(1, 2),
    padding=st.integers(0, 1),
    size=st.integers(2, 4),
)
def test_transposed_conv_formula_equals_brute_force(
    dims, groups, cin_g, cout_g, kernel, stride, padding, size
):
    if (size - 1) * stride + kernel - 2 * padding < 1:
        return
    x = torch.randn(1, cin_g * groups, *[size] * dims, dtype=torch.float64)
    w = torch.randn(cin_g * groups, cout_g, *[kernel] * dims, dtype=torch.float64)
    conv = (F.conv_transpose1d, F.conv_transpose2d)[dims - 1]
    out = conv(x, w, stride=stride, padding=padding, groups=groups)
    ref, macs = _naive_conv_transpose(
        x.numpy(), w.numpy(), [stride] * dims, [padding] * dims, groups
    )
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-9)
    assert _registered_conv_macs(x, w, out, True) == macs


def _naive_matmul_count(a_shape, b_shape):
    """Count multiplies of torch.matmul by looping over broadcast batch, rows, cols, inner."""
    a = np.ones(a_shape)
    b = np.ones(b_shape)
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    count = 0
    for _ in itertools.product(*[range(s) for s in batch]):
        for _i, _j in itertools.product(range(a2.shape[-2]), range(b2.shape[-1])):
            count += a2.shape[-1]
    return count


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_matmul_formula_equals_brute_force(data):
    k = data.draw(st.integers(1, 4))
    a_batch = data.draw(st.lists(st.integers(1, 3), max_size=2))
    b_len = data.draw(st.integers(0, len(a_batch)))
    aligned = a_batch[len(a_batch) - b_len :]  # b's batch dims line up with a's from the right
    b_batch = [data.draw(st.sampled_from([1, d])) for d in aligned]
    a_shape = (*a_batch, data.draw(st.integers(1, 3)), k) if data.draw(st.booleans()) else (k,)
    b_shape = (*b_batch, k, data.draw(st.integers(1, 3))) if data.draw(st.booleans()) else (k,)
    assert matmul_macs(a_shape, b_shape) == _naive_matmul_count(a_shape, b_shape)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("_cudnn_rnn", True),
        ("mkldnn_rnn_layer", True),
        ("_scaled_mm", True),
        ("cudnn_convolution", True),
        ("_efficient_attention_forward", True),
        ("_cdist_forward", True),
        ("upsample_bilinear2d", False),
        ("mvlgamma", False),
        ("relu", False),
        ("_thnn_fused_lstm_cell", False),
        ("convolution_backward", True),  # has a backward formula (counting/backward.py)
        ("native_layer_norm_backward", False),
        ("add", False),
    ],
)
def test_coverage_names_matrix_work(name, expected):
    assert carries_matrix_work(name) is expected
