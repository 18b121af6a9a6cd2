"""The synthesis pieces under faults, in process (fast; the CLI battery is tests/faults/test_synth_faults.py):
the response cache (a damaged file, a write that fails, many writers), the cache root, a write
that fails mid-run (the answers in flight are kept, nothing dangles), the lock taken before resume
reads an output, and a dry run that touches nothing."""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import os
import sqlite3
from pathlib import Path

import pytest

from mghkit.errors import UsageError
from mghkit.files import OutputLock
from mghkit.llm.base import ClientStats, Completion, Messages
from mghkit.llm.cache import CACHE_FILE, ResponseCache
from mghkit.paths import cache_dir
from mghkit.schema import Task
from mghkit.synth.generate import generate, run_jobs
from mghkit.synth.triplets import plan

GOOD = json.dumps({"query": "Latin name of sodium", "positive_example": "Sodium is natrium.",
                   "hard_negative_examples": ["Potassium is kalium.", "b", "c", "d"]})  # fmt: skip
TASKS = [Task(kind="sts", task=f"Find facts of sort {i}.") for i in range(12)]


# ----------------------------------------------------------------------------- the cache root
def test_a_cache_root_that_is_a_file_is_a_usage_error(tmp_path, monkeypatch):
    afile = tmp_path / "f"
    afile.write_text("x")
    for override, says in [(afile, f"--cache-dir {afile}: not a directory"),
                           (afile / "sub", f"--cache-dir {afile}/sub: {afile} is not a directory")]:  # fmt: skip
        with pytest.raises(UsageError) as e:
            cache_dir(override)
        assert str(e.value) == says
    monkeypatch.setenv("MGHKIT_CACHE_DIR", str(afile))
    with pytest.raises(UsageError, match="MGHKIT_CACHE_DIR="):
        cache_dir()
    assert cache_dir(tmp_path / "new", create=False) == tmp_path / "new" and not (tmp_path / "new").exists()
    assert cache_dir(tmp_path / "new").is_dir()


# ----------------------------------------------------------------------------- the response cache
def _filled(path: Path, n: int = 200) -> ResponseCache:
    cache = ResponseCache(path)
    for i in range(n):
        cache.put(f"k{i}", Completion("x" * 500))
    return cache


def test_a_garbage_cache_file_is_moved_aside_with_one_warning(tmp_path, caplog):
    path = tmp_path / CACHE_FILE
    path.write_bytes(os.urandom(10_000))
    with caplog.at_level(logging.WARNING, logger="mghkit"):
        cache = ResponseCache(path)
    (aside,) = tmp_path.glob(f"{CACHE_FILE}.broken-*")
    (record,) = caplog.records
    assert str(path) in record.getMessage() and str(aside) in record.getMessage()
    assert "file is not a database" in record.getMessage()
    cache.put("k", Completion("hello"))
    assert cache.get("k").text == "hello"
    cache.close()


def test_a_cache_damaged_inside_is_moved_aside_on_the_first_lookup(tmp_path, caplog):
    path = tmp_path / CACHE_FILE
    _filled(path).close()
    data = path.read_bytes()
    path.write_bytes(data[:4096] + b"\xff" * (len(data) - 4096))  # the header survives: it opens fine
    cache = ResponseCache(path)
    with caplog.at_level(logging.WARNING, logger="mghkit"):
        assert cache.get("k1") is None  # a miss, not a crash
        assert cache.get_many(["k2", "k3"]) == {}
    assert len(caplog.records) == 1 and "malformed" in caplog.records[0].getMessage()
    assert len(list(tmp_path.glob(f"{CACHE_FILE}.broken-*"))) == 1
    cache.put("k1", Completion("again"))
    assert cache.get("k1").text == "again"
    cache.close()


def test_a_cache_that_cannot_be_written_warns_once_and_the_run_goes_on(tmp_path, caplog):
    path = tmp_path / CACHE_FILE
    cache = _filled(path, 1)
    cache._db.execute("PRAGMA query_only = ON")  # every write now fails, as on a full disk
    with caplog.at_level(logging.WARNING, logger="mghkit"):
        cache.put("a", Completion("1"))
        cache.put_results([("r", "v")])
    assert len(caplog.records) == 1 and "cannot store answers" in caplog.records[0].getMessage()
    assert cache.get("k0").text == "x" * 500  # reading still works
    cache.close()


def _writer(path: str, i: int) -> None:
    cache = ResponseCache(Path(path))
    for j in range(150):
        cache.put(f"{i}-{j}", Completion("x" * 200))
        cache.put_results([(f"r{i}-{j}", "v")])
    cache.close()


def test_many_processes_write_one_cache_and_none_fails(tmp_path):
    path = str(tmp_path / CACHE_FILE)  # a fresh file: they also race to create it
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, i)) for i in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 6
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM completions").fetchone()[0] == 6 * 150
    assert db.execute("SELECT count(*) FROM results").fetchone()[0] == 6 * 150
    db.close()


# ----------------------------------------------------------------------------- a write that fails mid-run
class SlowClient:
    """Answers after a pause; remembers what it was asked and what it answered (its "cache")."""

    def __init__(self) -> None:
        self.model = "slow"
        self.stats = ClientStats()
        self.price_known = False
        self.asked = 0
        self.answered: list[str] = []

    async def complete(self, messages: Messages, **_: object) -> Completion:
        self.asked += 1
        await asyncio.sleep(0.02)
        self.answered.append(messages[0]["content"])
        return Completion(GOOD, {"prompt_tokens": 1, "completion_tokens": 1})

    def estimate_cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return 0.0


def test_a_failed_write_stops_new_requests_and_lets_those_in_flight_finish():
    client = SlowClient()
    written: list[dict] = []

    def on_record(ok: bool, rec: dict) -> None:
        if written:
            raise OSError(28, "No space left on device", "out.jsonl")
        written.append(rec)

    async def main() -> None:
        with pytest.raises(OSError, match="No space left"):
            await run_jobs(plan(TASKS, per_task=1), client, concurrency=4, on_record=on_record)
        assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []  # nothing dangles

    asyncio.run(main())
    assert len(written) == 1
    assert client.asked == len(client.answered) < len(TASKS)  # no new request after the failure; none cut off


# ----------------------------------------------------------------------------- resume: lock first; a dry run
def test_a_locked_output_stops_generate_before_it_reads_or_sends(tmp_path):
    from mghkit.llm import ScriptedClient

    out = tmp_path / "t.jsonl"
    out.write_bytes(b'{"id": "half-writ')  # what the other writer is in the middle of
    client = ScriptedClient(lambda m: GOOD)
    with OutputLock(out), pytest.raises(UsageError, match=r"another mghkit process \(pid \d+\) is writing it"):
        generate(TASKS, client, out=out)
    assert client.history == [] and out.read_bytes() == b'{"id": "half-writ'


def test_a_dry_run_reads_outputs_as_they_are(tmp_path):
    from mghkit.llm import ScriptedClient

    out, rejects = tmp_path / "t.jsonl", tmp_path / "r.jsonl"
    done, _ = generate(TASKS[:3], ScriptedClient(lambda m: GOOD))
    out.write_bytes(b"\n".join(json.dumps(t.to_json()).encode() for t in done))  # no final newline
    rejects.write_bytes(b'{"id": "cut')
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (out, rejects)}
    result = generate(TASKS, "openai/fake", api_base="http://127.0.0.1:9/v1", out=out, rejects=rejects, dry_run=True,
                      cache_dir=tmp_path / "c")  # fmt: skip
    assert result.stats.resumed == 3 and result.stats.estimate.requests == len(TASKS) - 3
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (out, rejects)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl", "t.jsonl"]  # no lock, no cache
