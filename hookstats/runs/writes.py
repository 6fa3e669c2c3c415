"""The write side of a :class:`~hookstats.runs.store.MetricStore`, inside its write
transactions: a run's row (with the hookstats and torch versions that wrote it), a checkpoint's
rows and completed marker (keyed by its identity), a failure record, and a profile's row.

Every function takes the open ``sqlite3`` connection of a
:meth:`~hookstats.runs.connection.StoreConnection.write` transaction and checks nothing the
caller already checked (:mod:`hookstats.runs.rows`).

May import: torch (its version), :mod:`hookstats.errors` and :mod:`hookstats.runs.rows`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from ..errors import StoreError
from .rows import MetricRow, check_name, now

if TYPE_CHECKING:
    from ..profiling import Report

__all__ = [
    "find_or_add_run",
    "insert_checkpoint",
    "insert_run",
    "profile_payload",
    "upsert_failure",
]


def _hookstats_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hookstats")
    except PackageNotFoundError:  # run from a source tree without installing
        return "unknown"


def insert_run(
    conn: sqlite3.Connection, run: str, config_json: str = "{}", settings_json: str = "{}"
) -> int:
    """Insert a new run's row (inside a write transaction); returns its ``run_id``."""
    check_name(run, "run")
    cursor = conn.execute(
        "INSERT INTO runs (run, created, config, settings, hookstats_version, torch_version) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (run, now(), config_json, settings_json, _hookstats_version(), torch.__version__),
    )
    assert cursor.lastrowid is not None  # an INSERT always sets it
    return cursor.lastrowid


def find_or_add_run(conn: sqlite3.Connection, run: str) -> int:
    """The id of ``run`` inside a write transaction, creating the run when it is new."""
    found = conn.execute("SELECT run_id FROM runs WHERE run = ?", (run,)).fetchone()
    return int(found[0]) if found else insert_run(conn, run)


def insert_checkpoint(
    conn: sqlite3.Connection,
    run: str,
    checkpoint: str,
    step: int,
    rows: list[MetricRow],
    if_exists: str,
    *,
    seconds: float | None,
    identity: str,
) -> bool:
    """Insert a checkpoint's rows and marker; False when it exists and ``if_exists="skip"``.
    It exists when the run has a checkpoint with this ``identity``; ``"replace"`` also replaces
    a checkpoint of this name under another identity (a file saved again at the same path).

    Raises:
        StoreError: it exists and ``if_exists="error"``.
    """
    run_id = find_or_add_run(conn, run)
    old = conn.execute(
        "SELECT ckpt_id FROM checkpoints WHERE run_id = ? AND identity = ?", (run_id, identity)
    ).fetchone()
    if old is not None and if_exists == "skip":
        return False
    if old is not None and if_exists == "error":
        raise StoreError(
            f"checkpoint {checkpoint!r} of run {run!r} is already in the store. "
            "Pass if_exists='replace' to overwrite it, or use another run name."
        )
    if if_exists == "replace":
        replaced = (
            "SELECT ckpt_id FROM checkpoints WHERE run_id = ? AND (identity = ? OR checkpoint = ?)"
        )
        keys = (run_id, identity, checkpoint)
        conn.execute(f"DELETE FROM metrics WHERE ckpt_id IN ({replaced})", keys)
        conn.execute(f"DELETE FROM checkpoints WHERE ckpt_id IN ({replaced})", keys)
    ckpt_id = conn.execute(
        "INSERT INTO checkpoints (run_id, checkpoint, step, completed, n_rows, seconds, identity) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (run_id, checkpoint, step, now(), len(rows), seconds, identity),
    ).lastrowid
    conn.executemany(
        "INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?)",
        [(ckpt_id, i, *row) for i, row in enumerate(rows)],
    )
    conn.execute("DELETE FROM failures WHERE run_id = ? AND checkpoint = ?", (run_id, checkpoint))
    return True


def upsert_failure(
    conn: sqlite3.Connection, run: str, checkpoint: str, step: int | None, error: str, message: str
) -> None:
    """Record why ``checkpoint`` failed, or update the record and count the attempt."""
    conn.execute(
        "INSERT INTO failures VALUES (?, ?, ?, ?, ?, ?, 1) ON CONFLICT (run_id, checkpoint) DO "
        "UPDATE SET step = excluded.step, error = excluded.error, message = excluded.message, "
        "failed_at = excluded.failed_at, attempts = attempts + 1",
        (find_or_add_run(conn, run), checkpoint, step, error, message, now()),
    )


def profile_payload(report: Report, info: Mapping[str, Any]) -> tuple[str, str, str]:
    """``(info JSON, frame JSON, created)`` of a profile's row (the run id goes first)."""
    frame = report.to_frame()
    frame["output_shape"] = frame["output_shape"].map(lambda s: None if s is None else str(s))
    kept = {
        **info,
        "device": report.device,
        "dtype": report.dtype,
        "total_macs": report.total("macs"),
        "total_activation_bytes": report.total("activation_bytes"),
    }
    return json.dumps(kept, default=str), frame.to_json(orient="split", index=False), now()
