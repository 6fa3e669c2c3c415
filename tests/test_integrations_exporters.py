"""Exporters from a MetricStore: TensorBoard (read back with TensorBoard's own EventAccumulator),
W&B (offline, read back from the run file; and a fake module for the call sequence), MLflow (a
local file store); keys, sanitising and the missing-extra messages."""

from __future__ import annotations

import json
import math
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import hookstats as hs
from hookstats.errors import HookstatsError, StoreError
from hookstats.integrations import common
from hookstats.integrations.mlflow import export_mlflow
from hookstats.integrations.tensorboard import export_tensorboard, singular_value_frame
from hookstats.integrations.wandb import STEP_KEY, export_wandb


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))


@pytest.fixture
def store(tmp_path):
    """Run 'a' at steps 10 and 20 (out of order), run 'b' at step 5; l2 and bias_mean."""
    store = hs.MetricStore(tmp_path / "m.sqlite")
    model = small_model()
    logger = hs.CheckpointLogger(store, "a", metrics=["l2", "bias_mean"])
    logger.log(model, 20)
    with torch.no_grad():
        model[0].weight.mul_(2.0)
    logger.log(model, 10)
    hs.CheckpointLogger(store, "b", metrics=["l2"]).log(model, 5)
    yield store
    store.close()


def expected(store, run) -> dict[tuple[str, int], float]:
    frame = store.to_frame(run=run)
    return {
        (common.metric_key(m, p), int(s)): v
        for s, p, m, v in zip(
            frame["step"], frame["hook_point"], frame["metric"], frame["value"], strict=True
        )
        if not math.isnan(v)
    }


# -- keys ------------------------------------------------------------------------------------


def test_keys_sanitising_and_collisions():
    assert common.metric_key("l2", "(model)") == "hookstats/l2/(model)"
    assert common.metric_key("l2", "(model)", sanitized=True) == "hookstats/l2/_model_"
    assert common.sanitize("blocks.0.attn") == "blocks.0.attn"
    assert common.sanitize("a/b:c(d)") == "a_b_c_d_"  # '/' inside a name would add a level
    with pytest.raises(HookstatsError, match="'x\\(1' and 'x\\)1' both become 'hookstats/l2/x_1'"):
        common.metric_keys([("l2", "x(1"), ("l2", "x)1")], sanitized=True)
    rows = pd.DataFrame(
        {
            "step": [4, 2, 2],
            "hook_point": ["fc", "(model)", "fc"],
            "metric": ["l2", "l2", "l2"],
            "value": [3.0, 1.0, math.nan],
        }
    )
    assert list(common.step_values(rows, sanitized=True)) == [
        (2, {"hookstats/l2/_model_": 1.0}),
        (4, {"hookstats/l2/fc": 3.0}),
    ]


@pytest.mark.parametrize(
    "module, call, extra",
    [
        ("torch.utils.tensorboard", lambda s, p: export_tensorboard(s, p, run="a"), "tensorboard"),
        ("wandb", lambda s, p: export_wandb(s, "a", mode="offline"), "wandb"),
        ("mlflow", lambda s, p: export_mlflow(s, "a"), "mlflow"),
    ],
)
def test_missing_extra_names_the_pip_install(store, tmp_path, monkeypatch, module, call, extra):
    monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    package = "tensorboard" if extra == "tensorboard" else module
    with pytest.raises(HookstatsError, match=rf"needs {package}: pip install hookstats\[{extra}\]"):
        call(store, tmp_path / "out")


# -- TensorBoard -----------------------------------------------------------------------------


def test_tensorboard_scalars_read_back_with_event_accumulator(store, tmp_path):
    pytest.importorskip("tensorboard", reason="hookstats[tensorboard]")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folders = export_tensorboard(store, tmp_path / "tb")
    assert folders == [tmp_path / "tb" / "a", tmp_path / "tb" / "b"]
    for run, folder in zip(["a", "b"], folders, strict=True):
        events = EventAccumulator(str(folder), size_guidance={"scalars": 0}).Reload()
        got = {
            (tag, e.step): e.value for tag in events.Tags()["scalars"] for e in events.Scalars(tag)
        }
        want = expected(store, run)
        assert set(got) == set(want)  # every value once, NaN (ReLU has no weights) left out
        for key, value in want.items():
            assert got[key] == np.float32(value)  # TensorBoard keeps scalars as float32
    assert ("hookstats/bias_mean/(model)", 10) in got or run == "b"
    steps = [e.step for e in EventAccumulator(str(folders[0])).Reload().Scalars("hookstats/l2/0")]
    assert steps == [10, 20]  # in step order, whatever order they were logged in


def test_tensorboard_spectra_as_histograms(store, tmp_path):
    pytest.importorskip("tensorboard", reason="hookstats[tensorboard]")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = small_model()
    spectra = singular_value_frame(model, nn.Linear, step=10)
    want = torch.linalg.svdvals(model[0].weight.detach().double()).numpy()
    assert spectra["hook_point"].tolist() == ["0", "2"]
    np.testing.assert_allclose(spectra["values"][0], want, rtol=1e-12)  # an independent SVD

    folder = export_tensorboard(store, tmp_path / "tb", run="a", metric="l2", spectra=spectra)[0]
    events = EventAccumulator(str(folder), size_guidance={"histograms": 0}).Reload()
    assert sorted(events.Tags()["histograms"]) == [
        "hookstats/singular_values/0",
        "hookstats/singular_values/2",
    ]
    histogram = events.Histograms("hookstats/singular_values/0")[0]
    assert histogram.step == 10 and histogram.histogram_value.num == 4  # min(6, 4) values
    assert histogram.histogram_value.sum == pytest.approx(want.sum(), rel=1e-12)
    assert histogram.histogram_value.max == pytest.approx(want.max(), rel=1e-12)
    with pytest.raises(HookstatsError, match="spectra= needs columns"):
        export_tensorboard(store, tmp_path / "x", run="a", spectra=spectra.drop(columns="values"))
    with pytest.raises(StoreError, match="no run 'nope'"):
        export_tensorboard(store, tmp_path / "y", run="nope")


# -- Weights & Biases ------------------------------------------------------------------------


class FakeRun:
    def __init__(self, **init):
        self.init, self.calls = init, []

    def define_metric(self, name, **kwargs):
        self.calls.append(("define_metric", name, kwargs))

    def log(self, data, **kwargs):
        self.calls.append(("log", data, kwargs))

    def finish(self):
        self.calls.append(("finish",))


def fake_wandb(monkeypatch) -> list[FakeRun]:
    made: list[FakeRun] = []

    def init(**kwargs):
        made.append(FakeRun(**kwargs))
        return made[-1]

    module = types.SimpleNamespace(init=init, Table=lambda dataframe: ("table", len(dataframe)))
    monkeypatch.setitem(sys.modules, "wandb", module)
    return made


def test_wandb_call_sequence_never_passes_a_past_step(store, monkeypatch):
    made = fake_wandb(monkeypatch)
    run = export_wandb(store, "a", metric="l2", project="p", table=True)
    assert made == [run] and run.init == {"name": "a", "project": "p"}
    want = expected(store, "a")
    assert run.calls[:2] == [
        ("define_metric", STEP_KEY, {}),
        ("define_metric", "hookstats/*", {"step_metric": STEP_KEY}),
    ]
    logged = [c for c in run.calls if c[0] == "log"]
    assert all(kwargs == {} for _, _, kwargs in logged)  # W&B's own step is never set
    assert [data[STEP_KEY] for _, data, _ in logged[:2]] == [10, 20]
    assert logged[0][1]["hookstats/l2/_model_"] == want[("hookstats/l2/(model)", 10)]
    assert logged[2][1] == {"hookstats/records": ("table", 8)}  # 2 steps x 4 points, NaN kept
    assert run.calls[-1] == ("finish",)

    own = FakeRun()
    assert export_wandb(store, "b", wandb_run=own) is own
    assert ("finish",) not in own.calls  # a run passed in is left open
    with pytest.raises(HookstatsError, match="one run at a time"):
        export_wandb(store, ["a", "b"], wandb_run=own)


def wandb_records(path: Path) -> list[bytes]:
    """The records of a .wandb file (a LevelDB-style log: 32 KiB blocks of 7-byte headers)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, pending, pos, block = [], b"", 7, 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind in (1, 2):  # full, first
            pending = chunk
        elif kind in (3, 4):  # middle, last
            pending += chunk
        if kind in (1, 4):
            records.append(pending)
    return records


@pytest.mark.slow
def test_wandb_offline_backfill_into_a_run_past_those_steps(store, tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb", reason="hookstats[wandb]")
    from wandb.proto import wandb_internal_pb2

    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_MODE", "offline")
    live = wandb.init(project="p", dir=str(tmp_path), mode="offline")
    live.log({"loss": 1.0}, step=100)  # training got further than any stored checkpoint
    export_wandb(store, "a", wandb_run=live)
    live.finish()
    wandb.teardown()  # waits for the W&B service to write the run file out

    history = []
    for raw in wandb_records(next(tmp_path.glob("wandb/offline-run-*/*.wandb"))):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "history":
            items = {
                "/".join(i.nested_key) or i.key: json.loads(i.value_json)
                for i in record.history.item
            }
            if STEP_KEY in items:
                history.append(items)
    want = expected(store, "a")
    assert [h[STEP_KEY] for h in history] == [10, 20]
    for row in history:
        for (key, step), value in want.items():
            if step == row[STEP_KEY]:
                assert row[key.replace("(model)", "_model_")] == value  # float64, exact


# -- MLflow ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_mlflow_local_file_store(store, tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="hookstats[mlflow]")
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps file stores opt-in
    uri = (tmp_path / "mlruns").as_uri()
    run_id = export_mlflow(store, "a", tracking_uri=uri, experiment="exp")
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "a"
    assert run.data.tags["hookstats.run"] == "a"
    want = expected(store, "a")
    got = {
        (key, m.step): m.value
        for key in run.data.metrics
        for m in client.get_metric_history(run_id, key)
    }
    assert set(run.data.metrics) == {
        "hookstats/l2/_model_",
        "hookstats/l2/0",
        "hookstats/l2/2",
        "hookstats/bias_mean/_model_",
        "hookstats/bias_mean/0",
        "hookstats/bias_mean/2",
    }  # '(model)' sanitised: MLflow refuses parentheses
    assert got == {(k.replace("(model)", "_model_"), s): v for (k, s), v in want.items()}

    second = export_mlflow(store, "b", tracking_uri=uri, run_id=run_id)  # into an existing run
    assert second == run_id
    history = client.get_metric_history(run_id, "hookstats/l2/_model_")
    assert sorted((m.step, m.value) for m in history) == [
        (5, expected(store, "b")[("hookstats/l2/(model)", 5)]),  # a step below the others
        (10, want[("hookstats/l2/(model)", 10)]),
        (20, want[("hookstats/l2/(model)", 20)]),
    ]
