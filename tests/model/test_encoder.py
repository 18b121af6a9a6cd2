"""The encoder on tiny random decoders: tokens, padding invariance, batching, gradients."""

from __future__ import annotations

import numpy as np
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
    joint = tok(f"Instruct: {TASK}\nQuery: sodium latin name", add_special_tokens=False)["input_ids"]
    assert ids == [tok.bos_token_id, *joint, tok.eos_token_id]  # one string (tests/model/test_query_tokens.py)
    n_prefix = pooled[1:].index(1)
    assert pooled == [1] + [0] * n_prefix + [1] * (len(joint) - n_prefix) + [1]
    assert tok.decode(joint[n_prefix:]).strip() == "sodium latin name"
    body = tok("sodium latin name", add_special_tokens=False)["input_ids"]
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
    np.testing.assert_allclose(a, b, atol=1e-5)
    one_by_one = np.concatenate([right.encode([t], instruction=TASK) for t in TEXTS])
    np.testing.assert_allclose(a, one_by_one, atol=1e-5)


def test_encode_returns_numpy_in_input_order_normalised(enc):
    v = enc.encode(TEXTS, batch_size=2)
    assert isinstance(v, np.ndarray) and v.dtype == np.float32 and v.shape == (4, enc.dim)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), np.ones(4), atol=1e-5)
    rev = enc.encode(TEXTS[::-1], batch_size=3)
    np.testing.assert_allclose(v, rev[::-1], atol=1e-5)
    raw = enc.encode(TEXTS[:1], normalize=False)
    assert abs(float(np.linalg.norm(raw)) - 1.0) > 1e-3
    assert enc.encode([]).shape == (0, enc.dim)


def test_encode_matches_embed(enc):
    """The inference path gives the training path's vectors (no gradient, numpy)."""
    with torch.no_grad():
        expected = enc.embed(enc.tokenize(TEXTS, instruction=TASK), normalize=True).numpy()
    np.testing.assert_allclose(enc.encode(TEXTS, instruction=TASK, batch_size=3), expected, atol=1e-5)


def test_pooling_per_call_equals_an_encoder_with_that_pooling(enc):
    for p in ("mean", "last", "weighted-mean", "ata"):
        np.testing.assert_allclose(
            enc.encode(TEXTS, pooling=p, instruction=TASK), enc.with_config(pooling=p).encode(TEXTS, instruction=TASK),
            atol=1e-6,
        )  # fmt: skip
    assert enc.config.pooling == "ata"  # the override did not change the encoder
    both = enc.encode_poolings(TEXTS, ["mean", "ata"], batch_size=2)
    np.testing.assert_allclose(both["mean"], enc.encode(TEXTS, pooling="mean"), atol=1e-6)
    np.testing.assert_allclose(both["ata"], enc.encode(TEXTS), atol=1e-6)
    with pytest.raises(UsageError, match="unknown pooling 'max'"):
        enc.encode(TEXTS, pooling="max")
    with pytest.raises(UsageError, match="batch size"):
        enc.encode(TEXTS, batch_size=0)


def test_poolings_differ_and_bidirectional_differs_from_causal(enc):
    vecs = {p: enc.encode(TEXTS[1:2], pooling=p) for p in ("ata", "mean", "last", "weighted-mean")}
    assert not np.allclose(vecs["mean"], vecs["last"])
    assert not np.allclose(vecs["ata"], vecs["last"])
    causal = enc.with_config(bidirectional=False).encode(TEXTS[1:2])
    assert not np.allclose(enc.encode(TEXTS[1:2]), causal)


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


def test_a_run_dir_holding_its_model_still_loads_after_a_move(tiny_llama, tmp_path):
    """A base model saved inside the run (full fine-tuning) is stored relative to the run."""
    import shutil

    from mghkit.model.config import EncoderConfig

    run = tmp_path / "run"
    shutil.copytree(tiny_llama, run / "model")
    EncoderConfig(base_model="./model", pooling="last").save(run)
    moved = tmp_path / "elsewhere"
    run.rename(moved)
    enc = load_encoder(moved)
    assert enc.config.pooling == "last" and enc.name == str(moved) and "elsewhere" in repr(enc)
    np.testing.assert_allclose(enc.encode(TEXTS), load_encoder(tiny_llama, pooling="last").encode(TEXTS), atol=1e-6)
