"""Which ops do no multiply-accumulate work: the allowlist that keeps every other op honest.

The rule: an op **with a MAC formula** is counted; an op **on the allowlist** (elementwise,
views, reductions, norms, softmax, creation, copies, indexing, pooling, losses... -- work that
is not a MAC by the convention in :mod:`hookstats.counting.formulas`) counts 0; a
``CompositeImplicitAutograd`` op without a formula is **decomposed** by the counter, so that its
parts are counted (this is how ``einsum`` and ``bilinear`` reach ``bmm`` and ``_trilinear``
under ``torch.inference_mode()``, where composites arrive undecomposed); **every other op** is
listed in ``uncounted_ops``, never a silent 0. An op that reads tensor values into Python
(``.item()``, ``bool(t)``, ``nonzero``, boolean-mask indexing) is flagged as a *value read*:
control flow after it may depend on the data.

The allowlist is built from PyTorch's own op tags (``pointwise``, ``reduction``, views), from
the names below (the op's packet name, without namespace or overload) and, for gradient
kernels, from :data:`~hookstats.counting.backward.MAC_FREE_BACKWARD_OPS`: a backward op with
matrix work and no formula is reported as uncounted like any other op.

    >>> carries_matrix_work("_cdist_forward"), carries_matrix_work("upsample_bilinear2d")
    (True, False)

May import: torch and the :mod:`hookstats.counting` siblings.
"""

from __future__ import annotations

import enum
from typing import Any

import torch

from .backward import MAC_FREE_BACKWARD_OPS

__all__ = ["OpKind", "carries_matrix_work", "classify_op", "is_no_mac_name"]


class OpKind(enum.Enum):
    """How the MAC counter treats one op overload."""

    COUNTED = "counted"  # it has a formula
    NO_MACS = "no macs"  # on the allowlist
    DECOMPOSE = "decompose"  # a composite without a formula: count its parts
    READS_VALUES = "reads values"  # no MACs, but Python sees tensor values (control flow)
    UNCOUNTED = "uncounted"  # work we cannot count: listed in uncounted_ops


_NO_MAC_NAMES = frozenset(
    """
    alias detach lift lift_fresh lift_fresh_copy clone contiguous copy copy_ _copy_from
    _copy_from_and_resize _to_copy to _to_dense to_dense to_sparse _coalesce coalesce _indices
    _values set_ resize_ resize_as_ _resize_output_ record_stream pin_memory _pin_memory view
    view_as reshape _reshape_alias _unsafe_view expand expand_as permute transpose t squeeze
    unsqueeze flatten unflatten movedim moveaxis as_strided as_strided_ narrow select slice
    slice_scatter select_scatter diagonal_scatter as_strided_scatter split split_with_sizes
    tensor_split chunk unbind unsafe_split unsafe_chunk unsafe_split_with_sizes _chunk_cat cat
    concat concatenate stack hstack vstack dstack repeat tile roll flip fliplr flipud rot90 tril
    triu diag diagonal diag_embed real imag conj _conj resolve_conj resolve_neg _neg_view
    view_as_real view_as_complex polar complex empty empty_like empty_strided new_empty
    new_empty_strided zeros zeros_like new_zeros ones ones_like new_ones full full_like new_full
    arange linspace logspace eye scalar_tensor tensor _efficientzerotensor zero_ fill fill_ rand
    rand_like randn randn_like randint randint_like randperm bernoulli bernoulli_ normal normal_
    uniform_ exponential_ geometric_ cauchy_ log_normal_ multinomial poisson _standard_gamma
    _sample_dirichlet native_dropout dropout feature_dropout alpha_dropout feature_alpha_dropout
    sum mean nansum nanmean prod amax amin max min aminmax argmax argmin var std var_mean
    std_mean norm linalg_vector_norm frobenius_norm logsumexp cumsum cumprod cummax cummin
    logcumsumexp _logcumsumexp any all count_nonzero median nanmedian mode quantile nanquantile
    sort argsort msort topk kthvalue bucketize searchsorted histc histogram
    _histogramdd_from_bin_cts _softmax softmax _log_softmax log_softmax _safe_softmax
    _masked_softmax native_layer_norm layer_norm native_group_norm group_norm native_batch_norm
    batch_norm _native_batch_norm_legit _native_batch_norm_legit_no_training
    _native_batch_norm_legit_functional _batch_norm_impl_index _batch_norm_with_update
    _batch_norm_no_update cudnn_batch_norm miopen_batch_norm instance_norm rms_norm
    _fused_rms_norm local_response_norm _weight_norm _weight_norm_interface renorm embedding
    _embedding_bag embedding_bag _embedding_bag_forward_only embedding_renorm_ one_hot index
    index_select gather scatter scatter_add scatter_reduce index_add index_copy index_fill
    index_put index_put_ _index_put_impl_ _unsafe_index _unsafe_index_put index_reduce
    masked_fill masked_scatter masked_select take take_along_dim put where nonzero
    nonzero_static argwhere unique _unique _unique2 unique_consecutive unique_dim bincount
    repeat_interleave constant_pad_nd pad _pad_enum _pad_circular pixel_shuffle pixel_unshuffle
    channel_shuffle native_channel_shuffle im2col col2im grid_sampler grid_sampler_2d
    grid_sampler_3d affine_grid_generator item _local_scalar_dense equal allclose isclose
    is_nonzero is_same_size mse_loss l1_loss smooth_l1_loss huber_loss nll_loss nll_loss_forward
    nll_loss2d_forward nll_loss_nd cross_entropy_loss binary_cross_entropy
    binary_cross_entropy_with_logits kl_div soft_margin_loss multilabel_margin_loss_forward
    multi_margin_loss margin_ranking_loss hinge_embedding_loss poisson_nll_loss ctc_loss
    _ctc_loss triplet_margin_loss cross addr outer ger dequantize quantize_per_tensor
    quantize_per_channel quantize_per_tensor_dynamic _make_per_tensor_quantized_tensor
    _make_per_channel_quantized_tensor q_scale q_zero_point q_per_channel_scales
    q_per_channel_zero_points int_repr choose_qparams _choose_qparams_per_tensor relu relu6
    leaky_relu hardswish hardsigmoid elu gelu silu mish glu _prelu_kernel prelu sigmoid tanh
    threshold clamp clamp_min clamp_max batch_norm2d batch_norm3d add mul add_relu mul_relu
    add_scalar mul_scalar embedding_byte embedding_4bit embedding_bag_byte_rowwise_offsets
    embedding_bag_4bit_rowwise_offsets _fused_sdp_choice _assert_async _assert_scalar
    _functional_assert_async _functional_assert_scalar _assert_tensor_metadata
    sym_constrain_range sym_constrain_range_for_size _functional_sym_constrain_range
    _make_dep_token _print _propagate_xla_data _nested_tensor_from_mask
    _jagged_to_padded_dense_forward _padded_dense_to_jagged_forward _segment_reduce
    segment_reduce _pack_padded_sequence _pad_packed_sequence _thnn_fused_lstm_cell
    _thnn_fused_gru_cell _use_cudnn_rnn_flatten_weight _cudnn_rnn_flatten_weight
    _convert_weight_to_int4pack _convert_weight_to_int4pack_for_cpu
    _convert_indices_from_coo_to_csr _convert_indices_from_csr_to_coo
    _transform_bias_rescale_qkv isin isfinite isnan isinf isposinf isneginf isreal eq ne lt le
    gt ge logical_and logical_or logical_xor logical_not bitwise_and bitwise_or bitwise_xor
    bitwise_not bitwise_left_shift bitwise_right_shift __and__ __or__ __xor__ __lshift__
    __rshift__ __ilshift__ __irshift__ __iand__ __ior__ __ixor__ floor_divide div true_divide
    remainder fmod sub rsub neg abs sign sgn round floor ceil trunc frac sqrt rsqrt exp exp2
    expm1 log log2 log10 log1p pow sin cos tan asin acos atan atan2 sinh cosh tanh asinh acosh
    atanh erf erfc erfinv lgamma digamma angle copysign heaviside frexp ldexp gcd lcm xlogy
    softplus softshrink hardshrink celu selu rrelu rrelu_with_noise rrelu_with_noise_functional
    log_sigmoid_forward _add_relu _batch_norm_with_update_functional dist trace linalg_cross
    size stride dense_dim sparse_dim is_coalesced is_pinned is_non_overlapping_and_dense
    is_strides_like_format is_contiguous numel dim _philox_key_fold_in _philox_key_split
    _philox_normal _philox_uniform _fused_dropout _masked_scale resize resize_as zero
    empty_permuted hann_window hamming_window bartlett_window blackman_window kaiser_window
    tril_indices triu_indices block_diag _list_to_tensor _reshape_copy _unsafe_masked_index
    _unsafe_masked_index_put_accumulate _spdiags _sparse_coo_tensor_with_dims_and_tensors
    _functional_sym_constrain_range_for_size sparse_coo_tensor _sparse_csr_tensor_unsafe uniform
    exponential geometric cauchy log_normal set _resize_output unfold
    _dyn_quant_pack_4bit_weight
    """.split()  # noqa: SIM905
)
_NO_MAC_PREFIXES = (
    "_foreach_",
    "_fused_adam",
    "_fused_sgd",
    "_amp_",
    "upsample_",
    "_upsample_",
    "max_pool",
    "avg_pool",
    "adaptive_",
    "_adaptive_",
    "fractional_max_pool",
    "max_unpool",
    "mkldnn_max_pool",
    "reflection_pad",
    "replication_pad",
    "fake_quantize",
    "_fake_quantize",
    "fused_moving_avg",
    "_fused_moving_avg",
    "_nested_",
    "sym_",
)
_NO_MAC_NAMESPACES = frozenset({"prim"})
_VALUE_TAGS = (torch.Tag.data_dependent_output, torch.Tag.dynamic_output_shape)
_NO_MAC_TAGS = (torch.Tag.pointwise, torch.Tag.reduction)


def is_no_mac_name(op_name: str) -> bool:
    """True when the op named ``op_name`` (``"aten::relu"``, ``"relu.default"`` or ``"relu"``)
    is on the name allowlist of ops that do no MAC work (gradient kernels: the ones in
    ``MAC_FREE_BACKWARD_OPS``)."""
    namespace, _, rest = op_name.rpartition("::")
    if namespace in _NO_MAC_NAMESPACES:
        return True
    name = rest.split(".")[0]
    base = name[:-1] if name.endswith("_") and not name.endswith("__") else name
    return (
        base in _NO_MAC_NAMES
        or (base.endswith("_copy") and base[: -len("_copy")] in _NO_MAC_NAMES)
        or name in MAC_FREE_BACKWARD_OPS
        or name.startswith(_NO_MAC_PREFIXES)
    )


def _packet_tagged(func: Any) -> bool:
    """True when any overload of the op's packet is tagged elementwise or reduction (the tags
    sit on some overloads only: ``cos.default`` has them, ``cos.out`` not)."""
    packet = getattr(func, "overloadpacket", None)
    if packet is None:
        return False
    cached = _PACKET_TAGGED.get(packet)
    if cached is None:
        cached = _PACKET_TAGGED[packet] = any(
            any(tag in getattr(packet, name).tags for tag in _NO_MAC_TAGS)
            for name in packet.overloads()
        )
    return cached


_PACKET_TAGGED: dict[Any, bool] = {}


def _is_composite(func: Any) -> bool:
    try:
        return bool(
            torch._C._dispatch_has_kernel_for_dispatch_key(func.name(), "CompositeImplicitAutograd")
        )
    except (AttributeError, RuntimeError):
        return False


def classify_op(func: Any, has_formula: bool) -> OpKind:
    """How the counter treats the op overload ``func`` (see the module docstring)."""
    if has_formula:
        return OpKind.COUNTED
    tags = getattr(func, "tags", ())
    if any(tag in tags for tag in _VALUE_TAGS):
        return OpKind.READS_VALUES
    namespace = getattr(func, "namespace", "aten")
    name = f"{namespace}::{func.overloadpacket.__name__}"
    if is_no_mac_name(name) or getattr(func, "is_view", False) or _packet_tagged(func):
        return OpKind.NO_MACS
    if _is_composite(func):
        return OpKind.DECOMPOSE
    return OpKind.UNCOUNTED


def carries_matrix_work(op_name: str) -> bool:
    """True when the op named ``op_name`` (packet name, e.g. ``"_cudnn_rnn"``) may do MAC work:
    it is neither on the allowlist nor tagged elementwise or reduction by PyTorch."""
    name = op_name.split("::")[-1].split(".")[0]
    if is_no_mac_name(name):
        return False
    packet = getattr(torch.ops.aten, name, None)
    if packet is None or not packet.overloads():
        return True
    return not _packet_tagged(getattr(packet, packet.overloads()[0]))
