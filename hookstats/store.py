"""``MetricStore``: a durable SQLite file of per-checkpoint metrics (stdlib ``sqlite3``, WAL).

Users see tidy long records ``(run, step, checkpoint, hook_point, metric, value, note)`` through
:meth:`MetricStore.to_frame`; underneath, a run and a checkpoint are stored once and each metric
row points to its checkpoint. A checkpoint's rows and its row in ``checkpoints`` (the
"completed" marker) are written in **one transaction**: a checkpoint is in the store whole or
not at all, whenever the writer dies. A NaN value is stored as NULL and read back as NaN, with
its reason in ``note`` ("" when the value is a number).

The schema version is kept in ``PRAGMA user_version``; a store written by a newer hookstats is
refused. WAL mode lets many readers (other processes, a notebook, ``hookstats show``) read
while one process writes; ``synchronous=NORMAL`` keeps every committed checkpoint through a
crash of the writing process (a power cut may lose the last few, never half of one).

Example:
    >>> import pandas as pd
    >>> store = MetricStore(":memory:")
    >>> rows = pd.DataFrame({"hook_point": ["(model)"], "metric": ["l2"], "value": [1.5]})
    >>> store.write_checkpoint("demo", "step_10.pt", 10, rows)
    True
    >>> store.to_frame(run="demo")[["step", "metric", "value"]].values.tolist()
    [[10, 'l2', 1.5]]
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
import torch

from .errors import StoreError

if TYPE_CHECKING:
    from .report import Report

__all__ = ["RECORD_COLUMNS", "SCHEMA_VERSION", "MetricStore"]

SCHEMA_VERSION = 1
RECORD_COLUMNS = ["run", "step", "checkpoint", "hook_point", "metric", "value", "note"]
IfExists = Literal["error", "skip", "replace"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY, run TEXT NOT NULL UNIQUE, created TEXT NOT NULL,
    config TEXT NOT NULL, settings TEXT NOT NULL,
    hookstats_version TEXT NOT NULL, torch_version TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (
    ckpt_id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(run_id),
    checkpoint TEXT NOT NULL, step INTEGER NOT NULL, completed TEXT NOT NULL,
    n_rows INTEGER NOT NULL, seconds REAL, UNIQUE (run_id, checkpoint));
CREATE TABLE IF NOT EXISTS metrics (
    ckpt_id INTEGER NOT NULL REFERENCES checkpoints(ckpt_id), position INTEGER NOT NULL,
    hook_point TEXT NOT NULL, metric TEXT NOT NULL, value REAL, note TEXT,
    PRIMARY KEY (ckpt_id, position)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS failures (
    run_id INTEGER NOT NULL REFERENCES runs(run_id), checkpoint TEXT NOT NULL, step INTEGER,
    error TEXT NOT NULL, message TEXT NOT NULL, failed_at TEXT NOT NULL,
    attempts INTEGER NOT NULL, PRIMARY KEY (run_id, checkpoint));
CREATE TABLE IF NOT EXISTS profiles (
    run_id INTEGER PRIMARY KEY REFERENCES runs(run_id), info TEXT NOT NULL,
    frame TEXT NOT NULL, created TEXT NOT NULL);
"""
_RECORDS_SQL = """
SELECT r.run, c.step, c.checkpoint, m.hook_point, m.metric, m.value, COALESCE(m.note, '')
FROM metrics m JOIN checkpoints c ON c.ckpt_id = m.ckpt_id JOIN runs r ON r.run_id = c.run_id
"""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _names(value: str | Sequence[str] | None) -> list[str] | None:
    return None if value is None else [value] if isinstance(value, str) else list(value)


def _hookstats_version() -> str:
    from . import __version__

    return __version__


class MetricStore:
    """A SQLite file of per-checkpoint metrics: tidy records, run metadata and failures.

    Args:
        path: the store's file (created when missing; its folder must exist), or
            ``":memory:"`` for a throwaway store.
        read_only: open for reading only (also chosen when the file is not writable).
        timeout: seconds to wait for another process's write lock before failing.

    Raises:
        StoreError: missing folder, not a SQLite file, a newer schema, or a read-only store
            that does not exist yet.

    Example:
        >>> store = MetricStore("runs/metrics.sqlite")  # doctest: +SKIP
        >>> store.runs()  # doctest: +SKIP
    """

    def __init__(self, path: str | PathLike[str], *, read_only: bool = False,
                 timeout: float = 30.0) -> None:
        self.path = str(path)
        memory = self.path == ":memory:"
        file = Path(self.path)
        if not memory and not file.parent.is_dir():
            raise StoreError(
                f"cannot create the store {self.path!r}: its folder '{file.parent}' does not "
                "exist. Create it first (mkdir -p) or choose another path."
            )
        if not memory and file.exists() and not os.access(file, os.W_OK):
            read_only = True
        if read_only and (memory or not file.exists()):
            raise StoreError(f"store {self.path!r} does not exist, so it cannot be read.")
        self.read_only = read_only
        self._lock = threading.RLock()
        target = f"file:{file.resolve()}?mode=ro" if read_only else self.path
        try:
            self._conn = sqlite3.connect(target, timeout=timeout, isolation_level=None,
                                         check_same_thread=False, uri=read_only)
            self._open()
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot open the store {self.path!r}: {exc}. Is it a hookstats store "
                "(a SQLite file)?"
            ) from None

    def _open(self) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the store {self.path!r} has schema version {version}, newer than the "
                f"{SCHEMA_VERSION} this hookstats reads. Upgrade hookstats "
                "(pip install -U hookstats)."
            )
        if self.read_only:
            if version == 0:
                raise StoreError(f"{self.path!r} is not a hookstats store (no schema version).")
            return
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute("PRAGMA foreign_keys = ON")
        if version < SCHEMA_VERSION:
            with self._write("create the schema") as conn:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @property
    def schema_version(self) -> int:
        """The schema version written in the file."""
        return int(self._query("PRAGMA user_version")[0][0])

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._conn.close()

    def __enter__(self) -> MetricStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_reopen, (self.path, self.read_only))

    def __repr__(self) -> str:
        return f"MetricStore({self.path!r}{', read_only=True' if self.read_only else ''})"

    # -- low level -------------------------------------------------------------------------

    def _error(self, exc: sqlite3.Error, doing: str) -> StoreError:
        text = str(exc)
        if "readonly" in text or "read-only" in text:
            return StoreError(
                f"cannot {doing}: the store {self.path!r} is read-only ({text}). Open a writable "
                "copy, or fix the file's and folder's permissions."
            )
        return StoreError(f"cannot {doing} in the store {self.path!r}: {text}.")

    @contextmanager
    def _write(self, doing: str = "write") -> Iterator[sqlite3.Connection]:
        if self.read_only:
            raise StoreError(
                f"cannot {doing}: the store {self.path!r} is open read-only. Open it with "
                "MetricStore(path) from a process that may write the file."
            )
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._error(exc, doing) from None
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise self._error(exc, doing) from None
                raise

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise self._error(exc, "read") from None

    def _has_run(self, run: str) -> bool:
        return bool(self._query("SELECT 1 FROM runs WHERE run = ?", (run,)))

    # -- writing ---------------------------------------------------------------------------

    def add_run(self, run: str, *, config: Mapping[str, Any] | None = None,
                settings: Mapping[str, Any] | None = None) -> None:
        """Create ``run`` with its metadata, or check that an existing run matches.

        ``config`` is yours (hyper-parameters...); ``settings`` are hookstats' (metrics, points,
        task). Resuming a run with other settings would mix incomparable rows, so it is refused.

        Raises:
            StoreError: ``run`` exists with different settings or config.

        Example:
            >>> MetricStore(":memory:").add_run("baseline", config={"lr": 3e-4})
        """
        config_json = json.dumps(dict(config or {}), sort_keys=True, default=str)
        settings_json = json.dumps(dict(settings or {}), sort_keys=True, default=str)
        with self._write("add a run") as conn:
            found = conn.execute("SELECT config, settings FROM runs WHERE run = ?",
                                 (run,)).fetchone()
            if found is None:
                _insert_run(conn, run, config_json, settings_json)
                return
            for label, old, new, given in (("settings", found[1], settings_json, settings),
                                           ("config", found[0], config_json, config)):
                if given is not None and old != new:
                    raise StoreError(
                        f"run {run!r} already exists with {label} {old}, not {new}. Use a new "
                        "run name, or the same settings to resume it."
                    )

    def write_checkpoint(self, run: str, checkpoint: str, step: int, frame: pd.DataFrame, *,
                         if_exists: IfExists = "error", seconds: float | None = None) -> bool:
        """Write one checkpoint's metric rows and its completed marker in one transaction.

        ``frame`` has columns ``hook_point, metric, value`` and optionally ``note``. Returns
        False when the checkpoint was already complete and ``if_exists="skip"``.

        Raises:
            StoreError: the checkpoint is already complete (``if_exists="error"``), the frame
                is malformed, or the store cannot be written.

        Example:
            >>> rows = pd.DataFrame({"hook_point": ["fc"], "metric": ["l1"], "value": [2.0]})
            >>> MetricStore(":memory:").write_checkpoint("r", "step_1", 1, rows)
            True
        """
        rows = _metric_rows(frame)
        with self._write("write a checkpoint") as conn:
            run_id = _run_id(conn, run)
            old = conn.execute("SELECT ckpt_id FROM checkpoints WHERE run_id = ? AND "
                               "checkpoint = ?", (run_id, checkpoint)).fetchone()
            if old is not None:
                if if_exists == "skip":
                    return False
                if if_exists == "error":
                    raise StoreError(
                        f"checkpoint {checkpoint!r} of run {run!r} is already in the store. "
                        "Pass if_exists='replace' to overwrite it, or use another run name."
                    )
                conn.execute("DELETE FROM metrics WHERE ckpt_id = ?", old)
                conn.execute("DELETE FROM checkpoints WHERE ckpt_id = ?", old)
            ckpt_id = conn.execute(
                "INSERT INTO checkpoints (run_id, checkpoint, step, completed, n_rows, seconds) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, checkpoint, int(step), _now(), len(rows), seconds)).lastrowid
            conn.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?)",
                             [(ckpt_id, i, *row) for i, row in enumerate(rows)])
            conn.execute("DELETE FROM failures WHERE run_id = ? AND checkpoint = ?",
                         (run_id, checkpoint))
        return True

    def record_failure(self, run: str, checkpoint: str, error: str, message: str,
                       step: int | None = None) -> None:
        """Record (or update) why ``checkpoint`` failed; a later success removes the record.

        Example:
            >>> MetricStore(":memory:").record_failure("r", "bad.pt", "CheckpointError", "empty")
        """
        with self._write("record a failure") as conn:
            run_id = _run_id(conn, run)
            conn.execute(
                "INSERT INTO failures VALUES (?, ?, ?, ?, ?, ?, 1) ON CONFLICT (run_id, "
                "checkpoint) DO UPDATE SET step = excluded.step, error = excluded.error, "
                "message = excluded.message, failed_at = excluded.failed_at, "
                "attempts = attempts + 1",
                (run_id, checkpoint, step, error, message, _now()))

    def write_profile(self, run: str, report: Report, **info: Any) -> None:
        """Keep the layer-cost profile of ``run`` (one per run; a new one replaces it).

        ``info`` is kept beside it (e.g. ``input_shape=(1, 28, 28), batch_size=32``).

        Example:
            >>> import hookstats as hs, torch.nn as nn
            >>> report = hs.profile(nn.Linear(4, 2), input_shape=(4,))
            >>> MetricStore(":memory:").write_profile("r", report, input_shape=(4,))
        """
        frame = report.to_frame()
        frame["output_shape"] = frame["output_shape"].map(lambda s: None if s is None else str(s))
        info = {**info, "device": report.device, "dtype": report.dtype,
                "total_macs": report.total("macs"),
                "total_activation_bytes": report.total("activation_bytes")}
        with self._write("write a profile") as conn:
            run_id = _run_id(conn, run)
            conn.execute("INSERT OR REPLACE INTO profiles VALUES (?, ?, ?, ?)",
                         (run_id, json.dumps(info, default=str),
                          frame.to_json(orient="split", index=False), _now()))

    # -- reading ---------------------------------------------------------------------------

    def _check_names(self, column: str, table_sql: str, wanted: list[str] | None) -> None:
        if wanted is None:
            return
        known = {row[0] for row in self._query(table_sql)}
        unknown = [name for name in wanted if name not in known]
        if unknown:
            raise StoreError(
                f"no {column} {', '.join(map(repr, unknown))} in the store {self.path!r}. "
                f"Known: {', '.join(sorted(known)[:20]) or '(none)'}."
            )

    def to_frame(self, run: str | Sequence[str] | None = None,
                 metric: str | Sequence[str] | None = None,
                 hook_point: str | Sequence[str] | None = None) -> pd.DataFrame:
        """Tidy records ``run, step, checkpoint, hook_point, metric, value, note``.

        Ordered by run, step, then the order the metrics were computed in. ``hook_point``
        entries may be globs (``"blocks.*"``).

        Raises:
            StoreError: a named run or metric is not in the store (the message lists them).

        Example:
            >>> store.to_frame(run="baseline", metric="l2")  # doctest: +SKIP
        """
        runs, metrics, points = _names(run), _names(metric), _names(hook_point)
        self._check_names("run", "SELECT run FROM runs", runs)
        self._check_names("metric", "SELECT DISTINCT metric FROM metrics", metrics)
        where, params = [], []
        for column, values in (("r.run", runs), ("m.metric", metrics)):
            if values is not None:
                where.append(f"{column} IN ({', '.join('?' * len(values))})")
                params += values
        if points is not None:
            where.append("(" + " OR ".join("m.hook_point GLOB ?" for _ in points) + ")")
            params += points
        sql = _RECORDS_SQL + (" WHERE " + " AND ".join(where) if where else "")
        rows = self._query(sql + " ORDER BY r.run_id, c.step, c.ckpt_id, m.position", params)
        frame = pd.DataFrame(rows, columns=RECORD_COLUMNS)
        frame["value"] = frame["value"].astype("float64")
        frame["step"] = frame["step"].astype("int64")
        return frame

    def runs(self) -> pd.DataFrame:
        """One row per run: checkpoints done, steps, failures, rows, versions, config.

        Example:
            >>> MetricStore(":memory:").runs().columns[:3].tolist()
            ['run', 'created', 'checkpoints']
        """
        rows = self._query(
            "SELECT r.run, r.created, COUNT(c.ckpt_id), MIN(c.step), MAX(c.step), "
            "(SELECT COUNT(*) FROM failures f WHERE f.run_id = r.run_id), "
            "COALESCE(SUM(c.n_rows), 0), r.hookstats_version, r.torch_version, r.config, "
            "r.settings FROM runs r LEFT JOIN checkpoints c ON c.run_id = r.run_id "
            "GROUP BY r.run_id ORDER BY r.run_id")
        frame = pd.DataFrame(rows, columns=[
            "run", "created", "checkpoints", "first_step", "last_step", "failures", "rows",
            "hookstats_version", "torch_version", "config", "settings"])
        for column in ("config", "settings"):
            frame[column] = frame[column].map(json.loads)
        return frame

    def checkpoints(self, run: str | None = None) -> pd.DataFrame:
        """Completed checkpoints: ``run, checkpoint, step, completed, rows, seconds``.

        Example:
            >>> MetricStore(":memory:").checkpoints().empty
            True
        """
        self._check_names("run", "SELECT run FROM runs", _names(run))
        rows = self._query(
            "SELECT r.run, c.checkpoint, c.step, c.completed, c.n_rows, c.seconds FROM "
            "checkpoints c JOIN runs r ON r.run_id = c.run_id WHERE ? IS NULL OR r.run = ? "
            "ORDER BY r.run_id, c.step, c.ckpt_id", (run, run))
        return pd.DataFrame(rows, columns=["run", "checkpoint", "step", "completed", "rows",
                                           "seconds"])

    def completed(self, run: str) -> set[str]:
        """The checkpoints of ``run`` already complete in the store (the resume set)."""
        return set(self.checkpoints(run)["checkpoint"]) if self._has_run(run) else set()

    def failures(self, run: str | None = None) -> pd.DataFrame:
        """Checkpoints whose last attempt failed: ``run, checkpoint, step, error, message,
        failed_at, attempts``.

        Example:
            >>> MetricStore(":memory:").failures().empty
            True
        """
        rows = self._query(
            "SELECT r.run, f.checkpoint, f.step, f.error, f.message, f.failed_at, f.attempts "
            "FROM failures f JOIN runs r ON r.run_id = f.run_id WHERE ? IS NULL OR r.run = ? "
            "ORDER BY r.run_id, f.checkpoint", (run, run))
        return pd.DataFrame(rows, columns=["run", "checkpoint", "step", "error", "message",
                                           "failed_at", "attempts"])

    def profile_frame(self, run: str) -> tuple[pd.DataFrame, dict[str, Any]]:
        """The layer-cost profile kept for ``run``: ``(report frame, info)``.

        Raises:
            StoreError: no profile was logged for ``run``.
        """
        found = self._query("SELECT p.frame, p.info FROM profiles p JOIN runs r ON "
                            "r.run_id = p.run_id WHERE r.run = ?", (run,))
        if not found:
            raise StoreError(
                f"no layer-cost profile for run {run!r} in {self.path!r}. Log one with "
                "CheckpointLogger.log_profile(model, input_shape=...)."
            )
        split = json.loads(found[0][0])
        return pd.DataFrame(split["data"], columns=split["columns"]), json.loads(found[0][1])

    def to_csv(self, path: str | PathLike[str], **filters: Any) -> None:
        """Write :meth:`to_frame` (same filters) as CSV.

        Example:
            >>> store.to_csv("metrics.csv", run="baseline")  # doctest: +SKIP
        """
        self.to_frame(**filters).to_csv(path, index=False)

    def to_parquet(self, path: str | PathLike[str], **filters: Any) -> None:
        """Write :meth:`to_frame` (same filters) as Parquet (needs ``hookstats[parquet]``).

        Example:
            >>> store.to_parquet("metrics.parquet", run="baseline")  # doctest: +SKIP
        """
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise StoreError("Parquet export needs pyarrow: pip install hookstats[parquet]"
                             ) from None
        self.to_frame(**filters).to_parquet(path, index=False)


def _insert_run(conn: sqlite3.Connection, run: str, config_json: str = "{}",
                settings_json: str = "{}") -> int:
    if not isinstance(run, str) or not run:
        raise StoreError(f"a run name must be a non-empty string, got {run!r}.")
    return int(conn.execute(
        "INSERT INTO runs (run, created, config, settings, hookstats_version, torch_version) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (run, _now(), config_json, settings_json, _hookstats_version(), torch.__version__),
    ).lastrowid)


def _run_id(conn: sqlite3.Connection, run: str) -> int:
    """The id of ``run`` inside a write transaction, creating the run when it is new."""
    found = conn.execute("SELECT run_id FROM runs WHERE run = ?", (run,)).fetchone()
    return int(found[0]) if found else _insert_run(conn, run)


def _reopen(path: str, read_only: bool) -> MetricStore:
    return MetricStore(path, read_only=read_only)


def _metric_rows(frame: pd.DataFrame) -> list[tuple[str, str, float | None, str | None]]:
    missing = {"hook_point", "metric", "value"} - set(frame.columns)
    if missing:
        raise StoreError(
            f"metric rows need columns hook_point, metric, value (and optionally note); "
            f"missing {sorted(missing)}. Pass compute_metrics()'s frame."
        )
    duplicated = frame.duplicated(["hook_point", "metric"])
    if duplicated.any():
        first = frame[duplicated].iloc[0]
        raise StoreError(
            f"metric rows name ({first['hook_point']!r}, {first['metric']!r}) twice; each "
            "hook point and metric must appear once per checkpoint."
        )
    notes = frame["note"] if "note" in frame.columns else [""] * len(frame)
    rows = []
    for point, metric, value, note in zip(frame["hook_point"], frame["metric"], frame["value"],
                                          notes, strict=True):
        number = float(value) if value is not None else math.nan
        rows.append((str(point), str(metric), None if math.isnan(number) else number,
                     str(note) if isinstance(note, str) and note else None))
    return rows
