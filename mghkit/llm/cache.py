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

import contextlib
import hashlib
import json
import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from mghkit.dbfiles import inode, is_broken, move_aside
from mghkit.errors import RuntimeFailure
from mghkit.jsonl import loads
from mghkit.llm.base import Completion, Messages

log = logging.getLogger(__name__)

CACHE_FILE = "llm-cache.sqlite3"
BUSY_TIMEOUT_S = 60.0  # another process writing the same cache: wait this long for it, never fail at once

T = TypeVar("T")


class ResponseCache:
    """sqlite in WAL mode, safe across processes and ``kill -9`` (a committed answer survives, a
    half-written one never appears). Processes sharing the file wait for each other's writes
    (a busy timeout), they never fail for it.

    What can go wrong with the file never stops a run with a traceback:

    - a damaged file (``file is not a database``, ``database disk image is malformed``), found
      on opening or on any later lookup, is moved aside to ``NAME.broken-<timestamp>`` with one
      warning line naming both paths, and the run goes on with a fresh, empty cache;
    - a cache that cannot be opened (a read-only folder) is a one-line RuntimeFailure naming it;
    - a write that fails later (a full disk) is one warning line and the answer is not cached -
      the run keeps it (its output still gets the record), it just will not be free next time.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._warned = False
        self._inode: int | None = None
        self._db: sqlite3.Connection | None = None
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except sqlite3.DatabaseError as e:
            if not is_broken(e):
                raise RuntimeFailure(f"{self.path}: cannot open the LLM response cache ({e}); "
                                     "pass a writable --cache-dir") from None  # fmt: skip
            broken = e
        self._move_aside(broken)
        try:
            return self._connect()
        except sqlite3.Error as e:
            raise RuntimeFailure(f"{self.path}: cannot open the LLM response cache ({e})") from None

    def _connect(self) -> sqlite3.Connection:
        self._inode = inode(self.path)  # which file this connection found (None: a new one)
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE IF NOT EXISTS completions (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            # finished results built from cached completions (e.g. generate's records), keyed by
            # everything they were built from: a warm rerun reads them back instead of re-rendering
            db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        except BaseException:
            db.close()
            raise
        return db

    def _move_aside(self, e: sqlite3.Error) -> None:
        """Move the damaged file aside (:func:`mghkit.dbfiles.move_aside`) and say so in one line."""
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
        broken = move_aside(self.path, self._inode)
        if broken is not None:
            log.warning("warning: %s: the LLM response cache is damaged (%s); moved it to %s and started a fresh one",
                        self.path, e, broken)  # fmt: skip

    def _run(self, op: Callable[[sqlite3.Connection], T], *, write: bool, default: T) -> T:
        """``op(db)``; a damaged file is moved aside and ``op`` retried on a fresh cache once; what
        still fails (a full disk, a read-only file) warns once and gives ``default``."""
        if self._db is None:  # this run gave up on the file
            return default
        try:
            return op(self._db)
        except sqlite3.DatabaseError as e:
            if not is_broken(e):
                return self._failed(e, write=write, default=default)
            self._move_aside(e)
        try:
            self._db = self._connect()
        except sqlite3.Error as e:
            self._db = None
            return self._failed(e, write=write, default=default)
        try:
            return op(self._db)
        except sqlite3.DatabaseError as e:
            return self._failed(e, write=write, default=default)

    def _failed(self, e: sqlite3.Error, *, write: bool, default: T) -> T:
        if isinstance(e, sqlite3.ProgrammingError):  # a closed cache: a bug, keep its traceback
            raise e
        if not self._warned:
            self._warned = True
            what = "cannot store answers in" if write else "cannot read"
            log.warning("warning: %s: %s the LLM response cache (%s); going on without it", self.path, what, e)
        return default

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
        row = self._run(lambda db: db.execute("SELECT value FROM completions WHERE key = ?", (key,)).fetchone(),
                        write=False, default=None)  # fmt: skip
        return None if row is None else _decode(row[0])

    def get_many(self, keys: Sequence[str]) -> dict[str, Completion]:
        """The cached completions among ``keys`` (a batched lookup)."""
        return {key: _decode(value) for key, value in self._select("completions", keys).items()}

    def _select(self, table: str, keys: Sequence[str]) -> dict[str, str]:
        """key -> value of the rows of ``table`` among ``keys``, in chunks under SQLite's limit on
        bound parameters."""

        def select(db: sqlite3.Connection) -> dict[str, str]:
            found: dict[str, str] = {}
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                found.update(db.execute(f"SELECT key, value FROM {table} WHERE key IN ({','.join('?' * len(chunk))})",
                                        chunk))  # fmt: skip
            return found

        return self._run(select, write=False, default={})

    def put(self, key: str, c: Completion) -> None:
        value = json.dumps({"text": c.text, "usage": c.usage, "cost_usd": c.cost_usd, "finish_reason": c.finish_reason})
        self._run(lambda db: db.execute("INSERT OR REPLACE INTO completions VALUES (?, ?)", (key, value)),
                  write=True, default=None)  # fmt: skip

    def put_many(self, items: Sequence[tuple[str, Completion]]) -> None:
        """Many answers in one transaction (a downloaded batch file)."""
        rows = [(k, json.dumps({"text": c.text, "usage": c.usage, "cost_usd": c.cost_usd,
                                "finish_reason": c.finish_reason})) for k, c in items]  # fmt: skip

        def put(db: sqlite3.Connection) -> None:
            with _transaction(db):
                db.executemany("INSERT OR REPLACE INTO completions VALUES (?, ?)", rows)

        self._run(put, write=True, default=None)

    def get_results(self, keys: Sequence[str]) -> dict[str, str]:
        return self._select("results", keys)

    def put_results(self, items: Sequence[tuple[str, str]]) -> None:
        def put(db: sqlite3.Connection) -> None:
            with _transaction(db):
                db.executemany("INSERT OR REPLACE INTO results VALUES (?, ?)", items)

        self._run(put, write=True, default=None)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, its lock taken up front (IMMEDIATE: a writer waits for another
    process's write under the busy timeout instead of failing when it upgrades a read lock)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


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
