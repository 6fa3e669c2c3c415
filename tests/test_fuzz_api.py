"""Fuzzing the public API with bad values (hypothesis): every failure must be a clear error.

Each call replaces one argument of a valid call with an odd value (None, negative, huge, NaN,
bool, text, bytes, empty or odd containers, objects). A call may succeed (not every odd value
is wrong); when it fails, the error must be a ``HookstatsError``, or a ``TypeError``/
``ValueError`` whose message names the argument -- never a raw traceback from inside hookstats
or torch. ``RAW`` collects the calls that broke the rule; the test asserts there are none.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import hookstats as hs
from hookstats.errors import HookstatsError
from hookstats.runs import CheckpointLogger, MetricStore, load_checkpoint, sweep

from models import MLP

ODD = st.sampled_from(
    [
        None,
        0,
        -1,
        2**70,
        1.5,
        -0.0,
        math.nan,
        math.inf,
        True,
        "",
        " ",
        "x",
        "fp32",
        b"bytes",
        [],
        [1],
        ["a", None],
        (),
        {},
        {"a": 1},
        object(),
        nn.Linear(2, 2),
        torch.ones(2),
        pd.DataFrame(),
        len,
    ]
)
FOLDER = Path(tempfile.mkdtemp(prefix="hookstats-fuzz-"))


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"hook_point": ["(model)"], "metric": ["l2"], "value": [1.0]})


def _seed() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "layer": ["fc"],
            "output_elements": [4],
            "parameter_bytes": [72],
            "activation_bytes": [16],
            "macs": [32],
        }
    )


def _checkpoint() -> str:
    path = FOLDER / "step_1.pt"
    if not path.exists():
        torch.save(MLP((8, 16, 4)).state_dict(), path)
    return str(path)


def _store() -> MetricStore:
    return MetricStore(":memory:")


def _open_and_close(**kwargs: Any) -> None:
    MetricStore(**kwargs).close()


def _build() -> nn.Module:
    return MLP((8, 16, 4))


def _track_one_forward(**kwargs: Any) -> None:
    """A ``track()`` block around one forward of the model (the valid MLP; another model is
    only opened and closed: its forward with this input is the caller's own error)."""
    model = kwargs["model"]
    with hs.track(**kwargs):
        if isinstance(model, MLP):
            model(torch.zeros(2, 8))


# Each entry: a name, a function of keyword arguments, and the valid arguments it is given.
CALLS: list[tuple[str, Callable[..., Any], Callable[[], dict[str, Any]]]] = [
    (
        "profile",
        hs.profile,
        lambda: {
            "model": MLP(),
            "input_shape": (8,),
            "batch_size": 2,
            "dtype": None,
            "device": None,
            "points": None,
        },
    ),
    (
        "profile(inputs=)",
        hs.profile,
        lambda: {"model": MLP(), "inputs": (torch.zeros(2, 8),), "kwargs": None, "train": False},
    ),
    (
        "estimate_layerwise_stats",
        hs.estimate_layerwise_stats,
        lambda: {"model": MLP(), "batch_size": 2, "input_shape": (8,)},
    ),
    ("select_points", hs.select_points, lambda: {"model": MLP(), "points": "layers.*"}),
    (
        "track",
        _track_one_forward,
        lambda: {
            "model": MLP(),
            "points": None,
            "metrics": None,
            "live": False,
            "timing": True,
            "console": None,
            "sort_by": "latency",
            "top": 15,
            "cuda_timing": "sync",
        },
    ),
    (
        "activation_stats",
        hs.activation_stats,
        lambda: {
            "model": MLP(),
            "points": None,
            "metrics": ["act_rms"],
            "inputs": (torch.zeros(2, 8),),
            "kwargs": None,
        },
    ),
    (
        "compute_metrics",
        hs.compute_metrics,
        lambda: {"model": MLP(), "points": None, "metrics": ["l2"], "precision": "float32"},
    ),
    (
        "summarize_hardware",
        hs.summarize_hardware,
        lambda: {
            "df": _seed(),
            "latency_ms": 1.0,
            "memory_bandwidth_gbps": 100.0,
            "peak_tflops": 1.0,
            "hardware": None,
            "precision": "fp32",
            "source_precision": None,
            "input_bytes": 32,
        },
    ),
    (
        "precision_tradeoffs",
        hs.precision_tradeoffs,
        lambda: {
            "df": _seed(),
            "latency_ms": 1.0,
            "memory_bandwidth_gbps": 100.0,
            "precisions": ["fp32", "bf16"],
            "input_bytes": 32,
        },
    ),
    ("hardware_spec", hs.hardware_spec, lambda: {"name": "a100"}),
    (
        "MetricStore",
        _open_and_close,
        lambda: {
            "path": str(FOLDER / "fuzz.sqlite"),
            "read_only": False,
            "timeout": 1.0,
            "journal": "auto",
            "quick_check": False,
        },
    ),
    (
        "MetricStore.write_checkpoint",
        lambda **kw: _store().write_checkpoint(**kw),
        lambda: {
            "run": "r",
            "checkpoint": "c",
            "step": 1,
            "frame": _frame(),
            "if_exists": "error",
            "seconds": 1.0,
            "identity": None,
        },
    ),
    (
        "MetricStore.to_frame",
        lambda **kw: _store().to_frame(**kw),
        lambda: {"run": None, "metric": None, "hook_point": None},
    ),
    (
        "MetricStore.add_run",
        lambda **kw: _store().add_run(**kw),
        lambda: {"run": "r", "config": {"lr": 1}, "settings": None},
    ),
    (
        "MetricStore.record_failure",
        lambda **kw: _store().record_failure(**kw),
        lambda: {"run": "r", "checkpoint": "c", "error": "E", "message": "m", "step": 1},
    ),
    ("MetricStore.checkpoints", lambda **kw: _store().checkpoints(**kw), lambda: {"run": None}),
    ("MetricStore.failures", lambda **kw: _store().failures(**kw), lambda: {"run": None}),
    (
        "CheckpointLogger",
        lambda **kw: CheckpointLogger(**kw),
        lambda: {
            "store": _store(),
            "run": "r",
            "points": None,
            "metrics": ["l2"],
            "precision": "float32",
            "config": None,
            "probe": None,
        },
    ),
    (
        "CheckpointLogger.log",
        lambda **kw: CheckpointLogger(_store(), "r", metrics=["l2"]).log(**kw),
        lambda: {
            "model": MLP(),
            "step": 1,
            "checkpoint": None,
            "if_exists": "error",
            "identity": None,
        },
    ),
    (
        "sweep",
        lambda **kw: sweep(**kw),
        lambda: {
            "checkpoints": _checkpoint(),
            "build_model": _build,
            "store": _store(),
            "run": "r",
            "points": None,
            "metrics": ["l2"],
            "max_in_flight": None,
            "precision": "float32",
            "progress": False,
            "worker_threads": 1,
            "safe_globals": None,
            "probe": None,
        },
    ),
    (
        "load_checkpoint",
        lambda **kw: load_checkpoint(**kw),
        lambda: {"path": _checkpoint(), "safe_globals": None},
    ),
    (
        "ModularAdditionTask",
        lambda **kw: hs.ModularAdditionTask(**kw),
        lambda: {
            "p": 7,
            "embedding": "embed",
            "positions": (0, 1),
            "n_triples": 4,
            "seed": 0,
            "batch_size": 16,
        },
    ),
]
NAMES = [name for name, _, _ in CALLS]
RAW: list[str] = []


def clear(exc: BaseException, argument: str) -> bool:
    """The rule: a hookstats error, or a TypeError/ValueError naming the argument."""
    if isinstance(exc, HookstatsError):
        return True
    text = str(exc)
    return isinstance(exc, TypeError | ValueError) and argument.split(".")[-1] in text


@pytest.mark.parametrize("name", NAMES)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_bad_values_get_clear_errors(name, data):
    _, call, valid = next(entry for entry in CALLS if entry[0] == name)
    kwargs = valid()
    argument = data.draw(st.sampled_from(sorted(kwargs)), label="argument")
    kwargs[argument] = data.draw(ODD, label="value")
    here = os.getcwd()
    os.chdir(FOLDER)  # a fuzzed relative path ("x") makes its file there, not in the tree
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            call(**kwargs)
        except Exception as exc:  # the rule is checked here
            if not clear(exc, argument):
                RAW.append(f"{name}({argument}={kwargs[argument]!r}): {type(exc).__name__}: {exc}")
                raise AssertionError(
                    f"{name}({argument}={kwargs[argument]!r}) raised a raw "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
        finally:
            os.chdir(here)
