"""MAC counting: a formula registry of pure functions (``formulas``; the gradient kernels' in
``backward``), the list of ops that carry matrix work (``coverage``), and the dispatch mode that
routes ops to formulas (``mode``, with the record of an uncounted op).

May import: torch and :mod:`hookstats.errors`.
"""

from .backward import (
    MAC_FREE_BACKWARD_OPS,
    conv_backward_macs,
    rnn_backward_macs,
    sdpa_backward_macs,
)
from .coverage import carries_matrix_work
from .formulas import (
    conv_macs,
    formula_for,
    matmul_macs,
    mm_macs,
    register_mac_formula,
    registered_ops,
    rnn_macs,
    sdpa_macs,
)
from .mode import OUTSIDE_POINTS, MacCounter, MacSink, UncountedOp, merge_uncounted

__all__ = [
    "MAC_FREE_BACKWARD_OPS",
    "OUTSIDE_POINTS",
    "MacCounter",
    "MacSink",
    "UncountedOp",
    "carries_matrix_work",
    "conv_backward_macs",
    "conv_macs",
    "formula_for",
    "matmul_macs",
    "merge_uncounted",
    "mm_macs",
    "register_mac_formula",
    "registered_ops",
    "rnn_backward_macs",
    "rnn_macs",
    "sdpa_backward_macs",
    "sdpa_macs",
]
