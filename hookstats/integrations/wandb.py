"""Weights & Biases export (extra ``hookstats[wandb]``): a store's run as W&B history.

W&B's own step only grows: a ``log(..., step=s)`` below the run's current step is dropped. A
backfill (checkpoints swept after training, or a run that already logged further) therefore
never passes ``step=``: every row carries the checkpoint's step as the metric
``hookstats/step``, and ``define_metric("hookstats/*", step_metric="hookstats/step")`` makes
W&B chart every ``hookstats/...`` value against it, whatever the run's own step is. With
``table=True`` the tidy records are also logged once as a ``wandb.Table``
(``hookstats/records``), notes included.

Keys are ``hookstats/<metric>/<hook_point>``, sanitised (``(model)`` becomes ``_model_``, see
:mod:`hookstats.integrations.common`); NaN values are left out of the history (the table keeps
them with their note).

May import: pandas, :mod:`hookstats.errors`, :mod:`hookstats.runs` and
:mod:`hookstats.integrations.common` (wandb lazily).

Example:
    >>> from hookstats.integrations.wandb import export_wandb
    >>> export_wandb(store, "baseline", project="my-project")  # doctest: +SKIP
    >>> export_wandb(store, "ft", wandb_run=wandb.run)  # into your live run  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import HookstatsError
from ..runs import MetricStore
from .common import KEY_PREFIX, import_extra, step_values

__all__ = ["STEP_KEY", "export_wandb"]

STEP_KEY = f"{KEY_PREFIX}/step"
"""The W&B metric holding each row's checkpoint step (the x axis of every hookstats chart)."""


def export_wandb(
    store: MetricStore,
    run: str,
    *,
    metric: str | Sequence[str] | None = None,
    hook_point: str | Sequence[str] | None = None,
    wandb_run: Any = None,
    table: bool = False,
    **init: Any,
) -> Any:
    """Log one stored run's metrics to W&B, one history row per step, in step order.

    Args:
        store: the :class:`~hookstats.MetricStore` to read.
        run: the stored run to export.
        metric, hook_point: which records (as for :meth:`MetricStore.to_frame`).
        wandb_run: a W&B run to log into (e.g. ``wandb.run`` during training); it is left
            open. ``None`` starts one with ``wandb.init(name=run, **init)`` and finishes it.
        table: also log the tidy records as a ``wandb.Table`` ``hookstats/records``.
        init: passed to ``wandb.init`` (``project=``, ``mode="offline"``, ``dir=`` ...).

    Returns:
        The W&B run logged into.

    Raises:
        HookstatsError: wandb is not installed (``pip install hookstats[wandb]``), ``run`` is
            not a single name, or two hook points share a sanitised key.
        StoreError: the run or a metric is not in the store.
    """
    wandb = import_extra("wandb", "wandb", "export_wandb")
    if not isinstance(run, str):
        raise HookstatsError(f"export_wandb exports one run at a time: run= a name, got {run!r}.")
    frame = store.to_frame(run=run, metric=metric, hook_point=hook_point)
    rows = list(step_values(frame, sanitized=True))
    owned = wandb_run is None
    target = wandb.init(name=run, **init) if owned else wandb_run
    try:
        target.define_metric(STEP_KEY)
        target.define_metric(f"{KEY_PREFIX}/*", step_metric=STEP_KEY)
        for step, values in rows:
            target.log({STEP_KEY: step, **values})
        if table:
            target.log({f"{KEY_PREFIX}/records": wandb.Table(dataframe=frame)})
    finally:
        if owned:
            target.finish()
    return target
