"""Issue 12's defects, one test (or a few) each: every odd input gets a clear answer, and nothing
that is not hookstats' own is changed. Each test fails on the code before the fix."""

from __future__ import annotations

import gc
import json
import math
import os
import shutil
import sqlite3
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch
from sweep_helpers import METRICS, build_mlp, write_checkpoints

import hookstats as hs
from hookstats.cli import main
from hookstats.errors import CheckpointError, MetricError, StoreError, UnsafeCheckpointError
from hookstats.runs import CheckpointLogger, sweep
from hookstats.runs.checkpoints import find_checkpoints, load_checkpoint, load_into
from hookstats.runs.store import MetricStore

from models import MLP

HERE = Path(__file__).parent


def step_warning() -> type[Warning]:
    from hookstats.runs import CheckpointStepWarning

    return CheckpointStepWarning


def rows(value: float = 1.0) -> pd.DataFrame:
    return pd.DataFrame({"hook_point": ["(model)"], "metric": ["l2"], "value": [value]})


def save_file(tensors, path, metadata=None):
    st = pytest.importorskip("safetensors.torch", reason="needs the [safetensors] extra")
    st.save_file(tensors, path, metadata=metadata)


# -- 1. one odd checkpoint must not stop the sweep ----------------------------------------------


def test_a_step_beyond_64_bits_is_a_failure_and_the_sweep_goes_on(tmp_path):
    write_checkpoints(tmp_path, [1, 3])
    torch.save({"model": MLP((8, 16, 4)).state_dict(), "step": 2**70}, tmp_path / "ckpt_2.pt")
    save_file(MLP((8, 16, 4)).state_dict(), tmp_path / "ckpt_4.safetensors", {"step": str(2**70)})
    summary = sweep(
        tmp_path, build_mlp, tmp_path / "m.sqlite", "r", metrics=METRICS, progress=False
    )
    assert (summary.done, summary.failed) == (2, 2)
    assert all("does not fit in 64 bits" in message for _, message in summary.failures)
    with MetricStore(tmp_path / "m.sqlite") as store:
        assert sorted(store.checkpoints("r")["step"]) == [1, 3]
        assert len(store.failures("r")) == 2


@pytest.mark.skipif(os.name != "posix", reason="symlinks")
def test_a_symlink_loop_in_the_folder_is_reported_not_fatal(tmp_path):
    write_checkpoints(tmp_path, [1, 2])
    (tmp_path / "loop.pt").symlink_to(tmp_path / "loop.pt")
    summary = sweep(
        tmp_path, build_mlp, tmp_path / "m.sqlite", "r", metrics=METRICS, progress=False
    )
    assert (summary.done, summary.failed) == (2, 1)
    assert "loop.pt" in summary.failures[0][0] and "cannot read" in summary.failures[0][1]
    with MetricStore(tmp_path / "m.sqlite") as store:
        assert store.failures("r")["checkpoint"].str.endswith("loop.pt").all()


# -- 2. a typo never blocks the run -------------------------------------------------------------


def test_a_typo_in_metrics_or_points_writes_nothing(tmp_path):
    store_path = tmp_path / "m.sqlite"
    with pytest.raises(MetricError, match="unknown metric.*'l2x'.*Did you mean: l2"):
        CheckpointLogger(store_path, "r", metrics=["l2x"])
    with pytest.raises(MetricError, match="unknown metric"):
        sweep(write_checkpoints(tmp_path / "c", [1]), build_mlp, store_path, "s", None, ["l2x"])
    with pytest.raises(hs.PointSelectionError, match="'layers.9' selects no module"):
        sweep(tmp_path / "c", build_mlp, store_path, "s", "layers.9", ["l2"], progress=False)
    logger = CheckpointLogger(store_path, "q", points="layers.9", metrics=["l2"])
    with pytest.raises(hs.PointSelectionError):
        logger.log(MLP((8, 16, 4)), 1)
    with MetricStore(store_path) as store:
        assert store.runs().empty  # nothing was written by the failed calls
    logger = CheckpointLogger(store_path, "r", metrics=["l2"])  # the fixed calls just work
    logger.log(MLP((8, 16, 4)), 1)
    sweep(tmp_path / "c", build_mlp, store_path, "s", "layers.0", ["l2"], progress=False)
    with MetricStore(store_path) as store:
        assert store.runs()["run"].tolist() == ["r", "s"]


# -- 3. if_exists is checked ---------------------------------------------------------------------


def test_if_exists_is_validated(tmp_path):
    with MetricStore(tmp_path / "m.sqlite") as store:
        store.write_checkpoint("a", "s1", 1, rows(1.0))
        with pytest.raises(StoreError, match="if_exists must be 'error', 'skip' or 'replace'"):
            store.write_checkpoint("a", "s1", 1, rows(2.0), if_exists="skp")
        assert store.to_frame()["value"].tolist() == [1.0]  # not replaced
        logger = CheckpointLogger(store, "b", metrics=["l2"])
        with pytest.raises(StoreError, match="if_exists must be"):
            logger.log(MLP((8, 16, 4)), 1, if_exists="skp")


# -- 4. checkpoint identity and steps -------------------------------------------------------------


def test_moving_a_swept_folder_sweeps_nothing_again(tmp_path):
    write_checkpoints(tmp_path / "a", [1, 2, 3])
    store = tmp_path / "m.sqlite"
    assert sweep(tmp_path / "a", build_mlp, store, "r", metrics=METRICS, progress=False).done == 3
    shutil.move(tmp_path / "a", tmp_path / "b")  # a rename keeps size, mtime and content
    again = sweep(tmp_path / "b", build_mlp, store, "r", metrics=METRICS, progress=False)
    assert (again.done, again.skipped) == (0, 3)
    with MetricStore(store) as opened:
        assert len(opened.checkpoints("r")) == 3
        assert opened.to_frame(run="r").duplicated(["step", "hook_point", "metric"]).sum() == 0


def test_same_step_twice_warns_and_show_lists_both(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    for name, seed in (("a.pt", 0), ("b.pt", 1)):
        torch.manual_seed(seed)
        torch.save({"model": MLP((8, 16, 4)).state_dict(), "step": 5}, tmp_path / name)
    store = tmp_path / "m.sqlite"
    with pytest.warns(step_warning(), match="both have step 5"):
        summary = sweep(tmp_path, build_mlp, store, "r", metrics=["l2"], progress=False)
    assert summary.done == 2 and "both have step 5" in summary.notes[0]
    code = main(["show", str(store), "--run", "r"])
    out = capsys.readouterr().out
    assert code == 0 and "a.pt" in out and "b.pt" in out


@pytest.mark.parametrize(
    ("name", "step"),
    [
        ("step_037_bf16.pt", 37),
        ("model-00001-of-00002.safetensors", None),
        ("epoch=3-step=1200.ckpt", 1200),
        ("run3_epoch2.pt", None),
        ("global_step500/mp_rank_00_model_states.pt", 500),
        ("checkpoint-800/model-00001-of-00002.safetensors", 800),
    ],
)
def test_steps_come_from_step_patterns_not_the_last_number(name, step):
    assert hs.runs.checkpoints.step_from_name(name) == step


def test_an_ambiguous_step_warns(tmp_path):
    torch.save(MLP((8, 16, 4)).state_dict(), tmp_path / "step_10_iter_20.pt")
    with pytest.warns(step_warning(), match=r"several steps \(10, 20\)"):
        assert load_checkpoint(tmp_path / "step_10_iter_20.pt").step == 10
    torch.save({"model": MLP((8, 16, 4)).state_dict(), "step": 7}, tmp_path / "step_9.pt")
    with pytest.warns(step_warning(), match="stores step 7 but its name says 9"):
        assert load_checkpoint(tmp_path / "step_9.pt").step == 7


@pytest.mark.parametrize("bad", [1.5, True, "x", 2**63])
def test_a_stored_step_must_be_a_64_bit_integer(tmp_path, bad):
    torch.save({"model": MLP((8, 16, 4)).state_dict(), "step": bad}, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="step"):
        load_checkpoint(tmp_path / "c.pt")


# -- 5. stores ------------------------------------------------------------------------------------


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder mounted read-only (root: a read-only bind mount; others: chmod 555)."""
    source, mounted = tmp_path / "src", tmp_path / "ro"
    source.mkdir()
    mounted.mkdir()
    if os.geteuid() != 0:
        yield source, source, lambda: source.chmod(0o555)
        source.chmod(0o755)
        return
    done = subprocess.run(["mount", "--bind", str(source), str(mounted)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {done.stderr.decode().strip()}")
    try:
        remount = ["mount", "-o", "remount,ro,bind", str(mounted)]
        yield source, mounted, lambda: subprocess.run(remount, check=True)
    finally:
        gc.collect()
        subprocess.run(["umount", "-l", str(mounted)], check=False)


def test_a_store_in_a_read_only_folder_can_be_read(read_only_folder):
    source, mounted, make_read_only = read_only_folder
    with MetricStore(source / "m.sqlite") as store:
        store.write_checkpoint("a", "s1", 1, rows(2.5))
    make_read_only()
    with MetricStore(mounted / "m.sqlite", read_only=True) as store:
        assert store.to_frame()["value"].tolist() == [2.5]
        assert store.read_only
    with MetricStore(mounted / "m.sqlite") as store:  # not writable: read-only by itself
        assert store.read_only and len(store.to_frame()) == 1


def test_another_applications_database_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (name TEXT)")
    conn.execute("INSERT INTO users VALUES ('ada')")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match=r"another application \(tables users.*left untouched"):
        MetricStore(path)
    assert path.read_bytes() == before  # no tables added, not switched to WAL
    assert not Path(f"{path}-wal").exists()


def test_copying_a_closed_store_file_keeps_every_row_and_backup_works_while_open(tmp_path):
    store = MetricStore(tmp_path / "m.sqlite")
    for step in range(3):
        store.write_checkpoint("a", f"s{step}", step, rows(float(step)))
    store.backup(tmp_path / "backup.sqlite")  # consistent, one file, while open
    store.close()
    assert not Path(f"{tmp_path / 'm.sqlite'}-wal").exists() or (
        Path(f"{tmp_path / 'm.sqlite'}-wal").stat().st_size == 0
    )
    shutil.copy(tmp_path / "m.sqlite", tmp_path / "copy.sqlite")  # the .sqlite file alone
    for name in ("backup.sqlite", "copy.sqlite"):
        with MetricStore(tmp_path / name, read_only=True) as copy:
            assert copy.to_frame()["value"].tolist() == [0.0, 1.0, 2.0]


def test_quick_check_finds_a_damaged_store_that_reads_as_empty(tmp_path):
    path = tmp_path / "m.sqlite"
    with MetricStore(path, journal="delete") as store:
        for step in range(5):
            store.write_checkpoint("a", f"s{step}", step, rows())
    conn = sqlite3.connect(path)
    root, page_size = conn.execute(
        "SELECT rootpage, (SELECT page_size FROM pragma_page_size) FROM sqlite_master "
        "WHERE name = 'checkpoints'"
    ).fetchone()
    conn.close()
    data = bytearray(path.read_bytes())
    start = (root - 1) * page_size
    data[start + 3 : start + 5] = b"\x00\x00"  # the table's only page now holds no cell,
    data[start + 5 : start + 7] = (page_size % 65536).to_bytes(2, "big")  # no content area,
    data[start + 1 : start + 3] = b"\x00\x00"  # no free block:
    data[start + 7] = 0  # a valid, empty leaf page
    path.write_bytes(bytes(data))
    with MetricStore(path, read_only=True) as store:
        assert store.to_frame().empty  # SQLite itself reports nothing
    with pytest.raises(StoreError, match="is damaged .*5 metric rows where the checkpoints list"):
        MetricStore(path, read_only=True, quick_check=True)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts /proc/self/fd")
def test_a_refused_open_closes_its_file(tmp_path):
    MetricStore(tmp_path / "m.sqlite").close()
    conn = sqlite3.connect(tmp_path / "m.sqlite")
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    gc.disable()
    try:
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(5):
            with pytest.raises(StoreError, match="newer"):
                MetricStore(tmp_path / "m.sqlite")
        assert len(os.listdir("/proc/self/fd")) == before
    finally:
        gc.enable()


@pytest.mark.parametrize(
    ("path", "match"),
    [(None, "str or a pathlib.Path"), (5, "got int 5"), ("", "empty"), ("  ", "empty")],
)
def test_store_paths_that_are_not_paths_create_nothing(tmp_path, monkeypatch, path, match):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError, match=match):
        MetricStore(path)
    assert list(tmp_path.iterdir()) == []


def test_memory_store_path_given_to_a_sweep_is_refused(tmp_path):
    paths = write_checkpoints(tmp_path, [1])
    with pytest.raises(StoreError, match="':memory:' would keep nothing"):
        sweep(paths, build_mlp, ":memory:", "r", metrics=["l2"], progress=False)
    memory = MetricStore(":memory:")  # an object the caller keeps: fine
    assert sweep(paths, build_mlp, memory, "r", metrics=["l2"], progress=False).done == 1
    assert len(memory.checkpoints("r")) == 1


def test_a_small_file_that_is_not_sqlite_is_refused_not_overwritten(tmp_path):
    (tmp_path / "one.sqlite").write_bytes(b"x")
    with pytest.raises(StoreError, match="not a SQLite file, so it is left untouched"):
        MetricStore(tmp_path / "one.sqlite")
    assert (tmp_path / "one.sqlite").read_bytes() == b"x"
    with pytest.raises(StoreError, match="is a folder"):
        MetricStore(tmp_path)
    (tmp_path / "empty.sqlite").write_bytes(b"")
    MetricStore(tmp_path / "empty.sqlite").close()  # an empty file becomes a store


def test_network_file_systems_get_a_rollback_journal(tmp_path, monkeypatch):
    from hookstats.runs import connection, filesystem

    table = (
        "server:/export /home nfs4 rw 0 0\n/dev/sda1 / ext4 rw 0 0\n"
        "fs@tcp:/lustre /scratch lustre rw 0 0\n"
    )
    assert filesystem.filesystem_type("/home/me/m.sqlite", table) == "nfs4"
    assert filesystem.filesystem_type("/scratch/run/m.sqlite", table) == "lustre"
    assert filesystem.filesystem_type("/tmp/m.sqlite", table) == "ext4"
    monkeypatch.setattr(connection, "network_filesystem", lambda path: "nfs4")
    with MetricStore(tmp_path / "m.sqlite") as store:
        assert store.journal_mode == "delete"
        store.write_checkpoint("a", "s", 1, rows())
    assert not Path(f"{tmp_path / 'm.sqlite'}-wal").exists()
    monkeypatch.setattr(connection, "network_filesystem", lambda path: None)
    with MetricStore(tmp_path / "w.sqlite") as store:
        assert store.journal_mode == "wal"


def test_a_version_1_store_is_migrated_and_resumes(tmp_path):
    """A 0.1 store keyed checkpoints by absolute path: it is migrated, and a sweep of the same
    files skips them (no duplicates)."""
    paths = write_checkpoints(tmp_path / "c", [1, 2])
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE runs (run_id INTEGER PRIMARY KEY, run TEXT NOT NULL UNIQUE, created TEXT
          NOT NULL, config TEXT NOT NULL, settings TEXT NOT NULL, hookstats_version TEXT NOT
          NULL, torch_version TEXT NOT NULL);
        CREATE TABLE checkpoints (ckpt_id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL
          REFERENCES runs(run_id), checkpoint TEXT NOT NULL, step INTEGER NOT NULL, completed
          TEXT NOT NULL, n_rows INTEGER NOT NULL, seconds REAL, UNIQUE (run_id, checkpoint));
        CREATE TABLE metrics (ckpt_id INTEGER NOT NULL REFERENCES checkpoints(ckpt_id),
          position INTEGER NOT NULL, hook_point TEXT NOT NULL, metric TEXT NOT NULL, value REAL,
          note TEXT, PRIMARY KEY (ckpt_id, position)) WITHOUT ROWID;
        CREATE TABLE failures (run_id INTEGER NOT NULL REFERENCES runs(run_id), checkpoint TEXT
          NOT NULL, step INTEGER, error TEXT NOT NULL, message TEXT NOT NULL, failed_at TEXT NOT
          NULL, attempts INTEGER NOT NULL, PRIMARY KEY (run_id, checkpoint));
        CREATE TABLE profiles (run_id INTEGER PRIMARY KEY REFERENCES runs(run_id), info TEXT NOT
          NULL, frame TEXT NOT NULL, created TEXT NOT NULL);
        PRAGMA user_version = 1;
        """
    )
    settings = hs.runs.logger.run_settings(["l2"], None, None, "float32")
    conn.execute(
        "INSERT INTO runs VALUES (1, 'r', 'then', '{}', ?, '0.1', '2.3')",
        (json.dumps(settings, sort_keys=True),),
    )
    conn.execute(
        "INSERT INTO checkpoints VALUES (1, 1, ?, 1, 'then', 1, 0.1)", (str(paths[0].resolve()),)
    )
    conn.execute("INSERT INTO metrics VALUES (1, 0, '(model)', 'l2', 1.0, NULL)")
    conn.commit()
    conn.close()
    summary = sweep(paths, build_mlp, path, "r", metrics=["l2"], progress=False)
    assert (summary.done, summary.skipped) == (1, 1)
    with MetricStore(path) as store:
        assert store.schema_version == hs.runs.SCHEMA_VERSION
        assert sorted(store.checkpoints("r")["step"]) == [1, 2]


# -- 10. checkpoints users actually have ---------------------------------------------------------


class HyperParameters:
    """Stands for a config object a LightningModule saves in ``hyper_parameters``."""

    def __init__(self, lr: float) -> None:
        self.lr = lr


def test_a_lightning_ckpt_loads_with_an_allowlist(tmp_path):
    torch.manual_seed(0)
    model = MLP((8, 16, 4))
    ckpt = {
        "epoch": 3,
        "global_step": 1200,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}
        | {"criterion.weight": torch.ones(4)},  # another attribute of the LightningModule
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.1}]}],
        "hyper_parameters": HyperParameters(lr=0.1),
    }
    torch.save(ckpt, tmp_path / "epoch=3-step=1200.ckpt")
    with pytest.raises(UnsafeCheckpointError, match=r"HyperParameters.*safe_globals=\[\.\.\.\]"):
        load_checkpoint(tmp_path / "epoch=3-step=1200.ckpt")
    loaded = load_checkpoint(tmp_path / "epoch=3-step=1200.ckpt", safe_globals=[HyperParameters])
    assert loaded.step == 1200
    fresh = MLP((8, 16, 4))
    load_into(fresh, loaded)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in model.state_dict().items())
    summary = sweep(
        tmp_path,
        build_mlp,
        tmp_path / "m.sqlite",
        "r",
        metrics=["l2"],
        progress=False,
        safe_globals=[HyperParameters],
    )
    assert summary.done == 1


def test_stacked_ddp_and_compile_prefixes_are_removed(tmp_path):
    model = MLP((8, 16, 4))
    state = {f"module._orig_mod.{k}": v for k, v in model.state_dict().items()}
    torch.save(state, tmp_path / "step_1.pt")
    fresh = MLP((8, 16, 4))
    load_into(fresh, load_checkpoint(tmp_path / "step_1.pt"))
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("kind", ["safetensors", "bin"])
def test_a_sharded_checkpoint_is_one_checkpoint(tmp_path, kind):
    torch.manual_seed(0)
    model = MLP((8, 16, 4))
    state = model.state_dict()
    folder = tmp_path / "checkpoint-300"
    folder.mkdir()
    halves = [dict(list(state.items())[:2]), dict(list(state.items())[2:])]
    weight_map = {}
    for i, half in enumerate(halves, 1):
        shard = (
            f"model-{i:05d}-of-00002.{kind}"
            if kind == "safetensors"
            else (f"pytorch_model-{i:05d}-of-00002.bin")
        )
        if kind == "safetensors":
            save_file(half, folder / shard)
        else:
            torch.save(half, folder / shard)
        weight_map |= dict.fromkeys(half, shard)
    index = (
        "model.safetensors.index.json" if kind == "safetensors" else "pytorch_model.bin.index.json"
    )
    (folder / index).write_text(
        json.dumps({"metadata": {"total_size": 1}, "weight_map": weight_map})
    )
    assert find_checkpoints(tmp_path) == [folder / index]  # one checkpoint, not two shards
    loaded = load_checkpoint(folder / index)
    assert loaded.step == 300 and set(loaded.state_dict) == set(state)
    summary = sweep(tmp_path, build_mlp, tmp_path / "m.sqlite", "r", metrics=["l2"], progress=False)
    assert (summary.done, summary.failed) == (1, 0)


def test_a_shard_index_cannot_point_outside_its_folder(tmp_path):
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"w": "../../etc/passwd"}})
    )
    with pytest.raises(CheckpointError, match="not a file of the index's own folder"):
        load_checkpoint(tmp_path / "model.safetensors.index.json")


REFUSAL_SCRIPT = """
import sys, torch
from hookstats.errors import UnsafeCheckpointError
from hookstats.runs.checkpoints import load_checkpoint

def kib(field):
    return int(next(l for l in open("/proc/self/status") if l.startswith(field)).split()[1])

before = kib("VmRSS:")
open("/proc/self/clear_refs", "w").write("5")  # the peak restarts from here
try:
    load_checkpoint(sys.argv[1])
except UnsafeCheckpointError:
    print(kib("VmHWM:") - before)
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux peak RSS")
def test_refusing_a_big_legacy_pickle_does_not_read_it_into_memory(tmp_path):
    path = tmp_path / "big.pt"
    big = {"model": {"w": torch.zeros(64 * 2**20)}, "extra": HyperParameters(lr=1.0)}  # 256 MiB
    torch.save(big, path, _use_new_zipfile_serialization=False)
    del big
    env = {**os.environ, "PYTHONPATH": str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    refusal = subprocess.run(
        [sys.executable, "-c", REFUSAL_SCRIPT, str(path)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=300,
    )
    extra_mib = int(refusal.stdout.split()[-1]) / 1024  # the refusal's own peak
    assert extra_mib < 64, f"refusing a 256 MiB pickle took {extra_mib:.0f} MiB"


# -- 12. the rest --------------------------------------------------------------------------------


@pytest.mark.parametrize("step", [1.5, True, 2**63, "3"])
def test_steps_must_be_integers_of_64_bits(tmp_path, step):
    with MetricStore(tmp_path / "m.sqlite") as store:
        with pytest.raises(StoreError, match="step"):
            store.write_checkpoint("a", "s", step, rows())
        logger = CheckpointLogger(store, "b", metrics=["l2"])
        with pytest.raises(StoreError, match="step"):
            logger.log(MLP((8, 16, 4)), step)
        assert store.checkpoints().empty


def test_an_empty_filter_selects_nothing(tmp_path):
    with MetricStore(tmp_path / "m.sqlite") as store:
        store.write_checkpoint("a", "s", 1, rows())
        assert store.to_frame(hook_point=[]).empty and store.to_frame(run=[]).empty
        assert list(store.to_frame(metric=[]).columns) == hs.runs.RECORD_COLUMNS
        with pytest.raises(StoreError, match=r"hook_point= must be a name, a list of names"):
            store.to_frame(hook_point=5)


def test_a_plugin_returning_text_is_an_error_note():
    @hs.register_metric("text_metric", needs=())
    def text_metric(ctx) -> float:
        return "3.5"  # type: ignore[return-value]

    try:
        frame = hs.compute_metrics(MLP((8, 16, 4)), "(model)", ["text_metric"])
    finally:
        hs.unregister_metric("text_metric")
    assert math.isnan(frame["value"].iloc[0])
    assert "returned '3.5', expected a real number" in frame["note"].iloc[0]


def test_warnings_are_quiet_for_plain_names(tmp_path):
    torch.save(MLP((8, 16, 4)).state_dict(), tmp_path / "step_5.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_checkpoint(tmp_path / "step_5.pt").step == 5
