"""How fast are ``compute_metrics``'s weight metrics, and are they exact?

For GPT-2 small (random init, 124M parameters) and a ResNet-50-shaped CNN built here (25.6M),
times, in one run:

* ``hookstats all``      -- ``compute_metrics(model)``: all 14 category-1 metrics at every module
  (about 160 hook points for GPT-2) plus the ``(model)`` row;
* ``hookstats spectral_norm`` -- ``compute_metrics(model, metrics=["spectral_norm"])``, every
  module;
* (a) ``torch svdvals``  -- ``torch.linalg.svdvals`` on each weight matrix, one by one, in the
  model's dtype: the naive floor of any spectral metric;
* (b) ``numpy float64``  -- a naive per-matrix loop: ``np.linalg.svd`` (values only) and the
  norms/traces of each matrix in float64, plus the pooled moments and medians of the model;
* (c) ``weightwatcher``  -- ``WeightWatcher(model).analyze()`` when installed (skipped if not).

Ratios are the baseline's time over ours (higher is better for us). Accuracy: every value of the
hookstats tables (every hook point, every metric) against an independent float64 numpy
reference built from (b)'s per-matrix spectra and numpy medians/moments; the largest relative
error is printed. Targets (issue 3): at least 3x faster than (a) and (c) for all metrics, at least
20x for ``spectral_norm`` alone, every value within 1e-6 relative of float64 SVD.

Timings on a shared machine are noisy; run it on an idle one for figures to quote. The
hookstats runs are the median of ``--repeats`` (default 3) calls; each baseline runs
``--baseline-repeats`` times (default 1: they take 5-30 s each) and its median is used.

``--threads N`` (default 2) sets OpenMP, MKL and OpenBLAS threads before numpy and torch load,
so every contender gets the same budget. On an oversubscribed machine multi-threaded LAPACK can
be 10x slower than single-threaded; compare ``--threads 1`` there.

Run:  python benchmarks/metrics_speed.py [--models gpt2,resnet50] [--threads 2]
"""

from __future__ import annotations

import os
import sys


def _thread_budget(argv: list[str]) -> str:
    for i, arg in enumerate(argv):
        if arg.startswith("--threads="):
            return arg.split("=", 1)[1]
        if arg == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
    return "2"


for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = _thread_budget(sys.argv)  # before numpy/torch start their thread pools

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from torch import nn  # noqa: E402

from hookstats.metrics import compute_metrics  # noqa: E402

# --- models ------------------------------------------------------------------------------------


class Bottleneck(nn.Module):
    """ResNet-50's bottleneck: 1x1 reduce, 3x3, 1x1 expand (x4), batch norms, projection."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * 4
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, out, 1, stride, bias=False), nn.BatchNorm2d(out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet50(nn.Module):
    """torchvision's resnet50 layout (25.6M parameters), built here: torchvision is not used."""

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        layers, inplanes = [], 64
        for planes, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            stage = [Bottleneck(inplanes, planes, stride)]
            inplanes = planes * 4
            stage += [Bottleneck(inplanes, planes) for _ in range(blocks - 1)]
            layers.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def build(name: str) -> nn.Module:
    torch.manual_seed(0)
    if name == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        return GPT2LMHeadModel(GPT2Config()).eval()
    if name == "resnet50":
        model = ResNet50().eval()
        with torch.no_grad():  # give batch norms non-trivial scales and shifts
            for m in model.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_(0.0, 0.1)
        return model
    raise SystemExit(f"unknown model {name!r}; choose gpt2 or resnet50")


# --- baselines ---------------------------------------------------------------------------------


def unique_params(model: nn.Module) -> dict[str, torch.Tensor]:
    """Unique parameters by name (``named_parameters`` lists a tied tensor once)."""
    return {n: p.detach() for n, p in model.named_parameters()}


def matrices(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {
        n: p.reshape(p.shape[0], -1)
        for n, p in params.items()
        if not n.endswith("bias") and p.ndim >= 2
    }


def torch_svdvals(mats: dict[str, torch.Tensor]) -> None:
    for w in mats.values():
        torch.linalg.svdvals(w)


def numpy_reference(params: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """(b): per-matrix float64 values by plain numpy, plus the model's pooled statistics."""
    per_matrix = {}
    for name, w in matrices(params).items():
        a = w.double().numpy()
        s = np.linalg.svd(a, compute_uv=False)
        per_matrix[name] = {
            "l1": np.abs(a).sum(),
            "fro": np.linalg.norm(a),
            "trace": np.trace(a),
            "sv": s,
        }
    weights = np.concatenate(
        [p.double().numpy().ravel() for n, p in params.items() if not n.endswith("bias")]
    )
    biases = [p.double().numpy().ravel() for n, p in params.items() if n.endswith("bias")]
    biases = np.concatenate(biases) if biases else np.empty(0)
    pooled = {
        "w": (weights.mean(), np.median(weights), weights.var()),
        "b": (biases.mean(), np.median(biases), biases.var()) if biases.size else None,
    }
    return {"matrices": per_matrix, "pooled": pooled}


def weightwatcher_analyze(model: nn.Module) -> Callable[[], object] | None:
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints on import
            import weightwatcher as ww
    except ImportError:
        return None

    def run() -> object:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ww.WeightWatcher(model=model).analyze()

    return run


# --- accuracy ----------------------------------------------------------------------------------


def expected_row(names: list[str], ref: dict) -> dict[str, float]:
    """The reference values of the spectral/norm metrics over the matrices ``names``."""
    mats = [ref["matrices"][n] for n in names]
    if not mats:
        return {}
    sv = np.concatenate([m["sv"] for m in mats])
    return {
        "l1": np.mean([m["l1"] for m in mats]),
        "l2": np.mean([m["fro"] for m in mats]),
        "l1_l2": np.mean([m["l1"] / m["fro"] for m in mats]),
        "trace": np.mean([m["trace"] for m in mats]),
        "spectral_norm": np.mean([m["sv"][0] for m in mats]),
        "trace_spectral": np.mean([m["trace"] / m["sv"][0] for m in mats]),
        "sv_mean": sv.mean(),
        "sv_var": sv.var(),
    }


def max_relative_error(model: nn.Module, frame: pd.DataFrame, ref: dict) -> tuple[float, int]:
    """Largest relative error of ``frame`` against the float64 reference, and values checked.

    Matrix metrics are checked at every hook point; pooled moments and medians at ``(model)``.
    """
    ids = {id(p): n for n, p in model.named_parameters()}
    modules = dict(model.named_modules())
    worst, checked = 0.0, 0
    for point, rows in frame.groupby("hook_point", sort=False):
        module = model if point == "(model)" else modules[point]
        names = list(dict.fromkeys(ids[id(p)] for p in module.parameters()))
        expected = expected_row([n for n in names if n in ref["matrices"]], ref)
        if point == "(model)":
            w, b = ref["pooled"]["w"], ref["pooled"]["b"]
            expected |= dict(zip(("weight_mean", "weight_median", "weight_var"), w, strict=True))
            if b is not None:
                expected |= dict(zip(("bias_mean", "bias_median", "bias_var"), b, strict=True))
        for row in rows.itertuples():
            if row.metric in expected:
                want = expected[row.metric]
                scale = max(abs(want), 1e-300)
                worst = max(worst, abs(row.value - want) / scale)
                checked += 1
    return worst, checked


# --- driver ------------------------------------------------------------------------------------


def timed(fn: Callable[[], object], repeats: int = 1) -> tuple[float, object]:
    """Median wall time of ``repeats`` calls of ``fn``, and the last call's result."""
    times, result = [], None
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), result


def bench(
    name: str,
    console: Console,
    repeats: int,
    baseline_repeats: int,
) -> list[tuple[str, str, float, str]]:
    model = build(name)
    params = unique_params(model)
    mats = matrices(params)
    n_params = sum(p.numel() for p in params.values())
    console.print(
        f"[bold]{name}[/]: {n_params / 1e6:.1f}M parameters, {len(mats)} matrices, "
        f"{sum(1 for _ in model.modules())} modules"
    )
    torch.linalg.svdvals(torch.randn(8, 8))  # warm up LAPACK
    t_all, frame = timed(lambda: compute_metrics(model), repeats)
    t_sigma, frame_sigma = timed(lambda: compute_metrics(model, metrics=["spectral_norm"]), repeats)
    t_a, _ = timed(lambda: torch_svdvals(mats), baseline_repeats)
    t_b, ref = timed(lambda: numpy_reference(params), baseline_repeats)
    ww = weightwatcher_analyze(model)
    t_c = timed(ww, baseline_repeats)[0] if ww is not None else math.nan
    err_all, n_all = max_relative_error(model, frame, ref)
    err_sigma, n_sigma = max_relative_error(model, frame_sigma, ref)
    rows = [
        (name, "hookstats all metrics", t_all, f"max rel err {err_all:.1e} ({n_all} values)"),
        (
            name,
            "hookstats spectral_norm",
            t_sigma,
            f"max rel err {err_sigma:.1e} ({n_sigma} values)",
        ),
        (name, "(a) torch svdvals", t_a, ""),
        (name, "(b) numpy float64 loop", t_b, ""),
        (
            name,
            "(c) weightwatcher analyze",
            t_c,
            "" if ww is not None else "not installed (pip install weightwatcher)",
        ),
    ]
    return rows


def render(rows: list[tuple[str, str, float, str]]) -> Table:
    table = Table(title="compute_metrics vs per-matrix baselines (ratio = baseline / ours)")
    for column in ("model", "run", "seconds", "(a)/ours", "(b)/ours", "(c)/ours", "note"):
        table.add_column(column, justify="left" if column in ("model", "run", "note") else "right")
    by_model: dict[str, dict[str, float]] = {}
    for model, run, seconds, _ in rows:
        by_model.setdefault(model, {})[run[:3]] = seconds
    for model, run, seconds, note in rows:
        base = by_model[model]
        ratios = ["", "", ""]
        if run.startswith("hookstats"):
            ratios = [
                f"{base[k] / seconds:.1f}x" if not math.isnan(base[k]) else "-"
                for k in ("(a)", "(b)", "(c)")
            ]
        shown = "-" if math.isnan(seconds) else f"{seconds:.2f}"
        table.add_row(model, run, shown, *ratios, note)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="gpt2,resnet50")
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="threads for torch, OpenMP, MKL and OpenBLAS (set before import)",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="hookstats calls per figure (median)"
    )
    parser.add_argument(
        "--baseline-repeats", type=int, default=1, help="calls per baseline figure (median)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    console = Console(width=150)
    console.print(f"threads: {args.threads}; torch {torch.__version__}, numpy {np.__version__}")
    rows = [
        r
        for name in args.models.split(",")
        for r in bench(name.strip(), console, args.repeats, args.baseline_repeats)
    ]
    console.print(render(rows))


if __name__ == "__main__":
    main()
