"""The SQLite connection a :class:`~hookstats.runs.store.MetricStore` owns: opening and
transactions.

Owns opening the file and everything that can go wrong there:

* the path must be a non-empty ``str``/``PathLike`` whose folder exists (``":memory:"`` is a
  throwaway store in this process); an existing file that has bytes but no SQLite header is
  refused, never overwritten; a SQLite file that holds other tables and no hookstats schema
  (another application's database) is refused before anything is written to it;
* a store that is not writable is opened read-only (``mode=ro``); when its folder is read-only
  too (a read-only mount), WAL's shared-memory file cannot be made and the store is opened
  ``immutable`` instead (it is then read as it was when opened);
* on a network or cluster file system (NFS, Lustre, GPFS...; see :mod:`.filesystem`) a writer
  uses a rollback journal (``journal_mode=DELETE``) instead of WAL, which needs shared memory
  those file systems do not provide;
* ``quick_check=True`` runs ``PRAGMA quick_check`` on open and refuses a damaged file;
* a refused open closes what it opened (no file descriptor waits for the garbage collector);
* :meth:`StoreConnection.close` checkpoints the WAL into the main file (so a copy of the
  ``.sqlite`` file alone holds every committed row), :meth:`StoreConnection.backup` writes a
  consistent copy while others write.

It also owns the write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any
exception), reads, and turning a ``sqlite3`` error into a :class:`StoreError` that names the
store and what was being done. One lock serialises the threads sharing a store.

May import: the standard library, :mod:`hookstats.errors` and the :mod:`hookstats.runs` storage
modules (:mod:`.schema`, :mod:`.filesystem`).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from os import PathLike
from pathlib import Path
from typing import Any, Literal

from ..errors import StoreError
from .filesystem import is_sqlite_file, network_filesystem
from .schema import SCHEMA_VERSION, check_version, configure_writer, migrate

__all__ = ["JournalMode", "StoreConnection", "check_store_path"]

MEMORY = ":memory:"
JournalMode = Literal["auto", "wal", "delete"]


def check_store_path(path: object) -> str:
    """The store's path as a string, after checking its type and that it is not empty.

    Raises:
        StoreError: ``path`` is not a str or path, or it is empty.
    """
    if isinstance(path, bytes) or not isinstance(path, str | PathLike):
        raise StoreError(
            f"a store path must be a str or a pathlib.Path, got {type(path).__name__} "
            f"{path!r}. Example: MetricStore('runs/metrics.sqlite')."
        )
    text = os.fspath(path)
    if not isinstance(text, str) or not text.strip():
        raise StoreError(
            f"the store path is empty ({text!r}): SQLite would keep its rows in a temporary "
            "file deleted on close. Name a file, e.g. 'runs/metrics.sqlite' (or ':memory:' "
            "for a throwaway store in this process)."
        )
    return text


class StoreConnection:
    """The connection, lock and transactions of a store file.

    ``path``, ``read_only``, ``timeout``, ``journal`` and ``quick_check`` are
    :class:`~hookstats.runs.store.MetricStore`'s.
    """

    def __init__(
        self,
        path: str | PathLike[str],
        *,
        read_only: bool = False,
        timeout: float = 30.0,
        journal: JournalMode = "auto",
        quick_check: bool = False,
    ) -> None:
        self.path = check_store_path(path)
        if not isinstance(journal, str) or journal not in ("auto", "wal", "delete"):
            raise StoreError(f"journal must be 'auto', 'wal' or 'delete', got {journal!r}.")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout >= 0:
            raise StoreError(f"timeout must be a number of seconds >= 0, got {timeout!r}.")
        if not isinstance(quick_check, bool):
            raise StoreError(f"quick_check must be True or False, got {quick_check!r}.")
        self.read_only = self._check_file(read_only)
        self.immutable = False
        self.journal_mode = "memory" if self.path == MEMORY else "wal"
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        try:
            self._conn = self._connect(timeout)
            if quick_check:
                self._quick_check()
            self._open(journal)
        except BaseException as exc:
            self._discard()
            if isinstance(exc, sqlite3.Error):
                if "malformed" in str(exc):
                    raise self._error(exc, "open the store") from None
                raise StoreError(
                    f"cannot open the store {self.path!r}: {exc}. Is it a hookstats store "
                    "(a SQLite file)?"
                ) from None
            raise

    # -- opening ---------------------------------------------------------------------------

    def _check_file(self, read_only: bool) -> bool:
        if not isinstance(read_only, bool):
            raise StoreError(f"read_only must be True or False, got {read_only!r}.")
        if self.path == MEMORY:
            if read_only:
                raise StoreError("a ':memory:' store is new and empty: it cannot be read-only.")
            return False
        file = Path(self.path)
        if file.is_dir():
            raise StoreError(
                f"the store {self.path!r} is a folder. Name the SQLite file inside it, "
                f"e.g. '{file / 'metrics.sqlite'}'."
            )
        if not file.parent.is_dir():
            raise StoreError(
                f"cannot create the store {self.path!r}: its folder '{file.parent}' does not "
                "exist. Create it first (mkdir -p) or choose another path."
            )
        if read_only and not file.exists():
            raise StoreError(f"store {self.path!r} does not exist, so it cannot be read.")
        if file.exists():
            try:
                if file.stat().st_size > 0 and not is_sqlite_file(file):
                    raise StoreError(
                        f"cannot open the store {self.path!r}: the file exists and is not a "
                        "SQLite file, so it is left untouched. Is it a hookstats store (a "
                        "SQLite file)? Choose another path."
                    )
            except OSError as exc:
                raise StoreError(f"cannot read the store {self.path!r}: {exc}.") from None
            if not os.access(file, os.W_OK) or not os.access(file.parent, os.W_OK):
                return True
        return read_only

    def _connect(self, timeout: float) -> sqlite3.Connection:
        if not self.read_only:
            return sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
        uri = Path(self.path).resolve().as_uri()
        conn = sqlite3.connect(
            f"{uri}?mode=ro",
            timeout=timeout,
            isolation_level=None,
            check_same_thread=False,
            uri=True,
        )
        try:
            conn.execute("PRAGMA user_version").fetchone()
            return conn
        except sqlite3.OperationalError as exc:
            conn.close()
            if "unable to open" not in str(exc):
                raise
        # A WAL store in a read-only folder: its -shm file cannot be created. Read the file as
        # it is, as SQLite's `immutable` allows.
        self.immutable = True
        wal = Path(f"{self.path}-wal")
        if wal.exists() and wal.stat().st_size > 0:
            warnings.warn(
                f"the store {self.path!r} lies in a read-only folder and has a -wal file: rows "
                "committed since its writer last checkpointed are not seen. Close the writer "
                "(MetricStore.close checkpoints the WAL) or read a MetricStore.backup copy.",
                stacklevel=4,
            )
        return sqlite3.connect(
            f"{uri}?immutable=1",
            timeout=timeout,
            isolation_level=None,
            check_same_thread=False,
            uri=True,
        )

    def _open(self, journal: JournalMode) -> None:
        conn = self.connection
        version = check_version(conn, self.path, self.read_only)
        if self.read_only:
            self.journal_mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0])
            return
        if self.path != MEMORY:
            if journal == "auto":
                journal = "delete" if network_filesystem(self.path) else "wal"
            self.journal_mode = configure_writer(conn, wal=journal == "wal")
        if version < SCHEMA_VERSION:
            conn.execute("PRAGMA foreign_keys = OFF")  # a migration rebuilds tables
            with self.write("create the schema") as writer:
                migrate(writer, version, self.path)
            conn.execute("PRAGMA foreign_keys = ON")

    def _quick_check(self) -> None:
        conn = self.connection
        found = [str(row[0]) for row in conn.execute("PRAGMA quick_check").fetchall()]
        if found == ["ok"] and int(conn.execute("PRAGMA user_version").fetchone()[0]) > 0:
            # hookstats' own invariant: every completed checkpoint has its n_rows metric rows
            # (a damaged page can make a table read as empty without any SQLite error)
            rows, expected = conn.execute(
                "SELECT (SELECT COUNT(*) FROM metrics), "
                "(SELECT COALESCE(SUM(n_rows), 0) FROM checkpoints)"
            ).fetchone()
            if rows != expected:
                found = [f"{rows} metric rows where the checkpoints list {expected}"]
        if found != ["ok"]:
            raise StoreError(
                f"the store {self.path!r} is damaged (quick check: "
                f"{'; '.join(found[:3])}). Restore it from a backup, or recover what is "
                "readable with the sqlite3 command's .recover."
            )

    def _discard(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def connection(self) -> sqlite3.Connection:
        """The open ``sqlite3`` connection."""
        if self._conn is None:
            raise StoreError(f"the store {self.path!r} is closed. Open it again.")
        return self._conn

    def close(self) -> None:
        """Checkpoint the WAL into the main file (a writer), then close (idempotent)."""
        with self._lock:
            if self._conn is None:
                return
            if not self.read_only and self.journal_mode == "wal":
                # a reader holding a snapshot makes it fail: SQLite checkpoints later then
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._discard()

    def backup(self, target: str | PathLike[str]) -> None:
        """Write a consistent copy of the store to ``target`` (SQLite's online backup)."""
        path = check_store_path(target)
        if Path(path).exists() and Path(path).stat().st_size > 0 and not is_sqlite_file(path):
            raise StoreError(f"cannot back up to {path!r}: it exists and is not a SQLite file.")
        with self._lock:
            destination = sqlite3.connect(path)
            try:
                self.connection.backup(destination)
                if destination.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                    destination.execute("PRAGMA journal_mode = DELETE")
            except sqlite3.Error as exc:
                raise self._error(exc, f"back up to {path!r}") from None
            finally:
                destination.close()

    # -- transactions and reads ----------------------------------------------------------

    def _error(self, exc: sqlite3.Error, doing: str) -> StoreError:
        text = str(exc)
        if "readonly" in text or "read-only" in text:
            return StoreError(
                f"cannot {doing}: the store {self.path!r} is read-only ({text}). Open a writable "
                "copy, or fix the file's and folder's permissions."
            )
        if "malformed" in text or "not a database" in text:
            return StoreError(
                f"cannot {doing}: the store {self.path!r} is damaged ({text}). Restore it from "
                "a backup, or recover what is readable with the sqlite3 command's .recover."
            )
        return StoreError(f"cannot {doing} in the store {self.path!r}: {text}.")

    @contextmanager
    def write(self, doing: str = "write") -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``), rolled back on any error."""
        if self.read_only:
            raise StoreError(
                f"cannot {doing}: the store {self.path!r} is open read-only. Open it with "
                "MetricStore(path) from a process that may write the file."
            )
        with self._lock:
            conn = self.connection
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._error(exc, doing) from None
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise self._error(exc, doing) from None
                raise

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one read; a ``sqlite3`` error becomes a :class:`StoreError`."""
        with self._lock:
            try:
                return self.connection.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise self._error(exc, "read") from None
