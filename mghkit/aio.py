"""Sync forms of async library functions that also work inside a running event loop (Jupyter).

``asyncio.run`` raises when a loop is already running in the thread, as it is in a notebook
cell. :func:`run_sync` runs the coroutine on a fresh loop in a worker thread in that case, and
plainly with ``asyncio.run`` otherwise.

    >>> import asyncio
    >>> async def twice(x):
    ...     return 2 * x
    >>> run_sync(twice(21))
    42
    >>> async def inside_a_loop():            # what a notebook cell is
    ...     return run_sync(twice(4))
    >>> asyncio.run(inside_a_loop())
    8
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion and return its result (exceptions propagate unchanged)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as e:  # re-raised in the caller's thread
            box["error"] = e

    thread = threading.Thread(target=target, name="mghkit-run-sync", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
