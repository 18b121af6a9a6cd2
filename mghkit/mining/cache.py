"""Corpus embeddings (and their ANN index) cached on disk and reused across runs.

The key is (embedder fingerprint, max length, sha256 of the corpus texts): the same corpus with
the same embedder is encoded once. Files live in ``cache_dir()/mining/`` and are written
atomically (a killed run leaves no half file); a damaged file is recomputed.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mghkit.files import AtomicFile
from mghkit.paths import cache_dir

log = logging.getLogger(__name__)


def cache_key(fingerprint: str, corpus_digest: str, max_length: int | None) -> str:
    """
    >>> cache_key("a", "b", None) == cache_key("a", "b", None) != cache_key("a", "b", 128)
    True
    """
    return hashlib.sha256(f"{fingerprint}|{corpus_digest}|{max_length}".encode()).hexdigest()[:32]


def mining_dir(root: str | Path | None = None) -> Path:
    d = cache_dir(root) / "mining"
    d.mkdir(parents=True, exist_ok=True)
    return d


def cached_embeddings(key: str, n: int, compute: Callable[[], np.ndarray], *,
                      root: str | Path | None = None, use: bool = True) -> tuple[np.ndarray, bool]:  # fmt: skip
    """(embeddings [n, d] float32, True when read from the cache). ``use=False``: neither read nor write."""
    if not use:
        return compute(), False
    path = mining_dir(root) / f"{key}.npy"
    if path.is_file():
        try:
            arr = np.load(path, mmap_mode="r")
            if arr.ndim == 2 and arr.shape[0] == n and arr.dtype == np.float32:
                return arr, True
        except (OSError, ValueError):
            pass
        log.warning("mine: the cached embeddings %s are damaged; recomputing", path)
    arr = np.ascontiguousarray(compute(), dtype=np.float32)
    with AtomicFile(path, binary=True) as fp:
        np.save(fp.fp, arr)
    return arr, False


def cached_faiss_index(key: str, build: Callable[[], Any], *, root: str | Path | None = None,
                       use: bool = True) -> tuple[Any, bool]:  # fmt: skip
    """(faiss index, True when read from the cache)."""
    import faiss

    if not use:
        return build(), False
    path = mining_dir(root) / f"{key}.faiss"
    if path.is_file():
        try:
            return faiss.read_index(str(path)), True
        except RuntimeError:
            log.warning("mine: the cached index %s is damaged; rebuilding", path)
    index = build()
    with AtomicFile(path, binary=True) as fp:
        fp.fp.write(faiss.serialize_index(index).tobytes())
    return index, False
