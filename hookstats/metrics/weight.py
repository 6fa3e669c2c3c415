"""Built-in category-1 metrics over weights and biases: norms, sparsity, moments, medians.

With ``W_1..W_K`` the hook point's weight matrices (see :mod:`hookstats.metrics.context`):

* ``l1``    = (1/K) sum_k ||W_k||_1                      (sum of absolute entries)
* ``l2``    = (1/K) sum_k ||W_k||_F                      (Frobenius norm; the seed's formula
  has a typo that makes it L1/K -- the text means the Frobenius norm averaged over matrices)
* ``l1_l2`` = (1/K) sum_k ||W_k||_1 / ||W_k||_F          (sparsity; NaN if some W_k is zero)
* ``weight_mean``/``weight_median``/``weight_var``: over all weights concatenated (every
  non-bias parameter, 1-D ones such as LayerNorm scales included); variance without Bessel
* ``bias_mean``/``bias_median``/``bias_var``: likewise over all biases.

Every value is reduced in float64 from per-tensor partial results, so a container reuses the
work done for its children.

Example:
    >>> import torch, hookstats.metrics as hm
    >>> lin = torch.nn.Linear(2, 2, bias=False)
    >>> with torch.no_grad():
    ...     _ = lin.weight.copy_(torch.tensor([[3.0, 0.0], [0.0, -4.0]]))
    >>> df = hm.compute_metrics(lin, metrics=["l1", "l2", "l1_l2", "bias_mean"])
    >>> df[["value", "note"]].values
    array([[7.0, ''],
           [5.0, ''],
           [1.4, ''],
           [nan, 'no bias parameters']], dtype=object)
"""

from __future__ import annotations

from .context import MetricContext, MetricUndefined
from .registry import register_metric

__all__ = [
    "bias_mean",
    "bias_median",
    "bias_var",
    "l1",
    "l1_l2",
    "l2",
    "weight_mean",
    "weight_median",
    "weight_var",
]


@register_metric("l1", needs=("matrices",))
def l1(ctx: MetricContext) -> float:
    """(1/K) sum_k ||W_k||_1: the L1 norm averaged over weight matrices."""
    stats = ctx.matrix_stats()
    return sum(s.l1 for s in stats) / len(stats)


@register_metric("l2", needs=("matrices",))
def l2(ctx: MetricContext) -> float:
    """(1/K) sum_k ||W_k||_F: the Frobenius norm averaged over weight matrices."""
    stats = ctx.matrix_stats()
    return sum(s.fro for s in stats) / len(stats)


@register_metric("l1_l2", needs=("matrices",))
def l1_l2(ctx: MetricContext) -> float:
    """(1/K) sum_k ||W_k||_1 / ||W_k||_F: sparsity (1 for a one-hot matrix), lower is sparser."""
    stats = ctx.matrix_stats()
    for name, s in zip(ctx.matrix_names, stats, strict=True):
        if s.fro == 0.0:
            raise MetricUndefined(f"zero matrix {name!r}: L1/L2 is 0/0")
    return sum(s.l1 / s.fro for s in stats) / len(stats)


@register_metric("weight_mean", needs=("weights",))
def weight_mean(ctx: MetricContext) -> float:
    """Mean of all weights concatenated."""
    return ctx.moments("weights")[1]


@register_metric("weight_median", needs=("weights", "median"))
def weight_median(ctx: MetricContext) -> float:
    """Median of all weights concatenated (mean of the two middle values for an even count)."""
    return ctx.median("weights")


@register_metric("weight_var", needs=("weights",))
def weight_var(ctx: MetricContext) -> float:
    """Variance of all weights concatenated, without Bessel's correction."""
    return ctx.moments("weights")[2]


@register_metric("bias_mean", needs=("biases",))
def bias_mean(ctx: MetricContext) -> float:
    """Mean of all biases concatenated."""
    return ctx.moments("biases")[1]


@register_metric("bias_median", needs=("biases", "median"))
def bias_median(ctx: MetricContext) -> float:
    """Median of all biases concatenated."""
    return ctx.median("biases")


@register_metric("bias_var", needs=("biases",))
def bias_var(ctx: MetricContext) -> float:
    """Variance of all biases concatenated, without Bessel's correction."""
    return ctx.moments("biases")[2]
