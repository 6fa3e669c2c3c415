"""Function metrics for modular addition ("The Clock and the Pizza", Zhong et al. 2023).

A :class:`ModularAdditionTask` says how a model maps a token pair ``(a, b)`` in ``Z_p`` to logits
over ``p`` classes, and which hook point is the embedding. The two metrics read the function the
model computes:

* :func:`gradient_symmetricity` -- for ``n`` seeded random triples ``(a, b, c)``, the cosine
  similarity between the gradients of logit ``c`` with respect to the embedding outputs at the
  positions of ``a`` and of ``b``, averaged. Pizza ≈ 0.99, clock ≈ 0.33 in the paper.
* :func:`distance_irrelevance` -- the correct logits of all ``p²`` pairs arranged as
  ``L[(a+b) mod p][(a-b) mod p]``; the mean over columns of the standard deviation down each
  column, divided by the standard deviation of all entries. ≈0 when the logit depends on
  ``a-b`` (pizza), ≈1 when it does not (clock).

Both run in eval mode under a forward hook on the embedding that is removed afterwards; they use
``torch.autograd.grad`` on the captured embedding only, so no parameter's ``.grad`` or
``requires_grad`` changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import MetricError
from ..instrument.model_state import eval_mode
from ..points import display_name
from .registry import register_metric

__all__ = ["ModularAdditionTask", "distance_irrelevance", "gradient_symmetricity"]


@dataclass(frozen=True)
class ModularAdditionTask:
    """How a model does addition mod ``p``.

    Args:
        p: the modulus (odd, so every ``(a+b, a-b)`` cell is one pair).
        embedding: hook point name of the embedding module; its output is captured.
        make_input: ``f(a, b) -> model input`` for batches of ``a`` and ``b``; default
            ``[[a, b]]`` (plus ``equals_token`` as a third column when given).
        logits: ``f(output) -> (N, p) logits``; default the last position of a 3-D output
            (``output[:, -1, :p]``), or ``output[:, :p]`` for a 2-D one (``.logits`` is used
            when the output has it).
        positions: sequence positions of ``a`` and ``b`` in the embedding output.
        equals_token: token id appended after ``a, b`` by the default ``make_input``.
        n_triples: triples sampled by gradient symmetricity.
        seed: seed of those triples.
        batch_size: pairs per forward in distance irrelevance.

    Example:
        >>> task = ModularAdditionTask(p=59, embedding="embed")
        >>> task.default_input(torch.tensor([1]), torch.tensor([2])).tolist()
        [[1, 2]]
    """

    p: int
    embedding: str = "embed"
    make_input: Callable[[torch.Tensor, torch.Tensor], Any] | None = None
    logits: Callable[[Any], torch.Tensor] | None = None
    positions: tuple[int, int] = (0, 1)
    equals_token: int | None = None
    n_triples: int = 100
    seed: int = 0
    batch_size: int = 4096

    def __post_init__(self) -> None:
        if not _is_int(self.p) or self.p < 3 or self.p % 2 == 0:
            raise MetricError(f"ModularAdditionTask needs an odd modulus p >= 3, got {self.p!r}.")
        for name in ("n_triples", "batch_size"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise MetricError(
                    f"ModularAdditionTask({name}=...) must be an int >= 1, got {value!r}."
                )
        if not _is_int(self.seed):
            raise MetricError(f"ModularAdditionTask(seed=...) must be an int, got {self.seed!r}.")
        if not isinstance(self.embedding, str) or not self.embedding:
            raise MetricError(
                f"ModularAdditionTask(embedding=...) must be a hook point name, got "
                f"{self.embedding!r}."
            )
        positions = self.positions
        if (
            not isinstance(positions, tuple | list)
            or len(positions) != 2
            or not all(_is_int(p) for p in positions)
        ):
            raise MetricError(
                f"ModularAdditionTask(positions=...) must be two ints (the sequence positions "
                f"of a and b), got {positions!r}."
            )
        if self.equals_token is not None and not _is_int(self.equals_token):
            raise MetricError(
                f"equals_token must be a token id (int) or None, got {self.equals_token!r}."
            )
        for name in ("make_input", "logits"):
            if getattr(self, name) is not None and not callable(getattr(self, name)):
                raise MetricError(f"ModularAdditionTask({name}=...) must be a function or None.")

    def default_input(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        columns = [a, b]
        if self.equals_token is not None:
            columns.append(torch.full_like(a, self.equals_token))
        return torch.stack(columns, dim=1)

    def model_input(self, a: torch.Tensor, b: torch.Tensor) -> Any:
        return (self.make_input or self.default_input)(a, b)

    def class_logits(self, output: Any) -> torch.Tensor:
        if self.logits is not None:
            return self.logits(output)
        output = getattr(output, "logits", output)
        if isinstance(output, tuple | list):
            output = output[0]
        if not isinstance(output, torch.Tensor):
            raise MetricError(
                f"cannot find logits in the model's output ({type(output).__name__}): pass "
                "ModularAdditionTask(logits=lambda output: ...) returning (N, p) logits."
            )
        return output[:, -1, : self.p] if output.dim() == 3 else output[:, : self.p]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _embedding_module(model: nn.Module, task: ModularAdditionTask) -> nn.Module:
    names: dict[str, nn.Module] = {display_name(n): m for n, m in model.named_modules()}
    if task.embedding not in names:
        close = [n for n in names if "emb" in n.lower()][:5]
        raise MetricError(
            f"ModularAdditionTask(embedding={task.embedding!r}) names no module of this model; "
            f"embedding-like modules: {close or list(names)[:5]}. Pass embedding='<hook point>'."
        )
    return names[task.embedding]


@contextmanager
def _captured(module: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Replace the module's output by a leaf that requires grad; yield the list of leaves."""
    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, _args: Any, output: Any) -> torch.Tensor:
        if not isinstance(output, torch.Tensor):
            raise MetricError("the embedding hook point must output one tensor.")
        leaf = output.detach().requires_grad_(True)
        captured.append(leaf)
        return leaf

    handle = module.register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


def gradient_symmetricity(model: nn.Module, task: ModularAdditionTask) -> float:
    """Mean cosine similarity of d logit_c / d embedding at the positions of ``a`` and ``b``.

    Example:
        >>> # see tests/test_modular.py for models with known answers
    """
    generator = torch.Generator().manual_seed(task.seed)
    a, b, c = torch.randint(0, task.p, (3, task.n_triples), generator=generator)
    module = _embedding_module(model, task)
    device = next(iter(model.parameters()), torch.empty(0)).device
    with eval_mode(model), _captured(module) as captured, torch.enable_grad():
        logits = task.class_logits(model(task.model_input(a.to(device), b.to(device))))
        if not captured:
            raise MetricError(f"the embedding hook point {task.embedding!r} did not run.")
        chosen = logits.gather(1, c.to(device)[:, None]).sum()
        (grad,) = torch.autograd.grad(chosen, captured[-1])
    first, second = _positions(grad, task)
    grad_a = grad[:, first].reshape(task.n_triples, -1).double()
    grad_b = grad[:, second].reshape(task.n_triples, -1).double()
    cosine = torch.nn.functional.cosine_similarity(grad_a, grad_b, dim=1, eps=1e-30)
    return float(cosine.mean())


def _positions(grad: torch.Tensor, task: ModularAdditionTask) -> tuple[int, int]:
    """``task.positions`` after checking the embedding output has those sequence positions:
    ``(batch, positions, features...)``. A 2-D output has none (its dimension 1 holds features,
    and reading "positions" there would give a meaningless number)."""
    if grad.dim() < 3:
        raise MetricError(
            f"the embedding hook point {task.embedding!r} outputs shape {tuple(grad.shape)}: "
            "no sequence positions (expected (batch, positions, features)). Name the hook point "
            "whose output holds one vector per token (e.g. the token embedding before it is "
            "flattened), or set ModularAdditionTask(positions=...)."
        )
    first, second = task.positions
    if not all(-grad.shape[1] <= p < grad.shape[1] for p in (first, second)):
        raise MetricError(
            f"positions={task.positions} but the embedding hook point {task.embedding!r} has "
            f"{grad.shape[1]} positions (shape {tuple(grad.shape)})."
        )
    return first, second


def correct_logit_table(model: nn.Module, task: ModularAdditionTask) -> torch.Tensor:
    """The ``p x p`` float64 table ``L[(a+b) mod p][(a-b) mod p]`` of correct-class logits."""
    p = task.p
    a = torch.arange(p).repeat_interleave(p)
    b = torch.arange(p).repeat(p)
    device = next(iter(model.parameters()), torch.empty(0)).device
    values = []
    with eval_mode(model), torch.no_grad():
        for start in range(0, p * p, task.batch_size):
            sa, sb = a[start : start + task.batch_size], b[start : start + task.batch_size]
            logits = task.class_logits(model(task.model_input(sa.to(device), sb.to(device))))
            values.append(logits.gather(1, ((sa + sb) % p).to(device)[:, None])[:, 0].cpu())
    table = torch.empty(p, p, dtype=torch.float64)
    table[(a + b) % p, (a - b) % p] = torch.cat(values).double()
    return table


def distance_irrelevance(model: nn.Module, task: ModularAdditionTask) -> float:
    """Mean over columns of the std down each column of the logit table, over the std of all.

    Returns NaN when every correct logit is the same (the ratio is undefined).
    """
    table = correct_logit_table(model, task)
    total = table.std(unbiased=False)
    if not torch.isfinite(total) or total == 0:
        return math.nan
    return float(table.std(dim=0, unbiased=False).mean() / total)


def _task_of(ctx: Any) -> ModularAdditionTask:
    if not isinstance(ctx.task, ModularAdditionTask):
        raise MetricError(
            f"this metric needs task=hs.ModularAdditionTask(p), got {type(ctx.task).__name__}."
        )
    return ctx.task


_TASK_HINT = "hs.ModularAdditionTask(p, embedding='embed')"


@register_metric("gradient_symmetricity", category=2, needs=("task",), task_hint=_TASK_HINT)
def _gradient_symmetricity_metric(ctx: Any) -> float:
    """Mean cosine similarity of logit gradients at the two embeddings (pizza≈1, clock≈1/3)."""
    return gradient_symmetricity(ctx.model, _task_of(ctx))


@register_metric("distance_irrelevance", category=2, needs=("task",), task_hint=_TASK_HINT)
def _distance_irrelevance_metric(ctx: Any) -> float:
    """How little the correct logit depends on a-b (pizza low, clock≈1)."""
    return distance_irrelevance(ctx.model, _task_of(ctx))
