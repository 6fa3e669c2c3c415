"""Higher-order operators (HOPs) under the MAC counter: ``flex_attention`` is counted, every
other HOP runs its own dense implementation with the counter still active (so the ops inside
are counted), or -- when it has none -- runs untouched and is listed as uncounted. A HOP never
raises because the counter is on.

``flex_attention`` does the score and value products of the blocks its ``BlockMask`` lists
(partial and full blocks, clipped at the sequence ends); a call without a mask lists every
block, which is dense attention. When the block counts are not readable (meta or fake tensors)
the dense count is an upper bound and the op is listed with it.

May import: torch and :mod:`hookstats.counting.formulas`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .formulas import sdpa_macs

__all__ = ["flex_attention_macs", "hop_kernel", "is_flex_attention", "is_hop"]


def is_hop(func: Any) -> bool:
    """True for a ``torch._ops.HigherOrderOperator``."""
    hop_type = getattr(torch._ops, "HigherOrderOperator", None)
    return hop_type is not None and isinstance(func, hop_type)


def is_flex_attention(func: Any) -> bool:
    """True for the ``flex_attention`` forward operator."""
    return getattr(func, "_name", getattr(func, "__name__", "")) == "flex_attention"


def hop_kernel(func: Any) -> Any:
    """The HOP's own dense implementation (its ``CompositeExplicitAutograd`` kernel), or None."""
    kernels = getattr(func, "py_kernels", {})
    return kernels.get(torch._C.DispatchKey.CompositeExplicitAutograd)


def _listed_columns(
    num_blocks: torch.Tensor | None, indices: torch.Tensor | None, seq_k: int, block_k: int
) -> torch.Tensor | int:
    """Per (batch, head, query block): key positions in the listed key blocks."""
    if num_blocks is None or indices is None:
        return 0
    slots = torch.arange(indices.shape[-1], device=indices.device)
    listed = slots < num_blocks.unsqueeze(-1).to(slots.dtype)
    columns = (seq_k - indices.long() * block_k).clamp(0, block_k)
    return (columns * listed).sum(-1)


def _block_sparse_macs(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block: Sequence[Any]
) -> int:
    """Work of the listed blocks: rows of each query block times the key positions it meets."""
    kv_num, kv_idx, full_num, full_idx = block[2], block[3], block[4], block[5]
    block_q, block_k = int(block[-3]), int(block[-2])
    seq_q, seq_k = int(q.shape[-2]), int(k.shape[-2])
    columns = _listed_columns(kv_num, kv_idx, seq_k, block_k) + _listed_columns(
        full_num, full_idx, seq_k, block_k
    )
    assert isinstance(columns, torch.Tensor)
    starts = torch.arange(columns.shape[-1], device=columns.device) * block_q
    rows = (seq_q - starts).clamp(0, block_q)
    pairs = int((columns * rows).sum().item())
    # the mask's batch and head dims may be 1 (broadcast over the query's)
    mask_b, mask_h = int(columns.shape[0]), int(columns.shape[1])
    times = (int(q.shape[0]) // mask_b) * (int(q.shape[1]) // mask_h)
    return pairs * times * (int(q.shape[-1]) + int(v.shape[-1]))


def flex_attention_macs(args: Sequence[Any]) -> tuple[int | None, int]:
    """``(exact MACs or None, dense upper bound)`` of one ``flex_attention`` call."""
    q, k, v, block = args[0], args[1], args[2], args[4]
    dense = sdpa_macs(tuple(q.shape), tuple(k.shape), tuple(v.shape))
    try:
        return _block_sparse_macs(q, k, v, block), dense
    except Exception:  # block counts unreadable (meta, fake) or an unknown tuple layout
        return None, dense
