"""`mghkit mine`: the command, stdin/stdout, resume after kill -9 without duplicates."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from mghkit.schema import Triplet
from tests.conftest import run_cli, run_main


def _docs(n: int) -> list[str]:
    return [f"d{i} " + " ".join(f"t{(i * 37 + j * j * 13 + j * i) % 997}" for j in range(15)) for i in range(n)]


def _files(tmp_path, n_pairs: int = 60, n_docs: int = 400):
    docs = _docs(n_docs)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"id": f"p{i}", "query": " ".join(docs[i].split()[1:6]), "positive": docs[i]})
                             + "\n" for i in range(n_pairs)))  # fmt: skip
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": f"d{i}", "text": d}) + "\n" for i, d in enumerate(docs)))
    return pairs, corpus


def test_mine_writes_triplets_that_validate_takes(tmp_path, capfd):
    pairs, corpus = _files(tmp_path)
    out = tmp_path / "mined.jsonl"
    assert run_main("mine", str(pairs), "--corpus", str(corpus), "--out", str(out), "--seed", "3") == 0
    err = capfd.readouterr().err
    assert "mined 60 of 60 pairs from 400 documents (bm25, exact)" in err and "false negatives dropped" in err
    triplets = [Triplet.model_validate_json(line) for line in out.read_text().splitlines()]
    assert [t.id for t in triplets] == [f"p{i}" for i in range(60)]
    clean = tmp_path / "clean.jsonl"
    assert run_main("validate", str(out), "--out", str(clean), "--strict", "--no-cross-positives", "-q") == 0
    assert clean.read_text() == out.read_text()


def test_stdin_to_stdout(tmp_path):
    pairs, corpus = _files(tmp_path, n_pairs=5)
    r = run_cli("mine", "-", "--corpus", str(corpus), "--out", "-", "-q", stdin=pairs.read_bytes())
    assert r.returncode == 0, r.stderr
    assert [json.loads(line)["id"] for line in r.stdout.splitlines()] == [f"p{i}" for i in range(5)]
    assert r.stderr == b""


def test_resume_after_kill_9_gives_the_same_file_without_duplicates(tmp_path):
    pairs, corpus = _files(tmp_path, n_pairs=400, n_docs=1500)
    fresh = tmp_path / "fresh.jsonl"
    assert run_cli("mine", str(pairs), "--corpus", str(corpus), "--out", str(fresh), "-q").returncode == 0
    out = tmp_path / "resumed.jsonl"
    cmd = [sys.executable, "-m", "mghkit", "mine", str(pairs), "--corpus", str(corpus), "--out", str(out), "-q",
           "--batch-size", "1"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None and (not out.exists() or out.stat().st_size < 20_000):
        time.sleep(0.05)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with out.open("ab") as fp:  # what a kill in the middle of a write leaves
        fp.write(b'{"id": "p399", "query": "cut sh')
    r = run_cli("mine", str(pairs), "--corpus", str(corpus), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert b"already in" in r.stderr
    assert out.read_text() == fresh.read_text()  # same records, same order, none twice
