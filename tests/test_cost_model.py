"""The cost model of track(): exact integer predictions along lines of dims, refused whenever
the counted forwards do not pin them down (each expected value computed by hand beside it)."""

from __future__ import annotations

import numpy as np
import pytest

from hookstats.instrument import PointStats
from hookstats.tracking.cost_model import Family, devectorize, vectorize


def family_of(costs, dims_list):
    """A family whose counted forwards at ``dims_list`` cost ``costs(dims)`` MACs at 'attn'."""
    family = Family()
    for dims in dims_list:
        stats = PointStats(calls=1, macs=costs(dims))
        stats.shapes[((1, dims[-1]),)] = 1
        template, values = vectorize({"attn": stats}, 0, {})
        family.add(dims, template, np.asarray(values, dtype=np.int64))
    return family


def predicted_macs(family, dims):
    prediction = family.predict(dims)
    if prediction is None:
        return None
    per_point, _, _ = devectorize(*prediction)
    return per_point["attn"].macs, dict(per_point["attn"].shapes)


@pytest.mark.parametrize(
    ("costs", "counted", "at", "want"),
    [
        (lambda d: 4096, [(1, 10), (1, 11), (1, 12)], (1, 40), 4096),  # projections: constant
        (lambda d: 8 * d[1], [(1, 10), (1, 11), (1, 12)], (1, 40), 8 * 40),  # = 320
        (lambda d: 3 * d[1] ** 2 + d[1], [(1, n) for n in (4, 5, 6, 7)], (1, 30), 3 * 900 + 30),
        (lambda d: d[1] ** 3, [(1, n) for n in (2, 3, 4, 5, 6)], (1, 21), 9261),  # 21**3
        (lambda d: 8 * d[1], [(1, 20), (1, 19), (1, 18)], (1, 3), 24),  # a shrinking cache
        # a diagonal line (batch and length grow together): quadratic, so four forwards
        (lambda d: 5 * d[0] * d[1], [(n, 5 * n) for n in (2, 3, 4, 5)], (10, 50), 5 * 10 * 50),
    ],
)
def test_predictions_are_exact_along_the_line(costs, counted, at, want):
    assert predicted_macs(family_of(costs, counted), at) == (want, {((1, at[-1]),): 1})


def test_a_prediction_is_never_trusted_before_it_is_checked():
    # two forwards fix a line but nothing checks it: counted, not predicted
    assert family_of(lambda d: 8 * d[1], [(1, 10), (1, 11)]).predict((1, 12)) is None
    diagonal = family_of(lambda d: 5 * d[0] * d[1], [(2, 10), (3, 15), (4, 20)])
    assert diagonal.predict((10, 50)) is None  # a quadratic through three: unchecked
    # three forwards of a quadratic fit a line through two of them, which the third refutes;
    # a quadratic needs a fourth forward to be checked
    quadratic = family_of(lambda d: d[1] ** 2, [(1, 10), (1, 11), (1, 12)])
    assert quadratic.predict((1, 13)) is None


def test_off_the_line_and_non_polynomial_costs_are_refused():
    family = family_of(lambda d: 8 * d[1], [(1, 10), (1, 11), (1, 12)])
    assert predicted_macs(family, (2, 13)) is None  # another direction: no counted forward on it
    powers = family_of(lambda d: 2 ** d[1], [(1, n) for n in range(3, 9)])  # 8, 16, ..., 256
    assert powers.predict((1, 9)) is None  # no polynomial of degree <= 3 reproduces all six


def test_fractional_values_are_refused():
    # counted at even lengths only, the costs 5, 6, 7 lie on a line of slope 1/2: between two
    # counted lengths it gives 6.5, which is not a cost; at the next even length it is exact
    family = family_of(lambda d: d[1] // 2, [(1, 10), (1, 12), (1, 14)])
    assert family.predict((1, 13)) is None  # 6.5 is not a cost
    assert predicted_macs(family, (1, 16)) == (8, {((1, 16),): 1})


def test_huge_costs_take_the_exact_object_path():
    big = 2**60
    family = family_of(lambda d: big + 7 * d[1], [(1, 10), (1, 11), (1, 12)])
    macs, _ = predicted_macs(family, (1, 1000))
    assert macs == big + 7000  # exact beyond what int64 products could hold
