"""Small evaluation data written fresh for each test (never the bundled suite), and helpers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DOCS = {
    "d1": ("Bread", "Knead the dough for ten minutes, let it rise, then bake the loaf at 220 degrees."),
    "d2": ("", "Sourdough starters are fed with flour and water every day to keep the yeast alive."),
    "d3": ("Tides", "The moon's gravity pulls the oceans, so coastal water rises and falls twice a day."),
    "d4": ("", "Spring tides happen when the sun and moon line up and their pulls add together."),
    "d5": ("Bicycles", "To fix a flat tyre, remove the wheel, find the puncture and glue a patch over it."),
    "d6": ("", "Chain oil keeps a bicycle drivetrain quiet and stops the links from rusting."),
    "d7": ("Owls", "Owls hunt at night; soft feathers let them fly almost silently towards mice."),
    "d8": ("", "A barn owl can find prey in complete darkness by hearing alone."),
    "d9": ("Tax", "Keep receipts for business expenses; they reduce the income you pay tax on."),
    "d10": ("", "The filing deadline for the yearly return is usually at the end of April."),
    "d11": ("Volcanoes", "Magma rises through cracks in the crust and erupts as lava and ash."),
    "d12": ("", "Pumice is a light volcanic rock full of gas bubbles; it can float on water."),
    "d13": ("Chess", "Castling moves the king two squares towards a rook, which jumps over it."),
    "d14": ("", "A pawn that reaches the last rank is promoted, usually to a queen."),
}
QUERIES = {
    "q1": "how long should I knead bread dough",
    "q2": "why does the sea go up and down",
    "q3": "repair a punctured bike tyre",
    "q4": "how do owls catch mice in the dark",
    "q5": "which expenses lower my income tax",
    "q6": "what happens when a pawn reaches the end of the board",
    "q7": "rock that floats",
    "q8": "an unjudged query that mteb drops",
}
QRELS = [("q1", "d1", 2), ("q1", "d2", 1), ("q2", "d3", 2), ("q2", "d4", 1), ("q3", "d5", 1), ("q4", "d7", 1),
         ("q4", "d8", 2), ("q5", "d9", 1), ("q6", "d14", 1), ("q7", "d12", 2), ("q7", "d11", 0)]  # fmt: skip
PAIRS = [
    ("A man is playing a guitar.", "Someone plays the guitar.", 4.8),
    ("A woman is slicing an onion.", "A woman cuts an onion into pieces.", 4.5),
    ("The cat sleeps on the sofa.", "A dog runs across the park.", 0.4),
    ("Stock markets fell sharply today.", "Share prices dropped steeply on Monday.", 4.0),
    ("The train was late again.", "I baked a chocolate cake.", 0.0),
    ("Children are swimming in the lake.", "Kids swim in a lake.", 4.6),
    ("He repaired the old bicycle.", "The bicycle was fixed by him.", 4.2),
    ("It is raining in London.", "London has a lot of museums.", 1.0),
    ("A plane takes off from the runway.", "An aircraft departs from the airport.", 3.9),
    ("She reads a novel in bed.", "A novel is being read.", 2.7),
]


def write_beir(
    root: Path, *, corpus: dict | None = None, queries: dict | None = None, qrels: list | None = None
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "qrels").mkdir(exist_ok=True)
    with (root / "corpus.jsonl").open("w") as fp:
        for i, (title, text) in (corpus or DOCS).items():
            fp.write(json.dumps({"_id": i, "title": title, "text": text}) + "\n")
    with (root / "queries.jsonl").open("w") as fp:
        for i, text in (queries or QUERIES).items():
            fp.write(json.dumps({"_id": i, "text": text}) + "\n")
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{g}" for q, d, g in (qrels or QRELS)]
    (root / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    return root


def write_sts(path: Path, pairs: list | None = None) -> Path:
    path.write_text(
        "".join(json.dumps({"sentence1": a, "sentence2": b, "score": s}) + "\n" for a, b, s in pairs or PAIRS)
    )
    return path


@pytest.fixture
def beir_dir(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "toy-beir")


@pytest.fixture
def sts_file(tmp_path: Path) -> Path:
    return write_sts(tmp_path / "toy-sts.jsonl")


@pytest.fixture(scope="session")
def tiny_decoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama model dir (2 layers, hidden 32) with a real BPE tokenizer."""
    from mghkit.model.tiny import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama", family="llama")
