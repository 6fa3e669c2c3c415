"""Probe batches in CheckpointLogger and sweep: activation metrics stored beside the weight
metrics in one checkpoint, exact against activation_stats on the same model and probe and
against a float64 numpy reference; the probe's description in the run's settings (resume with
another probe refused); refusals before anything is written; the probe sent to process-pool
workers."""

from __future__ import annotations

import pickle
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd
import pytest
import torch
from sweep_helpers import build_mlp, write_checkpoints

import hookstats as hs
from hookstats.errors import ForwardError, MetricError, StoreError
from hookstats.metrics import compute_metrics, metric_registry
from hookstats.runs import CheckpointLogger, MetricStore, sweep
from hookstats.runs.probe import Probe, as_probe

from models import MLP, KeywordOnly

ACTIVATIONS = ["act_rms", "act_kurtosis", "act_zero_frac"]
METRICS = ["l2", *ACTIVATIONS]


def probe_batch(rows: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.randn(rows, 8, generator=torch.Generator().manual_seed(seed))


def expected(model: torch.nn.Module, x: torch.Tensor) -> pd.DataFrame:
    """The rows a checkpoint must hold: compute_metrics, then activation_stats, run directly."""
    weights = compute_metrics(model, None, ["l2"])
    activations = hs.activation_stats(model, None, ACTIVATIONS, inputs=(x,))
    return pd.concat([weights, activations], ignore_index=True)


def outputs_float64(model: torch.nn.Module, module: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    """Every output element of ``module`` over one eval forward, as float64 (an own hook)."""
    seen: list[np.ndarray] = []
    handle = module.register_forward_hook(
        lambda m, a, out: seen.append(out.detach().double().numpy().ravel())
    )
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
        model.train()
    return np.concatenate(seen)


def test_logger_writes_weight_and_activation_rows_in_one_transaction(tmp_path, monkeypatch):
    model, x = build_mlp(), probe_batch()
    store = MetricStore(tmp_path / "m.sqlite")
    writes = []
    original = store.write_checkpoint
    monkeypatch.setattr(
        store, "write_checkpoint", lambda *a, **k: writes.append(a[1]) or original(*a, **k)
    )
    logger = CheckpointLogger(store, "p", None, METRICS, probe=(x, None))
    frame = logger.log(model, 10)
    want = expected(model, x)
    pd.testing.assert_frame_equal(frame, want, check_exact=True)
    assert writes == ["step:10"]  # one write_checkpoint: one transaction for both kinds
    stored = store.to_frame(run="p")
    pd.testing.assert_frame_equal(
        stored[["hook_point", "metric", "value", "note"]], want, check_exact=True
    )
    # 5 hook points ((model), layers, layers.0, layers.1, act) x (1 weight + 3 activation)
    assert store.checkpoints("p")["rows"].tolist() == [5 * 4] == [len(want)]
    assert model.training  # the probe's forward ran in eval mode, the flag is restored
    store.close()


def test_logged_activations_match_a_float64_numpy_reference():
    model, x = build_mlp(), probe_batch()
    logger = CheckpointLogger(MetricStore(":memory:"), "p", None, METRICS, probe=(x, None))
    frame = logger.log(model, 1).set_index(["hook_point", "metric"])["value"]
    first = outputs_float64(model, model.layers[0], x)  # 32 rows x 16 units = 512 values
    assert first.size == 512
    assert frame["layers.0", "act_rms"] == pytest.approx(np.sqrt(np.mean(first**2)), rel=1e-12)
    d = first - first.mean()
    kurtosis = np.mean(d**4) / np.mean(d**2) ** 2 - 3.0
    assert frame["layers.0", "act_kurtosis"] == pytest.approx(kurtosis, rel=1e-10)
    # the shared ReLU runs twice per forward: 32 * 16 + 32 * 4 = 640 values, both calls pooled
    relu = outputs_float64(model, model.act, x)
    assert relu.size == 640
    assert frame["act", "act_zero_frac"] == np.count_nonzero(relu == 0) / 640


def test_metrics_none_with_a_probe_means_every_weight_and_activation_metric():
    model, x = build_mlp(), probe_batch()
    frame = CheckpointLogger(MetricStore(":memory:"), "p", "layers.0", probe=x).log(model, 1)
    layer = frame[frame["hook_point"] == "layers.0"]  # compute_metrics adds (model) rows too
    assert layer["metric"].tolist() == metric_registry.names(1) + metric_registry.names(
        "activation"
    )


def test_probe_with_keyword_inputs_and_plain_values():
    model = KeywordOnly()
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    logger = CheckpointLogger(
        MetricStore(":memory:"), "k", "proj", ["act_absmax"], probe=((), {"x": x, "scale": 2.0})
    )
    value = logger.log(model, 1)["value"].item()
    with torch.no_grad():
        assert value == model.proj(x).abs().max().item()  # proj's output (scale comes after)
    assert logger.settings["probe"]["inputs"] == []
    assert logger.settings["probe"]["kwargs"] == {
        "scale": 2.0,
        "x": {"shape": [5, 4], "dtype": "float32"},
    }


def test_the_probe_is_copied_when_the_logger_is_made():
    model, x = build_mlp(), probe_batch()
    want = hs.activation_stats(model, None, ACTIVATIONS, inputs=(x.clone(),))
    logger = CheckpointLogger(MetricStore(":memory:"), "p", None, ACTIVATIONS, probe=(x, None))
    x.add_(1.0)  # the caller reuses its batch buffer
    pd.testing.assert_frame_equal(logger.log(model, 1), want, check_exact=True)


def test_run_settings_describe_the_probe_not_its_tensors(tmp_path):
    model, x = build_mlp(), probe_batch()
    with MetricStore(tmp_path / "m.sqlite") as store:
        CheckpointLogger(store, "p", None, METRICS, probe=(x, None)).log(model, 1)
        described = store.runs().set_index("run").loc["p", "settings"]["probe"]
    assert set(described) == {"inputs", "kwargs", "hash"}
    assert described["inputs"] == [{"shape": [32, 8], "dtype": "float32"}]
    assert described["kwargs"] == {} and len(described["hash"]) == 32  # BLAKE2b, 16 bytes
    same = as_probe((x.clone(), None))
    assert same is not None and same.description == described  # by content, not identity

    ids = torch.arange(6).reshape(2, 3)
    base = as_probe((x, {"mask": ids, "flag": True}))
    assert base is not None
    assert base.description["kwargs"] == {
        "flag": True,
        "mask": {"shape": [2, 3], "dtype": "int64"},
    }
    for other in [
        (x + 1e-7, {"mask": ids, "flag": True}),  # one ulp-sized change of the contents
        (x, {"mask": ids + 1, "flag": True}),
        (x.double(), {"mask": ids, "flag": True}),
        (x, {"mask": ids, "flag": False}),
        ((x, x), {"mask": ids, "flag": True}),
    ]:
        changed = as_probe(other)
        assert changed is not None and changed.description["hash"] != base.description["hash"]


def test_a_run_resumed_with_another_probe_is_refused(tmp_path):
    model, x = build_mlp(), probe_batch()
    path = tmp_path / "m.sqlite"
    CheckpointLogger(path, "p", None, METRICS, probe=(x, None)).log(model, 1)
    CheckpointLogger(path, "p", None, METRICS, probe=(x.clone(), None)).log(model, 2)  # same
    with pytest.raises(
        StoreError,
        match=r"run 'p' was logged with a probe batch \(float32\(32, 8\); content hash \w+\), "
        r"and this call has a probe batch \(float32\(16, 8\); .*Pass the same probe=",
    ):
        CheckpointLogger(path, "p", None, METRICS, probe=(probe_batch(16), None))
    with pytest.raises(StoreError, match="was logged with a probe batch .* this call has a probe"):
        CheckpointLogger(path, "p", None, METRICS, probe=(probe_batch(seed=2), None))
    CheckpointLogger(path, "w").log(model, 1)  # metrics=None: every weight metric
    with pytest.raises(StoreError, match="run 'w' was logged with no probe batch, and this call"):
        CheckpointLogger(path, "w", probe=x)  # metrics=None: and every activation metric
    with MetricStore(path) as store:
        assert store.checkpoints("p")["step"].tolist() == [1, 2]


def test_activation_metrics_without_a_probe_are_refused_before_anything_is_written(tmp_path):
    path = tmp_path / "m.sqlite"
    with pytest.raises(MetricError, match=r"'act_rms': activation metric.*Pass probe=\(inputs"):
        CheckpointLogger(path, "p", None, ["l2", "act_rms"])
    paths = write_checkpoints(tmp_path / "ckpts", [1])
    with pytest.raises(MetricError, match="no probe batch to run. Pass probe="):
        sweep(paths, build_mlp, path, "s", metrics=["act_std"], progress=False)
    with pytest.raises(MetricError, match="probe= is given but metrics=\\['l2'\\] names no"):
        CheckpointLogger(path, "p", None, ["l2"], probe=probe_batch())
    with pytest.raises(MetricError, match="unknown metric"):
        CheckpointLogger(path, "p", None, ["act_rmss"], probe=probe_batch())
    assert not path.exists()


@pytest.mark.parametrize(
    "probe, message",
    [
        ((1, 2, 3), r"probe= must be \(inputs, kwargs\)"),
        ((torch.ones(2), torch.ones(2)), r"kwargs must be a dict or None, got Tensor"),
        ((np.ones(2), None), r"inputs\[0\] is a ndarray"),
        ((torch.empty(2, device="meta"), None), r"inputs\[0\] is a torch.strided meta tensor"),
        (((), {"x": {1: torch.ones(1)}}), r"kwargs\['x'\] has a key that is not a string"),
        ("text", r"probe= must be \(inputs, kwargs\).*got str"),
    ],
)
def test_malformed_probes_name_probe(tmp_path, probe, message):
    with pytest.raises(MetricError, match=message):
        CheckpointLogger(tmp_path / "m.sqlite", "p", None, ["act_rms"], probe=probe)
    assert not (tmp_path / "m.sqlite").exists()


def test_a_probe_the_model_cannot_run_writes_nothing(tmp_path):
    path = tmp_path / "m.sqlite"
    logger = CheckpointLogger(path, "p", None, METRICS, probe=torch.ones(4, 5))  # 5 != 8
    with pytest.raises(ForwardError, match="the model's forward raised RuntimeError"):
        logger.log(build_mlp(), 1)
    with MetricStore(path) as store:
        assert store.runs().empty  # not even the run


def test_probe_pickles_and_moves_to_a_device():
    probe = as_probe((probe_batch(), {"mask": torch.ones(2, dtype=torch.bool), "n": 3}))
    assert isinstance(probe, Probe)
    copy = pickle.loads(pickle.dumps(probe))
    assert copy.description == probe.description
    assert torch.equal(copy.inputs[0], probe.inputs[0])
    inputs, kwargs = probe.on(torch.device("cpu"))
    assert inputs[0] is probe.inputs[0] and kwargs["n"] == 3  # already there: no copy


def stored_rows(path) -> pd.DataFrame:
    with MetricStore(path) as store:
        frame = store.to_frame()
    return frame.drop(columns=["checkpoint", "run"])


def test_sweep_with_a_probe_in_a_process_pool_matches_activation_stats(tmp_path):
    paths = write_checkpoints(tmp_path / "ckpts", [1, 2, 3])
    x = probe_batch()
    local = tmp_path / "local.sqlite"
    summary = sweep(paths, build_mlp, local, "s", metrics=METRICS, probe=(x, None), progress=False)
    assert summary.done == 3
    with ProcessPoolExecutor(2) as pool:  # the Job carries the probe to the workers (pickled)
        pooled = sweep(
            paths,
            build_mlp,
            tmp_path / "pool.sqlite",
            "s",
            metrics=METRICS,
            probe=(x, None),
            executor=pool,
            progress=False,
        )
    assert pooled.done == 3
    rows = stored_rows(local)
    pd.testing.assert_frame_equal(stored_rows(tmp_path / "pool.sqlite"), rows, check_exact=True)
    for step, path in zip([1, 2, 3], paths, strict=True):
        model = MLP((8, 16, 4))  # an independent load: plain torch.load + load_state_dict
        model.load_state_dict(torch.load(path, weights_only=True)["model"])
        got = rows[rows["step"] == step].drop(columns="step").reset_index(drop=True)
        pd.testing.assert_frame_equal(got, expected(model, x), check_exact=True)


def test_sweep_resume_with_the_same_probe_skips_and_another_is_refused(tmp_path):
    paths = write_checkpoints(tmp_path / "ckpts", [1, 2])
    store, x = tmp_path / "m.sqlite", probe_batch()
    sweep(paths, build_mlp, store, "s", metrics=METRICS, probe=(x, None), progress=False)
    again = sweep(paths, build_mlp, store, "s", metrics=METRICS, probe=x.clone(), progress=False)
    assert (again.done, again.skipped) == (0, 2)
    with pytest.raises(StoreError, match="run 's' was logged with a probe batch"):
        sweep(paths, build_mlp, store, "s", metrics=METRICS, probe=x * 2, progress=False)
    with pytest.raises(StoreError, match="already exists with settings"):  # metrics differ too
        sweep(paths, build_mlp, store, "s", metrics=["l2"], progress=False)


def test_a_probe_the_model_cannot_run_stops_the_sweep(tmp_path):
    paths = write_checkpoints(tmp_path / "ckpts", [1, 2])
    store = tmp_path / "m.sqlite"
    with pytest.raises(ForwardError):
        sweep(paths, build_mlp, store, "s", metrics=METRICS, probe=torch.ones(2, 3), progress=False)
    with MetricStore(store) as opened:
        assert opened.runs().empty and opened.failures().empty
