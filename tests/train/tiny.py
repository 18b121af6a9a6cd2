"""A tiny random decoder (hidden 16, 2 layers) and a mean-pooled embedding, for loss-level tests."""

from __future__ import annotations

import torch


def tiny_llama(seed: int = 0, dropout: float = 0.0) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaModel

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                      attention_dropout=dropout)  # fmt: skip
    cfg.is_causal = False
    return LlamaModel(cfg)


def embed(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """[B, S] token ids -> [B, 16] mean-pooled last hidden states."""
    return model(input_ids=ids).last_hidden_state.mean(dim=1)


def random_batch(b: int, seq: int = 6, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randint(1, 64, (b, seq), generator=g) for _ in range(3))  # type: ignore[return-value]
