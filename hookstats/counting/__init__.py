"""MAC counting: a formula registry of pure functions (``formulas``, with packed, quantized and
grouped products in ``packed``, and the gradient kernels' in ``backward``), the allowlist of ops
that do no MAC work (``coverage``), the handling of higher-order operators such as
``flex_attention`` (``hops``), and the dispatch mode that routes ops to formulas (``mode``,
with the record of an uncounted op).

May import: torch and :mod:`hookstats.errors`.
"""

from .backward import (
    MAC_FREE_BACKWARD_OPS,
    conv_backward_macs,
    rnn_backward_macs,
    sdpa_backward_macs,
)
from .coverage import OpKind, carries_matrix_work, classify_op
from .formulas import (
    conv_macs,
    formula_for,
    matmul_macs,
    mm_macs,
    register_mac_formula,
    registered_ops,
    rnn_macs,
    sdpa_macs,
    trilinear_macs,
)
from .hops import flex_attention_macs
from .mode import OUTSIDE_POINTS, MacCounter, MacSink, UncountedOp, merge_uncounted
from .packed import grouped_mm_macs, mac_bound_for

__all__ = [
    "MAC_FREE_BACKWARD_OPS",
    "OUTSIDE_POINTS",
    "MacCounter",
    "MacSink",
    "OpKind",
    "UncountedOp",
    "carries_matrix_work",
    "classify_op",
    "conv_backward_macs",
    "conv_macs",
    "flex_attention_macs",
    "formula_for",
    "grouped_mm_macs",
    "mac_bound_for",
    "matmul_macs",
    "merge_uncounted",
    "mm_macs",
    "register_mac_formula",
    "registered_ops",
    "rnn_backward_macs",
    "rnn_macs",
    "sdpa_backward_macs",
    "sdpa_macs",
    "trilinear_macs",
]
