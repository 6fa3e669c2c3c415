"""The worker side of a sweep: one :class:`Job` per checkpoint, computed into an :class:`Outcome`
(metrics, or why it failed) by :func:`compute` -- in this process or in an executor's worker,
where :func:`run_job` builds the model once per worker thread.

May import: torch, pandas, :mod:`hookstats.errors`, :mod:`hookstats.metrics`,
:mod:`hookstats.points` and :mod:`hookstats.runs.checkpoints`.
"""

from __future__ import annotations

import multiprocessing
import pickle
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from torch import nn

from ..errors import CheckpointError, HookstatsError
from ..metrics import MetricNames, compute_metrics
from ..metrics.parallel import set_blas_threads
from ..points import PointSpec
from .checkpoints import load_checkpoint, load_into

__all__ = ["Job", "ModelFactory", "Outcome", "build", "compute", "is_fatal", "run_job"]

ModelFactory = Callable[[], nn.Module]


@dataclass(frozen=True, slots=True)
class Job:
    """Everything a worker needs for one checkpoint (picklable when build_model is)."""

    path: str
    key: str
    build_model: ModelFactory
    points: PointSpec
    metrics: MetricNames
    task: Any
    precision: str
    threads: int | None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a job gave: the metric rows, or the error type and message when it failed."""

    key: str
    step: int | None
    frame: pd.DataFrame | None
    error: str | None = None
    message: str | None = None
    seconds: float = 0.0


def compute(job: Job, model: nn.Module) -> Outcome:
    """Load ``job``'s checkpoint into ``model`` and compute its metrics; a failure about this
    checkpoint is returned as an :class:`Outcome`, one that would fail every checkpoint raises."""
    start = time.perf_counter()
    step = None
    try:
        loaded = load_checkpoint(job.path)
        step = loaded.step
        if step is None:
            raise CheckpointError(
                f"cannot tell the step of {job.path}: save {{'model': state_dict, 'step': n}} "
                "or put the step in the file name (step_1000.pt)."
            )
        load_into(model, loaded)
        frame = compute_metrics(
            model, job.points, job.metrics, task=job.task, precision=job.precision
        )
    except Exception as exc:
        if is_fatal(exc):
            raise
        return Outcome(
            job.key, step, None, type(exc).__name__, str(exc), time.perf_counter() - start
        )
    return Outcome(job.key, step, frame, seconds=time.perf_counter() - start)


_worker = threading.local()  # one model per worker thread, reused across its checkpoints


def run_job(job: Job) -> Outcome:
    """Worker entry point: build (once per worker thread) or reuse the model, then compute."""
    if job.threads and multiprocessing.current_process().name != "MainProcess":
        torch.set_num_threads(job.threads)
        set_blas_threads(job.threads)  # numpy's BLAS too: metrics then run serially inside
    try:
        key: Any = pickle.dumps(job.build_model)
    except Exception:
        key = id(job.build_model)
    if getattr(_worker, "key", None) != key:
        _worker.model, _worker.key = None, None
        _worker.model, _worker.key = build(job.build_model), key
    return compute(job, _worker.model)


def is_fatal(exc: BaseException) -> bool:
    """A hookstats error that is not about one checkpoint (unknown metric, bad points=, a
    failing build_model) would fail every checkpoint alike: it stops the sweep instead."""
    return isinstance(exc, HookstatsError) and not isinstance(exc, CheckpointError)


def build(build_model: ModelFactory) -> nn.Module:
    """Call ``build_model()``; a failure or a non-module is a :class:`HookstatsError`."""
    try:
        model = build_model()
    except Exception as exc:
        raise HookstatsError(f"build_model() raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise HookstatsError(f"build_model() returned {type(model).__name__}, not an nn.Module.")
    return model
