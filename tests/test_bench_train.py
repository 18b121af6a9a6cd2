"""The train benchmark's sentence-transformers arm encodes as mghkit's encoder does (bench/bench_train.py):
plain text, not the chat template; EOS appended; the instruction attended to but not pooled."""

from __future__ import annotations

import numpy as np
import pytest

from bench.bench_train import _st_model, _st_prompt, _STEncoder
from mghkit.model.encoder import load_encoder

INSTRUCTION = "Given the one-line summary of a Linux manual page, retrieve the page's description"


@pytest.fixture(scope="module")
def pair():
    return _st_model("local", 64), load_encoder("local", max_length=64, pooling="mean", causal=True)


def test_st_arm_tokenizes_plain_text_with_eos_and_pools_past_the_prompt(pair):
    st, _ = pair
    tok = st[0].tokenizer
    feats = st[0].preprocess([" sodium lamp"], prompt=_st_prompt(INSTRUCTION))
    ids = feats["input_ids"][0].tolist()
    assert feats["modality"] == "text"  # not "message": no chat template around the text
    assert ids[-1] == tok.eos_token_id and tok.eos_token_id not in ids[:-1]
    # the first pooled token is the query's first word, everything before it is the instruction
    assert ids[feats["prompt_length"] :] == tok(" sodium lamp")["input_ids"]
    long = st[0].preprocess(["word " * 200])["input_ids"][0].tolist()
    assert len(long) == 64 and long[-1] == tok.eos_token_id  # EOS kept under truncation, as mghkit does


def test_st_arm_embeds_documents_as_mghkit_does(pair):
    st, enc = pair
    docs = ["grep prints lines that match patterns.", "ls lists directory contents, sorted by name."]
    cos = (_STEncoder(st).encode(docs) * enc.encode(docs)).sum(axis=1)
    np.testing.assert_allclose(cos, 1.0, atol=1e-4)


def test_st_arm_embeds_queries_as_mghkit_does(pair):
    """Both tokenize the query with its instruction as one string (mghkit's ``query_tokens="joint"``),
    so the two arms start from the same untrained model, queries included."""
    st, enc = pair
    queries = ["list directory contents", "print lines that match patterns"]
    cos = (_STEncoder(st).encode(queries, instruction=INSTRUCTION) * enc.encode(queries, instruction=INSTRUCTION)).sum(
        axis=1
    )
    np.testing.assert_allclose(cos, 1.0, atol=1e-4)
