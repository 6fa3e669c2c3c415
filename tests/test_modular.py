"""Modular-addition function metrics: models with known answers and a loop reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from hookstats import MetricError
from hookstats.metrics.modular import (
    ModularAdditionTask,
    distance_irrelevance,
    gradient_symmetricity,
)

P = 11


class OneHotModel(nn.Module):
    """Embeds a and b one-hot, then computes logits from a chosen function of (a, b)."""

    def __init__(self, logit_of):
        super().__init__()
        self.embed = nn.Embedding(P, P)
        with torch.no_grad():
            self.embed.weight.copy_(torch.eye(P))
        self.logit_of = logit_of

    def forward(self, ids):
        e = self.embed(ids)
        a, b = e[:, 0].argmax(-1), e[:, 1].argmax(-1)
        return self.logit_of(a, b)[:, None].expand(-1, P) + 0 * e.sum((1, 2))[:, None]


def test_logit_depending_only_on_difference_has_distance_irrelevance_zero():
    model = OneHotModel(lambda a, b: torch.cos(2 * math.pi * ((a - b) % P) / P))
    assert distance_irrelevance(model, ModularAdditionTask(P)) == pytest.approx(0.0, abs=1e-12)


def test_logit_ignoring_difference_has_distance_irrelevance_one():
    # every column (fixed a-b) holds each sum once, so its std equals the std of everything
    model = OneHotModel(lambda a, b: torch.sin(2 * math.pi * ((a + b) % P) / P) + (a + b) % P)
    assert distance_irrelevance(model, ModularAdditionTask(P)) == pytest.approx(1.0, abs=1e-12)


def test_constant_logits_give_nan_not_a_crash():
    model = OneHotModel(lambda a, b: torch.zeros(a.shape))
    assert math.isnan(distance_irrelevance(model, ModularAdditionTask(P)))


class SumModel(nn.Module):
    """logits = W2 relu(W1 (e_a ± e_b)): symmetric (+) or antisymmetric (-) in a and b."""

    def __init__(self, sign=1.0, dim=8):
        super().__init__()
        self.embed = nn.Embedding(P, dim)
        self.hidden = nn.Linear(dim, 16)
        self.out = nn.Linear(16, P)
        self.sign = sign

    def forward(self, ids):
        e = self.embed(ids)
        return self.out(torch.relu(self.hidden(e[:, 0] + self.sign * e[:, 1])))


def test_symmetric_model_has_gradient_symmetricity_one():
    torch.manual_seed(0)
    task = ModularAdditionTask(P, n_triples=50)
    assert gradient_symmetricity(SumModel(+1.0), task) == pytest.approx(1.0, abs=1e-12)
    assert gradient_symmetricity(SumModel(-1.0), task) == pytest.approx(-1.0, abs=1e-12)


class TinyModularTransformer(nn.Module):
    """A one-layer transformer on [a, b, =] with logits at the last position."""

    def __init__(self, dim=16):
        super().__init__()
        self.embed = nn.Embedding(P + 1, dim)
        self.pos = nn.Parameter(torch.randn(3, dim) * 0.1)
        self.attn = nn.MultiheadAttention(dim, 2, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 32), nn.ReLU(), nn.Linear(32, dim))
        self.unembed = nn.Linear(dim, P + 1)

    def forward(self, ids):
        x = self.embed(ids) + self.pos
        x = x + self.attn(x, x, x, need_weights=False)[0]
        return self.unembed(x + self.mlp(x))


def reference_symmetricity(model, task):
    """One triple at a time, gradients through a retained intermediate."""
    g = torch.Generator().manual_seed(task.seed)
    a, b, c = torch.randint(0, task.p, (3, task.n_triples), generator=g)
    sims = []
    for i in range(task.n_triples):
        ids = torch.tensor([[a[i], b[i], P]])
        emb = model.embed(ids).detach().requires_grad_(True)
        x = emb + model.pos
        x = x + model.attn(x, x, x, need_weights=False)[0]
        logit = model.unembed(x + model.mlp(x))[0, -1, c[i]]
        (grad,) = torch.autograd.grad(logit, emb)
        ga, gb = grad[0, 0].double().numpy(), grad[0, 1].double().numpy()
        sims.append(ga @ gb / np.linalg.norm(ga) / np.linalg.norm(gb))
    return float(np.mean(sims))


def reference_irrelevance(model, p):
    table = np.zeros((p, p))
    with torch.no_grad():
        for a in range(p):
            for b in range(p):
                logits = model(torch.tensor([[a, b, P]]))[0, -1]
                table[(a + b) % p, (a - b) % p] = float(logits[(a + b) % p])
    return float(table.std(axis=0).mean() / table.std())


def test_agrees_with_a_loop_reference_on_a_small_transformer():
    torch.manual_seed(1)
    model = TinyModularTransformer()
    model.train()
    flags = [p.requires_grad for p in model.parameters()]
    task = ModularAdditionTask(P, equals_token=P, n_triples=20, batch_size=7)
    ours = gradient_symmetricity(model, task)
    model.eval()
    assert ours == pytest.approx(reference_symmetricity(model, task), rel=1e-5)
    assert distance_irrelevance(model, task) == pytest.approx(
        reference_irrelevance(model, P), rel=1e-6
    )
    model.train()
    gradient_symmetricity(model, task)
    assert model.training and all(m.training for m in model.modules())  # flags restored
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks for m in model.modules())


def test_task_errors():
    with pytest.raises(MetricError, match="odd modulus"):
        ModularAdditionTask(10)
    with pytest.raises(MetricError, match="names no module.*embedding='<hook point>'"):
        gradient_symmetricity(SumModel(), ModularAdditionTask(P, embedding="tok_emb"))


def test_registered_as_category_two_plugins():
    from hookstats.metrics import compute_metrics, metric_registry

    assert {"gradient_symmetricity", "distance_irrelevance"} <= set(metric_registry.names(2))
    torch.manual_seed(2)
    model = SumModel(+1.0)
    task = ModularAdditionTask(P, n_triples=30)
    frame = compute_metrics(
        model, metrics=["gradient_symmetricity", "distance_irrelevance"], task=task
    )
    values = frame.set_index(["hook_point", "metric"])["value"]
    assert values[("(model)", "gradient_symmetricity")] == pytest.approx(1.0, abs=1e-12)
    assert values[("(model)", "distance_irrelevance")] == distance_irrelevance(model, task)
    assert set(frame.hook_point) == {"(model)"}  # category 2: the model row only
    with pytest.raises(MetricError, match="ModularAdditionTask"):
        compute_metrics(model, metrics=["gradient_symmetricity"])
