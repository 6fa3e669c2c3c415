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

This module owns :class:`MetricStore`'s public API (writing runs, checkpoints, failures and
profiles; reading records, runs and failures; CSV/Parquet export). Opening the file and its
transactions are in :mod:`hookstats.runs.connection` (a store *owns* one connection), the tables
and schema version in :mod:`hookstats.runs.schema`, and the frame <-> row conversions in
:mod:`hookstats.runs.rows`.

May import: pandas, :mod:`hookstats.errors` and the :mod:`hookstats.runs` storage modules; the
profile report type for annotations only.

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
from collections.abc import Mapping, Sequence
from os import PathLike
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from ..errors import StoreError
from .connection import StoreConnection
from .rows import (
    RECORD_COLUMNS,
    find_or_add_run,
    insert_run,
    metric_rows,
    names,
    now,
    records_frame,
    records_query,
)
from .schema import SCHEMA_VERSION

if TYPE_CHECKING:
    from ..profiling import Report

__all__ = ["RECORD_COLUMNS", "SCHEMA_VERSION", "MetricStore"]

IfExists = Literal["error", "skip", "replace"]


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

    def __init__(
        self, path: str | PathLike[str], *, read_only: bool = False, timeout: float = 30.0
    ) -> None:
        self._db = StoreConnection(path, read_only=read_only, timeout=timeout)

    @property
    def path(self) -> str:
        """The store's file (or ``":memory:"``)."""
        return self._db.path

    @property
    def read_only(self) -> bool:
        """True when the store was opened for reading only."""
        return self._db.read_only

    def close(self) -> None:
        """Close the store's connection (idempotent)."""
        self._db.close()

    @property
    def schema_version(self) -> int:
        """The schema version written in the file."""
        return int(self._db.query("PRAGMA user_version")[0][0])

    def __enter__(self) -> MetricStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_reopen, (self.path, self.read_only))

    def __repr__(self) -> str:
        return f"MetricStore({self.path!r}{', read_only=True' if self.read_only else ''})"

    def _has_run(self, run: str) -> bool:
        return bool(self._db.query("SELECT 1 FROM runs WHERE run = ?", (run,)))

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
        config_json = json.dumps(dict(config or {}), sort_keys=True, default=str)
        settings_json = json.dumps(dict(settings or {}), sort_keys=True, default=str)
        with self._db.write("add a run") as conn:
            found = conn.execute(
                "SELECT config, settings FROM runs WHERE run = ?", (run,)
            ).fetchone()
            if found is None:
                insert_run(conn, run, config_json, settings_json)
                return
            for label, old, new, given in (
                ("settings", found[1], settings_json, settings),
                ("config", found[0], config_json, config),
            ):
                if given is not None and old != new:
                    raise StoreError(
                        f"run {run!r} already exists with {label} {old}, not {new}. Use a new "
                        "run name, or the same settings to resume it."
                    )

    def write_checkpoint(
        self,
        run: str,
        checkpoint: str,
        step: int,
        frame: pd.DataFrame,
        *,
        if_exists: IfExists = "error",
        seconds: float | None = None,
    ) -> bool:
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
        rows = metric_rows(frame)
        with self._db.write("write a checkpoint") as conn:
            run_id = find_or_add_run(conn, run)
            old = conn.execute(
                "SELECT ckpt_id FROM checkpoints WHERE run_id = ? AND checkpoint = ?",
                (run_id, checkpoint),
            ).fetchone()
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
                (run_id, checkpoint, int(step), now(), len(rows), seconds),
            ).lastrowid
            conn.executemany(
                "INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?)",
                [(ckpt_id, i, *row) for i, row in enumerate(rows)],
            )
            conn.execute(
                "DELETE FROM failures WHERE run_id = ? AND checkpoint = ?", (run_id, checkpoint)
            )
        return True

    def record_failure(
        self, run: str, checkpoint: str, error: str, message: str, step: int | None = None
    ) -> None:
        """Record (or update) why ``checkpoint`` failed; a later success removes the record.

        Example:
            >>> MetricStore(":memory:").record_failure("r", "bad.pt", "CheckpointError", "empty")
        """
        with self._db.write("record a failure") as conn:
            run_id = find_or_add_run(conn, run)
            conn.execute(
                "INSERT INTO failures VALUES (?, ?, ?, ?, ?, ?, 1) ON CONFLICT (run_id, "
                "checkpoint) DO UPDATE SET step = excluded.step, error = excluded.error, "
                "message = excluded.message, failed_at = excluded.failed_at, "
                "attempts = attempts + 1",
                (run_id, checkpoint, step, error, message, now()),
            )

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
        info = {
            **info,
            "device": report.device,
            "dtype": report.dtype,
            "total_macs": report.total("macs"),
            "total_activation_bytes": report.total("activation_bytes"),
        }
        with self._db.write("write a profile") as conn:
            run_id = find_or_add_run(conn, run)
            conn.execute(
                "INSERT OR REPLACE INTO profiles VALUES (?, ?, ?, ?)",
                (
                    run_id,
                    json.dumps(info, default=str),
                    frame.to_json(orient="split", index=False),
                    now(),
                ),
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
        entries may be globs (``"blocks.*"``).

        Raises:
            StoreError: a named run or metric is not in the store (the message lists them).

        Example:
            >>> store.to_frame(run="baseline", metric="l2")  # doctest: +SKIP
        """
        runs, metrics = names(run), names(metric)
        self._check_names("run", "SELECT run FROM runs", runs)
        self._check_names("metric", "SELECT DISTINCT metric FROM metrics", metrics)
        return records_frame(self._db.query(*records_query(runs, metrics, names(hook_point))))

    def runs(self) -> pd.DataFrame:
        """One row per run: checkpoints done, steps, failures, rows, versions, config.

        Example:
            >>> MetricStore(":memory:").runs().columns[:3].tolist()
            ['run', 'created', 'checkpoints']
        """
        rows = self._db.query(
            "SELECT r.run, r.created, COUNT(c.ckpt_id), MIN(c.step), MAX(c.step), "
            "(SELECT COUNT(*) FROM failures f WHERE f.run_id = r.run_id), "
            "COALESCE(SUM(c.n_rows), 0), r.hookstats_version, r.torch_version, r.config, "
            "r.settings FROM runs r LEFT JOIN checkpoints c ON c.run_id = r.run_id "
            "GROUP BY r.run_id ORDER BY r.run_id"
        )
        frame = pd.DataFrame(
            rows,
            columns=[
                "run",
                "created",
                "checkpoints",
                "first_step",
                "last_step",
                "failures",
                "rows",
                "hookstats_version",
                "torch_version",
                "config",
                "settings",
            ],
        )
        for column in ("config", "settings"):
            frame[column] = frame[column].map(json.loads)
        return frame

    def checkpoints(self, run: str | None = None) -> pd.DataFrame:
        """Completed checkpoints: ``run, checkpoint, step, completed, rows, seconds``.

        Example:
            >>> MetricStore(":memory:").checkpoints().empty
            True
        """
        self._check_names("run", "SELECT run FROM runs", names(run))
        rows = self._db.query(
            "SELECT r.run, c.checkpoint, c.step, c.completed, c.n_rows, c.seconds FROM "
            "checkpoints c JOIN runs r ON r.run_id = c.run_id WHERE ? IS NULL OR r.run = ? "
            "ORDER BY r.run_id, c.step, c.ckpt_id",
            (run, run),
        )
        return pd.DataFrame(
            rows, columns=["run", "checkpoint", "step", "completed", "rows", "seconds"]
        )

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
        rows = self._db.query(
            "SELECT r.run, f.checkpoint, f.step, f.error, f.message, f.failed_at, f.attempts "
            "FROM failures f JOIN runs r ON r.run_id = f.run_id WHERE ? IS NULL OR r.run = ? "
            "ORDER BY r.run_id, f.checkpoint",
            (run, run),
        )
        return pd.DataFrame(
            rows, columns=["run", "checkpoint", "step", "error", "message", "failed_at", "attempts"]
        )

    def profile_frame(self, run: str) -> tuple[pd.DataFrame, dict[str, Any]]:
        """The layer-cost profile kept for ``run``: ``(report frame, info)``.

        Raises:
            StoreError: no profile was logged for ``run``.
        """
        found = self._db.query(
            "SELECT p.frame, p.info FROM profiles p JOIN runs r ON "
            "r.run_id = p.run_id WHERE r.run = ?",
            (run,),
        )
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
            raise StoreError(
                "Parquet export needs pyarrow: pip install hookstats[parquet]"
            ) from None
        self.to_frame(**filters).to_parquet(path, index=False)


def _reopen(path: str, read_only: bool) -> MetricStore:
    return MetricStore(path, read_only=read_only)
