"""Conversion between pandas frames and the SQL rows of a
:class:`~hookstats.runs.store.MetricStore`.

Owns the shape of what goes in and comes out of the store: checking the scalar arguments of
a write (run and checkpoint names, a step that is an integer SQLite can hold, ``if_exists``),
checking and converting a checkpoint's metric frame into ``metrics`` rows (NaN stored as NULL,
an empty note as NULL; a value that is not a number is refused),
building the query and the frame of the tidy records (:data:`RECORD_COLUMNS`), and inserting
or finding a run's row inside a write transaction (with the hookstats and torch versions that
wrote it).

May import: numpy, pandas, torch (its version) and :mod:`hookstats.errors`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..errors import StoreError

__all__ = [
    "IF_EXISTS",
    "INT64_MAX",
    "RECORD_COLUMNS",
    "check_if_exists",
    "check_name",
    "check_seconds",
    "check_step",
    "metric_rows",
    "names",
    "now",
    "one_run",
    "records_frame",
    "records_query",
    "settings_json",
]

RECORD_COLUMNS = ["run", "step", "checkpoint", "hook_point", "metric", "value", "note"]

_RECORDS_SQL = """
SELECT r.run, c.step, c.checkpoint, m.hook_point, m.metric, m.value, COALESCE(m.note, '')
FROM metrics m JOIN checkpoints c ON c.ckpt_id = m.ckpt_id JOIN runs r ON r.run_id = c.run_id
"""

MetricRow = tuple[str, str, float | None, str | None]
IF_EXISTS = ("error", "skip", "replace")
INT64_MAX = 2**63 - 1


def check_name(value: object, argument: str) -> str:
    """``value`` when it is a non-empty string (a run or checkpoint name), else a StoreError."""
    if not isinstance(value, str) or not value.strip():
        raise StoreError(f"{argument} must be a non-empty string, got {value!r}.")
    return value


def check_step(value: object, argument: str = "step") -> int:
    """``value`` as an int when it is an integer SQLite can store (64-bit signed).

    Raises:
        StoreError: a bool, a float (1.5 would be stored as 1), a non-number, or an integer
            outside ``[-2**63, 2**63 - 1]``.

    Example:
        >>> check_step(np.int64(7))
        7
    """
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise StoreError(
            f"{argument} must be an integer (the training step), got "
            f"{type(value).__name__} {value!r}."
        )
    step = int(value)
    if not -INT64_MAX - 1 <= step <= INT64_MAX:
        raise StoreError(
            f"{argument} {step} does not fit in a 64-bit integer, the largest the store keeps "
            f"(|{argument}| < 2**63). Is it really a step?"
        )
    return step


def check_if_exists(value: object) -> str:
    """``value`` when it is ``"error"``, ``"skip"`` or ``"replace"``, else a StoreError."""
    if not isinstance(value, str) or value not in IF_EXISTS:
        raise StoreError(
            f"if_exists must be 'error', 'skip' or 'replace', got {value!r}. 'skip' keeps the "
            "stored rows, 'replace' overwrites them, 'error' (default) refuses."
        )
    return value


def now() -> str:
    """The current UTC time as an ISO string to the second (the store's timestamps)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def names(value: str | Sequence[str] | None, argument: str = "filter") -> list[str] | None:
    """A filter argument as a list of names (``None`` stays ``None``: no filter).

    Raises:
        StoreError: ``value`` is not a string or a list of strings.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence | set | frozenset) and all(isinstance(v, str) for v in value):
        return list(value)
    raise StoreError(f"{argument}= must be a name, a list of names or None (all), got {value!r}.")


# -- metric rows in, tidy records out ------------------------------------------------------


def metric_rows(frame: pd.DataFrame) -> list[MetricRow]:
    """A checkpoint's metric frame as ``(hook_point, metric, value, note)`` rows.

    Raises:
        StoreError: a column is missing, or a (hook point, metric) pair appears twice.
    """
    if not isinstance(frame, pd.DataFrame):
        raise StoreError(
            f"metric rows must be a DataFrame with columns hook_point, metric, value (and "
            f"optionally note), got {type(frame).__name__}. Pass compute_metrics()'s frame."
        )
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
        number = _number(value, point, metric)
        rows.append(
            (
                str(point),
                str(metric),
                None if math.isnan(number) else number,
                str(note) if isinstance(note, str) and note else None,
            )
        )
    return rows


def _number(value: object, point: object, metric: object) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool | str | bytes) or not isinstance(value, int | float | np.number):
        raise StoreError(
            f"the value of ({point!r}, {metric!r}) is {type(value).__name__} {value!r}, not a "
            "number. Metric values are floats (NaN with a note when undefined)."
        )
    return float(value)


def settings_json(value: Mapping[str, Any] | None, argument: str) -> str:
    if value is not None and not isinstance(value, Mapping):
        raise StoreError(f"{argument} must be a dict (JSON-able), got {type(value).__name__}.")
    return json.dumps(dict(value or {}), sort_keys=True, default=str)


def check_seconds(value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise StoreError(f"seconds must be a duration >= 0 or None, got {value!r}.")
    return float(value)


def one_run(run: object) -> list[str] | None:
    if run is not None and not isinstance(run, str):
        raise StoreError(f"run= must be a run's name or None (all runs), got {run!r}.")
    return None if run is None else [run]


def records_query(
    runs: list[str] | None, metrics: list[str] | None, points: list[str] | None
) -> tuple[str, list[str]]:
    """The SQL and parameters selecting the tidy records, filtered and in store order.

    ``runs`` and ``metrics`` are exact names, ``points`` hook-point globs; ``None`` means all,
    an empty list none.
    """
    where: list[str] = []
    params: list[str] = []
    for column, values in (("r.run", runs), ("m.metric", metrics)):
        if values is not None:
            where.append(f"{column} IN ({', '.join('?' * len(values))})" if values else "0")
            params += values
    if points is not None:
        where.append(
            "(" + " OR ".join("m.hook_point GLOB ?" for _ in points) + ")" if points else "0"
        )
        params += points
    sql = _RECORDS_SQL + (" WHERE " + " AND ".join(where) if where else "")
    return sql + " ORDER BY r.run_id, c.step, c.ckpt_id, m.position", params


def records_frame(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    """The rows of :func:`records_query` as a frame of :data:`RECORD_COLUMNS` (NULL -> NaN)."""
    frame = pd.DataFrame(rows, columns=RECORD_COLUMNS)
    frame["value"] = frame["value"].astype("float64")
    frame["step"] = frame["step"].astype("int64")
    return frame
