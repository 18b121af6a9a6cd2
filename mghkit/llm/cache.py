"""The response cache: a content-addressed store of completions (and of finished results built
from them) in one sqlite file, so a rerun re-bills nothing.

Keys are sha256 over the model, the request parameters (seed included) and the messages - never
the API key or the server address.

    >>> import tempfile, pathlib
    >>> cache = ResponseCache(pathlib.Path(tempfile.mkdtemp()) / CACHE_FILE)
    >>> key = ResponseCache.key("m", [{"role": "user", "content": "hi"}], {"seed": 1})
    >>> cache.put(key, Completion("hello", {"total_tokens": 3}))
    >>> cache.get(key).text, cache.get(key).cached
    ('hello', True)
    >>> cache.close()
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from mghkit.jsonl import loads
from mghkit.llm.base import Completion, Messages

CACHE_FILE = "llm-cache.sqlite3"


class ResponseCache:
    """sqlite in WAL mode, safe across processes and ``kill -9`` (a committed answer survives, a
    half-written one never appears)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS completions (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        # finished results built from cached completions (e.g. generate's records), keyed by everything
        # they were built from: a warm rerun reads them back instead of re-rendering and re-parsing
        self._db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    @staticmethod
    def key(model: str, messages: Messages, params: dict[str, Any]) -> str:
        """sha256 over canonical JSON of (model, params) and each message's role and content, each
        length-prefixed (unambiguous, and cheaper than JSON-encoding long prompts).

        >>> ResponseCache.key("m", [{"role": "user", "content": "ab"}], {}) != ResponseCache.key(
        ...     "m", [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], {})
        True
        """
        h = hashlib.sha256(json.dumps([model, params], sort_keys=True).encode("utf-8"))
        _hash_messages(h, messages)
        return h.hexdigest()

    @staticmethod
    def seeded_keys(model: str, params: dict[str, Any], requests: Sequence[tuple[Messages, int]]) -> list[str]:
        """``key(model, messages, {**params, "seed": seed})`` for many (messages, seed) pairs, the
        parameters' JSON built once and the seed spliced in (a warm rerun's hot path).

        >>> p = {"temperature": 1.0, "response_format": {"type": "json_object"}}
        >>> m = [{"role": "user", "content": "hi"}]
        >>> ResponseCache.seeded_keys("x", p, [(m, 42)]) == [ResponseCache.key("x", m, {**p, "seed": 42})]
        True
        """
        mark = "7777777777777777"  # a seed no request uses (seeds are 31-bit)
        left, found, right = json.dumps([model, {**params, "seed": int(mark)}], sort_keys=True).partition(mark)
        if not found or mark in right:  # cannot splice: the plain way
            return [ResponseCache.key(model, m, {**params, "seed": s}) for m, s in requests]
        head = hashlib.sha256(left.encode("utf-8"))
        keys = []
        for messages, seed in requests:
            h = head.copy()
            h.update(f"{seed}{right}".encode())
            _hash_messages(h, messages)
            keys.append(h.hexdigest())
        return keys

    def get(self, key: str) -> Completion | None:
        row = self._db.execute("SELECT value FROM completions WHERE key = ?", (key,)).fetchone()
        return None if row is None else _decode(row[0])

    def get_many(self, keys: Sequence[str]) -> dict[str, Completion]:
        """The cached completions among ``keys`` (a batched lookup)."""
        return {key: _decode(value) for key, value in self._select("completions", keys)}

    def _select(self, table: str, keys: Sequence[str]) -> Iterator[tuple[str, str]]:
        """(key, value) of the rows of ``table`` among ``keys``, in chunks under SQLite's limit on
        bound parameters."""
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            yield from self._db.execute(f"SELECT key, value FROM {table} WHERE key IN ({','.join('?' * len(chunk))})",
                                        chunk)  # fmt: skip

    def put(self, key: str, c: Completion) -> None:
        value = {"text": c.text, "usage": c.usage, "cost_usd": c.cost_usd, "finish_reason": c.finish_reason}
        self._db.execute("INSERT OR REPLACE INTO completions VALUES (?, ?)", (key, json.dumps(value)))

    def get_results(self, keys: Sequence[str]) -> dict[str, str]:
        return dict(self._select("results", keys))

    def put_results(self, items: Sequence[tuple[str, str]]) -> None:
        with self._db:  # one transaction
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO results VALUES (?, ?)", items)

    def close(self) -> None:
        self._db.close()


def _hash_messages(h: Any, messages: Messages) -> None:
    """Feed each message's role and content to ``h``, length-prefixed (unambiguous)."""
    for m in messages:
        for part in (m.get("role") or "", m.get("content") or ""):
            data = part.encode("utf-8")
            h.update(len(data).to_bytes(8, "big"))
            h.update(data)


def _decode(value: str) -> Completion:
    v = loads(value)
    return Completion(v["text"], v["usage"], v["cost_usd"], True, v.get("finish_reason"))
