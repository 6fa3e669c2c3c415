"""Formulas for packed, quantized and grouped matrix products, upper bounds for ops that cannot
be counted exactly, and meta stand-ins for kernels whose meta function refuses.

* **Linear-like kernels** whose weight is packed (``quantized::linear_dynamic`` from
  ``torch.ao.quantization.quantize_dynamic``, ``quantized::linear``, int4/int8 packed matmuls,
  fbgemm and oneDNN linears): one MAC per output element per input feature,
  ``prod(out_shape) * x.shape[-1]`` -- the packed weight's layout never matters.
* **Quantized convolutions** (``quantized::conv2d`` ...): the weight shape comes from the packed
  parameters (``unpack()``, cached per packed object).
* **Grouped matrix products** (``aten._grouped_mm``, what transformers 5 runs for
  mixture-of-experts): every row of the token matrix meets exactly one expert's matrix, so the
  count depends on shapes only, never on routing.
* **Bounds** (:func:`mac_bound_for`): ``_cdist_forward`` and ``_pdist_forward`` do pairwise work
  that is a MAC only for p=2; they stay *uncounted* and their bound is reported.
* **Meta stand-ins** (:func:`meta_fallback_for`): ``_grouped_mm`` refuses float32 on meta; the
  counter then makes an empty output of the right shape, so MoE models profile on meta.

May import: torch and :mod:`hookstats.counting.formulas`.

    >>> grouped_mm_macs((10, 16), (4, 16, 8), (10, 8))  # 10 routed rows * 16 * 8
    1280
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .formulas import Shape, conv_macs, register_mac_formula

__all__ = ["grouped_mm_macs", "mac_bound_for", "meta_fallback_for"]

_OPS = torch.ops


def _resolve(namespace: str, *names: str) -> list[Any]:
    space = getattr(_OPS, namespace)
    found = []
    for name in names:
        try:
            found.append(getattr(space, name))
        except (AttributeError, RuntimeError):
            continue
    return found


def _prod(shape: Shape) -> int:
    return math.prod(int(s) for s in shape)


@register_mac_formula(
    *_resolve(
        "aten",
        "mkldnn_linear",
        "_weight_int4pack_mm",
        "_weight_int4pack_mm_for_cpu",
        "_weight_int4pack_mm_with_scales_and_zeros",
        "_dyn_quant_matmul_4bit",
        "fbgemm_linear_int8_weight_fp32_activation",
        "fbgemm_linear_int8_weight",
        "fbgemm_linear_fp16_weight_fp32_activation",
        "fbgemm_linear_fp16_weight",
    ),
    *_resolve(
        "quantized",
        "linear",
        "linear_relu",
        "linear_dynamic",
        "linear_relu_dynamic",
        "linear_dynamic_fp16",
        "linear_relu_dynamic_fp16",
        "linear_dynamic_fp16_unpacked_weight",
        "linear_leaky_relu",
        "linear_tanh",
    ),
)
def _packed_linear(x: Shape, *_: Any, out_shape: Shape, **__: Any) -> int:
    return _prod(out_shape) * int(x[-1])


_UNPACKED: dict[int, tuple[Any, tuple[int, ...]]] = {}


def _packed_weight_shape(packed: Any) -> tuple[int, ...]:
    """The weight shape held by a quantized packed-parameter object (cached per object)."""
    hit = _UNPACKED.get(id(packed))
    if hit is not None and hit[0] is packed:
        return hit[1]
    weight = packed.unpack()[0]
    shape = tuple(int(s) for s in weight.shape)
    if len(_UNPACKED) > 4096:
        _UNPACKED.clear()
    _UNPACKED[id(packed)] = (packed, shape)
    return shape


@register_mac_formula(
    *_resolve(
        "quantized",
        "conv1d",
        "conv2d",
        "conv3d",
        "conv1d_relu",
        "conv2d_relu",
        "conv3d_relu",
        "conv2d_add",
        "conv2d_add_relu",
    )
)
def _quantized_conv(x: Shape, packed: Any, *_: Any, out_shape: Shape, **__: Any) -> int:
    return conv_macs(x, _packed_weight_shape(packed), out_shape, transposed=False)


@register_mac_formula(
    *_resolve("quantized", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d")
)
def _quantized_conv_transpose(x: Shape, packed: Any, *_: Any, out_shape: Shape, **__: Any) -> int:
    return conv_macs(x, _packed_weight_shape(packed), out_shape, transposed=True)


def grouped_mm_macs(a: Shape, b: Shape, out_shape: Shape) -> int:
    """``_grouped_mm(a, b, offs)``: 2-D tokens times 3-D experts (the MoE case), or the batched
    and 2-D x 2-D (groups along K) layouts.

    2-D x 2-D: ``(M, K_total) @ (K_total, N)`` split along K into G groups gives ``(G, M, N)``
    and ``M * K_total * N`` MACs; otherwise every output element contracts ``a.shape[-1]``.
    """
    if len(a) == 2 and len(b) == 2:
        return int(a[0]) * int(a[1]) * int(b[1])
    return _prod(out_shape) * int(a[-1])


@register_mac_formula(*_resolve("aten", "_grouped_mm", "_scaled_grouped_mm"))
def _grouped_mm(a: Shape, b: Shape, *_: Any, out_shape: Shape, **__: Any) -> int:
    return grouped_mm_macs(a, b, out_shape)


# --- bounds of uncounted ops ------------------------------------------------------------------

MacBound = Callable[..., int]


def _cdist_bound(x1: Shape, x2: Shape, *_: Any, **__: Any) -> int:
    """At most one MAC per pair per feature: ``batch * P * R * M``."""
    return _prod(x1[:-2]) * int(x1[-2]) * int(x2[-2]) * int(x1[-1])


def _pdist_bound(x: Shape, *_: Any, **__: Any) -> int:
    n, m = int(x[0]), int(x[1])
    return n * (n - 1) // 2 * m


_BOUNDS: dict[str, MacBound] = {
    "aten._cdist_forward": _cdist_bound,
    "aten._pdist_forward": _pdist_bound,
    "aten._euclidean_dist": _cdist_bound,
}


def mac_bound_for(op_name: str) -> MacBound | None:
    """An upper bound formula (on shapes) for the uncounted op ``op_name``, if one is known."""
    return _BOUNDS.get(op_name)


# --- meta stand-ins ---------------------------------------------------------------------------


def _grouped_mm_meta(a: torch.Tensor, b: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    offs = kwargs.get("offs", args[0] if args else None)
    out_dtype = kwargs.get("out_dtype", args[2] if len(args) > 2 else None) or a.dtype
    if a.dim() == 2 and b.dim() == 2:
        groups = int(offs.shape[0]) if offs is not None else 1
        shape: Sequence[int] = (groups, a.shape[0], b.shape[-1])
    elif a.dim() == 2:
        shape = (a.shape[0], b.shape[-1])
    elif b.dim() == 2:
        shape = (a.shape[1], b.shape[-1])
    else:
        shape = (a.shape[0], a.shape[1], b.shape[-1])
    return torch.empty(tuple(shape), dtype=out_dtype, device=a.device)


_META_FALLBACKS: dict[str, Callable[..., Any]] = {"aten._grouped_mm": _grouped_mm_meta}


def meta_fallback_for(op_name: str) -> Callable[..., Any] | None:
    """A stand-in that makes the output of ``op_name`` on meta/fake tensors when its own meta
    function refuses (``_grouped_mm`` in float32)."""
    return _META_FALLBACKS.get(op_name)
