"""``MetricStore``: a durable SQLite file of per-checkpoint metrics (stdlib ``sqlite3``, WAL).

Users see tidy long records ``(run, step, checkpoint, hook_point, metric, value, note)`` through
:meth:`MetricStore.to_frame`; underneath, a run and a checkpoint are stored once and each metric
row points to its checkpoint. A checkpoint's rows and its row in ``checkpoints`` (the
"completed" marker) are written in **one transaction**: a checkpoint is in the store whole or
not at all, whenever the writer dies. A NaN value is stored as NULL and read back as NaN, with
its reason in ``note`` ("" when the value is a number).

A checkpoint is keyed by its ``identity`` (default: its name; a sweep passes the file's content
identity, so a moved folder is not swept twice) and shown by its name (``checkpoint``).

The schema version is kept in ``PRAGMA user_version``; a store written by a newer hookstats is
refused, an older one migrated. WAL mode lets many readers (other processes, a notebook,
``hookstats show``) read while one process writes; ``synchronous=NORMAL`` keeps every committed
checkpoint through a crash of the writing process (a power cut may lose the last few, never
half of one). On a network file system a rollback journal replaces WAL.

This module owns :class:`MetricStore`'s public API (writing runs, checkpoints, failures and
profiles; reading records, runs and failures; CSV/Parquet/TensorBoard export; backups).
Opening the file and its transactions are in :mod:`hookstats.runs.connection` (a store *owns*
one connection), the tables and schema version in :mod:`hookstats.runs.schema`, the frame <->
row conversions and argument checks in :mod:`hookstats.runs.rows`, the other read queries in
:mod:`hookstats.runs.reads`.

May import: pandas, :mod:`hookstats.errors` and the :mod:`hookstats.runs` storage modules; the
profile report type for annotations only; inside :meth:`MetricStore.to_tensorboard`, the
TensorBoard exporter of :mod:`hookstats.integrations` (a higher layer).

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

from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from ..errors import StoreError
from . import reads
from .connection import MEMORY, JournalMode, StoreConnection
from .rows import (
    RECORD_COLUMNS,
    check_if_exists,
    check_name,
    check_seconds,
    check_step,
    metric_rows,
    names,
    one_run,
    records_frame,
    records_query,
    settings_json,
)
from .schema import SCHEMA_VERSION
from .writes import find_or_add_run, insert_checkpoint, insert_run, profile_payload, upsert_failure

if TYPE_CHECKING:
    from ..profiling import Report

__all__ = ["RECORD_COLUMNS", "SCHEMA_VERSION", "MetricStore"]

IfExists = Literal["error", "skip", "replace"]


class MetricStore:
    """A SQLite file of per-checkpoint metrics: tidy records, run metadata and failures.

    Args:
        path: the store's file (created when missing; its folder must exist), or
            ``":memory:"`` for a throwaway store that lives as long as this object.
        read_only: open for reading only (also chosen when the file or its folder is not
            writable; in a read-only folder the file is read as it was when opened).
        timeout: seconds to wait for another process's write lock before failing.
        journal: ``"auto"`` (WAL, or a rollback journal on a network file system such as NFS,
            Lustre or GPFS, where WAL does not work), ``"wal"`` or ``"delete"``.
        quick_check: run SQLite's ``PRAGMA quick_check`` on open and refuse a damaged file.

    Raises:
        StoreError: a path that is not a str/Path or is empty, a folder, a missing folder, a
            file that is not SQLite, another application's database, a newer schema, a damaged
            file (``quick_check``), or a read-only store that does not exist yet.

    Example:
        >>> store = MetricStore("runs/metrics.sqlite")  # doctest: +SKIP
        >>> store.runs()  # doctest: +SKIP
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
        self._db = StoreConnection(
            path, read_only=read_only, timeout=timeout, journal=journal, quick_check=quick_check
        )

    @property
    def path(self) -> str:
        """The store's file (or ``":memory:"``)."""
        return self._db.path

    @property
    def read_only(self) -> bool:
        """True when the store was opened for reading only."""
        return self._db.read_only

    @property
    def journal_mode(self) -> str:
        """SQLite's journal mode: ``"wal"``, ``"delete"`` (network file systems) or
        ``"memory"``."""
        return self._db.journal_mode

    def close(self) -> None:
        """Checkpoint the WAL into the ``.sqlite`` file and close the connection (idempotent)."""
        self._db.close()

    def backup(self, path: str | PathLike[str]) -> None:
        """Write a consistent copy of the store to ``path`` (one self-contained file), also
        while this or another process writes. Copying the ``.sqlite`` file of a store that is
        open for writing misses the rows still in its ``-wal`` file; this does not.

        Example:
            >>> store.backup("runs/metrics-copy.sqlite")  # doctest: +SKIP
        """
        self._db.backup(path)

    @property
    def schema_version(self) -> int:
        """The schema version written in the file."""
        return int(self._db.query("PRAGMA user_version")[0][0])

    def __enter__(self) -> MetricStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> tuple[Any, ...]:
        if self.path == MEMORY:
            raise StoreError(
                "a ':memory:' store cannot be sent to another process: its rows live in this "
                "one. Use a file path."
            )
        return (_reopen, (self.path, self.read_only))

    def __repr__(self) -> str:
        return f"MetricStore({self.path!r}{', read_only=True' if self.read_only else ''})"

    def _has_run(self, run: str) -> bool:
        return bool(self._db.query("SELECT 1 FROM runs WHERE run = ?", (run,)))

    def check_run(
        self,
        run: str,
        *,
        config: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> bool:
        """Whether ``run`` exists, after checking that it has this config and these settings
        (None: not checked). Reads only: a sweep or a logger checks before it writes anything.

        Raises:
            StoreError: ``run`` exists with different settings or config.

        Example:
            >>> MetricStore(":memory:").check_run("new", settings={"metrics": ["l2"]})
            False
        """
        check_name(run, "run")
        found = reads.run_settings_of(self._db, run)
        if found is None:
            return False
        for label, old, given in (("settings", found[1], settings), ("config", found[0], config)):
            new = settings_json(given, label)
            if given is not None and old != new:
                raise StoreError(
                    f"run {run!r} already exists with {label} {old}, not {new}. Use a new "
                    "run name, or the same settings to resume it."
                )
        return True

    # -- writing ---------------------------------------------------------------------------

    def add_run(
        self,
        run: str,
        *,
        config: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        """Create ``run`` with its metadata, or check that an existing run matches.

        ``config`` is yours (hyper-parameters...); ``settings`` are hookstats' (metrics, points,
        task). Resuming a run with other settings would mix incomparable rows, so it is refused.

        Raises:
            StoreError: ``run`` exists with different settings or config.

        Example:
            >>> MetricStore(":memory:").add_run("baseline", config={"lr": 3e-4})
        """
        if self.check_run(run, config=config, settings=settings):
            return
        config_text, settings_text = (
            settings_json(config, "config"),
            settings_json(settings, "settings"),
        )
        with self._db.write("add a run") as conn:
            if conn.execute("SELECT 1 FROM runs WHERE run = ?", (run,)).fetchone() is None:
                insert_run(conn, run, config_text, settings_text)
                return
        self.check_run(run, config=config, settings=settings)  # added meanwhile elsewhere

    def write_checkpoint(
        self,
        run: str,
        checkpoint: str,
        step: int,
        frame: pd.DataFrame,
        *,
        if_exists: IfExists = "error",
        seconds: float | None = None,
        identity: str | None = None,
    ) -> bool:
        """Write one checkpoint's metric rows and its completed marker in one transaction.

        ``frame`` has columns ``hook_point, metric, value`` and optionally ``note``. Returns
        False when the checkpoint was already complete and ``if_exists="skip"``. A checkpoint
        is "already complete" when a row of ``run`` has the same ``identity`` (default: the
        checkpoint's name; a sweep passes the file's content identity). ``"replace"`` also
        replaces a checkpoint of the same name under another identity (a file saved again at
        the same path, e.g. by a training rerun).

        Raises:
            StoreError: the checkpoint is already complete (``if_exists="error"``), the frame
                is malformed, a step that is not an integer of at most 64 bits, an unknown
                ``if_exists``, or the store cannot be written.

        Example:
            >>> rows = pd.DataFrame({"hook_point": ["fc"], "metric": ["l1"], "value": [2.0]})
            >>> MetricStore(":memory:").write_checkpoint("r", "step_1", 1, rows)
            True
        """
        check_name(run, "run")
        check_name(checkpoint, "checkpoint")
        step = check_step(step)
        check_if_exists(if_exists)
        key = checkpoint if identity is None else check_name(identity, "identity")
        seconds = check_seconds(seconds)
        rows = metric_rows(frame)
        with self._db.write("write a checkpoint") as conn:
            return insert_checkpoint(
                conn, run, checkpoint, step, rows, if_exists, seconds=seconds, identity=key
            )

    def record_failure(
        self, run: str, checkpoint: str, error: str, message: str, step: int | None = None
    ) -> None:
        """Record (or update) why ``checkpoint`` failed; a later success removes the record.
        A ``step`` the store cannot hold (not a 64-bit integer) is recorded as unknown.

        Example:
            >>> MetricStore(":memory:").record_failure("r", "bad.pt", "CheckpointError", "empty")
        """
        check_name(run, "run")
        check_name(checkpoint, "checkpoint")
        error, message = str(error), str(message)
        try:
            step = None if step is None else check_step(step)
        except StoreError:
            step = None
        with self._db.write("record a failure") as conn:
            upsert_failure(conn, run, checkpoint, step, error, message)

    def write_profile(self, run: str, report: Report, **info: Any) -> None:
        """Keep the layer-cost profile of ``run`` (one per run; a new one replaces it).

        ``info`` is kept beside it (e.g. ``input_shape=(1, 28, 28), batch_size=32``).

        Example:
            >>> import hookstats as hs, torch.nn as nn
            >>> report = hs.profile(nn.Linear(4, 2), input_shape=(4,))
            >>> MetricStore(":memory:").write_profile("r", report, input_shape=(4,))
        """
        check_name(run, "run")
        if not callable(getattr(report, "to_frame", None)) or not hasattr(report, "total"):
            raise StoreError(
                f"write_profile needs the Report of hookstats.profile(), got "
                f"{type(report).__name__}."
            )
        payload = profile_payload(report, info)
        with self._db.write("write a profile") as conn:
            conn.execute(
                "INSERT OR REPLACE INTO profiles VALUES (?, ?, ?, ?)",
                (find_or_add_run(conn, run), *payload),
            )

    # -- reading ---------------------------------------------------------------------------

    def _check_names(self, column: str, table_sql: str, wanted: list[str] | None) -> None:
        if wanted is None:
            return
        known = {row[0] for row in self._db.query(table_sql)}
        unknown = [name for name in wanted if name not in known]
        if unknown:
            raise StoreError(
                f"no {column} {', '.join(map(repr, unknown))} in the store {self.path!r}. "
                f"Known: {', '.join(sorted(known)[:20]) or '(none)'}."
            )

    def to_frame(
        self,
        run: str | Sequence[str] | None = None,
        metric: str | Sequence[str] | None = None,
        hook_point: str | Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Tidy records ``run, step, checkpoint, hook_point, metric, value, note``.

        Ordered by run, step, then the order the metrics were computed in. ``hook_point``
        entries may be globs (``"blocks.*"``). Each filter is a name, a list of names (an
        empty list selects nothing) or None (everything).

        Raises:
            StoreError: a named run or metric is not in the store (the message lists them), or
                a filter is not a name or a list of names.

        Example:
            >>> store.to_frame(run="baseline", metric="l2")  # doctest: +SKIP
        """
        runs, metrics = names(run, "run"), names(metric, "metric")
        points = names(hook_point, "hook_point")
        self._check_names("run", "SELECT run FROM runs", runs)
        self._check_names("metric", "SELECT DISTINCT metric FROM metrics", metrics)
        return records_frame(self._db.query(*records_query(runs, metrics, points)))

    def runs(self) -> pd.DataFrame:
        """One row per run: checkpoints done, steps, failures, rows, versions, config.

        Example:
            >>> MetricStore(":memory:").runs().columns[:3].tolist()
            ['run', 'created', 'checkpoints']
        """
        return reads.runs_frame(self._db)

    def checkpoints(self, run: str | None = None) -> pd.DataFrame:
        """Completed checkpoints: ``run, checkpoint, step, completed, rows, seconds,
        identity``.

        Example:
            >>> MetricStore(":memory:").checkpoints().empty
            True
        """
        self._check_names("run", "SELECT run FROM runs", one_run(run))
        return reads.checkpoints_frame(self._db, run)

    def completed(self, run: str) -> set[str]:
        """The identities of ``run``'s checkpoints already complete (the resume set)."""
        check_name(run, "run")
        return set(self.checkpoints(run)["identity"]) if self._has_run(run) else set()

    def failures(self, run: str | None = None) -> pd.DataFrame:
        """Checkpoints whose last attempt failed: ``run, checkpoint, step, error, message,
        failed_at, attempts``.

        Example:
            >>> MetricStore(":memory:").failures().empty
            True
        """
        one_run(run)
        return reads.failures_frame(self._db, run)

    def profile_frame(self, run: str) -> tuple[pd.DataFrame, dict[str, Any]]:
        """The layer-cost profile kept for ``run``: ``(report frame, info)``.

        Raises:
            StoreError: no profile was logged for ``run``.
        """
        return reads.profile_frame(self._db, check_name(run, "run"))

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
            raise StoreError(
                "Parquet export needs pyarrow: pip install hookstats[parquet]"
            ) from None
        self.to_frame(**filters).to_parquet(path, index=False)

    def to_tensorboard(
        self, logdir: str | PathLike[str], run: str | Sequence[str] | None = None, **filters: Any
    ) -> list[Path]:
        """Write :meth:`to_frame`'s records (same filters) as TensorBoard scalars
        ``hookstats/<metric>/<hook_point>``, one folder ``logdir/<run>/`` per run (needs
        ``hookstats[tensorboard]``). ``spectra=`` adds singular-value histograms: see
        :func:`hookstats.integrations.tensorboard.export_tensorboard`, which this calls.

        Returns:
            The folders written, one per run.

        Example:
            >>> store.to_tensorboard("tb/", run="baseline", metric=["l2"])  # doctest: +SKIP
            [PosixPath('tb/baseline')]
        """
        from ..integrations.tensorboard import export_tensorboard  # a higher layer: lazily

        return export_tensorboard(self, logdir, run, **filters)


def _reopen(path: str, read_only: bool) -> MetricStore:
    return MetricStore(path, read_only=read_only)
