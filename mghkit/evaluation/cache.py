"""An on-disk cache of text embeddings, so rerunning or comparing does not re-encode unchanged inputs.

One SQLite file (``<cache_dir>/eval/embeddings.sqlite3``) maps a key to a float32 vector. The key is
the sha256 of the encoder's identity (model name and weights fingerprint, adapter hash, pooling,
max length, attention direction, dtype, query tokenization) plus the instruction plus the text, so
any change to one of them is a miss. SQLite makes concurrent runs safe. A damaged file is moved aside with a
warning and a new one started; a file that cannot be written is read, and the run goes on.

    >>> import tempfile, numpy as np
    >>> c = EmbeddingCache(tempfile.mkdtemp() + "/e.sqlite3")
    >>> c.get_many("m", None, ["a"])
    [None]
    >>> c.put_many("m", None, ["a"], np.ones((1, 2), dtype=np.float32))
    >>> c.get_many("m", None, ["a"])[0].tolist()
    [1.0, 1.0]
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mghkit.dbfiles import inode, is_broken, move_aside
from mghkit.errors import UsageError

log = logging.getLogger(__name__)


def text_key(identity: str, instruction: str | None, text: str) -> str:
    """The cache key of one text encoded by one encoder identity with one instruction.

    >>> text_key("m", None, "a") != text_key("m", "", "a") != text_key("m2", None, "a")
    True
    """
    inst = "\x00none" if instruction is None else instruction
    return hashlib.sha256("\x1f".join((identity, inst, text)).encode("utf-8")).hexdigest()


CACHE_FILE = "eval/embeddings.sqlite3"  # under the cache root (mghkit.paths.cache_dir)


def check_cache_path(path: str | Path) -> None:
    """A cache path that cannot be a file (it is a directory, or a folder above it is a file)
    is a UsageError naming it, found before any model loads."""
    p = Path(path)
    existing = next((q for q in (p.parent, *p.parent.parents) if q.exists()), None)
    if existing is not None and not existing.is_dir():
        raise UsageError(f"{p}: cannot be the embedding cache ({existing} is not a directory)")
    if p.is_dir():
        raise UsageError(f"{p}: is a directory, expected the embedding cache file")


class EmbeddingCache:
    """Float32 vectors keyed by :func:`text_key`; ``hits`` and ``misses`` count lookups.

    The cache never stops a run: a damaged file is moved aside (``NAME.broken-<timestamp>``, one
    warning line naming both paths) and a fresh one started; a file that cannot be written (a
    full disk, a read-only folder, a lock held too long) is read as it is, with one warning, and
    new vectors stay in memory for this run. A path that cannot be a file at all (a directory)
    is a UsageError.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.memory = str(path) == ":memory:"  # vectors for this process only (--no-cache)
        self.hits = 0
        self.misses = 0
        self._unsaved: dict[str, np.ndarray] = {}  # vectors the disk would not take
        self._inode: int | None = None
        self._writable = True
        if not self.memory:
            check_cache_path(self.path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = self._open()

    # ------------------------------------------------------------------------- opening
    def _connect(self, memory: bool = False) -> sqlite3.Connection:
        on_disk = not (self.memory or memory)
        self._inode = inode(self.path) if on_disk else None  # which file this connection found
        db = sqlite3.connect(str(self.path) if on_disk else ":memory:", timeout=60)
        try:
            db.execute("CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, dim INTEGER, vec BLOB)")
            db.execute("SELECT key, dim, vec FROM emb LIMIT 1").fetchall()
            db.commit()
        except BaseException:
            db.close()
            raise
        return db

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except sqlite3.Error as e:
            if self.memory:
                raise
            if not is_broken(e):  # cannot create or write it (read-only, busy...): read it if it is there
                self._read_only(e)
                return self._connect_read_only()
            self._move_aside(e)
        try:
            return self._connect()
        except sqlite3.Error as e:
            self._read_only(e)
            return self._connect(memory=True)

    def _connect_read_only(self) -> sqlite3.Connection:
        if self.path.is_file():
            try:
                db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=60)
                db.execute("SELECT key, dim, vec FROM emb LIMIT 1").fetchall()
                return db
            except sqlite3.Error:
                pass
        return self._connect(memory=True)  # nothing readable: this run's vectors stay in memory

    def _move_aside(self, e: sqlite3.Error) -> None:
        """Move the damaged file aside (:func:`mghkit.dbfiles.move_aside`) and say so in one line."""
        with contextlib.suppress(AttributeError, sqlite3.Error):
            self._db.close()
        aside = move_aside(self.path, self._inode)
        if aside is not None:
            log.warning("warning: %s: the embedding cache is damaged (%s); moved it to %s and started a fresh one",
                        self.path, e, aside)  # fmt: skip

    def _read_only(self, e: sqlite3.Error) -> None:
        if self._writable:
            self._writable = False
            log.warning("warning: %s: the embedding cache cannot be written (%s); new vectors are kept for "
                        "this run only", self.path, e)  # fmt: skip

    def _recover(self, e: sqlite3.Error) -> None:
        """A query failed: a damaged file is moved aside (and a fresh one opened); any other
        failure (a full disk, a read-only file, a lock held too long) stops the writes."""
        if self.memory:
            raise e
        if is_broken(e):
            self._move_aside(e)
            try:
                self._db = self._connect()
                return
            except sqlite3.Error as again:
                self._db = self._connect(memory=True)
                e = again
        self._read_only(e)

    # ------------------------------------------------------------------------- lookups
    def get_many(self, identity: str, instruction: str | None, texts: Sequence[str]) -> list[np.ndarray | None]:
        keys = [text_key(identity, instruction, t) for t in texts]
        found: dict[str, np.ndarray] = {k: self._unsaved[k] for k in keys if k in self._unsaved}
        try:
            for i in range(0, len(keys), 500):  # SQLite's bound-variable limit
                chunk = keys[i : i + 500]
                marks = ",".join("?" * len(chunk))
                for key, dim, blob in self._db.execute(f"SELECT key, dim, vec FROM emb WHERE key IN ({marks})", chunk):
                    found[key] = np.frombuffer(blob, dtype=np.float32, count=dim)
        except sqlite3.DatabaseError as e:
            self._recover(e)  # a damaged file: moved aside, and these texts are misses
        out = [found.get(k) for k in keys]
        hit = sum(v is not None for v in out)
        self.hits += hit
        self.misses += len(out) - hit
        return out

    def put_many(self, identity: str, instruction: str | None, texts: Sequence[str], vectors: np.ndarray) -> None:
        vecs = np.asarray(vectors, dtype=np.float32)
        rows = [
            (text_key(identity, instruction, t), int(v.shape[0]), v.tobytes()) for t, v in zip(texts, vecs, strict=True)
        ]
        for _ in range(2):
            if not self._writable:
                break
            try:
                with self._db:
                    self._db.executemany("INSERT OR REPLACE INTO emb (key, dim, vec) VALUES (?, ?, ?)", rows)
                return
            except sqlite3.DatabaseError as e:
                self._recover(e)  # moved aside: write to the fresh file (once); unwritable: keep in memory
        self._unsaved.update((key, np.frombuffer(blob, dtype=np.float32)) for key, _, blob in rows)

    def close(self) -> None:
        self._db.close()
