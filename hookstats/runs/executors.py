"""Running sweep jobs on an executor: a window of at most ``max_in_flight`` jobs submitted at once
(:func:`outcomes`), a dead pool turned into a clear error, and the picklability check made before
anything is sent to workers.

``executor`` is any :class:`concurrent.futures.Executor` (``ProcessPoolExecutor``, Dask's
``Client.get_executor()``); nothing private of it is read, so the window's size comes from
``max_in_flight=`` (default: twice this machine's cores).

May import: the standard library and :mod:`hookstats.runs.jobs`.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Generator
from concurrent.futures import FIRST_COMPLETED, BrokenExecutor, Executor, Future, wait
from typing import Any

from ..errors import HookstatsError
from .jobs import Job, ModelFactory, Outcome, build, compute, is_fatal, run_job

__all__ = ["check_picklable", "default_in_flight", "outcomes"]


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
            while queue and len(pending) < window:
                job = queue.pop()
                try:
                    pending[executor.submit(run_job, job)] = job
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


def check_picklable(build_model: ModelFactory, task: Any) -> None:
    for name, value in (("build_model", build_model), ("task", task)):
        try:
            pickle.dumps(value)
        except Exception as exc:
            raise HookstatsError(
                f"{name} cannot be sent to the executor's workers ({type(exc).__name__}: {exc})."
                f" Use a top-level function or functools.partial(top_level_function, ...), not "
                "a lambda or a function defined inside another, or pass executor=None."
            ) from None
