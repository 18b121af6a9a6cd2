"""curriculum --format sentence-transformers: rows the sentence-transformers trainer takes as they
are, kept in curriculum order by the batch sampler of docs/curriculum.md."""

from __future__ import annotations

import json

import pytest

import mghkit
from mghkit.errors import UsageError
from mghkit.schedules import CurriculumRows, st_row
from tests.conftest import make_triplet, run_cli


@pytest.fixture
def clean(tmp_path):
    p = tmp_path / "clean.jsonl"
    rows = [{**make_triplet(f"question {i}", i), "instruction": f"task {i % 2}"} for i in range(5)]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def test_rows_follow_the_curriculum_with_the_instruction_inlined(clean, tmp_path):
    examples = mghkit.curriculum(clean, "coarse-to-fine", seed=4)
    rows = mghkit.curriculum(clean, "coarse-to-fine", seed=4, format="sentence-transformers")
    assert isinstance(rows, CurriculumRows) and rows.stats.per_stage == examples.stats.per_stage
    assert rows == [st_row(e) for e in examples] and len(rows) == 20
    first = examples[0]
    assert rows[0] == {"anchor": f"Instruct: {first.instruction}\nQuery: {first.query}",
                       "positive": first.positive, "negative": first.negative}  # fmt: skip
    out = tmp_path / "st_train.jsonl"
    res = mghkit.curriculum(clean, "coarse-to-fine", seed=4, format="sentence-transformers", out=out)
    assert res == [] and res.stats.examples == 20
    assert [json.loads(x) for x in out.read_text().splitlines()] == rows
    cli_out = tmp_path / "cli.jsonl"
    r = run_cli("curriculum", str(clean), "--seed", "4", "--format", "sentence-transformers", "--out", str(cli_out))
    assert r.returncode == 0, r.stderr
    assert cli_out.read_bytes() == out.read_bytes()
    with pytest.raises(UsageError, match="valid: mghkit, sentence-transformers"):
        mghkit.curriculum(clean, format="st")  # type: ignore[call-overload]
    r = run_cli("curriculum", str(clean), "--format", "st")
    err = r.stderr.decode()
    assert r.returncode == 2 and err.count("\n") == 1 and "valid: mghkit, sentence-transformers" in err


@pytest.mark.slow
def test_sentence_transformers_trains_on_the_file_in_curriculum_order(clean, tmp_path):
    datasets = pytest.importorskip("datasets")
    st = pytest.importorskip("sentence_transformers")
    from sentence_transformers.base.sampler import DefaultBatchSampler
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from torch.utils.data import SequentialSampler

    class InOrderBatchSampler(DefaultBatchSampler):  # the snippet of docs/curriculum.md
        def __init__(self, dataset, batch_size, drop_last, valid_label_columns=None, generator=None, seed=0):
            super().__init__(SequentialSampler(dataset), batch_size=batch_size, drop_last=drop_last,
                             valid_label_columns=valid_label_columns, generator=generator, seed=seed)  # fmt: skip

    path = tmp_path / "st_train.jsonl"
    mghkit.curriculum(clean, "coarse-to-fine", seed=1, stage_size=4, format="sentence-transformers", out=path)
    ds = datasets.Dataset.from_json(str(path))
    assert ds.column_names == ["anchor", "positive", "negative"] and len(ds) == 16
    model = st.SentenceTransformer(str(mghkit.paths.embedded_minilm_path()), device="cpu")
    args = st.SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=4, report_to="none",
        batch_sampler=InOrderBatchSampler, save_strategy="no", use_cpu=True, seed=3,
    )  # fmt: skip
    trainer = st.SentenceTransformerTrainer(model=model, args=args, train_dataset=ds,
                                            loss=MultipleNegativesRankingLoss(model))  # fmt: skip
    seen: list[str] = []
    collate = trainer.data_collator

    class Recording(type(collate)):  # type: ignore[misc]  # the rows of each batch, as the trainer hands them over
        def __call__(self, features):
            seen.extend(f["anchor"] for f in features)
            return super().__call__(features)

    collate.__class__ = Recording
    assert [list(b) for b in trainer.get_train_dataloader().batch_sampler] == [[0, 1, 2, 3], [4, 5, 6, 7],
                                                                               [8, 9, 10, 11], [12, 13, 14, 15]]  # fmt: skip
    seen.clear()
    result = trainer.train()
    assert result.global_step == 2
    # two batches of four trained, in file order (the loader may fetch one batch ahead); a shuffling sampler would not be
    assert len(seen) >= 8 and seen == ds["anchor"][: len(seen)]


def test_validate_writes_one_row_per_clean_triplet_with_four_negative_columns(clean, tmp_path):
    triplets, _, _ = mghkit.validate_triplets(clean)
    rows, rejects, report = mghkit.validate_triplets(clean, format="sentence-transformers")
    assert len(rows) == len(triplets) == report.clean == 5 and rejects == []
    for row, t in zip(rows, triplets, strict=True):
        assert row == {"anchor": f"Instruct: {t.instruction}\nQuery: {t.query}", "positive": t.positive_example,
                       **{f"negative_{i}": n.text for i, n in enumerate(t.hard_negative_examples, 1)}}  # fmt: skip
    out = tmp_path / "st_clean.jsonl"
    r = run_cli("validate", str(clean), "--format", "sentence-transformers", "--out", str(out), "-q")
    assert r.returncode == 0, r.stderr
    assert [json.loads(x) for x in out.read_text().splitlines()] == rows
    from datasets import Dataset  # the sentence-transformers trainer's input: columns as written

    assert Dataset.from_json(str(out)).column_names == ["anchor", "positive", *(f"negative_{i}" for i in range(1, 5))]
    r = run_cli("validate", str(clean), "--format", "st")
    assert r.returncode == 2 and "valid: mghkit, sentence-transformers" in r.stderr.decode()
