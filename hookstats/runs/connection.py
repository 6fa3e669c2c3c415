"""The SQLite connection a :class:`~hookstats.runs.store.MetricStore` owns: opening and
transactions.

Owns opening the file (the folder must exist; a store that is not writable is opened
read-only; a read-only store must already exist), bringing its schema up to date through
:mod:`hookstats.runs.schema`, the write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled
back on any exception), reads, and turning a ``sqlite3`` error into a :class:`StoreError` that
names the store and what was being done. One lock serialises the threads sharing a store.

May import: the standard library, :mod:`hookstats.errors` and :mod:`hookstats.runs.schema`.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from os import PathLike
from pathlib import Path
from typing import Any

from ..errors import StoreError
from .schema import SCHEMA_VERSION, check_version, configure_writer, create_schema

__all__ = ["StoreConnection"]


class StoreConnection:
    """The connection, lock and transactions of a store file.

    ``path``, ``read_only`` and ``timeout`` are :class:`~hookstats.runs.store.MetricStore`'s.
    """

    def __init__(
        self, path: str | PathLike[str], *, read_only: bool = False, timeout: float = 30.0
    ) -> None:
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
            self._conn = sqlite3.connect(
                target,
                timeout=timeout,
                isolation_level=None,
                check_same_thread=False,
                uri=read_only,
            )
            self._open()
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot open the store {self.path!r}: {exc}. Is it a hookstats store "
                "(a SQLite file)?"
            ) from None

    def _open(self) -> None:
        version = check_version(self._conn, self.path, self.read_only)
        if self.read_only:
            return
        configure_writer(self._conn)
        if version < SCHEMA_VERSION:
            with self.write("create the schema") as conn:
                create_schema(conn)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._conn.close()

    def _error(self, exc: sqlite3.Error, doing: str) -> StoreError:
        text = str(exc)
        if "readonly" in text or "read-only" in text:
            return StoreError(
                f"cannot {doing}: the store {self.path!r} is read-only ({text}). Open a writable "
                "copy, or fix the file's and folder's permissions."
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

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one read; a ``sqlite3`` error becomes a :class:`StoreError`."""
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise self._error(exc, "read") from None
