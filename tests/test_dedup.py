"""Normalisation, near-identity and the MinHash-LSH index."""

from __future__ import annotations

import numpy as np
import pytest

from mghkit.validate.dedup import LshIndex, MinHasher, SortedKeys, dedup_key, near_identical, normalize_text


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("plain text", "plain text"),
        ("  a \t b  ", "a b"),
        ("e\u0301", "\u00e9"),  # NFC
        ("zero\u200bwidth\ufeff", "zerowidth"),
        ("a\r\nb\rc", "a\nb\nc"),
        ("p1\n\n\n\n\np2", "p1\n\np2"),
        ("bell\x07 char", "bell char"),
        (" \n\t ", ""),
    ],
)
def test_normalize_text(raw, clean):
    assert normalize_text(raw) == clean


def test_dedup_key_ignores_case_punctuation_and_width():
    assert dedup_key("What's the LATIN name?!") == dedup_key("what s the latin name") == "what s the latin name"
    assert dedup_key("ＡＢＣ café") == dedup_key("abc CAFÉ")  # NFKC + casefold off the ASCII path


def test_near_identical_tolerates_a_small_edit_but_keeps_word_order():
    base = " ".join(f"w{i}" for i in range(30))
    assert near_identical(base, base + " extra", 0.9)
    assert not near_identical(base, " ".join(f"w{i}" for i in range(15)), 0.9)
    assert not near_identical("the earth orbits the sun", "the sun orbits the earth", 0.9)
    assert not near_identical("", "", 0.9)


def test_minhash_estimates_jaccard():
    mh = MinHasher(num_perm=256)
    a = "the quick brown fox jumps over the lazy dog near the river bank"
    sigs = mh.signatures([a, a, a + " today", "completely different words here about sodium"])
    sim = lambda i, j: float((sigs[i] == sigs[j]).mean())  # noqa: E731
    assert sim(0, 1) == 1.0
    assert 0.7 < sim(0, 2) < 1.0
    assert sim(0, 3) < 0.2
    assert sigs.dtype == np.uint32 and sigs.shape == (4, 256)
    assert (MinHasher(num_perm=256).signatures([a]) == sigs[:1]).all()  # deterministic


def test_minhash_handles_short_and_non_ascii_keys():
    sigs = MinHasher().signatures(["a", "", "日本語のテキスト"])
    assert sigs.shape == (3, 64)


def test_sorted_keys_batches():
    s = SortedKeys()
    s.add(np.array([5, 1, 9], dtype=np.uint64), np.array([10, 11, 12]))
    s.add(np.array([5, 2**63 + 7], dtype=np.uint64), np.array([13, 14]))
    assert s.first(np.array([1, 5, 3, 2**63 + 7], dtype=np.uint64)).tolist() == [11, 10, -1, 14]
    assert sorted(s.all(np.uint64(5)).tolist()) == [10, 13]


def test_lsh_index_finds_near_duplicates_only():
    mh = MinHasher()
    index = LshIndex(0.8)
    texts = [dedup_key(f"how do i reset the password of my account number {i} quickly") for i in range(50)]
    sigs = mh.signatures(texts)
    index.add(sigs, index.band_keys(sigs), list(range(1, 51)))
    probe = mh.signatures([texts[7] + " please", "an unrelated question about volcanoes and lava"])
    keys = index.band_keys(probe)
    hit = index.query(probe[0], keys[0])
    assert hit is not None and hit[0] == 8 and hit[1] >= 0.8
    assert index.query(probe[1], keys[1]) is None
    assert index.candidates_exist(keys).tolist()[0] is True


def test_lsh_query_many_matches_a_brute_force_search():
    rng = np.random.default_rng(0)
    mh = MinHasher()
    index = LshIndex(0.8)
    words = [f"w{i}" for i in range(40)]
    stored = [" ".join(rng.choice(words, size=8)) for _ in range(300)]
    sigs = mh.signatures(stored)
    index.add(sigs, index.band_keys(sigs), list(range(1, 301)))
    probes = [s + " extra" for s in stored[:60]] + [" ".join(rng.choice(words, size=8)) for _ in range(60)]
    psigs = mh.signatures(probes)
    pkeys = index.band_keys(psigs)
    ids, sims = index.query_many(psigs, pkeys)
    stored16, stored_keys = sigs.astype(np.uint16), index.band_keys(sigs).astype(np.uint32)
    for i in range(len(probes)):  # reference: every stored entry sharing a band, best similarity, earliest on ties
        share = (stored_keys == pkeys[i].astype(np.uint32)[None, :]).any(axis=1)
        cands = np.flatnonzero(share)
        if len(cands) == 0:
            assert ids[i] == -1
            continue
        sim = (stored16[cands] == psigs[i].astype(np.uint16)[None, :]).mean(axis=1)
        best = cands[int(np.argmax(sim))]
        expected = best + 1 if sim.max() >= 0.8 else -1
        assert ids[i] == expected and sims[i] == pytest.approx(sim.max()), i
    assert (ids[:60] > 0).mean() > 0.5  # the near-copies are mostly found
