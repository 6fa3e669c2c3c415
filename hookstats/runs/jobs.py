"""The worker side of a sweep: one :class:`Job` per checkpoint, computed into an :class:`Outcome`
(metrics, or why it failed) by :func:`compute` -- in this process or in an executor's worker,
where :func:`run_job` builds the model once per worker thread.

A worker *process* is told apart from the sweep's own process by the host and process id the
job was made in (:func:`here`), not by the process's name: a thread pool inside a child
process is not a worker process, and its threads must not change that process's BLAS threads.
In a worker process, torch and numpy's BLAS run ``Job.threads`` threads (the sweep's
``worker_threads=``), so that n workers on n cores do not each use every core.

May import: torch, pandas, :mod:`hookstats.errors`, :mod:`hookstats.metrics`,
:mod:`hookstats.points`, :mod:`hookstats.runs.checkpoints` and :mod:`hookstats.runs.probe`.
"""

from __future__ import annotations

import os
import pickle
import socket
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from torch import nn

from ..errors import CheckpointError, HookstatsError
from ..metrics import MetricNames
from ..metrics.parallel import set_blas_threads
from ..points import PointSpec
from .checkpoints import CheckpointStepWarning, SafeGlobals, load_checkpoint, load_into
from .probe import Probe, measure

__all__ = ["Job", "ModelFactory", "Outcome", "build", "compute", "here", "is_fatal", "run_job"]

ModelFactory = Callable[[], nn.Module]


def here() -> tuple[str, int]:
    """Where this process runs (host, process id): a job made here and run elsewhere runs in a
    worker process. Read when asked (a forked child has its own process id)."""
    return socket.gethostname(), os.getpid()


@dataclass(frozen=True, slots=True)
class Job:
    """Everything a worker needs for one checkpoint (picklable when build_model is; the
    probe's tensors pickle)."""

    path: str
    key: str
    build_model: ModelFactory
    points: PointSpec
    metrics: MetricNames
    task: Any
    precision: str
    threads: int | None
    safe_globals: SafeGlobals = None
    origin: tuple[str, int] = ("", 0)
    probe: Probe | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a job gave: the metric rows, or the error type and message when it failed, and
    notes about its step (ambiguous names)."""

    key: str
    step: int | None
    frame: pd.DataFrame | None
    error: str | None = None
    message: str | None = None
    seconds: float = 0.0
    notes: tuple[str, ...] = ()


def compute(job: Job, model: nn.Module) -> Outcome:
    """Load ``job``'s checkpoint into ``model`` and compute its metrics (with a probe, its
    activation metrics too); a failure about this checkpoint is returned as an
    :class:`Outcome`, one that would fail every checkpoint raises."""
    start = time.perf_counter()
    step: int | None = None
    notes: tuple[str, ...] = ()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CheckpointStepWarning)  # returned as notes
            loaded = load_checkpoint(job.path, safe_globals=job.safe_globals)
        step, notes = loaded.step, loaded.notes
        if step is None:
            raise CheckpointError(
                f"cannot tell the step of {job.path}: save {{'model': state_dict, 'step': n}} "
                "or name the file with its step (step_1000.pt; a name with several numbers "
                "and no 'step' is ambiguous)."
            )
        load_into(model, loaded)
        frame = measure(
            model,
            job.points,
            job.metrics,
            probe=job.probe,
            task=job.task,
            precision=job.precision,
        )
    except Exception as exc:
        if is_fatal(exc):
            raise
        seconds = time.perf_counter() - start
        return Outcome(job.key, step, None, type(exc).__name__, str(exc), seconds, notes)
    return Outcome(job.key, step, frame, seconds=time.perf_counter() - start, notes=notes)


_worker = threading.local()  # one model per worker thread, reused across its checkpoints


def run_job(job: Job) -> Outcome:
    """Worker entry point: build (once per worker thread) or reuse the model, then compute."""
    if job.threads and job.origin != here():
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
