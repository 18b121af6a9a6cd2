"""The bidirectional self-test catches a causal model."""

from __future__ import annotations

import pytest

from mghkit.errors import RuntimeFailure
from mghkit.model.encoder import load_encoder
from mghkit.model.selftest import assert_bidirectional, bidirectional_selftest


@pytest.mark.parametrize("family", ["llama", "mistral", "qwen2"])
def test_bidirectional_passes_causal_fails(tiny_dirs, family):
    bidir = bidirectional_selftest(load_encoder(tiny_dirs[family]))
    assert bidir.bidirectional and bidir.change > 1e-3
    causal = bidirectional_selftest(load_encoder(tiny_dirs[family], causal=True))
    assert not causal.bidirectional and causal.change < 1e-6
    assert "NOT bidirectional" in causal.message()


def test_a_model_whose_config_lost_the_flag_still_follows_the_encoder(tiny_llama):
    """The encoder passes is_causal on every call, so a config reset to causal cannot sneak in."""
    enc = load_encoder(tiny_llama)
    enc.model.config.is_causal = True
    assert bidirectional_selftest(enc).bidirectional


def test_assert_bidirectional_raises_runtime_failure(tiny_llama):
    with pytest.raises(RuntimeFailure, match="NOT bidirectional"):
        assert_bidirectional(load_encoder(tiny_llama, causal=True))
    assert assert_bidirectional(load_encoder(tiny_llama)).bidirectional


@pytest.mark.slow
def test_real_model_is_bidirectional_by_default_and_causal_on_request():
    enc = load_encoder("local", max_length=64)
    assert bidirectional_selftest(enc).bidirectional
    assert not bidirectional_selftest(enc.with_config(bidirectional=False)).bidirectional
