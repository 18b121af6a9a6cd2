"""mghkit.mine with BM25: graded negatives in the paper's four-level format, false negatives dropped."""

from __future__ import annotations

import json

import pytest

import mghkit
from mghkit.errors import InputError, UsageError
from mghkit.mining import BANDS, mine, parse_bands
from mghkit.schema import LEVELS, Triplet

WORDS = [f"w{i}" for i in range(60)]


def _corpus(n: int = 400) -> list[str]:
    """Documents that share more words with doc 0 the lower their number (a graded ranking)."""
    return [f"doc{i} " + " ".join(WORDS[j] for j in range(60) if (j * 7 + i) % 11 < 4 + i % 3) for i in range(n)]


def _distinct(n: int = 300) -> list[str]:
    """Documents with no near-duplicates among them."""
    return [f"d{i} " + " ".join(f"t{(i * 37 + j * j * 13 + j * i) % 997}" for j in range(15)) for i in range(n)]


def test_four_graded_negatives_with_their_ranks_and_the_positives_excluded():
    docs = _corpus()
    pairs = [{"id": "a", "query": docs[0], "positive": docs[0], "instruction": "Find it"},
             {"id": "b", "query": docs[0], "positive": docs[11]}]  # fmt: skip
    triplets = mghkit.mine(pairs, corpus=docs, seed=3, kind="long-long", margin=None)
    assert [type(t) for t in triplets] == [Triplet, Triplet]
    t = triplets[0]
    assert (t.id, t.kind, t.instruction) == ("a", "long-long", "Find it")
    assert [n.similarity_level for n in t.hard_negative_examples] == list(LEVELS)
    negatives = [n.text for n in t.hard_negative_examples]
    assert docs[0] not in negatives and docs[11] not in negatives  # every positive of the same query is skipped
    mined = t.meta["mined"]
    assert mined["retriever"] == "bm25" and mined["ranks"] == sorted(mined["ranks"])  # most similar first
    assert mined["scores"] == sorted(mined["scores"], reverse=True)
    assert mined["positive"]["rank"] == 1  # the query is the positive's own text
    assert mined["dropped"]["other_positive"] == 1  # docs[11], the other pair's positive
    assert mined["dropped"]["near_duplicate"] == 12  # this corpus repeats its word sets every 33 documents
    # each level's negative comes from its band of the ranking (ranks shift by what was dropped above)
    shift = 1 + sum(mined["dropped"].values())
    for rank, (lo, hi) in zip(mined["ranks"], (BANDS[level] for level in LEVELS), strict=True):
        assert lo < rank <= hi + shift
    assert mine(pairs, corpus=docs, seed=3) == mine(pairs, corpus=docs, seed=3)  # deterministic
    assert (
        mine(pairs, corpus=docs, seed=3)[0].hard_negative_examples
        != mine(pairs, corpus=docs, seed=4)[0].hard_negative_examples
    )  # the seed picks within the bands


def test_the_margin_drops_candidates_that_outscore_the_positive():
    docs = _corpus()
    pair = [{"id": "a", "query": docs[0], "positive": docs[5]}]  # docs[0] itself outscores the positive
    kept = mine(pair, corpus=docs, margin=None)[0].meta["mined"]
    filtered = mine(pair, corpus=docs, margin=0.95)[0].meta["mined"]
    assert kept["positive"]["rank"] > 1 and kept["scores"][0] > 0.95 * kept["positive"]["score"]
    assert filtered["dropped"]["margin"] >= kept["positive"]["rank"] - 1
    assert max(filtered["scores"]) <= 0.95 * filtered["positive"]["score"]


def test_duplicates_of_the_positive_are_never_negatives_and_are_counted():
    docs = _distinct()
    positive = docs[3]
    twins = [positive.upper() + " !", positive + " w59"]  # same normalised text; one word more (near duplicate)
    corpus = docs + twins
    pairs = [{"id": "a", "query": " ".join(positive.split()[:6]), "positive": positive}]
    t = mine(pairs, corpus=corpus, margin=None, bands="high=0-1")[0]
    assert not set(twins) & {n.text for n in t.hard_negative_examples}
    assert t.meta["mined"]["dropped"] == {"duplicate": 1, "near_duplicate": 1}


def test_score_ranges_pick_within_them_or_fall_back_to_ranks():
    docs = _corpus()
    pairs = [{"id": "a", "query": docs[0], "positive": docs[0]}]
    t = mine(pairs, corpus=docs, bands="low=100-300@0-0.2")
    mined = t[0].meta["mined"]
    assert mined["scores"][3] <= 0.2 * mined["positive"]["score"]
    impossible = mine(pairs, corpus=docs, bands="high=0-3@0.999-1")
    assert impossible.stats.fallbacks == 1
    assert parse_bands("medium=1-9")["medium"].hi == 9 and parse_bands(None) == parse_bands("")
    with pytest.raises(UsageError, match="expected LEVEL=LO-HI"):
        parse_bands("high=3")


def test_files_in_files_out_beir_pairs_and_the_positives_as_default_corpus(tmp_path):
    docs = _corpus(120)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"query": " ".join(d.split()[:3]), "positive": d}) + "\n" for d in docs))
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": f"d{i}", "title": "", "text": d}) + "\n" for i, d in enumerate(docs))
    )
    out = tmp_path / "triplets.jsonl"
    got = mine(pairs, corpus=beir, bands={"low": (80, 100)}, out=out, seed=1)  # the call form others use
    assert len(got) == 120 and got[0].hard_negative_examples[0].doc_id.startswith("d")
    assert [Triplet.model_validate_json(line) for line in out.read_text().splitlines()] == got
    plain = mine(str(pairs), bands={"low": (80, 100)}, seed=1)  # corpus: the positives themselves
    assert [t.hard_negative_examples[0].text for t in plain] == [t.hard_negative_examples[0].text for t in got]
    # a BEIR dir as the pairs: each relevant doc is a pair, the query's other relevant docs are never negatives
    (beir / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "w1 w2 w3"}) + "\n")
    (beir / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td0\t1\nq1\td1\t1\n")
    from_beir = mine(beir)
    assert [t.id for t in from_beir] == ["q1:d0", "q1:d1"]
    for t in from_beir:
        assert not {"d0", "d1"} & {n.doc_id for n in t.hard_negative_examples}
        assert t.meta["mined"]["dropped"].get("other_positive") == 1


def test_workers_and_batches_do_not_change_the_result():
    docs = _corpus(300)
    pairs = [{"query": " ".join(d.split()[:5]), "positive": d} for d in docs[:40]]
    one = mine(pairs, corpus=docs, seed=2)
    assert mine(pairs, corpus=docs, seed=2, workers=2, batch_size=7) == one
    assert one.stats.mined == 40 and one.stats.pairs == 40


def test_bad_input_is_one_clear_error(tmp_path):
    docs = _corpus(50)
    with pytest.raises(InputError, match=r"<pairs>:2: positive: expected a non-empty string"):
        mine([{"query": "q", "positive": docs[0]}, {"query": "q"}], corpus=docs)
    with pytest.raises(InputError, match="positive: the positive is not in the corpus"):
        mine([{"query": "q", "positive": "not a document"}], corpus=docs)
    with pytest.raises(UsageError, match="too small for the bands: 3 candidates"):  # 2 copies of the positive
        mine([{"query": "w1", "positive": docs[0]}], corpus=[*docs[:4], docs[0].upper(), docs[0] + "."])
    with pytest.raises(UsageError, match="corpus is too small: 3 documents"):
        mine([{"query": "w1", "positive": docs[0]}], corpus=docs[:3])
    with pytest.raises(UsageError, match="unknown retriever"):
        mine([{"query": "q", "positive": docs[0]}], retriever="splade")
    bad = tmp_path / "pairs.jsonl"
    bad.write_text('{"query": "q", "positive": "p"}\n{oops\n')
    with pytest.raises(InputError, match=r"pairs.jsonl:2: not valid JSON"):
        mine(bad)
