"""Where mghkit keeps things: the user's cache directory and the data shipped in the package."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(override: str | Path | None = None) -> Path:
    """The cache root: ``override``, else $MGHKIT_CACHE_DIR, else $XDG_CACHE_HOME/mghkit
    (``~/.cache/mghkit``). Created on first use."""
    if override:
        root = Path(override)
    elif os.environ.get("MGHKIT_CACHE_DIR"):
        root = Path(os.environ["MGHKIT_CACHE_DIR"])
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mghkit"
    root.mkdir(parents=True, exist_ok=True)
    return root


def bundled_eval_dir() -> Path:
    """The real evaluation data shipped in the package (see its README.md for provenance)."""
    return Path(__file__).resolve().parent / "data" / "eval"
