"""Where training happens: Hugging Face ``Trainer`` and Lightning callbacks, and exporters from a
:class:`~hookstats.MetricStore` to TensorBoard, Weights & Biases and MLflow.

Every ecosystem is an optional extra, imported only when used, with a clear
``pip install hookstats[<extra>]`` message when it is missing:

* :mod:`.transformers` -- ``HookstatsCallback`` for ``transformers.Trainer`` (``[transformers]``);
* :mod:`.lightning` -- ``HookstatsCallback`` for ``lightning.pytorch.Trainer`` (``[lightning]``);
* :mod:`.tensorboard` -- ``export_tensorboard`` and ``singular_value_frame`` (``[tensorboard]``);
* :mod:`.wandb` -- ``export_wandb`` (``[wandb]``);
* :mod:`.mlflow` -- ``export_mlflow`` (``[mlflow]``);
* :mod:`.common` -- what they share: ``hookstats/<metric>/<hook_point>`` keys and their
  sanitising, :class:`~.common.StepLogger` (each step logged once, the store opened on first use).

May import: :mod:`hookstats.runs`, :mod:`hookstats.metrics`, :mod:`hookstats.points`,
:mod:`hookstats.errors` (the frameworks lazily).

Example:
    >>> from hookstats.integrations import common
    >>> common.metric_key("act_rms", "blocks.0.mlp")
    'hookstats/act_rms/blocks.0.mlp'
"""

from . import common, lightning, mlflow, tensorboard, transformers, wandb

__all__ = ["common", "lightning", "mlflow", "tensorboard", "transformers", "wandb"]
