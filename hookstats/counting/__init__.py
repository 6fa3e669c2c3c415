"""MAC counting: a formula registry of pure functions (``formulas``), the list of ops that carry
matrix work (``coverage``), and the dispatch mode that routes ops to formulas (``mode``, with the
record of an uncounted op).

May import: torch and :mod:`hookstats.errors`.
"""

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
    "OUTSIDE_POINTS",
    "MacCounter",
    "MacSink",
    "UncountedOp",
    "carries_matrix_work",
    "conv_macs",
    "formula_for",
    "matmul_macs",
    "merge_uncounted",
    "mm_macs",
    "register_mac_formula",
    "registered_ops",
    "rnn_macs",
    "sdpa_macs",
]
