"""Tiny random decoders saved as model dirs, built offline once per session (mghkit.model.tiny)."""

from __future__ import annotations

import pytest

from mghkit.model.tiny import save_tiny_model


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    """{family: model dir} for llama, mistral, qwen2 (2 layers, hidden 32, 4 heads / 2 KV heads)."""
    root = tmp_path_factory.mktemp("tiny")
    return {family: str(save_tiny_model(root / family, family=family)) for family in ("llama", "mistral", "qwen2")}


@pytest.fixture(scope="session")
def tiny_llama(tiny_dirs):
    return tiny_dirs["llama"]
