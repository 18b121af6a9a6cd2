"""The last-layer attention hook against eager attention (the reference), on tiny models."""

from __future__ import annotations

import pytest
import torch

from mghkit.model.encoder import load_encoder

TEXTS = ["sodium latin name", "The earth orbits the sun, once a year; the sun is orbited by the earth.", "hi"]


def eager_last_attention(enc, batch, causal):
    model = enc.model
    model.set_attn_implementation("eager")
    try:
        out = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            position_ids=batch["position_ids"],
            output_attentions=True,
            is_causal=causal,
        )
    finally:
        model.set_attn_implementation("sdpa")
    return out.attentions[-1]


@pytest.mark.parametrize("family", ["llama", "mistral", "qwen2"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("side", ["right", "left"])
def test_hook_matches_eager_with_padding(tiny_dirs, family, causal, side):
    enc = load_encoder(tiny_dirs[family], pooling="ata", causal=causal, padding_side=side)
    batch = enc.tokenize(TEXTS)
    assert (batch["attention_mask"] == 0).any()  # there is padding
    with torch.no_grad():
        out = enc.forward(batch)
        ref = eager_last_attention(enc, batch, causal)
    real = batch["attention_mask"].bool()[:, None, :, None]  # rows of pad queries are irrelevant
    assert out["attn"].shape == ref.shape
    assert ((out["attn"] - ref).abs() * real).max() < 1e-5
    # valid pairs: never a pad key; under causal, never a future key
    valid = out["valid"].expand_as(ref)
    assert not (valid & ~batch["attention_mask"].bool()[:, None, None, :]).any()
    future = torch.triu(torch.ones(ref.shape[-1], ref.shape[-1], dtype=torch.bool), 1)
    assert (valid & future).any() != causal


@pytest.mark.parametrize("causal", [False, True])
def test_hook_without_padding_mask(tiny_llama, causal):
    """One text, no padding: sdpa gets no mask and relies on is_causal - the hook must follow."""
    enc = load_encoder(tiny_llama, pooling="ata", causal=causal)
    batch = enc.tokenize(TEXTS[1:2])
    with torch.no_grad():
        out = enc.forward(batch)
        ref = eager_last_attention(enc, batch, causal)
    assert (out["attn"] - ref).abs().max() < 1e-5
    upper = torch.triu(out["attn"][0, 0], 1)
    assert (upper.abs().max() == 0) == causal


def test_hook_is_off_when_not_needed_and_shared(tiny_llama):
    enc = load_encoder(tiny_llama, pooling="mean")
    out = enc.forward(enc.tokenize(TEXTS))
    assert "attn" not in out
    ata = enc.with_config(pooling="ata")
    assert ata._hook is ata.with_config(ata_direction="given")._hook  # one hook per model
    assert "attn" in ata.forward(ata.tokenize(TEXTS))


@pytest.mark.slow
def test_hook_matches_eager_on_the_real_model():
    enc = load_encoder("local", pooling="ata", max_length=32)
    batch = enc.tokenize(["What is the Latin name of sodium?", "sodium latin name"])
    with torch.no_grad():
        out = enc.forward(batch)
        ref = eager_last_attention(enc, batch, causal=False)
    real = batch["attention_mask"].bool()[:, None, :, None]
    assert ((out["attn"] - ref).abs() * real).max() < 1e-4
