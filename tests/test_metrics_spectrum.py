"""The shared expensive work: Gram singular values and their accuracy guard, Lanczos sigma_max,
pooled medians, and which route compute_metrics takes for which metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from hookstats.metrics import blocks, compute_metrics, spectrum
from hookstats.metrics.order import PooledMedian

from models import TinyTransformer


def svd64(a: np.ndarray | torch.Tensor) -> np.ndarray:
    a = a.detach().double().numpy() if isinstance(a, torch.Tensor) else a
    return np.linalg.svd(a, compute_uv=False)


@pytest.mark.parametrize("shape", [(40, 7), (7, 40), (33, 33), (120, 260), (1, 9)])
def test_gram_singular_values_match_float64_svd(shape):
    a = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    g = spectrum.gram(a)
    assert g.shape == (min(shape), min(shape)) and g.dtype == np.float64  # the smaller Gram
    sv, ok = spectrum.gram_singular_values(g[None], [max(shape)])
    reference = svd64(a.astype(np.float64))
    assert bool(ok[0])
    np.testing.assert_allclose(sv[0], reference, rtol=1e-9, atol=1e-12 * reference[0])


def test_guard_sends_rank_deficient_matrices_to_svd():
    rng = np.random.default_rng(2)
    low = rng.standard_normal((200, 2)) @ rng.standard_normal((2, 150))  # rank 2
    grams = np.stack([spectrum.gram(low), spectrum.gram(rng.standard_normal((200, 150)))])
    _, ok = spectrum.gram_singular_values(grams, [200, 200])
    assert ok.tolist() == [False, True]
    # 148 zero singular values: the Gram route would add ~sqrt(eps) * sigma_max for each
    assert spectrum.singular_values(low).sum() == pytest.approx(svd64(low).sum(), rel=1e-12)


def test_lanczos_top_eigenvalue_matches_eigvalsh():
    rng = np.random.default_rng(3)
    grams = [spectrum.gram(rng.standard_normal((500, 300))) for _ in range(3)]  # Wishart
    clustered = np.diag(np.linspace(1.0, 2.0, 300))
    clustered[-1, -1] = 2.0 + 1e-7  # top gap of 5e-8, relative
    rotation = np.linalg.qr(rng.standard_normal((300, 300)))[0]
    rank_one = np.outer(np.arange(1.0, 81.0), np.arange(1.0, 81.0))  # invariant after 1 step
    grams += [rotation @ clustered @ rotation.T, rank_one, np.zeros((300, 300)), grams[0][:10, :10]]
    for g in grams:  # the last: below LANCZOS_DIRECT_BELOW
        exact = np.linalg.eigvalsh(g)[-1]
        assert spectrum.top_eigenvalue(g) == pytest.approx(exact, rel=1e-9, abs=1e-300)


def _with_spectrum(shape, values, seed=0, dtype=np.float32):
    """A random-orientation matrix with exactly the singular values ``values``."""
    rng = np.random.default_rng(seed)
    u = np.linalg.qr(rng.standard_normal((shape[0], len(values))))[0]
    v = np.linalg.qr(rng.standard_normal((shape[1], len(values))))[0]
    return ((u * np.asarray(values)) @ v.T).astype(dtype)


SIGMA_CASES = {
    "random tall (clustered top)": lambda: np.random.default_rng(4).standard_normal((900, 300)),
    "random wide": lambda: np.random.default_rng(5).standard_normal((200, 700)) * 0.02,
    "top gap 1e-7": lambda: _with_spectrum((300, 200), np.r_[1 + 1e-7, np.linspace(1, 0.5, 199)]),
    "top gap 1e-6": lambda: _with_spectrum((300, 200), np.r_[1 + 1e-6, np.linspace(1, 0.5, 199)]),
    "top gap 1e-5": lambda: _with_spectrum((300, 200), np.r_[1 + 1e-5, np.linspace(1, 0.5, 199)]),
    "all equal (orthogonal)": lambda: np.linalg.qr(
        np.random.default_rng(6).standard_normal((256, 256))
    )[0].astype(np.float32),
    "rank one": lambda: np.outer(np.arange(1.0, 301.0), np.ones(200)).astype(np.float32),
    "tiny entries": lambda: np.random.default_rng(7).standard_normal((300, 200)) * 1e-30,
    "huge entries": lambda: np.random.default_rng(8).standard_normal((200, 240)) * 1e30,
    "float64, not float32-exact": lambda: _with_spectrum(
        (250, 200), np.linspace(3, 1, 200), dtype=np.float64
    ),
    "below the direct threshold": lambda: np.random.default_rng(9).standard_normal((40, 5)),
}


@pytest.mark.parametrize("case", SIGMA_CASES)
def test_top_singular_value_matches_float64_svd(case):
    a = SIGMA_CASES[case]()
    a = a if a.dtype == np.float64 and "float64" in case else a.astype(np.float32)
    exact = svd64(a.astype(np.float64))[0]
    # a top gap near float32's or the stopping rule's resolution may be mixed: the documented
    # worst case is SIGMA_DIRECTION_TOL / 2 = 5e-7; elsewhere errors are ~1e-10
    tolerance = 5e-7 if "gap" in case or "equal" in case else 1e-9
    assert spectrum.top_singular_value(a) == pytest.approx(exact, rel=tolerance)


def test_top_singular_value_takes_the_float32_route_above_the_direct_threshold(monkeypatch):
    taken = []
    original = spectrum.lanczos_top
    monkeypatch.setattr(
        spectrum,
        "lanczos_top",
        lambda g, *args, **kwargs: taken.append(g.dtype) or original(g, *args, **kwargs),
    )
    for case in ("tiny entries", "huge entries", "float64, not float32-exact", "rank one"):
        spectrum.top_singular_value(SIGMA_CASES[case]())
    assert taken == [np.float32] * 4


def test_top_singular_value_of_zero_empty_and_non_finite_matrices():
    assert spectrum.top_singular_value(np.zeros((200, 300), np.float32)) == 0.0
    assert spectrum.top_singular_value(np.zeros((0, 300), np.float32)) == 0.0
    for shape in [(200, 300), (20, 30)]:  # the float32 route and the direct one
        bad = np.ones(shape, np.float32)
        bad[3, 4] = np.inf
        assert np.isnan(spectrum.top_singular_value(bad))


def test_top_singular_value_falls_back_to_float64_when_float32_disagrees(monkeypatch):
    a = np.random.default_rng(10).standard_normal((300, 200)).astype(np.float32)
    original = spectrum.lanczos_top  # a broken float32 route; the float64 fallback is real
    monkeypatch.setattr(
        spectrum,
        "lanczos_top",
        lambda g, *args, **kwargs: (
            (1e9, np.ones((200, 1))) if g.dtype == np.float32 else original(g, *args, **kwargs)
        ),
    )
    assert spectrum.top_singular_value(a) == pytest.approx(svd64(a.astype(np.float64))[0], rel=1e-9)


@pytest.fixture
def counted(monkeypatch):
    """Count calls into the spectrum routes that compute_metrics takes."""
    calls = {"gram": 0, "full": 0, "sigma": 0}

    def wrap(name, key):
        original = getattr(spectrum, name)

        def counting(*args, **kwargs):
            calls[key] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(spectrum, name, counting)

    wrap("gram_singular_values", "full")
    original_sums = blocks.matrix_sums

    def counting_sums(a, with_gram):
        calls["gram"] += bool(with_gram)
        return original_sums(a, with_gram)

    monkeypatch.setattr(blocks, "matrix_sums", counting_sums)
    wrap("top_singular_value", "sigma")
    return calls


def test_spectral_norm_alone_computes_no_full_spectrum(counted):
    model = TinyTransformer()  # 8 matrices: embed, 2 x (qkv, out, mlp.0, mlp.2) ... + head
    n_matrices = sum(1 for n, p in model.named_parameters() if p.ndim >= 2)
    df = compute_metrics(model, metrics=["spectral_norm", "trace_spectral"])
    assert counted["full"] == 0
    assert counted["sigma"] == n_matrices  # once per matrix, for all hook points
    exact = np.mean([svd64(p.detach())[0] for n, p in model.named_parameters() if p.ndim >= 2])
    assert df.iloc[0]["value"] == pytest.approx(exact, rel=1e-6)


def test_full_spectrum_serves_sigma_max_too(counted):
    model = TinyTransformer()
    n_matrices = sum(1 for n, p in model.named_parameters() if p.ndim >= 2)
    compute_metrics(model, metrics=["sv_var", "spectral_norm"])
    assert counted["sigma"] == 0 and counted["gram"] == n_matrices
    counted.update(gram=0, full=0)
    compute_metrics(model, metrics=["l1", "weight_median", "trace"])  # nothing spectral
    assert counted == {"gram": 0, "full": 0, "sigma": 0}


# --- pooled medians ----------------------------------------------------------------------------

finite32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
values = st.lists(st.one_of(finite32, st.sampled_from([0.0, -0.0, 1.0])), max_size=40)


@settings(max_examples=60, deadline=None)
@given(st.lists(values, min_size=1, max_size=4))
def test_pooled_median_equals_numpy_median_of_concatenation(parts):
    sources = {i: torch.tensor(p, dtype=torch.float32) for i, p in enumerate(parts)}
    medians = PooledMedian(sources)
    groups = [tuple(range(len(parts))), (0,), tuple(range(0, len(parts), 2))]
    medians.prefetch(groups)
    for group in groups:
        pooled = np.concatenate([np.asarray(parts[i], dtype=np.float32) for i in group])
        expected = np.median(pooled.astype(np.float64)) if pooled.size else np.nan
        assert medians.median(group) == pytest.approx(expected, nan_ok=True, rel=0, abs=0)


def test_pooled_median_float64_and_bf16_sources():
    exact64 = torch.tensor([0.1, 0.2, 0.3, 0.7], dtype=torch.float64)  # not float32-exact
    bf16 = torch.tensor([1.5, -2.0, 3.25], dtype=torch.bfloat16)
    medians = PooledMedian({0: exact64, 1: bf16})
    assert medians.median([0]) == pytest.approx(0.25, rel=1e-15)  # (0.2 + 0.3) / 2
    assert medians.median([1]) == 1.5
    assert medians.median([0, 1]) == pytest.approx(0.3, rel=1e-15)  # -2,.1,.2,.3,.7,1.5,3.25


def test_weight_median_of_nested_points_matches_numpy():
    model = TinyTransformer()
    df = compute_metrics(model, metrics=["weight_median"], points="blocks.*")
    for row in df.itertuples():
        module = model if row.hook_point == "(model)" else model.get_submodule(row.hook_point)
        weights = [
            p.detach().double().numpy().ravel()
            for n, p in module.named_parameters()
            if not n.endswith("bias")
        ]
        if weights:
            assert row.value == np.median(np.concatenate(weights)), row.hook_point
        else:  # GELU
            assert row.note == "no weight parameters"


def test_plugins_get_copies_not_the_model_tensors():
    from hookstats.metrics import register_metric, unregister_metric

    @register_metric("vandal")
    def vandal(ctx) -> float:
        for w in ctx.weights + ctx.matrices:
            w.zero_()
        return 0.0

    model = nn.Linear(3, 3)
    before = model.weight.detach().clone()
    try:
        compute_metrics(model, metrics=["vandal"])
    finally:
        unregister_metric("vandal")
    assert torch.equal(model.weight.detach(), before)


def test_a_failing_matrix_spoils_only_the_points_containing_it(monkeypatch):
    original = spectrum.gram_singular_values

    def failing(grams, long_sides):
        if grams.shape[-1] == 3:  # only layers.1's matrix (5 x 3)
            raise np.linalg.LinAlgError("SVD did not converge")
        return original(grams, long_sides)

    monkeypatch.setattr(spectrum, "gram_singular_values", failing)
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(3, 5))
    df = compute_metrics(model, metrics=["sv_mean", "l2"])
    rows = {(r.hook_point, r.metric): (r.value, r.note) for r in df.itertuples()}
    for point in ("(model)", "1"):
        assert np.isnan(rows[(point, "sv_mean")][0])
        assert rows[(point, "sv_mean")][1] == "error: LinAlgError: SVD did not converge"
        assert rows[(point, "l2")][1] == ""
    assert rows[("0", "sv_mean")][0] == pytest.approx(svd64(model[0].weight).mean(), rel=1e-9)


def test_parameters_sharing_storage_count_once():
    a, b = nn.Linear(3, 3, bias=False), nn.Linear(3, 3, bias=False)
    b.weight = nn.Parameter(a.weight.data)  # another Parameter object, the same values
    model = nn.Sequential(a, b)
    assert model[0].weight is not model[1].weight
    df = compute_metrics(model, metrics=["l1", "weight_var"], points="(model)")
    l1 = a.weight.detach().double().abs().sum().item()
    assert df["value"].tolist()[0] == pytest.approx(l1, rel=1e-12)  # K = 1, not 2
    assert df["value"].tolist()[1] == pytest.approx(np.var(a.weight.detach().double().numpy()))
