"""Running sweep jobs on an executor: a window of at most ``max_in_flight`` jobs submitted at once
(:func:`outcomes`), a dead pool turned into a clear error, and the picklability check made before
anything is sent to workers.

``executor`` is any :class:`concurrent.futures.Executor` (``ProcessPoolExecutor``, Dask's
``Client.get_executor()``, :class:`~hookstats.runs.slurm.SubmititExecutor`); nothing private of
it is read, so the window's size comes from ``max_in_flight=`` (default: twice this machine's
cores). An executor with a ``submit_many(fn, items)`` method (the submitit one) gets each fill of
the window in one call: one SLURM job array.

What is sent must pickle the way the executor pickles: the standard :mod:`pickle` for process
pools, cloudpickle for Dask and submitit (so a lambda or a local function is fine there).

May import: the standard library, :mod:`hookstats.errors` and :mod:`hookstats.runs.jobs`
(cloudpickle lazily).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Generator
from concurrent.futures import FIRST_COMPLETED, BrokenExecutor, Executor, Future, wait
from typing import Any

from ..errors import HookstatsError
from .jobs import Job, ModelFactory, Outcome, build, compute, is_fatal, run_job

__all__ = [
    "check_executor",
    "check_picklable",
    "default_in_flight",
    "outcomes",
    "uses_cloudpickle",
]


def default_in_flight() -> int:
    """Jobs in flight when ``max_in_flight`` is not given: twice this machine's cores."""
    return 2 * (os.cpu_count() or 1)


def _broken(exc: BaseException) -> HookstatsError:
    return HookstatsError(
        f"the executor's workers died ({type(exc).__name__}: {exc}). Checkpoints already "
        "written are kept: run the same sweep again to resume. A worker killed by the system "
        "is often out of memory: use fewer workers."
    )


def outcomes(
    jobs: list[Job], executor: Executor | None, max_in_flight: int | None = None
) -> Generator[Outcome, None, None]:
    """Yield outcomes as they finish; at most ``max_in_flight`` jobs are submitted at once
    (default :func:`default_in_flight`)."""
    if executor is None:
        if not jobs:
            return
        model = build(jobs[0].build_model)
        for job in jobs:
            yield compute(job, model)
        return
    window = max_in_flight or default_in_flight()
    pending: dict[Future[Outcome], Job] = {}
    queue = list(reversed(jobs))
    try:
        while queue or pending:
            batch = [queue.pop() for _ in range(min(len(queue), window - len(pending)))]
            try:
                pending.update(zip(_submit(executor, batch), batch, strict=True))
            except BrokenExecutor as exc:
                raise _broken(exc) from exc
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                job = pending.pop(future)
                error = future.exception()
                if isinstance(error, BrokenExecutor):
                    raise _broken(error) from error
                if error is not None and is_fatal(error):
                    raise error
                yield (
                    future.result()
                    if error is None
                    else Outcome(
                        job.key, None, None, type(error).__name__, str(error) or repr(error)
                    )
                )
    finally:
        for future in pending:
            future.cancel()


def _submit(executor: Executor, batch: list[Job]) -> list[Future[Outcome]]:
    if not batch:
        return []
    many = getattr(executor, "submit_many", None)
    if callable(many):
        return list(many(run_job, batch))
    return [executor.submit(run_job, job) for job in batch]


def check_executor(executor: object) -> None:
    """Refuse an ``executor=`` that cannot take jobs (no ``submit``)."""
    if not callable(getattr(executor, "submit", None)):
        raise HookstatsError(
            f"executor must be a concurrent.futures.Executor (ProcessPoolExecutor, "
            f"distributed.Client(...).get_executor(), hookstats.runs.SubmititExecutor) or "
            f"None, got {type(executor).__name__}."
        )


def uses_cloudpickle(executor: object) -> bool:
    """Whether ``executor`` sends functions with cloudpickle (Dask, submitit)."""
    module = type(executor).__module__
    return module.split(".")[0] in ("distributed", "dask") or bool(
        getattr(executor, "uses_cloudpickle", False)
    )


def check_picklable(build_model: ModelFactory, task: Any, executor: object = None) -> None:
    """Refuse ``build_model``/``task`` that the executor cannot send to its workers, before
    anything is sent: :mod:`pickle` for process pools, cloudpickle for Dask and submitit."""
    dumps = pickle.dumps
    if uses_cloudpickle(executor):
        try:
            import cloudpickle
        except ImportError:  # pragma: no cover - dask and submitit both depend on it
            pass
        else:
            dumps = cloudpickle.dumps
    for name, value in (("build_model", build_model), ("task", task)):
        try:
            dumps(value)
        except Exception as exc:
            hint = (
                "Make it picklable, or pass executor=None."
                if dumps is not pickle.dumps
                else "Use a top-level function or functools.partial(top_level_function, ...), "
                "not a lambda or a function defined inside another, or pass executor=None."
            )
            raise HookstatsError(
                f"{name} cannot be sent to the executor's workers ({type(exc).__name__}: {exc})."
                f" {hint}"
            ) from None
