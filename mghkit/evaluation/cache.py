"""An on-disk cache of text embeddings, so rerunning or comparing does not re-encode unchanged inputs.

One SQLite file (``<cache_dir>/eval/embeddings.sqlite3``) maps a key to a float32 vector. The key is
the sha256 of the encoder's identity (model name and weights fingerprint, adapter hash, pooling,
max length, attention direction, dtype) plus the instruction plus the text, so any change to one
of them is a miss. SQLite makes concurrent runs safe.

    >>> import tempfile, numpy as np
    >>> c = EmbeddingCache(tempfile.mkdtemp() + "/e.sqlite3")
    >>> c.get_many("m", None, ["a"])
    [None]
    >>> c.put_many("m", None, ["a"], np.ones((1, 2), dtype=np.float32))
    >>> c.get_many("m", None, ["a"])[0].tolist()
    [1.0, 1.0]
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def text_key(identity: str, instruction: str | None, text: str) -> str:
    """The cache key of one text encoded by one encoder identity with one instruction.

    >>> text_key("m", None, "a") != text_key("m", "", "a") != text_key("m2", None, "a")
    True
    """
    inst = "\x00none" if instruction is None else instruction
    return hashlib.sha256("\x1f".join((identity, inst, text)).encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Float32 vectors keyed by :func:`text_key`; ``hits`` and ``misses`` count lookups."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":  # ":memory:" keeps vectors for this process only (--no-cache)
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), timeout=60)
        self._db.execute("CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, dim INTEGER, vec BLOB)")
        self._db.commit()
        self.hits = 0
        self.misses = 0

    def get_many(self, identity: str, instruction: str | None, texts: Sequence[str]) -> list[np.ndarray | None]:
        keys = [text_key(identity, instruction, t) for t in texts]
        found: dict[str, np.ndarray] = {}
        for i in range(0, len(keys), 500):  # SQLite's bound-variable limit
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for key, dim, blob in self._db.execute(f"SELECT key, dim, vec FROM emb WHERE key IN ({marks})", chunk):
                found[key] = np.frombuffer(blob, dtype=np.float32, count=dim)
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
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO emb (key, dim, vec) VALUES (?, ?, ?)", rows)

    def close(self) -> None:
        self._db.close()
