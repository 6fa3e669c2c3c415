"""Built-in category-1 metrics over the spectra of weight matrices.

With ``W_1..W_K`` the hook point's weight matrices and sigma their singular values:

* ``trace``          = (1/K) sum_k tr(W_k)   (sum of the main diagonal, rectangular too)
* ``spectral_norm``  = (1/K) sum_k sigma_max(W_k)
* ``trace_spectral`` = (1/K) sum_k tr(W_k) / sigma_max(W_k)   (NaN if some W_k is zero)
* ``sv_mean``/``sv_var`` = mean and variance (no Bessel) of all singular values of all K
  matrices pooled.

``spectral_norm`` and ``trace_spectral`` declare ``needs=("sigma_max",)``: asked alone they are
served by Lanczos without any full spectrum; ``sv_mean``/``sv_var`` declare ``"spectrum"`` and
then sigma_max is read off the same spectra. Each matrix's spectrum is computed once per call.

Example:
    >>> import hookstats.metrics as hm
    >>> "spectral_norm" in hm.metric_registry.names(category=1)
    True
"""

from __future__ import annotations

import torch

from .context import MetricContext, MetricUndefined
from .registry import register_metric

__all__ = ["spectral_norm", "sv_mean", "sv_var", "trace", "trace_spectral"]


@register_metric("trace", needs=("matrices",))
def trace(ctx: MetricContext) -> float:
    """(1/K) sum_k tr(W_k): the main-diagonal sum averaged over weight matrices."""
    stats = ctx.matrix_stats()
    return sum(s.trace for s in stats) / len(stats)


@register_metric("spectral_norm", needs=("matrices", "sigma_max"))
def spectral_norm(ctx: MetricContext) -> float:
    """(1/K) sum_k sigma_max(W_k): the spectral norm averaged over weight matrices."""
    return float(ctx.sigma_max().mean())


@register_metric("trace_spectral", needs=("matrices", "sigma_max"))
def trace_spectral(ctx: MetricContext) -> float:
    """(1/K) sum_k tr(W_k) / sigma_max(W_k)."""
    sigma = ctx.sigma_max().tolist()
    stats = ctx.matrix_stats()
    for name, s in zip(ctx.matrix_names, sigma, strict=True):
        if s == 0.0:
            raise MetricUndefined(f"zero matrix {name!r}: trace / sigma_max is 0/0")
    return float(sum(st.trace / s for st, s in zip(stats, sigma, strict=True))) / len(stats)


def _pooled(ctx: MetricContext) -> torch.Tensor:
    values = torch.cat(ctx.singular_values())
    if values.numel() == 0:
        raise MetricUndefined("weight matrices are empty: no singular values")
    return values


@register_metric("sv_mean", needs=("matrices", "spectrum"))
def sv_mean(ctx: MetricContext) -> float:
    """Mean of all singular values of all weight matrices pooled."""
    return float(_pooled(ctx).mean())


@register_metric("sv_var", needs=("matrices", "spectrum"))
def sv_var(ctx: MetricContext) -> float:
    """Variance (no Bessel correction) of all singular values of all weight matrices pooled."""
    return float(_pooled(ctx).var(correction=0))
