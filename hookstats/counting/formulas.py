"""MAC formulas: pure functions from operand shapes to multiply-accumulate counts.

Convention, stated once: **one MAC is one multiply-accumulate of convolution or matrix work**.
Bias adds, norms, softmax and elementwise ops are not MACs.

Every formula takes the op's positional arguments with each tensor replaced by its shape (a
tuple of ints) and lists of tensors by lists of shapes; other arguments pass through unchanged.
The keyword ``out_shape`` carries the shape of the op's (first) output. Formulas never see a
tensor, so they are testable with plain tuples::

    >>> mm_macs((4, 8), (8, 5))
    160

The registry maps aten ops (an ``OpOverloadPacket`` such as ``aten.mm`` or one overload such as
``aten.lstm.input``) to formulas; :func:`register_mac_formula` is the one way in, used by the
built-ins below and by users alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..errors import FormulaError

aten = torch.ops.aten

Shape = Sequence[int]
MacFormula = Callable[..., int]

_FORMULAS: dict[Any, MacFormula] = {}

__all__ = [
    "aten_ops",
    "conv_macs",
    "formula_for",
    "matmul_macs",
    "mm_macs",
    "register_mac_formula",
    "registered_ops",
    "rnn_macs",
    "sdpa_macs",
    "trilinear_macs",
]


_LISTENERS: list[Callable[[], None]] = []


def on_registration(listener: Callable[[], None]) -> None:
    """Call ``listener`` whenever a formula is registered (the counter drops its op routes)."""
    _LISTENERS.append(listener)


def register_mac_formula(*ops: Any, replace: bool = False) -> Callable[[MacFormula], MacFormula]:
    """Register ``formula`` for each aten op packet or overload in ``ops``.

    An op has one formula: registering a second one raises :class:`FormulaError` unless
    ``replace=True`` says that it is meant to override (a built-in, say). The metric registry
    follows the same policy.

    Raises:
        FormulaError: an op already has a formula and ``replace`` is False, or an entry of
            ``ops`` is not an aten op.

    Example:
        >>> @register_mac_formula(torch.ops.aten._int_mm, replace=True)
        ... def int_mm_macs(a, b, *_, **__):
        ...     return a[0] * a[1] * b[1]
    """
    for op in ops:
        if not isinstance(op, torch._ops.OpOverloadPacket | torch._ops.OpOverload):
            raise FormulaError(
                f"register_mac_formula takes torch ops (torch.ops.aten.mm, one overload such "
                f"as torch.ops.aten.lstm.input, or another namespace's op such as "
                f"torch.ops.quantized.linear), got {op!r}."
            )
        if op in _FORMULAS and not replace:
            existing = _FORMULAS[op]
            raise FormulaError(
                f"{op} already has a MAC formula ({existing.__module__}."
                f"{existing.__qualname__}). Pass replace=True to override it."
            )

    def decorator(formula: MacFormula) -> MacFormula:
        for op in ops:
            _FORMULAS[op] = formula
        for listener in _LISTENERS:
            listener()
        return formula

    return decorator


def formula_for(func: Any) -> MacFormula | None:
    """The formula for an ``OpOverload``: its own entry first, then its packet's."""
    found = _FORMULAS.get(func)
    if found is None:
        packet = getattr(func, "overloadpacket", None)
        found = _FORMULAS.get(packet) if packet is not None else None
    return found


def registered_ops() -> list[str]:
    """Names of every op with a formula, sorted."""
    return sorted(str(op) for op in _FORMULAS)


def aten_ops(*names: str) -> list[Any]:
    """Resolve ``"mm"`` or ``"lstm.input"`` to aten ops, skipping ops this torch lacks."""
    found = []
    for name in names:
        packet_name, _, overload = name.partition(".")
        op = getattr(aten, packet_name, None)
        if op is not None and overload:
            op = getattr(op, overload, None)
        if op is not None:
            found.append(op)
    return found


def _prod(shape: Shape) -> int:
    return math.prod(int(s) for s in shape)


# --- matrix products --------------------------------------------------------------------------


def mm_macs(a: Shape, b: Shape, *_: Any, **__: Any) -> int:
    """(m, k) @ (k, n): m * k * n."""
    return int(a[0]) * int(a[1]) * int(b[1])


def matmul_macs(a: Shape, b: Shape) -> int:
    """``torch.matmul`` semantics: 1-D operands, broadcast batch dimensions.

    >>> matmul_macs((2, 1, 4, 8), (3, 8, 5))  # batch (2, 3) * 4 * 8 * 5
    960
    """
    left = tuple(int(s) for s in a)
    right = tuple(int(s) for s in b)
    if len(left) == 1 and len(right) == 1:
        return left[0]
    if len(left) == 1:
        left = (1, left[0])
    if len(right) == 1:
        right = (right[0], 1)
    batch = torch.broadcast_shapes(torch.Size(left[:-2]), torch.Size(right[:-2]))  # type: ignore[no-untyped-call]
    return _prod(batch) * left[-2] * left[-1] * right[-1]


@register_mac_formula(*aten_ops("mm", "_int_mm"))
def _mm(a: Shape, b: Shape, *_: Any, **__: Any) -> int:
    return mm_macs(a, b)


@register_mac_formula(*aten_ops("_scaled_mm", "_scaled_mm_v2"))
def _scaled_mm(a: Shape, b: Shape, *_: Any, **__: Any) -> int:
    return mm_macs(a, b)


@register_mac_formula(*aten_ops("addmm", "addmm_", "_addmm_activation"))
def _addmm(bias: Shape, a: Shape, b: Shape, *_: Any, **__: Any) -> int:
    return mm_macs(a, b)


@register_mac_formula(*aten_ops("bmm"))
def _bmm(a: Shape, b: Shape, *_: Any, **__: Any) -> int:
    return int(a[0]) * int(a[1]) * int(a[2]) * int(b[2])


@register_mac_formula(*aten_ops("baddbmm", "baddbmm_", "addbmm", "addbmm_"))
def _baddbmm(bias: Shape, a: Shape, b: Shape, *_: Any, **__: Any) -> int:
    return _bmm(a, b)


@register_mac_formula(*aten_ops("matmul"))
def _matmul(a: Shape, b: Shape, *_: Any, **__: Any) -> int:
    return matmul_macs(a, b)


@register_mac_formula(*aten_ops("mv"))
def _mv(a: Shape, v: Shape, *_: Any, **__: Any) -> int:
    return int(a[0]) * int(a[1])


@register_mac_formula(*aten_ops("addmv", "addmv_"))
def _addmv(bias: Shape, a: Shape, v: Shape, *_: Any, **__: Any) -> int:
    return int(a[0]) * int(a[1])


@register_mac_formula(*aten_ops("dot", "vdot"))
def _dot(a: Shape, b: Shape, *_: Any, **__: Any) -> int:
    return int(a[0])


@register_mac_formula(*aten_ops("linear"))
def _linear(x: Shape, w: Shape, *_: Any, **__: Any) -> int:
    return _prod(x[:-1]) * _prod(w)


@register_mac_formula(*aten_ops("_weight_int8pack_mm"))
def _int8pack_mm(x: Shape, w: Shape, *_: Any, **__: Any) -> int:
    return _prod(x[:-1]) * int(w[0]) * int(x[-1])


# --- convolution ------------------------------------------------------------------------------


def conv_macs(x: Shape, w: Shape, out: Shape, transposed: bool = False) -> int:
    """Convolution of any dimensionality, groups included (they live in the weight's shape).

    Direct: every output position multiplies every weight element of its group,
    ``N * prod(out_spatial) * C_out * C_in/groups * prod(kernel)`` = ``N * prod(out[2:]) *
    w.numel()``. Transposed: every *input* position is scattered through the kernel,
    ``N * prod(in_spatial) * w.numel()`` (weight is ``(C_in, C_out/groups, *kernel)``).

    >>> conv_macs((32, 1, 28, 28), (16, 1, 3, 3), (32, 16, 28, 28))  # 32*28*28*16*1*3*3
    3612672
    """
    if transposed:
        return int(x[0]) * _prod(x[2:]) * _prod(w)
    return int(out[0]) * _prod(out[2:]) * _prod(w)


@register_mac_formula(*aten_ops("convolution", "_convolution", "convolution_overrideable"))
def _convolution(
    x: Shape,
    w: Shape,
    bias: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    transposed: bool,
    *_: Any,
    out_shape: Shape,
    **__: Any,
) -> int:
    return conv_macs(x, w, out_shape, transposed=bool(transposed))


@register_mac_formula(
    *aten_ops(
        "mkldnn_convolution",
        "cudnn_convolution",
        "_slow_conv2d_forward",
        "thnn_conv2d",
        "slow_conv3d_forward",
        "_conv_depthwise2d",
        "conv_depthwise3d",
        "slow_conv_dilated2d",
        "slow_conv_dilated3d",
        # composites, which reach the counter undecomposed under torch.inference_mode()
        "conv1d",
        "conv2d",
        "conv3d",
        "_convolution_mode",
    )
)
def _direct_convolution(x: Shape, w: Shape, *_: Any, out_shape: Shape, **__: Any) -> int:
    return conv_macs(x, w, out_shape, transposed=False)


@register_mac_formula(
    *aten_ops(
        "cudnn_convolution_transpose",
        "slow_conv_transpose2d",
        "slow_conv_transpose3d",
        "conv_transpose1d",
        "conv_transpose2d",
        "conv_transpose3d",
    )
)
def _transposed_convolution(x: Shape, w: Shape, *_: Any, out_shape: Shape, **__: Any) -> int:
    return conv_macs(x, w, out_shape, transposed=True)


@register_mac_formula(*aten_ops("conv_tbc"))
def _conv_tbc(x: Shape, w: Shape, *_: Any, out_shape: Shape, **__: Any) -> int:
    """Time-batch-channel convolution: weight ``(K, C_in, C_out)``, output ``(T', B, C_out)``."""
    return int(out_shape[0]) * int(out_shape[1]) * _prod(w)


def trilinear_macs(shapes: Sequence[Shape], expands: Sequence[Sequence[int]]) -> int:
    """``aten._trilinear`` (``nn.Bilinear``): one MAC per element of the broadcast product of
    the three operands, each unsqueezed at its ``expand`` dimensions.

    >>> trilinear_macs([(2, 3), (5, 3, 4), (2, 4)], [(1, 3), (0,), (1, 2)])  # 2*5*3*4
    120
    """
    padded = []
    for shape, expand in zip(shapes, expands, strict=True):
        dims = [int(s) for s in shape]
        for position in sorted(int(e) for e in expand):
            dims.insert(position, 1)
        padded.append(torch.Size(dims))
    return _prod(torch.broadcast_shapes(*padded))  # type: ignore[no-untyped-call]


@register_mac_formula(*aten_ops("_trilinear"))
def _trilinear(
    i1: Shape, i2: Shape, i3: Shape, e1: Any, e2: Any, e3: Any, *_: Any, **__: Any
) -> int:
    return trilinear_macs([i1, i2, i3], [e1, e2, e3])


# --- attention --------------------------------------------------------------------------------


def sdpa_macs(q: Shape, k: Shape, v: Shape) -> int:
    """Scaled dot-product attention on ``(..., L, E)`` queries: ``Q K^T`` plus ``P V``.

    ``batch * L * S * E + batch * L * S * Ev`` where batch is every leading dimension of the
    query (heads included, so grouped-query attention counts every query head).
    """
    batch = _prod(q[:-2])
    seq_q, e = int(q[-2]), int(q[-1])
    seq_k, ev = int(k[-2]), int(v[-1])
    return batch * seq_q * seq_k * (e + ev)


@register_mac_formula(
    *aten_ops(
        "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_cudnn_attention",
        "_scaled_dot_product_fused_attention_overrideable",
        "_scaled_dot_product_attention_math",
        "_scaled_dot_product_attention_math_for_mps",
        "scaled_dot_product_attention",
    )
)
def _sdpa(q: Shape, k: Shape, v: Shape, *_: Any, **__: Any) -> int:
    return sdpa_macs(q, k, v)


@register_mac_formula(
    *aten_ops(
        "_flash_attention_forward",
        "_flash_attention_forward_no_dropout_inplace",
        "_efficient_attention_forward",
    )
)
def _sdpa_blhe(q: Shape, k: Shape, v: Shape, *_: Any, **__: Any) -> int:
    """The varlen kernels take ``(B, L, H, E)``: move heads before the sequence."""

    def bhle(s: Shape) -> tuple[int, ...]:
        s = tuple(s)
        return (*s[:-3], s[-2], s[-3], s[-1])

    return sdpa_macs(bhle(q), bhle(k), bhle(v))


def _attention_block_macs(q: Shape, k: Shape, v: Shape, embed_dim: int) -> int:
    """In-projections, both attention matmuls over all heads, and the out-projection."""
    tokens_q, tokens_k, tokens_v = _prod(q[:-1]), _prod(k[:-1]), _prod(v[:-1])
    batch = _prod(q[:-2])
    seq_q, seq_k = int(q[-2]), int(k[-2])
    projections = embed_dim * embed_dim * (tokens_q + tokens_k + tokens_v + tokens_q)
    return projections + 2 * batch * seq_q * seq_k * embed_dim


@register_mac_formula(*aten_ops("_native_multi_head_attention"))
def _native_mha(q: Shape, k: Shape, v: Shape, embed_dim: int, *_: Any, **__: Any) -> int:
    """The ``nn.MultiheadAttention`` fast path (eval + no_grad)."""
    return _attention_block_macs(q, k, v, int(embed_dim))


@register_mac_formula(*aten_ops("_transformer_encoder_layer_fwd"))
def _encoder_layer(src: Shape, embed_dim: int, num_heads: int, *args: Any, **__: Any) -> int:
    """The ``nn.TransformerEncoderLayer`` fast path: self-attention plus the two FFN linears."""
    ffn_weight_1 = args[11]  # after qkv w/b, proj w/b, use_gelu, norm_first, eps, 4 norm params
    tokens = _prod(src[:-1])
    ffn = 2 * tokens * int(embed_dim) * int(ffn_weight_1[0])
    return _attention_block_macs(src, src, src, int(embed_dim)) + ffn


# --- recurrent networks -----------------------------------------------------------------------


def rnn_macs(tokens: int, params: Sequence[Shape]) -> int:
    """Fused RNN/LSTM/GRU: every token passes every gate matrix of every layer and direction.

    ``tokens * sum(numel of each 2-D weight)``: input-hidden ``(G*H, I)``, hidden-hidden
    ``(G*H, P)`` and, for LSTMs with ``proj_size``, the projection ``(P, H)``.
    """
    return int(tokens) * sum(_prod(p) for p in params if len(p) == 2)


@register_mac_formula(*aten_ops("lstm.input", "gru.input", "rnn_tanh.input", "rnn_relu.input"))
def _rnn_input(x: Shape, hx: Any, params: Sequence[Shape], *_: Any, **__: Any) -> int:
    return rnn_macs(_prod(x[:-1]), params)


@register_mac_formula(*aten_ops("lstm.data", "gru.data", "rnn_tanh.data", "rnn_relu.data"))
def _rnn_packed(
    data: Shape, batch_sizes: Shape, hx: Any, params: Sequence[Shape], *_: Any, **__: Any
) -> int:
    return rnn_macs(int(data[0]), params)


@register_mac_formula(*aten_ops("mkldnn_rnn_layer"))
def _mkldnn_rnn_layer(x: Shape, w_ih: Shape, w_hh: Shape, *_: Any, **__: Any) -> int:
    """One layer and direction of the oneDNN LSTM that CPU ``nn.LSTM`` runs."""
    return rnn_macs(_prod(x[:-1]), [w_ih, w_hh])


@register_mac_formula(*aten_ops("lstm_cell", "gru_cell", "rnn_tanh_cell", "rnn_relu_cell"))
def _rnn_cell(x: Shape, hx: Any, w_ih: Shape, w_hh: Shape, *_: Any, **__: Any) -> int:
    return rnn_macs(_prod(x[:-1]), [w_ih, w_hh])
