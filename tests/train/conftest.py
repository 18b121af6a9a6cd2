"""Fixtures for training tests: a tiny random decoder (dir or module) and small training files."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from mghkit.schema import LEVELS

WORDS = ["sodium", "potassium", "earth", "sun", "orbit", "latin", "name", "symbol", "salt", "lamp", "soap", "hydrogen", "files", "list", "grep", "manual", "pages", "directory", "pattern", "lines"]  # fmt: skip


def _text(rng: random.Random, k: int) -> str:
    return " ".join(rng.choices(WORDS, k=k))


def write_triplets(path: Path, n: int = 8, seed: int = 0) -> Path:
    rng = random.Random(seed)
    with path.open("w") as fp:
        for i in range(n):
            negs = [{"similarity_level": lv, "text": _text(rng, 10)} for lv in LEVELS]
            rec = {"id": f"t{i}", "instruction": "Retrieve the manual page", "query": _text(rng, 4),
                   "positive_example": _text(rng, 12), "hard_negative_examples": negs}  # fmt: skip
            fp.write(json.dumps(rec) + "\n")
    return path


def write_curriculum(path: Path, per_stage: int = 8, seed: int = 0) -> Path:
    rng = random.Random(seed)
    with path.open("w") as fp:
        for stage, level in enumerate(reversed(LEVELS), 1):
            for i in range(per_stage):
                rec = {"id": f"e{stage}-{i}", "stage": stage, "level": level, "instruction": "Retrieve the page",
                       "query": _text(rng, 4), "positive": _text(rng, 12), "negative": _text(rng, 12)}  # fmt: skip
                fp.write(json.dumps(rec) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from mghkit.model.tiny import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture
def curriculum_file(tmp_path) -> Path:
    return write_curriculum(tmp_path / "train.jsonl")


@pytest.fixture
def triplet_file(tmp_path) -> Path:
    return write_triplets(tmp_path / "triplets.jsonl")


# ----------------------------------------------------------------------------- loss-level helpers
VOCAB = 64


def tiny_decoder(seed: int = 0, dropout: float = 0.0):
    """A bidirectional random Llama base model (mghkit.model.tiny's config: hidden 16, 2 layers)."""
    import torch
    from transformers import AutoModel

    from mghkit.model.tiny import tiny_config

    config = tiny_config("llama", vocab_size=VOCAB, hidden=16)
    config.attention_dropout = dropout
    config.is_causal = False
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoModel.from_config(config)


def embed(model, ids):
    """[B, S] token ids -> [B, 16] mean-pooled last hidden states."""
    return model(input_ids=ids).last_hidden_state.mean(dim=1)


def random_batch(b: int, seq: int = 6, seed: int = 1):
    """(queries, positives, negatives) token ids, each [b, seq]."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randint(1, VOCAB, (b, seq), generator=g) for _ in range(3))
