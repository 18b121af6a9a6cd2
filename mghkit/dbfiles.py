"""The sqlite files mghkit keeps as caches (LLM answers, text embeddings): telling a damaged file
from a busy or full one, and moving a damaged one aside so a run can go on with a fresh cache.
One copy, used by :mod:`mghkit.llm.cache` and :mod:`mghkit.evaluation.cache`.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path

# SQLite's primary result codes that mean "this file is not a usable database" (not busy, full
# or read-only)
_BROKEN = {getattr(sqlite3, "SQLITE_CORRUPT", 11), getattr(sqlite3, "SQLITE_NOTADB", 26)}


def is_broken(e: sqlite3.Error) -> bool:
    """True when ``e`` says the database file itself is damaged (by SQLite's error code, or its
    message where Python does not carry the code).

    >>> is_broken(sqlite3.DatabaseError("file is not a database")), is_broken(sqlite3.OperationalError("locked"))
    (True, False)
    """
    code = getattr(e, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _BROKEN
    text = str(e).lower()
    return "not a database" in text or "malformed" in text


def inode(path: str | Path) -> int | None:
    """The inode ``path`` names now (None: it does not exist): which file a connection found."""
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def move_aside(path: Path, found: int | None) -> Path | None:
    """Rename a damaged ``path`` (and its -journal / -wal / -shm companions) to
    ``NAME.broken-<timestamp>``; returns the new name. ``found`` is the inode the caller's
    connection opened: when ``path`` is gone or is another file now (a run sharing the cache
    moved it first), nothing is moved and None is returned."""
    if found is not None and inode(path) != found:
        return None
    aside = path.with_name(f"{path.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}")
    if os.path.lexists(aside):
        aside = aside.with_name(f"{aside.name}-{os.getpid()}")
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        return None
    for suffix in ("-journal", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            os.replace(f"{path}{suffix}", f"{aside}{suffix}")
    return aside
