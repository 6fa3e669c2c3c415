"""Blockwise float64 sums and Grams equal the whole-matrix float64 results."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hookstats.metrics import blocks


@pytest.mark.parametrize("shape", [(37, 5), (5, 37), (1, 50), (16, 16), (0, 4)])
@pytest.mark.parametrize("block_elements", [7, 64, 1 << 21])  # many blocks, a few, one
def test_matrix_sums_match_numpy_float64(monkeypatch, shape, block_elements):
    monkeypatch.setattr(blocks, "BLOCK_ELEMENTS", block_elements)
    a = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    a64 = a.astype(np.float64)
    sums = blocks.matrix_sums(a, with_gram=True)
    assert sums.total == pytest.approx(a64.sum(), rel=1e-12, abs=1e-12)
    assert sums.sumsq == pytest.approx((a64**2).sum(), rel=1e-12, abs=1e-12)
    assert sums.abs_total == pytest.approx(np.abs(a64).sum(), rel=1e-12, abs=1e-12)
    gram = a64.T @ a64 if shape[0] >= shape[1] else a64 @ a64.T
    np.testing.assert_allclose(sums.gram, gram, rtol=1e-12, atol=1e-12)
    assert blocks.matrix_sums(a, with_gram=False).gram is None


def test_centred_sumsq_is_the_exact_second_pass(monkeypatch):
    monkeypatch.setattr(blocks, "BLOCK_ELEMENTS", 10)
    a = (1e4 + np.random.default_rng(1).standard_normal((20, 9))).astype(np.float32)
    a64 = a.astype(np.float64)
    assert blocks.centred_sumsq(a, float(a64.mean())) == pytest.approx(
        ((a64 - a64.mean()) ** 2).sum(), rel=1e-10
    )
    assert np.array_equal(
        a, (1e4 + np.random.default_rng(1).standard_normal((20, 9))).astype(np.float32)
    )  # the input is never written


def test_non_finite_input_gives_non_finite_sums():
    a = np.ones((6, 4), np.float32)
    a[2, 1] = np.nan
    assert math.isnan(blocks.matrix_sums(a, with_gram=False).total)


def test_a_wide_gram_is_streamed_without_a_second_gram_in_memory():
    """Each block's product goes into the Gram's lower triangle a panel at a time: the peak is
    the Gram plus one r x 512 panel, not two Grams (the old ``G += BᵀB``)."""
    import tracemalloc

    from hookstats.metrics import blocks

    rng = np.random.default_rng(0)
    a = rng.standard_normal((3000, 2048)).astype(np.float32)
    blocks.matrix_sums(a[:1024], with_gram=False)  # the thread's block buffer exists already
    tracemalloc.start()
    try:
        gram = blocks.matrix_sums(a, with_gram=True).gram
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    gram_bytes = 2048 * 2048 * 8  # 32 MiB
    assert peak < 1.5 * gram_bytes, f"peak {peak / 2**20:.0f} MiB for a 32 MiB Gram"
    exact = a.astype(np.float64).T @ a.astype(np.float64)
    lower = np.tril_indices(2048)
    np.testing.assert_allclose(gram[lower], exact[lower], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(
        np.linalg.eigvalsh(gram), np.linalg.eigvalsh(exact), rtol=1e-10, atol=1e-8
    )
