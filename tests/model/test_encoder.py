"""The encoder on tiny random decoders: tokens, padding invariance, batching, gradients."""

from __future__ import annotations

import pytest
import torch

from mghkit.errors import UsageError
from mghkit.model.encoder import load_encoder

TEXTS = [
    "sodium latin name",
    "The earth orbits the sun, once a year; the sun is orbited by the earth.",
    "hi",
    "Potassium is kalium in Latin, so its symbol is K.",
]
TASK = "Given a question, retrieve passages that answer it"


@pytest.fixture(scope="module")
def enc(tiny_llama):
    return load_encoder(tiny_llama, pooling="ata")


def test_query_layout_instruction_not_pooled_eos_appended(enc):
    ids, pooled = enc.features("sodium latin name", TASK)
    tok = enc.tokenizer
    prefix = tok(f"Instruct: {TASK}\nQuery: ", add_special_tokens=False)["input_ids"]
    body = tok("sodium latin name", add_special_tokens=False)["input_ids"]
    assert ids == [tok.bos_token_id, *prefix, *body, tok.eos_token_id]
    assert pooled == [1] + [0] * len(prefix) + [1] * len(body) + [1]
    doc_ids, doc_pooled = enc.features("sodium latin name")  # documents: no instruction, all pooled
    assert doc_ids == [tok.bos_token_id, *body, tok.eos_token_id] and all(doc_pooled)
    with_instr = enc.with_config(pool_instruction=True).features("sodium latin name", TASK)[1]
    assert all(with_instr)


def test_truncation_keeps_specials(enc):
    short = enc.with_config(max_length=8)
    ids, _ = short.features("word " * 50)
    assert len(ids) == 8 and ids[0] == enc.tokenizer.bos_token_id and ids[-1] == enc.tokenizer.eos_token_id
    with pytest.raises(UsageError, match="no room"):
        short.features("x", instruction="a very long instruction " * 5)


@pytest.mark.parametrize("pooling", ["ata", "mean", "last", "weighted-mean"])
@pytest.mark.parametrize("causal", [False, True])
def test_left_and_right_padding_give_the_same_vectors(enc, pooling, causal):
    right = enc.with_config(pooling=pooling, padding_side="right", bidirectional=not causal)
    left = enc.with_config(pooling=pooling, padding_side="left", bidirectional=not causal)
    a = right.encode(TEXTS, instruction=TASK)
    b = left.encode(TEXTS, instruction=TASK)
    assert torch.allclose(a, b, atol=1e-5)
    one_by_one = torch.cat([right.encode([t], instruction=TASK) for t in TEXTS])
    assert torch.allclose(a, one_by_one, atol=1e-5)


def test_encode_keeps_input_order_and_normalises(enc):
    v = enc.encode(TEXTS, batch_size=2)
    assert v.shape == (4, enc.dim)
    assert torch.allclose(v.norm(dim=-1), torch.ones(4), atol=1e-5)
    rev = enc.encode(TEXTS[::-1], batch_size=3)
    assert torch.allclose(v, rev.flip(0), atol=1e-5)
    raw = enc.encode(TEXTS[:1], normalize=False)
    assert not torch.allclose(raw.norm(), torch.tensor(1.0))


def test_poolings_differ_and_bidirectional_differs_from_causal(enc):
    vecs = {p: enc.with_config(pooling=p).encode(TEXTS[1:2]) for p in ("ata", "mean", "last", "weighted-mean")}
    assert not torch.allclose(vecs["mean"], vecs["last"])
    assert not torch.allclose(vecs["ata"], vecs["last"])
    causal = enc.with_config(bidirectional=False).encode(TEXTS[1:2])
    assert not torch.allclose(enc.encode(TEXTS[1:2]), causal)


def test_embed_is_differentiable_through_the_ata_weights(tiny_llama):
    enc = load_encoder(tiny_llama, pooling="ata")
    enc.model.train()
    batch = enc.tokenize(TEXTS[:2], instruction=TASK)
    assert enc.weights(enc.forward(batch)).requires_grad  # the ATA weights themselves carry gradient
    emb = enc.embed(batch, normalize=True)
    assert emb.shape == (2, enc.dim) and emb.requires_grad
    emb.sum().backward()
    grad = enc.model.layers[0].self_attn.q_proj.weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_bad_texts_and_options(enc):
    with pytest.raises(UsageError, match="expected a string"):
        enc.encode(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(UsageError, match="choose from"):
        enc.with_config(pooling="max")
    assert enc.encode("one text").shape == (1, enc.dim)
