"""Backward MAC formulas (hookstats/counting/backward.py): pure functions of shapes, pinned by
hand arithmetic, and the completeness of the backward ops: every aten op whose name says
"backward" has a formula, is known MAC-free, or is one of the few uncounted in both directions."""

from __future__ import annotations

import torch

from hookstats.counting import (
    MAC_FREE_BACKWARD_OPS,
    carries_matrix_work,
    conv_backward_macs,
    formula_for,
    rnn_backward_macs,
    sdpa_backward_macs,
)

aten = torch.ops.aten

# matrix work in both directions and a formula in neither (reported as uncounted)
UNCOUNTED_BOTH_WAYS = {
    "_cdist_backward",
    "_pdist_backward",
    "matrix_exp_backward",
    "affine_grid_generator_backward",
    "cudnn_affine_grid_generator_backward",
    "_sparse_mm_reduce_impl_backward",
}


def macs(op, *args, out_shape=None):
    return formula_for(op)(*args, out_shape=out_shape)


def test_conv_backward_masks():
    forward = 2 * 5 * 5 * 8 * 3 * 3 * 3  # N * out spatial * C_out * C_in * k * k = 10_800
    args = ((2, 8, 5, 5), (2, 3, 5, 5), (8, 3, 3, 3), False)
    assert conv_backward_macs(*args, [True, True, True]) == 2 * forward
    assert conv_backward_macs(*args, [False, True, True]) == forward  # weight gradient only
    assert conv_backward_macs(*args, [True, False, False]) == forward  # input gradient only
    assert conv_backward_macs(*args, [False, False, True]) == 0  # bias: a sum
    op = aten.convolution_backward.default
    full = macs(op, *args[:3], [8], [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [True, True, False])
    assert full == 2 * forward


def test_conv_transpose_backward_counts_input_positions():
    # ConvTranspose2d(8, 4, 4, stride 2): x (2, 8, 5, 5), weight (8, 4, 4, 4), out (2, 4, 10, 10)
    forward = 2 * 5 * 5 * 8 * 4 * 4 * 4  # 25_600
    grads = conv_backward_macs((2, 4, 10, 10), (2, 8, 5, 5), (8, 4, 4, 4), True, [True, True])
    assert grads == 2 * forward


def test_linear_and_matmul_backward():
    op = aten.linear_backward.default
    # x (6, 8), weight (4, 8): forward 6 * 8 * 4 = 192 per gradient asked for
    assert macs(op, (6, 8), (6, 4), (4, 8), [True, True, True]) == 384
    assert macs(op, (6, 8), (6, 4), (4, 8), [False, True, True]) == 192
    assert macs(aten.matmul_backward.default, (2, 3, 5), (2, 3, 4), (4, 5), [True, False]) == 120


def test_sdpa_backward_five_products():
    # QK^T recomputed (L S E), dO V^T and P^T dO (L S Ev each), dS K and dS^T Q (L S E each)
    q, k, v = (2, 4, 8, 16), (2, 4, 6, 16), (2, 4, 6, 32)
    assert sdpa_backward_macs(q, k, v) == 2 * 4 * 8 * 6 * (3 * 16 + 2 * 32) == 43_008
    cpu = aten._scaled_dot_product_flash_attention_for_cpu_backward.default
    assert macs(cpu, (2, 4, 8, 32), q, k, v) == 43_008
    # the varlen kernels take (B, L, H, E)
    blhe = [(2, 8, 4, 16), (2, 6, 4, 16), (2, 6, 4, 32)]
    assert macs(aten._flash_attention_backward.default, (2, 8, 4, 32), *blhe) == 43_008


def test_rnn_backward():
    # one layer: w_ih (64, 10), w_hh (64, 16); 12 tokens: data and weight gradients
    assert rnn_backward_macs(12, [(64, 10), (64, 16), (64,)]) == 2 * 12 * (640 + 1024)
    layer = aten.mkldnn_rnn_layer_backward.default
    assert macs(layer, (4, 3, 10), (64, 10), (64, 16)) == 2 * 12 * (640 + 1024)
    cudnn = aten._cudnn_rnn_backward.default
    args = [0, None, None, None, None, None, None, None, 2, 16, 0, 1, False, 0.0, True, False, []]
    both = [True, True, True, True]
    weights = [(64, 10), (64, 16), (64,), (64,)]
    assert macs(cudnn, (4, 3, 10), weights, *args, None, None, both) == 2 * 12 * 1664
    no_weights = [True, True, True, False]
    assert macs(cudnn, (4, 3, 10), weights, *args, None, None, no_weights) == 12 * 1664
    packed = [*args[:-1], [3, 3, 2]]  # batch_sizes given: the input is (sum_T, I)
    assert macs(cudnn, (8, 10), weights, *packed, None, None, both) == 2 * 8 * 1664
    forward = aten._cudnn_rnn.default
    assert macs(forward, (4, 3, 10), weights, 0, None, None, None, 2, 16, 0, 1, False,
                0.0, True, False, []) == 12 * 1664  # fmt: skip


def test_fused_cell_gate_gradients_are_mac_free():
    assert macs(aten._thnn_fused_lstm_cell_backward_impl.default, None, None, (2, 4)) == 0


def all_backward_op_names() -> set[str]:
    return {
        name.split("::")[1].split(".")[0]
        for name in torch._C._dispatch_get_all_op_names()
        if name.startswith("aten::") and "backward" in name
    }


def test_every_backward_op_has_a_formula_or_is_known_mac_free():
    unknown = []
    for name in sorted(all_backward_op_names()):
        op = getattr(aten, name, None)
        if op is None or name in MAC_FREE_BACKWARD_OPS or name in UNCOUNTED_BOTH_WAYS:
            continue
        if formula_for(next(iter(getattr(op, o) for o in op.overloads()))) is None:
            unknown.append(name)
    assert not unknown, f"backward ops neither counted nor known MAC-free: {unknown}"


def test_mac_free_backward_ops_carry_no_matrix_work_by_name():
    assert not [name for name in MAC_FREE_BACKWARD_OPS if carries_matrix_work(name)]
    assert all_backward_op_names() >= MAC_FREE_BACKWARD_OPS
