"""Which aten ops carry matrix-like work, so that one without a formula is reported, not 0.

The test is on the op's name split at underscores, so ``upsample_bilinear2d`` (interpolation)
is not mistaken for ``bilinear`` and ``mvlgamma`` not for ``mv``.

    >>> carries_matrix_work("_cudnn_rnn"), carries_matrix_work("upsample_bilinear2d")
    (True, False)
"""

from __future__ import annotations

__all__ = ["carries_matrix_work"]

_WORK_TOKENS = frozenset(
    {
        "mm",
        "bmm",
        "addmm",
        "baddbmm",
        "addbmm",
        "matmul",
        "mv",
        "addmv",
        "dot",
        "vdot",
        "einsum",
        "linear",
        "bilinear",
        "tensordot",
        "cdist",
        "attention",
        "lstm",
        "gru",
        "rnn",
    }
)
_WORK_PREFIXES = ("conv", "lstm", "gru", "rnn")
# Ops whose names match but that do no matrix work themselves (gates are precomputed).
_NOT_WORK = frozenset(
    {
        "_thnn_fused_lstm_cell",
        "_thnn_fused_gru_cell",
        "_pack_padded_sequence",
        "_pad_packed_sequence",
        "convolution_overrideable_backward",
        "_convert_indices_from_coo_to_csr",
        "_convert_indices_from_csr_to_coo",
        "conv_tbc_backward",
        "_use_cudnn_rnn_flatten_weight",
        "_cudnn_rnn_flatten_weight",
        "_convert_weight_to_int4pack",
    }
)


def carries_matrix_work(op_name: str) -> bool:
    """True when an op named ``op_name`` (packet name, e.g. ``"_cudnn_rnn"``) does MAC work."""
    name = op_name.split("::")[-1].split(".")[0]
    if name in _NOT_WORK:
        return False
    tokens = [t for t in name.split("_") if t]
    return any(t in _WORK_TOKENS or t.startswith(_WORK_PREFIXES) for t in tokens)
