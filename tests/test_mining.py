"""mghkit.mine: BM25-graded negatives from a corpus, in the paper's four-level triplet format."""

from __future__ import annotations

import json

import pytest

import mghkit
from mghkit.errors import InputError, UsageError
from mghkit.mining import BANDS, mine
from mghkit.schema import LEVELS, Triplet

WORDS = [f"w{i}" for i in range(60)]


def _corpus(n: int = 400) -> list[str]:
    """Documents that share more words with doc 0 the lower their number (a graded ranking)."""
    return [f"doc{i} " + " ".join(WORDS[j] for j in range(60) if (j * 7 + i) % 11 < 4 + i % 3) for i in range(n)]


def test_four_graded_negatives_with_their_ranks_and_the_positive_excluded():
    docs = _corpus()
    pairs = [{"id": "a", "query": docs[0], "positive": docs[0], "instruction": "Find it"},
             {"id": "b", "query": docs[0], "positive": docs[11]}]  # fmt: skip
    triplets = mghkit.mine(pairs, corpus=docs, seed=3, kind="long-long")
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
    # each level's negative comes from its band of the ranking (positives removed: 2 of them rank above)
    for rank, (lo, hi) in zip(mined["ranks"], (BANDS[level] for level in LEVELS), strict=True):
        assert lo < rank <= hi + 2
    assert mine(pairs, corpus=docs, seed=3) == mine(pairs, corpus=docs, seed=3)  # deterministic
    assert (
        mine(pairs, corpus=docs, seed=3)[0].hard_negative_examples
        != mine(pairs, corpus=docs, seed=4)[0].hard_negative_examples
    )  # the seed picks within the bands


def test_files_in_files_out_and_the_positives_as_default_corpus(tmp_path):
    docs = _corpus(120)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"query": " ".join(d.split()[:3]), "positive": d}) + "\n" for d in docs))
    corpus = tmp_path / "beir"
    corpus.mkdir()
    (corpus / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": f"d{i}", "title": "", "text": d}) + "\n" for i, d in enumerate(docs))
    )
    out = tmp_path / "triplets.jsonl"
    got = mine(pairs, corpus=corpus, bands={"low": (80, 100)}, out=out)
    assert len(got) == 120 and got[0].hard_negative_examples[0].doc_id.startswith("d")
    assert [Triplet.model_validate_json(line) for line in out.read_text().splitlines()] == got
    plain = mine(str(pairs), bands={"low": (80, 100)})  # corpus: the positives themselves
    assert [t.hard_negative_examples[0].text for t in plain] == [t.hard_negative_examples[0].text for t in got]


def test_the_grading_of_the_man_pages_recipe_is_kept():
    """The demo's public triplets: the same picks as the recipe this function replaced."""
    from mghkit.demo import manpages_split, mine_public_triplets

    triplets = {t.id: t for t in mine_public_triplets(manpages_split(7, max_test=100), seed=7)}
    assert len(triplets) == 842
    expected = {"manpages-q0": ["d14", "d589", "d283", "d613"], "manpages-q1": ["d810", "d747", "d801", "d855"],
                "manpages-q10": ["d547", "d546", "d77", "d257"], "manpages-q500": ["d775", "d184", "d16", "d787"],
                "manpages-q503": ["d783", "d578", "d535", "d1009"]}  # fmt: skip
    for tid, doc_ids in expected.items():
        assert [n.doc_id for n in triplets[tid].hard_negative_examples] == doc_ids, tid


def test_bad_input_is_one_clear_error(tmp_path):
    docs = _corpus(50)
    with pytest.raises(InputError, match=r"<pairs>:2: positive: expected a non-empty string"):
        mine([{"query": "q", "positive": docs[0]}, {"query": "q"}], corpus=docs)
    with pytest.raises(InputError, match="positive: the positive is not in the corpus"):
        mine([{"query": "q", "positive": "not a document"}], corpus=docs)
    with pytest.raises(UsageError, match="too small for the bands"):
        mine([{"query": "w1", "positive": docs[0]}], corpus=docs[:5])
    with pytest.raises(UsageError, match="unknown retriever"):
        mine([{"query": "q", "positive": docs[0]}], retriever="dense")
    bad = tmp_path / "pairs.jsonl"
    bad.write_text('{"query": "q", "positive": "p"}\n{oops\n')
    with pytest.raises(InputError, match=r"pairs.jsonl:2: not valid JSON"):
        mine(bad)
