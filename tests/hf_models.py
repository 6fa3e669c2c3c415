"""Real transformer shapes from ``transformers`` configs with random init (no download): build
them under ``torch.device("meta")`` (or profile with ``device="meta"``) and they cost no memory.
"""

from __future__ import annotations

from typing import Any

LLAMA_7B = dict(
    hidden_size=4096,
    intermediate_size=11008,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=32,
    vocab_size=32000,
    max_position_embeddings=4096,
)
"""Llama-2-7B's shape (6.74 B parameters)."""

LLAMA_70B = dict(
    hidden_size=8192,
    intermediate_size=28672,
    num_hidden_layers=80,
    num_attention_heads=64,
    num_key_value_heads=8,
    vocab_size=128256,
    max_position_embeddings=4096,
)
"""A Llama-3-70B-shaped configuration (70.55 B parameters)."""


def gpt2_small() -> Any:
    """GPT-2 small: 12 blocks of width 768, vocabulary 50257 (124.4 M parameters)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config())


def llama_32_layers() -> Any:
    """A Llama-2-7B-shaped decoder: 32 layers of width 4096, MLP 11008, vocabulary 32000."""
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(**LLAMA_7B))


def tiny_gpt2(layers: int = 2) -> Any:
    """A GPT-2 small enough to run on a CPU in a test: width 32, vocabulary 100."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        n_layer=layers, n_embd=32, n_head=2, n_positions=64, vocab_size=100, bos_token_id=0,
        eos_token_id=0,
    )  # fmt: skip
    return GPT2LMHeadModel(config).eval()
