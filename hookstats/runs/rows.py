"""Conversion between pandas frames and the SQL rows of a
:class:`~hookstats.runs.store.MetricStore`.

Owns the shape of what goes in and comes out of the store: checking and converting a
checkpoint's metric frame into ``metrics`` rows (NaN stored as NULL, an empty note as NULL),
building the query and the frame of the tidy records (:data:`RECORD_COLUMNS`), and inserting
or finding a run's row inside a write transaction (with the hookstats and torch versions that
wrote it).

May import: pandas, torch (its version) and :mod:`hookstats.errors`.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import pandas as pd
import torch

from ..errors import StoreError

__all__ = [
    "RECORD_COLUMNS",
    "find_or_add_run",
    "insert_run",
    "metric_rows",
    "names",
    "now",
    "records_frame",
    "records_query",
]

RECORD_COLUMNS = ["run", "step", "checkpoint", "hook_point", "metric", "value", "note"]

_RECORDS_SQL = """
SELECT r.run, c.step, c.checkpoint, m.hook_point, m.metric, m.value, COALESCE(m.note, '')
FROM metrics m JOIN checkpoints c ON c.ckpt_id = m.ckpt_id JOIN runs r ON r.run_id = c.run_id
"""

MetricRow = tuple[str, str, float | None, str | None]


def now() -> str:
    """The current UTC time as an ISO string to the second (the store's timestamps)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def names(value: str | Sequence[str] | None) -> list[str] | None:
    """A filter argument as a list of names (``None`` stays ``None``: no filter)."""
    return None if value is None else [value] if isinstance(value, str) else list(value)


def _hookstats_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hookstats")
    except PackageNotFoundError:  # run from a source tree without installing
        return "unknown"


# -- runs ----------------------------------------------------------------------------------


def insert_run(
    conn: sqlite3.Connection, run: str, config_json: str = "{}", settings_json: str = "{}"
) -> int:
    """Insert a new run's row (inside a write transaction); returns its ``run_id``."""
    if not isinstance(run, str) or not run:
        raise StoreError(f"a run name must be a non-empty string, got {run!r}.")
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


# -- metric rows in, tidy records out ------------------------------------------------------


def metric_rows(frame: pd.DataFrame) -> list[MetricRow]:
    """A checkpoint's metric frame as ``(hook_point, metric, value, note)`` rows.

    Raises:
        StoreError: a column is missing, or a (hook point, metric) pair appears twice.
    """
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
    for point, metric, value, note in zip(
        frame["hook_point"], frame["metric"], frame["value"], notes, strict=True
    ):
        number = float(value) if value is not None else math.nan
        rows.append(
            (
                str(point),
                str(metric),
                None if math.isnan(number) else number,
                str(note) if isinstance(note, str) and note else None,
            )
        )
    return rows


def records_query(
    runs: list[str] | None, metrics: list[str] | None, points: list[str] | None
) -> tuple[str, list[str]]:
    """The SQL and parameters selecting the tidy records, filtered and in store order.

    ``runs`` and ``metrics`` are exact names, ``points`` hook-point globs; ``None`` means all.
    """
    where: list[str] = []
    params: list[str] = []
    for column, values in (("r.run", runs), ("m.metric", metrics)):
        if values is not None:
            where.append(f"{column} IN ({', '.join('?' * len(values))})")
            params += values
    if points is not None:
        where.append("(" + " OR ".join("m.hook_point GLOB ?" for _ in points) + ")")
        params += points
    sql = _RECORDS_SQL + (" WHERE " + " AND ".join(where) if where else "")
    return sql + " ORDER BY r.run_id, c.step, c.ckpt_id, m.position", params


def records_frame(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    """The rows of :func:`records_query` as a frame of :data:`RECORD_COLUMNS` (NULL -> NaN)."""
    frame = pd.DataFrame(rows, columns=RECORD_COLUMNS)
    frame["value"] = frame["value"].astype("float64")
    frame["step"] = frame["step"].astype("int64")
    return frame
