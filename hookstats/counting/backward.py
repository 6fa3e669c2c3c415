"""Backward MAC formulas: the gradient kernels of every op with a forward formula.

Most backward work runs as ordinary ops that the forward formulas already count: the backward
of ``addmm``/``mm``/``bmm``/``matmul`` (Linear, attention on the math path, the RNN cells that
meta runs) is two more ``mm``/``bmm`` calls, one per operand that needs a gradient -- so a
Linear whose input needs no gradient does 1x its forward MACs in backward, otherwise 2x. The
formulas here are for the fused gradient kernels, registered through
:func:`~hookstats.counting.formulas.register_mac_formula` like the built-ins:

* convolution (direct and transposed, every backend): the input gradient and the weight
  gradient each cost the forward's MACs, as ``output_mask`` asks for them;
* fused linear/matmul gradients (``linear_backward`` and the oneDNN ones): likewise, per mask;
* scaled dot-product attention (the CPU flash kernel, CUDA flash/efficient/cuDNN, the
  overrideable one): the five matrix products the kernels run -- ``Q K^T`` recomputed, then
  ``dO V^T``, ``P^T dO``, ``dS K`` and ``dS^T Q`` -- so ``batch * L * S * (3 E + 2 Ev)``, the
  convention of ``torch.utils.flop_counter``; on the math path the same gradient is four
  ``bmm`` calls (no recomputation) and is counted as such;
* fused RNNs (oneDNN per layer, cuDNN, MIOpen, MPS): the data gradient through every gate
  matrix (``tokens * sum(weight numel)``), plus the same again for the weight gradients --
  oneDNN always computes both, cuDNN/MIOpen the weights when ``output_mask[3]`` asks;
* the gate gradients of fused LSTM/GRU cells: elementwise, 0 MACs (the cells' matrix
  products are separate ``mm`` calls).

The cuDNN/MIOpen/MPS RNN forward kernels had no formula; they are registered here beside
their backward. :data:`MAC_FREE_BACKWARD_OPS` names the backward ops known to do no MAC work
(elementwise, norm, pooling, indexing and loss gradients), for an allowlist of MAC-free ops.

May import: torch and the :mod:`hookstats.counting` siblings.

    >>> conv_backward_macs((2, 8, 5, 5), (2, 3, 5, 5), (8, 3, 3, 3), False, [True, True, False])
    21600
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .formulas import (
    Shape,
    aten_ops,
    conv_macs,
    matmul_macs,
    register_mac_formula,
    rnn_macs,
)

__all__ = [
    "MAC_FREE_BACKWARD_OPS",
    "conv_backward_macs",
    "rnn_backward_macs",
    "sdpa_backward_macs",
]


def _prod(shape: Shape) -> int:
    return math.prod(int(s) for s in shape)


def _mask(mask: Sequence[bool] | None, index: int) -> bool:
    return bool(mask[index]) if mask is not None and len(mask) > index else True


# --- convolution ------------------------------------------------------------------------------


def conv_backward_macs(
    grad_out: Shape, x: Shape, w: Shape, transposed: bool, output_mask: Sequence[bool] | None
) -> int:
    """Convolution gradients: the input gradient (``output_mask[0]``) and the weight gradient
    (``output_mask[1]``) each do the forward's MACs; the bias gradient is a sum (0 MACs).

    >>> conv_backward_macs((2, 8, 5, 5), (2, 3, 5, 5), (8, 3, 3, 3), False, [False, True, True])
    10800
    """
    forward = conv_macs(x, w, grad_out, transposed=bool(transposed))
    return forward * (int(_mask(output_mask, 0)) + int(_mask(output_mask, 1)))


@register_mac_formula(*aten_ops("convolution_backward"))
def _convolution_backward(
    grad_out: Shape,
    x: Shape,
    w: Shape,
    bias_sizes: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    transposed: bool,
    output_padding: Any,
    groups: Any,
    output_mask: Sequence[bool],
    *_: Any,
    **__: Any,
) -> int:
    return conv_backward_macs(grad_out, x, w, transposed, output_mask)


@register_mac_formula(*aten_ops("convolution_backward_overrideable"))
def _convolution_backward_overrideable(
    grad_out: Shape,
    x: Shape,
    w: Shape,
    stride: Any,
    padding: Any,
    dilation: Any,
    transposed: bool,
    output_padding: Any,
    groups: Any,
    output_mask: Sequence[bool],
    *_: Any,
    **__: Any,
) -> int:
    return conv_backward_macs(grad_out, x, w, transposed, output_mask)


@register_mac_formula(*aten_ops("_slow_conv2d_backward"))
def _slow_conv2d_backward(
    grad_out: Shape,
    x: Shape,
    w: Shape,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    output_mask: Sequence[bool] | None = None,
    **__: Any,
) -> int:
    return conv_backward_macs(grad_out, x, w, False, output_mask or [True, True])


@register_mac_formula(*aten_ops("mps_convolution_backward"))
def _mps_convolution_backward(x: Shape, grad_out: Shape, w: Shape, *args: Any, **__: Any) -> int:
    return conv_backward_macs(grad_out, x, w, False, args[4] if len(args) > 4 else None)


@register_mac_formula(*aten_ops("mps_convolution_transpose_backward"))
def _mps_convolution_transpose_backward(
    x: Shape, grad_out: Shape, w: Shape, *args: Any, **__: Any
) -> int:
    # x is the transposed convolution's input; output_mask = [input, weight]
    return conv_backward_macs(grad_out, x, w, True, args[5] if len(args) > 5 else None)


@register_mac_formula(*aten_ops("conv_tbc_backward"))
def _conv_tbc_backward(grad_out: Shape, x: Shape, w: Shape, *_: Any, **__: Any) -> int:
    """``conv_tbc``: input ``(T, B, C_in)``, weight ``(K, C_in, C_out)``, output ``(T', B,
    C_out)``; forward ``T' * B * K * C_in * C_out``; input and weight gradients both."""
    return 2 * int(grad_out[0]) * int(grad_out[1]) * _prod(w)


@register_mac_formula(*aten_ops("_convolution_double_backward"))
def _convolution_double_backward(
    ggi: Shape | None,
    ggw: Shape | None,
    ggb: Any,
    grad_out: Shape,
    w: Shape,
    x: Shape,
    stride: Any,
    padding: Any,
    dilation: Any,
    transposed: bool,
    output_padding: Any,
    groups: Any,
    output_mask: Sequence[bool],
    *_: Any,
    **__: Any,
) -> int:
    """Double backward: ``ggO = conv(ggI, W) + conv(I, ggW)``, ``gW`` from ``ggI`` and ``gO``,
    ``gI`` from ``gO`` and ``ggW``: each product costs one forward convolution."""
    forward = conv_macs(x, w, grad_out, transposed=bool(transposed))
    has_ggi, has_ggw = ggi is not None, ggw is not None
    products = (
        _mask(output_mask, 0) * (has_ggi + has_ggw)
        + _mask(output_mask, 1) * has_ggi
        + _mask(output_mask, 2) * has_ggw
    )
    return forward * int(products)


# --- fused linear and matmul gradients --------------------------------------------------------


@register_mac_formula(*aten_ops("linear_backward", "mkldnn_linear_backward"))
def _linear_backward(
    x: Shape, grad_out: Shape, w: Shape, output_mask: Sequence[bool], *_: Any, **__: Any
) -> int:
    forward = _prod(x[:-1]) * _prod(w)
    return forward * (int(_mask(output_mask, 0)) + int(_mask(output_mask, 1)))


@register_mac_formula(*aten_ops("mkldnn_linear_backward_input"))
def _mkldnn_linear_backward_input(
    input_size: Sequence[int], grad_out: Shape, w: Shape, *_: Any, **__: Any
) -> int:
    return _prod(input_size[:-1]) * _prod(w)


@register_mac_formula(*aten_ops("mkldnn_linear_backward_weights"))
def _mkldnn_linear_backward_weights(grad_out: Shape, x: Shape, w: Shape, *_: Any, **__: Any) -> int:
    return _prod(x[:-1]) * _prod(w)


@register_mac_formula(*aten_ops("matmul_backward"))
def _matmul_backward(
    grad: Shape, a: Shape, b: Shape, mask: Sequence[bool], *_: Any, **__: Any
) -> int:
    """``grad_a = grad @ b^T`` and ``grad_b = a^T @ grad``: each the forward's MACs."""
    return matmul_macs(a, b) * (int(_mask(mask, 0)) + int(_mask(mask, 1)))


# --- attention --------------------------------------------------------------------------------


def sdpa_backward_macs(q: Shape, k: Shape, v: Shape) -> int:
    """Fused attention backward on ``(..., L, E)`` queries: ``Q K^T`` recomputed (``L S E``),
    ``dO V^T`` and ``P^T dO`` (``L S Ev`` each), ``dS K`` and ``dS^T Q`` (``L S E`` each).

    >>> sdpa_backward_macs((2, 4, 8, 16), (2, 4, 8, 16), (2, 4, 8, 16))  # 8*8*8*(48+32)
    40960
    """
    batch = _prod(q[:-2])
    seq_q, e = int(q[-2]), int(q[-1])
    seq_k, ev = int(k[-2]), int(v[-1])
    return batch * seq_q * seq_k * (3 * e + 2 * ev)


@register_mac_formula(
    *aten_ops(
        "_scaled_dot_product_flash_attention_for_cpu_backward",
        "_scaled_dot_product_flash_attention_backward",
        "_scaled_dot_product_efficient_attention_backward",
        "_scaled_dot_product_cudnn_attention_backward",
        "_scaled_dot_product_fused_attention_overrideable_backward",
        "_cudnn_attention_backward",
    )
)
def _sdpa_backward(grad_out: Shape, q: Shape, k: Shape, v: Shape, *_: Any, **__: Any) -> int:
    return sdpa_backward_macs(q, k, v)


def _bhle(shape: Shape) -> tuple[int, ...]:
    s = tuple(int(d) for d in shape)
    return (*s[:-3], s[-2], s[-3], s[-1])


@register_mac_formula(*aten_ops("_flash_attention_backward", "_efficient_attention_backward"))
def _sdpa_backward_blhe(grad_out: Shape, q: Shape, k: Shape, v: Shape, *_: Any, **__: Any) -> int:
    """The varlen kernels take ``(B, L, H, E)``: move heads before the sequence."""
    return sdpa_backward_macs(_bhle(q), _bhle(k), _bhle(v))


# --- recurrent networks -----------------------------------------------------------------------


def rnn_backward_macs(tokens: int, params: Sequence[Shape], *, weights: bool = True) -> int:
    """Fused RNN backward: the data gradient through every gate matrix (``tokens * sum of 2-D
    weight numel``, as in the forward), plus the same for the weight gradients.

    >>> rnn_backward_macs(10, [(16, 4), (16, 4), (16,)])  # 2 * 10 * (64 + 64)
    2560
    """
    return rnn_macs(tokens, params) * (2 if weights else 1)


def _rnn_tokens(x: Shape, batch_sizes: Any) -> int:
    """Tokens of a cuDNN/MIOpen RNN input: packed ``(sum_T, I)`` or padded ``(T, B, I)``."""
    return int(x[0]) if batch_sizes else _prod(x[:-1])


@register_mac_formula(*aten_ops("_cudnn_rnn"))
def _cudnn_rnn(x: Shape, weights: Sequence[Shape], *args: Any, **__: Any) -> int:
    """cuDNN RNN forward (every layer and direction); ``batch_sizes`` is ``args[12]``."""
    return rnn_macs(_rnn_tokens(x, args[12] if len(args) > 12 else None), weights)


@register_mac_formula(*aten_ops("miopen_rnn"))
def _miopen_rnn(x: Shape, weights: Sequence[Shape], *args: Any, **__: Any) -> int:
    return rnn_macs(_rnn_tokens(x, args[10] if len(args) > 10 else None), weights)


@register_mac_formula(*aten_ops("_lstm_mps"))
def _lstm_mps(x: Shape, hx: Any, params: Sequence[Shape], *_: Any, **__: Any) -> int:
    return rnn_macs(_prod(x[:-1]), params)


@register_mac_formula(*aten_ops("mkldnn_rnn_layer_backward"))
def _mkldnn_rnn_layer_backward(x: Shape, w_ih: Shape, w_hh: Shape, *_: Any, **__: Any) -> int:
    """oneDNN computes the input, hidden and weight gradients of one layer and direction."""
    return rnn_backward_macs(_prod(x[:-1]), [w_ih, w_hh])


@register_mac_formula(*aten_ops("_cudnn_rnn_backward"))
def _cudnn_rnn_backward(x: Shape, weights: Sequence[Shape], *args: Any, **__: Any) -> int:
    """``args``: stride0, weight_buf, hx, cx, output, grad_output, grad_hy, grad_cy, mode,
    hidden, proj, layers, batch_first, dropout, train, bidirectional, batch_sizes (index 16),
    dropout_state, reserve, output_mask (last)."""
    tokens = _rnn_tokens(x, args[16] if len(args) > 16 else None)
    return rnn_backward_macs(tokens, weights, weights=_mask(args[-1], 3))


@register_mac_formula(*aten_ops("miopen_rnn_backward"))
def _miopen_rnn_backward(x: Shape, weights: Sequence[Shape], *args: Any, **__: Any) -> int:
    tokens = _rnn_tokens(x, args[15] if len(args) > 15 else None)
    return rnn_backward_macs(tokens, weights, weights=_mask(args[-1], 3))


@register_mac_formula(*aten_ops("lstm_mps_backward"))
def _lstm_mps_backward(
    grad_y: Any, grad_hy: Any, grad_cy: Any, z: Any, cell: Any, x: Shape, layers: Any,
    hx: Any, params: Sequence[Shape], *_: Any, **__: Any,
) -> int:  # fmt: skip
    return rnn_backward_macs(_prod(x[:-1]), params)


@register_mac_formula(
    *aten_ops(
        "_thnn_fused_lstm_cell_backward",
        "_thnn_fused_lstm_cell_backward_impl",
        "_thnn_fused_gru_cell_backward",
        "_thnn_differentiable_lstm_cell_backward",
        "_thnn_differentiable_gru_cell_backward",
    )
)
def _cell_gate_gradients(*_: Any, **__: Any) -> int:
    """Gate gradients of a fused cell are elementwise; its matrix products are ``mm`` ops."""
    return 0


MAC_FREE_BACKWARD_OPS = frozenset(
    """
    _adaptive_avg_pool2d_backward _adaptive_avg_pool3d_backward _backward
    _batch_norm_impl_index_backward _ctc_loss_backward _embedding_bag_backward
    _embedding_bag_dense_backward _embedding_bag_per_sample_weights_backward
    _embedding_bag_sparse_backward _fake_quantize_learnable_per_channel_affine_backward
    _fake_quantize_learnable_per_tensor_affine_backward _fused_rms_norm_backward
    _gather_sparse_backward _grid_sampler_2d_cpu_fallback_backward _log_softmax_backward_data
    _masked_softmax_backward _nested_select_backward _nested_sum_backward
    _pack_padded_sequence_backward _prelu_kernel_backward _segment_reduce_backward
    _softmax_backward_data _sparse_log_softmax_backward_data _sparse_softmax_backward_data
    _sparse_sum_backward _upsample_bicubic2d_aa_backward _upsample_bilinear2d_aa_backward
    _upsample_lanczos2d_aa_backward _upsample_nearest_exact1d_backward
    _upsample_nearest_exact2d_backward _upsample_nearest_exact3d_backward
    _weight_norm_differentiable_backward _weight_norm_interface_backward
    adaptive_avg_pool3d_backward adaptive_max_pool2d_backward adaptive_max_pool3d_backward
    avg_pool2d_backward avg_pool3d_backward batch_norm_backward batch_norm_backward_elemt
    batch_norm_backward_reduce binary_cross_entropy_backward cudnn_batch_norm_backward
    cudnn_grid_sampler_backward cummaxmin_backward cumprod_backward diagonal_backward
    elu_backward embedding_backward embedding_dense_backward embedding_sparse_backward
    fake_quantize_per_channel_affine_cachemask_backward
    fake_quantize_per_tensor_affine_cachemask_backward fractional_max_pool2d_backward
    fractional_max_pool3d_backward gather_backward gelu_backward glu_backward glu_backward_jvp
    grid_sampler_2d_backward grid_sampler_3d_backward hardshrink_backward hardsigmoid_backward
    hardswish_backward hardtanh_backward huber_loss_backward index_select_backward
    infinitely_differentiable_gelu_backward leaky_relu_backward log_sigmoid_backward
    logit_backward masked_scatter_backward masked_select_backward max_pool2d_backward
    max_pool2d_with_indices_backward max_pool3d_with_indices_backward miopen_batch_norm_backward
    mish_backward mkldnn_adaptive_avg_pool2d_backward mkldnn_max_pool2d_backward
    mkldnn_max_pool3d_backward mse_loss_backward multi_margin_loss_backward
    multilabel_margin_loss_backward native_batch_norm_backward native_dropout_backward
    native_group_norm_backward native_layer_norm_backward nll_loss2d_backward nll_loss_backward
    reflection_pad1d_backward reflection_pad2d_backward reflection_pad3d_backward
    replication_pad1d_backward replication_pad2d_backward replication_pad3d_backward
    rrelu_with_noise_backward select_backward sigmoid_backward silu_backward slice_backward
    smooth_l1_loss_backward soft_margin_loss_backward softplus_backward softshrink_backward
    tanh_backward threshold_backward to_dense_backward to_mkldnn_backward trace_backward
    unfold_backward upsample_bicubic2d_backward upsample_bilinear2d_backward
    upsample_linear1d_backward upsample_nearest1d_backward upsample_nearest2d_backward
    upsample_nearest3d_backward upsample_trilinear3d_backward value_selecting_reduction_backward
    """.split()  # noqa: SIM905 (a word list reads better than 120 quoted strings)
)
"""Backward aten ops (packet names) that do no multiply-accumulate work: elementwise, norm,
pooling, padding, indexing and loss gradients. Backward ops with matrix work but no formula in
either direction (``_cdist_backward``, ``_pdist_backward``, ``matrix_exp_backward``,
``affine_grid_generator_backward``, ``_sparse_mm_reduce_impl_backward``) are *not* listed:
they are reported as uncounted, like their forwards."""
