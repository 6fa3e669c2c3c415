"""The SQL schema of a :class:`~hookstats.runs.store.MetricStore` file and its version checks.

Owns the table definitions (runs, checkpoints, metrics, failures, profiles), the schema
version kept in ``PRAGMA user_version``, the refusal of a store written by a newer hookstats
(or of a file that is no hookstats store), and the connection settings of a writer (WAL,
``synchronous=NORMAL``, foreign keys). :class:`~hookstats.runs.store.MetricStore` calls these
while opening its file; nothing here holds a connection of its own.

May import: the standard library and :mod:`hookstats.errors`.
"""

from __future__ import annotations

import sqlite3

from ..errors import StoreError

__all__ = ["SCHEMA_VERSION", "check_version", "configure_writer", "create_schema"]

SCHEMA_VERSION = 1

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


def check_version(conn: sqlite3.Connection, path: str, read_only: bool) -> int:
    """The schema version of the open file, after checking that this hookstats can use it.

    Raises:
        StoreError: the file has a newer schema, or it is opened read-only and has none
            (it is not a hookstats store).
    """
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the store {path!r} has schema version {version}, newer than the "
            f"{SCHEMA_VERSION} this hookstats reads. Upgrade hookstats "
            "(pip install -U hookstats)."
        )
    if read_only and version == 0:
        raise StoreError(f"{path!r} is not a hookstats store (no schema version).")
    return version


def configure_writer(conn: sqlite3.Connection) -> None:
    """Set up a writing connection: WAL journal, ``synchronous=NORMAL``, foreign keys."""
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")


def create_schema(conn: sqlite3.Connection) -> None:
    """Create the missing tables and stamp the schema version (inside a write transaction)."""
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
