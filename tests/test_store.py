"""MetricStore: round trips, atomic checkpoints, metadata, failures, schema, read-only, export."""

from __future__ import annotations

import json
import math
import os
import pickle
import sqlite3
import sys

import pandas as pd
import pytest
import torch

import hookstats as hs
from hookstats.errors import StoreError
from hookstats.runs.store import RECORD_COLUMNS, SCHEMA_VERSION, MetricStore

from models import SmallCNN


def rows(values: dict[tuple[str, str], float], notes: dict | None = None) -> pd.DataFrame:
    notes = notes or {}
    return pd.DataFrame(
        [(p, m, v, notes.get((p, m), "")) for (p, m), v in values.items()],
        columns=["hook_point", "metric", "value", "note"],
    )


CKPT = {("(model)", "l2"): 3.0, ("fc", "l2"): 2.0, ("fc", "spectral_norm"): math.nan}
NOTE = {("fc", "spectral_norm"): "not a matrix"}


@pytest.fixture
def store(tmp_path):
    with MetricStore(tmp_path / "m.sqlite") as opened:
        yield opened


def test_round_trip_keeps_order_values_and_nan_notes(store):
    assert store.write_checkpoint("a", "step_20.pt", 20, rows(CKPT, NOTE))
    assert store.write_checkpoint("a", "step_10.pt", 10, rows({k: v + 1 for k, v in CKPT.items()}))
    frame = store.to_frame(run="a")
    assert list(frame.columns) == RECORD_COLUMNS
    assert frame["step"].tolist() == [10, 10, 10, 20, 20, 20]  # by step, then computed order
    assert frame["hook_point"].tolist()[:3] == ["(model)", "fc", "fc"]
    assert frame["value"].tolist()[3:5] == [3.0, 2.0]
    assert math.isnan(frame["value"].iloc[5]) and frame["note"].iloc[5] == "not a matrix"
    assert frame["note"].iloc[0] == ""
    assert frame["value"].dtype == "float64" and frame["step"].dtype == "int64"


def test_filters_and_unknown_names(store):
    store.write_checkpoint("a", "s1", 1, rows(CKPT))
    store.write_checkpoint("b", "s1", 1, rows(CKPT))
    assert len(store.to_frame()) == 6
    assert store.to_frame(run=["b"], metric="l2")["hook_point"].tolist() == ["(model)", "fc"]
    assert store.to_frame(hook_point="f*")["metric"].tolist() == ["l2", "spectral_norm"] * 2
    with pytest.raises(StoreError, match=r"no run 'c' in the store .*Known: a, b\."):
        store.to_frame(run="c")
    with pytest.raises(StoreError, match=r"no metric 'l3' .*Known: l2, spectral_norm"):
        store.to_frame(metric="l3")


def test_if_exists_error_skip_replace(store):
    store.write_checkpoint("a", "s1", 1, rows(CKPT))
    with pytest.raises(
        StoreError,
        match=r"'s1' of run 'a' is already in the store.*"
        r"if_exists='replace'",
    ):
        store.write_checkpoint("a", "s1", 1, rows(CKPT))
    assert not store.write_checkpoint("a", "s1", 1, rows({("x", "l1"): 9.0}), if_exists="skip")
    assert store.to_frame()["value"].iloc[0] == 3.0
    assert store.write_checkpoint("a", "s1", 5, rows({("x", "l1"): 9.0}), if_exists="replace")
    assert store.to_frame()[["step", "hook_point", "value"]].values.tolist() == [[5, "x", 9.0]]


def test_a_checkpoint_is_all_rows_or_none(store):
    """A failure inside the transaction (a trigger aborts the 3rd row) leaves no trace."""
    side = sqlite3.connect(store.path)
    side.execute(
        "CREATE TRIGGER boom BEFORE INSERT ON metrics WHEN NEW.position = 2 "
        "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
    )
    side.commit()
    with pytest.raises(StoreError, match="cannot write a checkpoint .*disk on fire"):
        store.write_checkpoint("a", "s1", 1, rows(CKPT))
    assert store.completed("a") == set()
    assert side.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] == 0
    side.execute("DROP TRIGGER boom")
    side.commit()
    side.close()
    store.write_checkpoint("a", "s1", 1, rows(CKPT))
    assert store.completed("a") == {"s1"}


def test_malformed_rows(store):
    with pytest.raises(StoreError, match=r"missing \['value'\]"):
        store.write_checkpoint("a", "s", 1, pd.DataFrame({"hook_point": ["x"], "metric": ["m"]}))
    twice = pd.concat([rows(CKPT), rows(CKPT)])
    with pytest.raises(StoreError, match=r"name \('\(model\)', 'l2'\) twice"):
        store.write_checkpoint("a", "s", 1, twice)


def test_runs_metadata_and_settings_check(store):
    store.add_run("a", config={"lr": 0.1}, settings={"metrics": ["l2"]})
    store.write_checkpoint("a", "s2", 2, rows(CKPT))
    store.write_checkpoint("a", "s9", 9, rows(CKPT))
    store.record_failure("a", "bad.pt", "CheckpointError", "empty")
    run = store.runs().iloc[0]
    assert (run["run"], run["checkpoints"], run["first_step"], run["last_step"]) == ("a", 2, 2, 9)
    assert (run["failures"], run["rows"]) == (1, 6)
    assert run["config"] == {"lr": 0.1} and run["settings"] == {"metrics": ["l2"]}
    assert run["hookstats_version"] == hs.__version__ and run["torch_version"] == torch.__version__
    assert run["created"].startswith("20")
    store.add_run("a", settings={"metrics": ["l2"]})  # same settings: resume is fine
    with pytest.raises(StoreError, match=r"run 'a' already exists with settings .*Use a new run"):
        store.add_run("a", settings={"metrics": ["l1"]})


def test_failures_are_counted_and_cleared_by_success(store):
    store.record_failure("a", "c.pt", "CheckpointError", "truncated", step=3)
    store.record_failure("a", "c.pt", "CheckpointError", "still truncated", step=3)
    failed = store.failures("a")
    assert failed[["checkpoint", "step", "error", "message", "attempts"]].values.tolist() == [
        ["c.pt", 3, "CheckpointError", "still truncated", 2]
    ]
    store.write_checkpoint("a", "c.pt", 3, rows(CKPT))
    assert store.failures().empty


def test_profile_is_kept_per_run(store):
    report = hs.profile(SmallCNN(), input_shape=(1, 28, 28), batch_size=2)
    store.write_profile("a", report, input_shape=(1, 28, 28), batch_size=2)
    frame, info = store.profile_frame("a")
    expected = report.to_frame()
    assert frame["hook_point"].tolist() == expected["hook_point"].tolist()
    assert frame["self_macs"].tolist() == expected["self_macs"].tolist()
    # conv1: 2 * 16 * 28 * 28 * 1 * 3 * 3 = 225_792 MACs
    assert frame.set_index("hook_point").loc["conv1", "self_macs"] == 225_792
    assert info["batch_size"] == 2 and info["total_macs"] == report.total("macs")
    with pytest.raises(StoreError, match="no layer-cost profile for run 'b'.*log_profile"):
        store.profile_frame("b")


def test_readers_see_committed_data_while_a_write_is_open(store):
    store.write_checkpoint("a", "s1", 1, rows(CKPT))
    assert store._db.query("PRAGMA journal_mode")[0][0] == "wal"
    with store._db.write() as conn:  # an open write transaction, not yet committed
        conn.execute("DELETE FROM metrics")
        reader = MetricStore(store.path, read_only=True)
        assert len(reader.to_frame()) == 3  # not blocked, sees the last commit
        reader.close()
    assert store.to_frame().empty


def test_schema_version_newer_is_refused(tmp_path):
    MetricStore(tmp_path / "m.sqlite").close()
    conn = sqlite3.connect(tmp_path / "m.sqlite")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match=r"schema version 99, newer than the 2 .*pip install -U"):
        MetricStore(tmp_path / "m.sqlite")


def test_bad_paths(tmp_path):
    with pytest.raises(StoreError, match=r"its folder '.*missing' does not exist.*mkdir -p"):
        MetricStore(tmp_path / "missing" / "m.sqlite")
    (tmp_path / "text.sqlite").write_text("hello, I am not a database" * 100)
    with pytest.raises(StoreError, match=r"cannot open the store .*text.sqlite.*SQLite file"):
        MetricStore(tmp_path / "text.sqlite")
    with pytest.raises(StoreError, match="does not exist, so it cannot be read"):
        MetricStore(tmp_path / "none.sqlite", read_only=True)


def test_read_only_store(tmp_path):
    with MetricStore(tmp_path / "m.sqlite") as store:
        store.write_checkpoint("a", "s1", 1, rows(CKPT))
    with MetricStore(tmp_path / "m.sqlite", read_only=True) as store:
        assert len(store.to_frame(run="a")) == 3
        with pytest.raises(
            StoreError,
            match=r"cannot write a checkpoint: the store .* is open "
            r"read-only",
        ):
            store.write_checkpoint("a", "s2", 2, rows(CKPT))


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores file modes")
def test_store_file_without_write_permission_opens_read_only(tmp_path):
    MetricStore(tmp_path / "m.sqlite").close()
    os.chmod(tmp_path / "m.sqlite", 0o444)
    with MetricStore(tmp_path / "m.sqlite") as store:
        assert store.read_only
        with pytest.raises(StoreError, match="read-only"):
            store.add_run("a")


def test_csv_and_parquet_export(store, tmp_path):
    pytest.importorskip("pyarrow", reason="Parquet export needs the [parquet] extra")
    store.write_checkpoint("a", "s1", 1, rows(CKPT, NOTE))
    store.write_checkpoint("b", "s1", 1, rows(CKPT))
    store.to_csv(tmp_path / "a.csv", run="a")
    store.to_parquet(tmp_path / "a.parquet", run="a")
    expected = store.to_frame(run="a")
    from_csv = pd.read_csv(tmp_path / "a.csv", keep_default_na=False, na_values={"value": [""]})
    pd.testing.assert_frame_equal(from_csv, expected)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a.parquet"), expected)


def test_parquet_without_pyarrow(store, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(StoreError, match=r"pip install hookstats\[parquet\]"):
        store.to_parquet(tmp_path / "x.parquet")


def test_pickles_by_path_and_memory_store(store):
    store.write_checkpoint("a", "s1", 1, rows(CKPT))
    copy = pickle.loads(pickle.dumps(store))
    assert copy.path == store.path and len(copy.to_frame()) == 3
    copy.close()
    memory = MetricStore(":memory:")
    memory.write_checkpoint("a", "s", 1, rows(CKPT))
    assert json.loads(json.dumps(memory.runs()["settings"].iloc[0])) == {}
