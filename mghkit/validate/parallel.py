"""Worker processes for large files: stage 1 of each batch of raw lines (parsing and the
per-record checks) runs in a worker, stage 2 (the checks across the file) stays in the main
process in file order, so the output is byte-identical to a run in one process.

The workers die with the main process: an exception or a signal there (SIGTERM, Ctrl-C) shuts
the pool down on the way out, and after a kill -9 each worker gets SIGKILL from the kernel
(Linux ``PR_SET_PDEATHSIG``; elsewhere a thread that watches the parent pid). Ctrl-C and SIGTERM
themselves are for the main process to handle: a worker ignores SIGINT and dies of SIGTERM.

    >>> list(ordered_map(abs, [-3, 2, -1], workers=0))
    [3, 2, 1]
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import closing
from typing import Any

import numpy as np

from mghkit.jsonl import JsonText, RawLine, dumps, iter_raw_lines, parse_lines
from mghkit.validate.checks import Outcome, ValidateConfig
from mghkit.validate.crossfile import Finisher, Prepared, positive_hashes, prepare_batch
from mghkit.validate.dedup import SortedKeys
from mghkit.validate.levels import Embedder

PARALLEL_MIN_BYTES = 8 << 20  # below this, starting worker processes costs more than it saves
PARALLEL_BATCH = 1024  # lines per task: 2 x workers tasks in flight keep memory flat


def worker_count(cfg: ValidateConfig, source: str, embed: Embedder | None) -> int:
    """Worker processes for this run: ``cfg.workers``, or by default one per CPU for a file over
    PARALLEL_MIN_BYTES. The level check (an embedder, maybe torch threads) and ``--strict`` run
    in-process."""
    if embed is not None or cfg.strict:
        return 0
    if cfg.workers is not None:
        return cfg.workers
    try:
        big = os.path.getsize(source) >= PARALLEL_MIN_BYTES
    except OSError:
        return 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cpus if big and cpus > 1 else 0


def ordered_map(fn: Callable[[Any], Any], items: Iterable[Any], workers: int) -> Generator[Any, None, None]:
    """``map(fn, items)`` in ``workers`` processes (0: in this one), results in order, at most
    2 x workers in flight (memory stays flat)."""
    if workers <= 0:
        yield from map(fn, items)
        return
    import multiprocessing
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_start, initargs=(os.getpid(),))
    pending: deque[Any] = deque()
    started = False
    try:
        for item in items:
            if not started:
                started = True
                # the first submit forks every worker. A Ctrl-C arriving before a worker has set
                # SIGINT aside (in _worker_start) would kill it and break the pool, and a signal
                # handled in the parent's at-fork hooks is lost (Python prints and ignores an
                # exception raised there: a SIGTERM then let the run finish with exit 0). So the
                # fork happens with both blocked; the parent gets them once the workers exist.
                old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
                try:
                    pending.append(pool.submit(fn, item))
                finally:
                    signal.pthread_sigmask(signal.SIG_SETMASK, old)
                continue
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _worker_start(parent: int) -> None:
    """In each worker, first: die with the parent, leave signals to the parent.

    A worker blocked on the pool's queues would otherwise wait forever after a kill -9 of the
    main process (it holds both ends of the pipes itself, so it never sees end-of-file)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent stops us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's Terminated handler
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})  # born blocked (ordered_map)
    watched = False
    if sys.platform == "linux":
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        watched = libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    if os.getppid() != parent:  # died before prctl took effect
        os._exit(1)
    if not watched:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def batches(source: str, size: int) -> Iterator[list[RawLine]]:
    """The raw lines of ``source`` in lists of ``size``."""
    batch: list[RawLine] = []
    for raw in iter_raw_lines(source):
        batch.append(raw)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _positives_of_batch(raw: list[RawLine]) -> tuple[np.ndarray, np.ndarray]:
    hashes, linenos = positive_hashes(parse_lines(raw))
    return np.array(hashes, dtype=np.uint64), np.array(linenos, dtype=np.uint32)


def _prepare_raw(job: tuple[list[RawLine], ValidateConfig]) -> Prepared:
    """``prepare_batch`` in a worker, its records sent back as JSON text (the original line, the
    clean record encoded): a string crosses between processes at a fraction of a dict's cost."""
    raw, cfg = job
    prep = prepare_batch(parse_lines(raw), cfg)
    text = dict(raw)
    for o in prep.outcomes:
        if o.original is not None:
            line = text[o.lineno]
            o.original, o.original_json = None, line.decode("utf-8") if isinstance(line, bytes) else None
    for g in prep.good:
        g.clean = JsonText(dumps(g.clean))
    return prep


def parallel_outcomes(source: str, cfg: ValidateConfig, workers: int) -> Generator[Outcome, None, None]:
    """The outcome of every line of ``source`` (a file), the per-record work in ``workers``
    processes: the same two passes as in one process."""
    size = PARALLEL_BATCH  # read at call time (tests shrink it)
    positives = None
    if cfg.cross_positives:
        with closing(ordered_map(_positives_of_batch, batches(source, size), workers)) as results:
            parts = list(results)
        positives = SortedKeys()
        if parts:
            positives.add(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    finish = Finisher(cfg, positives, None)
    jobs = ((raw, cfg) for raw in batches(source, size))
    with closing(ordered_map(_prepare_raw, jobs, workers)) as preps:  # a signal here stops the workers now
        for prep in preps:
            yield from finish(prep)
