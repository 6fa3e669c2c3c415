"""The read queries of a :class:`~hookstats.runs.store.MetricStore` besides the tidy records:
its runs, completed checkpoints, failures and kept profiles, each as a frame.

Each function takes the store's :class:`~hookstats.runs.connection.StoreConnection` and returns
plain pandas objects; :class:`~hookstats.runs.store.MetricStore` wraps them in its public
methods.

May import: pandas, :mod:`hookstats.errors` and :mod:`hookstats.runs.connection`.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from ..errors import StoreError
from .connection import StoreConnection

__all__ = [
    "RUN_COLUMNS",
    "checkpoints_frame",
    "failures_frame",
    "profile_frame",
    "run_settings_of",
    "runs_frame",
]

RUN_COLUMNS = [
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
]
_CHECKPOINT_COLUMNS = ["run", "checkpoint", "step", "completed", "rows", "seconds", "identity"]
_FAILURE_COLUMNS = ["run", "checkpoint", "step", "error", "message", "failed_at", "attempts"]


def runs_frame(db: StoreConnection) -> pd.DataFrame:
    """One row per run: checkpoints done, steps, failures, rows, versions, config, settings."""
    rows = db.query(
        "SELECT r.run, r.created, COUNT(c.ckpt_id), MIN(c.step), MAX(c.step), "
        "(SELECT COUNT(*) FROM failures f WHERE f.run_id = r.run_id), "
        "COALESCE(SUM(c.n_rows), 0), r.hookstats_version, r.torch_version, r.config, "
        "r.settings FROM runs r LEFT JOIN checkpoints c ON c.run_id = r.run_id "
        "GROUP BY r.run_id ORDER BY r.run_id"
    )
    frame = pd.DataFrame(rows, columns=RUN_COLUMNS)
    for column in ("config", "settings"):
        frame[column] = frame[column].map(json.loads)
    return frame


def run_settings_of(db: StoreConnection, run: str) -> tuple[str, str] | None:
    """``(config JSON, settings JSON)`` of ``run``, or None when the store has no such run."""
    found = db.query("SELECT config, settings FROM runs WHERE run = ?", (run,))
    return (str(found[0][0]), str(found[0][1])) if found else None


def checkpoints_frame(db: StoreConnection, run: str | None) -> pd.DataFrame:
    """Completed checkpoints ``run, checkpoint, step, completed, rows, seconds, identity``."""
    rows = db.query(
        "SELECT r.run, c.checkpoint, c.step, c.completed, c.n_rows, c.seconds, c.identity FROM "
        "checkpoints c JOIN runs r ON r.run_id = c.run_id WHERE ? IS NULL OR r.run = ? "
        "ORDER BY r.run_id, c.step, c.ckpt_id",
        (run, run),
    )
    return pd.DataFrame(rows, columns=_CHECKPOINT_COLUMNS)


def failures_frame(db: StoreConnection, run: str | None) -> pd.DataFrame:
    """Checkpoints whose last attempt failed, ``run, checkpoint, step, error, message,
    failed_at, attempts``."""
    rows = db.query(
        "SELECT r.run, f.checkpoint, f.step, f.error, f.message, f.failed_at, f.attempts "
        "FROM failures f JOIN runs r ON r.run_id = f.run_id WHERE ? IS NULL OR r.run = ? "
        "ORDER BY r.run_id, f.checkpoint",
        (run, run),
    )
    return pd.DataFrame(rows, columns=_FAILURE_COLUMNS)


def profile_frame(db: StoreConnection, run: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The layer-cost profile kept for ``run``: ``(report frame, info)``.

    Raises:
        StoreError: no profile was logged for ``run``.
    """
    found = db.query(
        "SELECT p.frame, p.info FROM profiles p JOIN runs r ON r.run_id = p.run_id WHERE r.run = ?",
        (run,),
    )
    if not found:
        raise StoreError(
            f"no layer-cost profile for run {run!r} in {db.path!r}. Log one with "
            "CheckpointLogger.log_profile(model, input_shape=...)."
        )
    split = json.loads(found[0][0])
    return pd.DataFrame(split["data"], columns=split["columns"]), json.loads(found[0][1])
