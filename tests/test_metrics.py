"""compute_metrics: every built-in metric against an independent float64 numpy reference, hand-made
matrices with known answers, undefined cases, hook point selection, and a model left untouched."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from hookstats.errors import MetricError, PointSelectionError
from hookstats.metrics import compute_metrics, metric_registry

from models import SmallCNN, TiedEmbedding, TinyTransformer

BUILTINS = [
    "l1",
    "l2",
    "l1_l2",
    "weight_mean",
    "weight_median",
    "weight_var",
    "bias_mean",
    "bias_median",
    "bias_var",
    "trace",
    "spectral_norm",
    "trace_spectral",
    "sv_mean",
    "sv_var",
]


class Zoo(nn.Module):
    """Embedding tied to a head, conv1d, conv2d, layernorm, a nested block, a bias-free layer."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 6)
        self.conv = nn.Conv1d(6, 5, 3, padding=1)
        self.conv2d = nn.Conv2d(2, 3, (2, 3))  # kernel (3, 2, 2, 3) -> matrix (3, 12)
        self.norm = nn.LayerNorm(5)
        self.block = nn.Sequential(nn.Linear(5, 7), nn.GELU(), nn.Linear(7, 5, bias=False))
        self.head = nn.Linear(6, 11, bias=False)
        self.head.weight = self.embed.weight  # tied: counted once


def randomized(model: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter (layernorm scales and biases too) drawn at random, so no ties by luck."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5 + 0.1)
    return model


# --- the independent reference: plain numpy float64, straight from the definitions -------------


def reference(module: nn.Module) -> dict[str, float]:
    params = [(n, p.detach().double().numpy()) for n, p in module.named_parameters()]
    weights = [a.ravel() for n, a in params if not n.endswith("bias")]
    biases = [a.ravel() for n, a in params if n.endswith("bias")]
    mats = [a.reshape(a.shape[0], -1) for n, a in params if not n.endswith("bias") and a.ndim >= 2]
    nan = math.nan
    out = dict.fromkeys(BUILTINS, nan)
    if weights:
        w = np.concatenate(weights)
        out |= {"weight_mean": w.mean(), "weight_median": np.median(w), "weight_var": np.var(w)}
    if biases:
        b = np.concatenate(biases)
        with np.errstate(invalid="ignore"):  # inf - inf in a deliberately broken model
            out |= {"bias_mean": b.mean(), "bias_median": np.median(b), "bias_var": np.var(b)}
    if mats:
        sv = [np.linalg.svd(m, compute_uv=False) for m in mats]
        pooled = np.concatenate(sv)
        out |= {
            "l1": np.mean([np.abs(m).sum() for m in mats]),
            "l2": np.mean([np.linalg.norm(m, "fro") for m in mats]),
            "l1_l2": np.mean([np.abs(m).sum() / np.linalg.norm(m, "fro") for m in mats]),
            "trace": np.mean([np.trace(m) for m in mats]),
            "spectral_norm": np.mean([s[0] for s in sv]),
            "trace_spectral": np.mean([np.trace(m) / s[0] for m, s in zip(mats, sv, strict=True)]),
            "sv_mean": pooled.mean(),
            "sv_var": pooled.var(),
        }
    return out


def table(df: pd.DataFrame) -> dict[tuple[str, str], float]:
    return {(r.hook_point, r.metric): r.value for r in df.itertuples()}


def assert_matches_reference(model: nn.Module, df: pd.DataFrame) -> None:
    got = table(df)
    modules = {"(model)": model} | {n: m for n, m in model.named_modules() if n}
    for point in df["hook_point"].unique():
        expected = reference(modules[point])
        for metric in df["metric"].unique():
            value = expected[metric]
            if math.isnan(value):
                assert math.isnan(got[(point, metric)]), (point, metric)
            else:
                assert got[(point, metric)] == pytest.approx(value, rel=1e-6, abs=1e-12), (
                    point,
                    metric,
                )


@pytest.mark.parametrize("build", [Zoo, SmallCNN, TinyTransformer, TiedEmbedding])
def test_every_metric_matches_numpy_reference_at_every_hook_point(build):
    model = randomized(build())
    df = compute_metrics(model)
    assert list(df.columns) == ["hook_point", "metric", "value", "note"]
    assert df["metric"].unique().tolist() == BUILTINS
    assert df["hook_point"].unique().tolist() == ["(model)"] + [
        n for n, _ in model.named_modules() if n
    ]
    assert_matches_reference(model, df)


def test_tied_weights_count_once():
    model = randomized(Zoo())
    got = table(compute_metrics(model, metrics=["l1", "weight_mean"], points="(model)"))
    mats = [
        model.embed.weight,
        model.conv.weight,
        model.conv2d.weight,
        model.block[0].weight,
        model.block[2].weight,
    ]  # head.weight is embed.weight: 5 matrices, not 6
    l1 = np.mean([p.detach().double().abs().sum().item() for p in mats])
    assert got[("(model)", "l1")] == pytest.approx(l1, rel=1e-12)
    n_weights = sum(p.numel() for p in mats) + 5  # + layernorm scale
    assert n_weights == 11 * 6 + 5 * 6 * 3 + 3 * 2 * 2 * 3 + 7 * 5 + 5 * 7 + 5  # 66+90+36+35+35+5
    weights = [p for n, p in model.named_parameters() if not n.endswith("bias")]
    assert sum(p.numel() for p in weights) == n_weights  # named_parameters lists tied ones once


# --- hand-made matrices with known answers -----------------------------------------------------


def linear_with(weight: list[list[float]], bias: list[float] | None = None) -> nn.Linear:
    w = torch.tensor(weight, dtype=torch.float32)
    layer = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(w)
        if bias is not None:
            layer.bias.copy_(torch.tensor(bias))
    return layer


def values(model: nn.Module, point: str = "(model)") -> dict[str, float]:
    df = compute_metrics(model)
    return {r.metric: r.value for r in df[df["hook_point"] == point].itertuples()}


def test_diagonal_matrix():
    v = values(linear_with([[3.0, 0.0], [0.0, -4.0]], bias=[1.0, 2.0]))
    assert v["l1"] == 7.0  # 3 + 4
    assert v["l2"] == 5.0  # sqrt(9 + 16)
    assert v["l1_l2"] == pytest.approx(1.4)  # 7 / 5
    assert v["trace"] == -1.0  # 3 - 4
    assert v["spectral_norm"] == pytest.approx(4.0, rel=1e-12)  # singular values {4, 3}
    assert v["trace_spectral"] == pytest.approx(-0.25, rel=1e-12)  # -1 / 4
    assert v["sv_mean"] == pytest.approx(3.5, rel=1e-12)
    assert v["sv_var"] == pytest.approx(0.25, rel=1e-12)  # ((4-3.5)^2 + (3-3.5)^2) / 2
    assert v["weight_mean"] == -0.25  # (3 + 0 + 0 - 4) / 4
    assert v["weight_median"] == 0.0  # sorted -4, 0, 0, 3
    assert v["weight_var"] == pytest.approx(6.1875)  # (9 + 16) / 4 - 0.25^2
    assert (v["bias_mean"], v["bias_median"], v["bias_var"]) == (1.5, 1.5, 0.25)


def test_rank_one_matrix():
    # u v^T with u = (1, 2, 2) (norm 3), v = (3, 4) (norm 5): singular values {15, 0}
    v = values(linear_with([[3.0, 4.0], [6.0, 8.0], [6.0, 8.0]]))
    assert v["l1"] == 35.0  # 3+4+6+8+6+8
    assert v["l2"] == pytest.approx(15.0)  # = sigma_max for rank 1
    assert v["trace"] == 11.0  # 3 + 8 (rectangular: main diagonal)
    assert v["spectral_norm"] == pytest.approx(15.0, rel=1e-12)
    assert v["trace_spectral"] == pytest.approx(11 / 15, rel=1e-12)
    assert v["sv_mean"] == pytest.approx(7.5, rel=1e-12)  # (15 + 0) / 2
    assert v["sv_var"] == pytest.approx(56.25, rel=1e-12)  # 7.5^2


def test_identity_and_rectangular():
    v = values(linear_with(np.eye(4).tolist()))
    assert (v["l1"], v["l2"], v["l1_l2"], v["trace"]) == (4.0, 2.0, 2.0, 4.0)
    assert v["spectral_norm"] == pytest.approx(1.0, rel=1e-12)
    assert v["sv_mean"] == pytest.approx(1.0, rel=1e-12)
    assert v["sv_var"] == pytest.approx(0.0, abs=1e-24)
    v = values(linear_with([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
    assert v["trace"] == 6.0  # 1 + 5
    s = np.linalg.svd(np.array([[1.0, 2, 3], [4, 5, 6]]), compute_uv=False)  # 9.508, 0.7729
    assert v["spectral_norm"] == pytest.approx(s[0], rel=1e-12)
    assert v["sv_mean"] == pytest.approx(s.mean(), rel=1e-12)


def test_conv_kernel_is_reshaped_to_out_channels_by_rest():
    conv = nn.Conv2d(1, 2, 2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.arange(8.0).reshape(2, 1, 2, 2))  # matrix [[0,1,2,3],[4,5,6,7]]
    v = values(conv)
    assert v["trace"] == 5.0  # 0 + 5
    assert v["l1"] == 28.0  # 0 + 1 + ... + 7


def test_container_averages_over_its_matrices():
    a, b = linear_with([[3.0, 0.0], [0.0, -4.0]]), linear_with([[1.0, 1.0], [1.0, 1.0]])
    v = values(nn.Sequential(a, b))
    assert v["l1"] == 5.5  # (7 + 4) / 2
    assert v["l2"] == 3.5  # (5 + 2) / 2
    assert v["spectral_norm"] == pytest.approx(3.0)  # (4 + 2) / 2, ones(2,2) has sigma {2, 0}
    assert v["trace"] == 0.5  # (-1 + 2) / 2


# --- undefined cases: NaN with a reason, never a crash ------------------------------------------


def notes(df: pd.DataFrame) -> dict[tuple[str, str], str]:
    return {(r.hook_point, r.metric): r.note for r in df.itertuples()}


def test_undefined_cases_give_nan_with_reason():
    model = nn.Sequential(linear_with([[0.0, 0.0]]), nn.LayerNorm(3), nn.ReLU())
    df = compute_metrics(model)
    got, why = table(df), notes(df)
    assert got[("0", "l1")] == 0.0 and why[("0", "l1")] == ""
    for metric in ("l1_l2", "trace_spectral"):
        assert math.isnan(got[("0", metric)]) and "zero matrix '0.weight'" in why[("0", metric)]
    assert why[("0", "bias_mean")] == "no bias parameters"
    assert "no weight matrices" in why[("1", "l2")]  # layernorm: 1-D weights only
    assert got[("1", "weight_mean")] == 1.0  # its scale is ones
    assert got[("1", "bias_median")] == 0.0
    assert why[("2", "weight_var")] == "no weight parameters"
    assert df["value"].isna().sum() == (df["note"] != "").sum()  # every NaN explains itself


def test_non_finite_weights_spoil_only_their_own_values():
    model = randomized(nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2)))
    with torch.no_grad():
        model[0].weight[1, 1] = float("nan")
        model[1].bias[0] = float("inf")
    df = compute_metrics(model)
    got, why = table(df), notes(df)
    for metric in ("l1", "weight_median", "sv_var", "spectral_norm"):
        assert math.isnan(got[("0", metric)]) and "NaN/Inf" in why[("0", metric)]
        assert "'0.weight'" in why[("(model)", metric)]
    assert not math.isnan(got[("0", "bias_mean")])  # 0.bias is fine
    assert math.isnan(got[("1", "bias_mean")]) and "'1.bias'" in why[("1", "bias_mean")]
    expected = reference(model[1])
    for metric in ("l1", "weight_median", "sv_var", "spectral_norm", "trace_spectral"):
        assert got[("1", metric)] == pytest.approx(expected[metric], rel=1e-9)


# --- selection, precision, refusals -------------------------------------------------------------


def test_points_select_rows_and_model_row_always_comes_first():
    model = randomized(TinyTransformer())
    df = compute_metrics(model, metrics=["l2", "sv_mean"], points="blocks.*.attn")
    assert (
        df["hook_point"].tolist() == ["(model)"] * 2 + ["blocks.0.attn"] * 2 + ["blocks.1.attn"] * 2
    )
    assert_matches_reference(model, df)
    with pytest.raises(PointSelectionError, match="selects no module"):
        compute_metrics(model, metrics=["l2"], points="blocks.*.atn")


def test_half_precision_weights_are_computed_upcast():
    model = randomized(Zoo())
    half = Zoo().to(torch.bfloat16)
    half.load_state_dict({k: v.to(torch.bfloat16) for k, v in model.state_dict().items()})
    upcast = Zoo()
    upcast.load_state_dict({k: v.float() for k, v in half.state_dict().items()})
    for precision in ("float32", "float64"):
        ours = compute_metrics(half, precision=precision)
        exact = compute_metrics(upcast, precision=precision)
        np.testing.assert_allclose(ours["value"], exact["value"], rtol=1e-12, atol=1e-15)
    assert_matches_reference(upcast, compute_metrics(half))


def test_meta_bad_precision_and_non_module_are_refused():
    with torch.device("meta"):
        meta = nn.Linear(3, 2)
    with pytest.raises(MetricError, match=r"'weight' is on the meta device.*to_empty"):
        compute_metrics(meta)
    with pytest.raises(MetricError, match="precision must be 'float32'.*or 'float64'"):
        compute_metrics(nn.Linear(2, 2), precision="fp16")
    with pytest.raises(MetricError, match="needs an nn.Module"):
        compute_metrics("model")  # type: ignore[arg-type]


def test_model_is_left_untouched():
    model = randomized(Zoo())
    model.block[0].weight.requires_grad_(False)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [(id(p), p.requires_grad, p.data_ptr()) for p in model.parameters()]
    attrs = {n: sorted(vars(m)) for n, m in model.named_modules()}
    compute_metrics(model, metrics=metric_registry.names(category=1))
    assert [(id(p), p.requires_grad, p.data_ptr()) for p in model.parameters()] == flags
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training and model.head.weight is model.embed.weight
    assert {n: sorted(vars(m)) for n, m in model.named_modules()} == attrs
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_scalar_and_vector_parameters_join_the_pooled_moments():
    model = nn.Linear(3, 2)
    model.temperature = nn.Parameter(torch.tensor(0.5))  # 0-d: a weight, not a matrix
    model.scale = nn.Parameter(torch.tensor([2.0, -1.0]))  # 1-d: likewise
    df = compute_metrics(model, metrics=["weight_mean", "weight_var", "weight_median", "l1"])
    values = dict(zip(df.metric, df.value, strict=True))
    pooled = np.concatenate([model.weight.detach().double().numpy().ravel(), [0.5, 2.0, -1.0]])
    assert values["weight_mean"] == pytest.approx(pooled.mean(), rel=1e-12)
    assert values["weight_var"] == pytest.approx(pooled.var(), rel=1e-12)
    assert values["weight_median"] == np.median(pooled)
    assert values["l1"] == pytest.approx(np.abs(model.weight.detach().double().numpy()).sum())
    assert (df.note == "").all()
