"""MLflow export (extra ``hookstats[mlflow]``: the ``mlflow-skinny`` client suffices): a store's
run as MLflow metrics.

MLflow takes a metric at any step in any order, so a backfill logs each value at its
checkpoint's step, with the time the checkpoint was written as timestamp, in batches of
:data:`BATCH` (MLflow's limit per ``log_batch``). MLflow refuses names with characters other
than letters, digits, ``_ - . / :`` and space -- ``(model)`` among them -- so keys are
``hookstats/<metric>/<hook_point>`` sanitised (``hookstats/l2/_model_``; see
:mod:`hookstats.integrations.common`). NaN values are left out.

The tracking server is the one MLflow is configured with (``MLFLOW_TRACKING_URI``) unless
``tracking_uri=`` names another; the process-wide MLflow settings are not changed.

May import: pandas, :mod:`hookstats.errors`, :mod:`hookstats.runs` and
:mod:`hookstats.integrations.common` (mlflow lazily).

Example:
    >>> from hookstats.integrations.mlflow import export_mlflow
    >>> run_id = export_mlflow(store, "baseline", experiment="hookstats")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import HookstatsError
from ..runs import MetricStore
from .common import checkpoint_times, import_extra, metric_keys

__all__ = ["BATCH", "export_mlflow"]

BATCH = 1000
"""Metrics per ``log_batch`` call (MLflow refuses more)."""


def _metrics(store: MetricStore, run: str, frame: Any, entities: Any) -> list[Any]:
    keys = metric_keys(zip(frame["metric"], frame["hook_point"], strict=True), sanitized=True)
    times = checkpoint_times(store, run)
    found = []
    for step, checkpoint, point, metric, value in zip(
        frame["step"],
        frame["checkpoint"],
        frame["hook_point"],
        frame["metric"],
        frame["value"],
        strict=True,
    ):
        if value == value:  # NaN values are left out
            millis = int(times.get(str(checkpoint), 0.0) * 1000)
            found.append(entities.Metric(keys[(metric, point)], float(value), millis, int(step)))
    return found


def export_mlflow(
    store: MetricStore,
    run: str,
    *,
    metric: str | Sequence[str] | None = None,
    hook_point: str | Sequence[str] | None = None,
    run_id: str | None = None,
    experiment: str = "hookstats",
    tracking_uri: str | None = None,
) -> str:
    """Log one stored run's metrics to MLflow, each value at its checkpoint's step.

    Args:
        store: the :class:`~hookstats.MetricStore` to read.
        run: the stored run to export.
        metric, hook_point: which records (as for :meth:`MetricStore.to_frame`).
        run_id: an MLflow run to log into (left as it is); ``None`` creates a run named
            ``run`` in ``experiment`` (created when missing) and ends it.
        experiment: the MLflow experiment of a new run.
        tracking_uri: the tracking server or store (``"file:/path/mlruns"``, ``"http://..."``);
            ``None`` = MLflow's configured one.

    Returns:
        The MLflow run id.

    Raises:
        HookstatsError: mlflow is not installed (``pip install hookstats[mlflow]``), ``run``
            is not a single name, or two hook points share a sanitised key.
        StoreError: the run or a metric is not in the store.
    """
    import_extra("mlflow", "mlflow", "export_mlflow")
    tracking = import_extra("mlflow.tracking", "mlflow", "export_mlflow")
    entities = import_extra("mlflow.entities", "mlflow", "export_mlflow")
    if not isinstance(run, str):
        raise HookstatsError(f"export_mlflow exports one run at a time: run= a name, got {run!r}.")
    frame = store.to_frame(run=run, metric=metric, hook_point=hook_point)
    metrics = _metrics(store, run, frame, entities)
    client = tracking.MlflowClient(tracking_uri=tracking_uri)
    owned = run_id is None
    if run_id is None:
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(experiment)
        run_id = client.create_run(
            experiment_id, run_name=run, tags={"hookstats.run": run}
        ).info.run_id
    status = "FAILED"
    try:
        for start in range(0, len(metrics), BATCH):
            client.log_batch(run_id, metrics=metrics[start : start + BATCH])
        status = "FINISHED"
    finally:
        if owned:
            client.set_terminated(run_id, status=status)
    return str(run_id)
