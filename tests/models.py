"""Tiny test models shared by the test files (no downloads, no torchvision)."""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn


class SmallCNN(nn.Module):
    """The seed's CNN: conv 3x3 pad 1 + 2x2 max pool, twice, then a linear classifier."""

    def __init__(self, conv1_channels: int = 16, conv2_channels: int = 32, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, conv1_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(conv1_channels, conv2_channels, 3, padding=1)
        self.classifier = nn.Linear(conv2_channels * 7 * 7, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.classifier(x.flatten(1))


class MLP(nn.Module):
    def __init__(self, sizes: tuple[int, ...] = (8, 16, 4)):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = self.act(layer(x))
        return x


class SharedLayer(nn.Module):
    """One Linear called twice: one hook point, two calls."""

    def __init__(self, width: int = 6):
        super().__init__()
        self.fc = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.fc(x)))


class TiedEmbedding(nn.Module):
    """Embedding and output head share one weight (like GPT-2)."""

    def __init__(self, vocab: int = 20, dim: int = 8):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.embed(ids)))


class KeywordOnly(nn.Module):
    """A forward with keyword-only arguments."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 3)

    def forward(self, *, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        return self.proj(x) * scale


class TinyAttention(nn.Module):
    """Functional ops inside a forward: matmul and SDPA (causal), no parameters of its own but
    q/k/v. ``eager=True`` writes the attention out (matmul, softmax, no mask), where
    FlopCounterMode is exact."""

    def __init__(self, dim: int = 16, heads: int = 2, *, eager: bool = False):
        super().__init__()
        self.heads, self.eager = heads, eager
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if self.eager:
            scores = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)
            y = torch.softmax(scores, dim=-1) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class TinyTransformer(nn.Module):
    def __init__(self, vocab: int = 32, dim: int = 16, heads: int = 2, layers: int = 2):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList(
            nn.ModuleDict(
                {
                    "norm": nn.LayerNorm(dim),
                    "attn": TinyAttention(dim, heads),
                    "mlp": nn.Sequential(
                        nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim)
                    ),
                }
            )
            for _ in range(layers)
        )
        self.head = nn.Linear(dim, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids)
        for block in self.blocks:
            x = x + block["attn"](block["norm"](x))
            x = x + block["mlp"](x)
        return self.head(x)


class RaisesInside(nn.Module):
    """Its second layer raises during forward."""

    def __init__(self):
        super().__init__()
        self.ok = nn.Linear(4, 4)
        self.bad = Boom()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bad(self.ok(x))


class Boom(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise ValueError("boom")


class TokenChoiceMoE(nn.Module):
    """Top-1 routing to one Linear per expert (``nonzero``): the experts' calls and token
    counts depend on the data."""

    def __init__(self, width: int = 8, experts: int = 4) -> None:
        super().__init__()
        self.gate = nn.Linear(width, experts)
        self.experts = nn.ModuleList(nn.Linear(width, width) for _ in range(experts))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        choice = self.gate(x).argmax(-1)
        out = torch.zeros_like(x)
        for index, expert in enumerate(self.experts):
            tokens = (choice == index).nonzero().flatten()
            if tokens.numel():
                out[tokens] = expert(x[tokens])
        return out
