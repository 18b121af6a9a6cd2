"""Reading and checking local BEIR/STS data; deterministic subsets. No model, no mteb."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mghkit.errors import InputError, UsageError
from mghkit.evaluation.data import read_beir, read_sts, subset_beir, subset_sts

from .conftest import PAIRS, QUERIES, write_beir, write_sts


def test_read_beir_keeps_judged_queries_and_grades(beir_dir: Path) -> None:
    data = read_beir(beir_dir)
    assert len(data.corpus) == 14
    assert set(data.queries) == set(QUERIES) - {"q8"}  # q8 has no qrels line
    assert data.qrels["q1"] == {"d1": 2, "d2": 1}
    assert data.corpus["d2"] == (
        "",
        "Sourdough starters are fed with flour and water every day to keep the yeast alive.",
    )
    assert any("1 queries without a relevant document" in n for n in data.notes)


def test_read_sts(sts_file: Path) -> None:
    data = read_sts(sts_file)
    assert data.pairs == [(a, b, float(s)) for a, b, s in PAIRS]
    assert data.score_range == (0.0, 4.8)


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (
            lambda d: (d / "corpus.jsonl").write_text('{"_id": "d1", "text": "x"}\n{not json\n'),
            "corpus.jsonl:2: not valid JSON",
        ),
        (lambda d: (d / "queries.jsonl").write_text('{"_id": "q1"}\n'), "queries.jsonl:1: text: missing field"),
        (
            lambda d: (d / "corpus.jsonl").write_text('{"_id": "d1", "text": "x"}\n{"_id": "d1", "text": "y"}\n'),
            "corpus.jsonl:2: _id: duplicate id 'd1'",
        ),
        (
            lambda d: (d / "qrels" / "test.tsv").write_text("q1\td1\t1\nq1\td99\t1\n"),
            "test.tsv:2: corpus-id: unknown corpus id 'd99'",
        ),
        (lambda d: (d / "qrels" / "test.tsv").write_text("q1 d1 1\n"), "test.tsv:1: expected 3 tab-separated columns"),
        (lambda d: (d / "qrels" / "test.tsv").write_text("q1\td1\thigh\n"), "test.tsv:1: score: expected an integer"),
        (lambda d: (d / "qrels" / "test.tsv").unlink(), "qrels/test.tsv: no such file"),
        (lambda d: (d / "corpus.jsonl").write_text(""), "corpus.jsonl: no records"),
    ],
)
def test_broken_beir_names_file_and_line(tmp_path: Path, breakage, expected: str) -> None:
    d = write_beir(tmp_path / "b")
    breakage(d)
    with pytest.raises(UsageError) as err:
        read_beir(d)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_beir_dir_is_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such directory"):
        read_beir(tmp_path / "nope")


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (
            ['{"sentence1": "a", "sentence2": "b", "score": 1}', '{"sentence1": "a", "sentence2": "b"}'],
            ":2: score: missing field",
        ),
        (['{"sentence1": "a", "sentence2": "b", "score": "4"}'], ":1: score: expected a finite number"),
        (['{"sentence1": "a", "sentence2": 3, "score": 4}'], ":1: sentence2: expected a string"),
        (['{"sentence1": "a", "sentence2": "b", "score": 1}', "[1, 2]"], ":2: expected a JSON object"),
        (
            ['{"sentence1": "a", "sentence2": "b", "score": 1}', '{"sentence1": "c", "sentence2": "d", "score": 1}'],
            "the same score",
        ),
    ],
)
def test_broken_sts_names_file_and_line(tmp_path: Path, lines: list[str], expected: str) -> None:
    f = tmp_path / "s.jsonl"
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as err:
        read_sts(f)
    assert str(err.value).startswith(str(f))
    assert expected in str(err.value)


def test_subset_beir_is_deterministic_and_keeps_judged_docs(beir_dir: Path) -> None:
    data = read_beir(beir_dir)
    a = subset_beir(data, max_queries=3, max_docs=6, seed=1)
    b = subset_beir(data, max_queries=3, max_docs=6, seed=1)
    c = subset_beir(data, max_queries=3, max_docs=6, seed=2)
    assert (a.queries, a.corpus) == (b.queries, b.corpus)
    assert len(a.queries) == 3 and len(a.corpus) == 6
    assert a.queries != c.queries or a.corpus != c.corpus
    for q in a.queries:
        assert set(a.qrels[q]) <= set(a.corpus)  # every judged document of a kept query stays
    tight = subset_beir(data, max_queries=7, max_docs=2, seed=0)
    assert len(tight.corpus) == sum(1 for d in data.corpus if any(d in data.qrels[q] for q in tight.queries))
    assert any("judged documents" in n for n in tight.notes)


def test_subset_sts(tmp_path: Path) -> None:
    data = read_sts(write_sts(tmp_path / "s.jsonl"))
    a, b = subset_sts(data, max_pairs=4, seed=0), subset_sts(data, max_pairs=4, seed=0)
    assert a.pairs == b.pairs and len(a.pairs) == 4
    assert [p for p in data.pairs if p in a.pairs] == a.pairs  # file order kept
    assert subset_sts(data, max_pairs=100, seed=0) is data


def test_reads_the_bundled_suite() -> None:
    from mghkit.paths import bundled_eval_dir

    beir = read_beir(bundled_eval_dir() / "manpages-retrieval")
    sts = read_sts(bundled_eval_dir() / "simlex999-sts" / "test.jsonl")
    assert (len(beir.queries), len(beir.corpus), len(sts.pairs)) == (1052, 1052, 999)
    assert json.loads((bundled_eval_dir() / "simlex999-sts" / "test.jsonl").read_text().splitlines()[0])["sentence1"]


def test_model_identity_follows_adapter_and_base_weights(tmp_path: Path) -> None:
    """The cache key's model part: a run dir's adapter bytes and its base model's files."""
    from types import SimpleNamespace

    from mghkit.evaluation.models import _model_fingerprint, fingerprint

    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text('{"model_type": "llama"}')
    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    (run / "mghkit_model.json").write_text(json.dumps({"base_model": str(base)}))
    (run / "adapter" / "adapter_model.safetensors").write_bytes(b"weights-1")
    enc = SimpleNamespace(config=SimpleNamespace(base_model=str(base)))
    first = _model_fingerprint(str(run), enc)
    assert first == _model_fingerprint(str(run), enc)  # stable
    (run / "adapter" / "adapter_model.safetensors").write_bytes(b"weights-2")  # same size, new bytes
    second = _model_fingerprint(str(run), enc)
    assert second != first
    (base / "config.json").write_text('{"model_type": "mistral"}')
    assert _model_fingerprint(str(run), enc) != second
    assert fingerprint(base) == fingerprint(base) and len(fingerprint(base)) == 16


def test_cache_identity_follows_the_query_tokenization() -> None:
    """Joint and split queries are other vectors: other cache keys. A "split" config (an old run)
    keeps the identity it had before the field existed, so its cached vectors still count."""
    from types import SimpleNamespace

    from mghkit.evaluation.models import DecoderGroup
    from mghkit.model.config import EncoderConfig

    def identity(config: EncoderConfig) -> str:
        return DecoderGroup(SimpleNamespace(config=config), "src", ["mean"], batch_size=1, cache=None).identity("mean")

    joint, split = EncoderConfig(), EncoderConfig.from_dict({"base_model": "local"})
    assert (joint.query_tokens, split.query_tokens) == ("joint", "split")
    assert identity(joint) != identity(split)
    assert '"query_tokens"' not in identity(split) and '"query_tokens": "joint"' in identity(joint)
