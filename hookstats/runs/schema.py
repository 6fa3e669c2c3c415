"""The SQL schema of a :class:`~hookstats.runs.store.MetricStore` file and its version checks.

Owns the table definitions (runs, checkpoints, metrics, failures, profiles), the schema
version kept in ``PRAGMA user_version`` and the migration of older stores to it, the refusal of
a store written by a newer hookstats, of a file that is no hookstats store (read-only) and of
another application's database (a SQLite file with tables and no hookstats schema: nothing is
written to it), and the connection settings of a writer (WAL or, on network file systems, a
rollback journal; ``synchronous=NORMAL``; foreign keys).

Versions: 1 (hookstats 0.1) keyed a checkpoint by its absolute path; 2 adds
``checkpoints.identity``, the key a checkpoint is skipped by (a file's content identity, or the
checkpoint name of a logged model), so a moved folder is not swept twice.

:class:`~hookstats.runs.store.MetricStore` calls these while opening its file; nothing here
holds a connection of its own.

May import: the standard library and :mod:`hookstats.errors`.
"""

from __future__ import annotations

import sqlite3

from ..errors import StoreError

__all__ = ["SCHEMA_VERSION", "check_version", "configure_writer", "migrate"]

SCHEMA_VERSION = 2

_CHECKPOINTS = """(
    ckpt_id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(run_id),
    checkpoint TEXT NOT NULL, step INTEGER NOT NULL, completed TEXT NOT NULL,
    n_rows INTEGER NOT NULL, seconds REAL, identity TEXT NOT NULL,
    UNIQUE (run_id, identity))"""

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY, run TEXT NOT NULL UNIQUE, created TEXT NOT NULL,
    config TEXT NOT NULL, settings TEXT NOT NULL,
    hookstats_version TEXT NOT NULL, torch_version TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints {_CHECKPOINTS};
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


_TABLES = {"runs", "checkpoints", "metrics", "failures", "profiles"}

# Version 1 -> 2: checkpoints gain the identity column (filled with the old key, the checkpoint's
# name) and are unique by it instead of by name: SQLite's rebuild of a table, run with foreign
# keys off (StoreConnection does that).
_MIGRATE_1_TO_2 = f"""
CREATE TABLE checkpoints_v2 {_CHECKPOINTS};
INSERT INTO checkpoints_v2 (ckpt_id, run_id, checkpoint, step, completed, n_rows, seconds,
    identity) SELECT ckpt_id, run_id, checkpoint, step, completed, n_rows, seconds, checkpoint
    FROM checkpoints;
DROP TABLE checkpoints;
ALTER TABLE checkpoints_v2 RENAME TO checkpoints;
"""


def check_version(conn: sqlite3.Connection, path: str, read_only: bool) -> int:
    """The schema version of the open file, after checking that this hookstats can use it.

    Raises:
        StoreError: the file has a newer schema; it is opened read-only and has none (it is
            not a hookstats store); or it has no schema but holds tables (another
            application's database, which is left untouched).
    """
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the store {path!r} has schema version {version}, newer than the "
            f"{SCHEMA_VERSION} this hookstats reads. Upgrade hookstats "
            "(pip install -U hookstats)."
        )
    if version == 0:
        tables = sorted(
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        )
        if tables:
            raise StoreError(
                f"{path!r} is a SQLite database of another application (tables "
                f"{', '.join(tables[:6])}; no hookstats schema version), so it is left "
                "untouched. Choose a new file for the store."
            )
        if read_only:
            raise StoreError(f"{path!r} is not a hookstats store (no schema version).")
    return version


def configure_writer(conn: sqlite3.Connection, wal: bool = True) -> str:
    """Set up a writing connection: WAL (or a rollback journal when ``wal`` is False, for
    network file systems), ``synchronous=NORMAL`` (``FULL`` with a rollback journal), foreign
    keys. Returns the journal mode in force."""
    mode = str(conn.execute(f"PRAGMA journal_mode = {'WAL' if wal else 'DELETE'}").fetchone()[0])
    conn.execute(f"PRAGMA synchronous = {'NORMAL' if mode == 'wal' else 'FULL'}")
    conn.execute("PRAGMA foreign_keys = ON")
    return mode.lower()


def migrate(conn: sqlite3.Connection, version: int, path: str) -> None:
    """Bring the schema from ``version`` to :data:`SCHEMA_VERSION` (inside a write transaction,
    foreign keys off): create it in a new file, or migrate an older store in place."""
    current = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if current >= SCHEMA_VERSION:  # another process migrated it meanwhile
        return
    if current == 0:
        check_version(conn, path, read_only=False)  # still empty: no foreign tables
        script = _SCHEMA
    elif current == 1:
        script = _MIGRATE_1_TO_2
    else:  # pragma: no cover - every older version is listed above
        raise StoreError(f"cannot migrate the store {path!r} from schema version {current}.")
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
