r"""The batch ledger: ``batches.sqlite3`` in the cache dir, the durable record of every batch
submission (its id, batch id, deployment, status) and of each request in it (pending, answered,
missing, failed; attempts), written before anything is uploaded (see :mod:`mghkit.llm.batch`).

    >>> BatchLine.of("k1", {"model": "m", "messages": []}).line
    b'{"custom_id":"k1","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[]}}\n'
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LEDGER_FILE = "batches.sqlite3"
ENDPOINT = "/v1/chat/completions"


@dataclass(frozen=True)
class BatchLine:
    """One request of a batch file: its custom_id and its JSONL line (bytes, newline included)."""

    custom_id: str
    line: bytes

    @classmethod
    def of(cls, custom_id: str, body: dict[str, Any]) -> BatchLine:
        line = {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body}
        return cls(custom_id, (json.dumps(line, separators=(",", ":")) + "\n").encode())


class Ledger:
    """The durable record of submissions (sqlite, WAL, synchronous FULL): each submission's id,
    batch id and files, and each request's state (pending / answered / missing / failed)."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.path = root / LEDGER_FILE
        self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript("""
            CREATE TABLE IF NOT EXISTS submissions (sub TEXT PRIMARY KEY, model TEXT, api_base TEXT, target TEXT,
                state TEXT, batch_id TEXT, status TEXT, n INTEGER, done INTEGER DEFAULT 0,
                failed INTEGER DEFAULT 0, created REAL, updated REAL);
            CREATE TABLE IF NOT EXISTS requests (custom_id TEXT PRIMARY KEY, sub TEXT, state TEXT,
                attempts INTEGER DEFAULT 0, error TEXT, line BLOB);
        """)

    def tx(self) -> Any:
        return self.db  # sqlite3's context manager: one transaction

    def request_states(self, ids: Sequence[str]) -> dict[str, tuple[str, int, str | None, str | None]]:
        """custom_id -> (state, attempts, sub, error) for the ids the ledger knows."""
        out = {}
        for start in range(0, len(ids), 500):
            part = list(ids[start : start + 500])
            q = f"SELECT custom_id, state, attempts, sub, error FROM requests WHERE custom_id IN ({','.join('?' * len(part))})"
            for cid, state, attempts, sub, error in self.db.execute(q, part):
                out[cid] = (state, attempts, sub, error)
        return out

    def plan(self, sub: str, model: str, target: str, api_base: str | None, lines: Sequence[BatchLine]) -> None:
        now = time.time()
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("INSERT INTO submissions (sub, model, api_base, target, state, n, created, updated) "
                            "VALUES (?, ?, ?, ?, 'planned', ?, ?, ?)",
                            (sub, model, api_base, target, len(lines), now, now))  # fmt: skip
            self.db.executemany(
                "INSERT INTO requests (custom_id, sub, state, attempts, line) VALUES (?, ?, 'pending', 1, ?) "
                "ON CONFLICT(custom_id) DO UPDATE SET sub=excluded.sub, state='pending', attempts=attempts+1, line=excluded.line",
                [(bl.custom_id, sub, bl.line) for bl in lines],
            )

    def set_submission(self, sub: str, **fields: Any) -> None:
        fields["updated"] = time.time()
        cols = ", ".join(f"{k}=?" for k in fields)
        with self.db:
            self.db.execute(f"UPDATE submissions SET {cols} WHERE sub=?", (*fields.values(), sub))

    def submissions(self, where: str = "1", args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cur = self.db.execute(f"SELECT * FROM submissions WHERE {where} ORDER BY created", args)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur]

    def lines_of(self, sub: str) -> list[BatchLine]:
        rows = self.db.execute("SELECT custom_id, line FROM requests WHERE sub=? ORDER BY rowid", (sub,))
        return [BatchLine(cid, bytes(line)) for cid, line in rows]

    def settle(self, sub: str, answered: Sequence[str], errors: dict[str, str], status: str, max_attempts: int) -> None:
        """After a batch ended and its answers are in the response cache: answered lines, failed
        lines (missing again, or failed for good after ``max_attempts`` submissions), the rest missing."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("UPDATE requests SET state='answered', error=NULL WHERE custom_id=?",
                                [(c,) for c in answered])  # fmt: skip
            self.db.executemany(
                "UPDATE requests SET state=CASE WHEN attempts>=? THEN 'failed' ELSE 'missing' END, error=? "
                "WHERE custom_id=? AND sub=?",
                [(max_attempts, e, c, sub) for c, e in errors.items()],
            )
            # not answered: an expired or cancelled batch is no fault of the request (no attempt spent);
            # a failed one (e.g. the provider refused the file) spends one, so it ends after max_attempts
            spent = 1 if status == "failed" else 0
            self.db.execute("UPDATE requests SET state=CASE WHEN attempts>=? AND ?=1 THEN 'failed' ELSE 'missing' END, "
                            "error=CASE WHEN ?=1 THEN 'the batch failed' ELSE error END, attempts=attempts-1+? "
                            "WHERE sub=? AND state='pending'", (max_attempts, spent, spent, spent, sub))  # fmt: skip
            self.db.execute("UPDATE submissions SET state='settled', status=?, done=?, failed=?, updated=? WHERE sub=?",
                            (status, len(answered), len(errors), time.time(), sub))  # fmt: skip

    def retry_failed(self, model: str) -> None:
        """Give the requests of ``model`` that failed for good a fresh set of attempts (a rerun)."""
        with self.db:
            self.db.execute("UPDATE requests SET state='missing', attempts=0 WHERE state='failed' AND sub IN "
                            "(SELECT sub FROM submissions WHERE model=?)", (model,))  # fmt: skip

    def close(self) -> None:
        self.db.close()


def batch_status(cache: str | Path | None = None) -> list[dict[str, Any]]:
    """Every submission the ledger of this cache dir knows (oldest first), with its requests'
    states - what ``--batch-status`` shows. Nothing is sent."""
    from mghkit.paths import cache_dir

    root = cache_dir(cache, create=False)
    if not (root / LEDGER_FILE).is_file():
        return []
    ledger = Ledger(root)
    try:
        subs = ledger.submissions()
        for s in subs:
            rows = ledger.db.execute("SELECT state, COUNT(*) FROM requests WHERE sub=? GROUP BY state", (s["sub"],))
            s["requests"] = dict(rows.fetchall())
        return subs
    finally:
        ledger.close()
