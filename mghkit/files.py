"""Output files that cannot destroy inputs, devices or each other's work.

The one place that decides how mghkit creates a file:

- a regular file (or a new path) is written to a temp file beside it and renamed into place
  (:class:`AtomicFile`), with the permissions a plain ``open`` would give (the umask, or the
  mode of the file it replaces) - never mkstemp's 0600;
- ``-``, a character device (``/dev/null``, ``/dev/stdout``) or a FIFO is written straight
  through: renaming a temp file over ``/dev/null`` would replace the device;
- every regular output is locked for the life of the run (:class:`OutputLock`), so a second
  mghkit process writing the same file stops at once with a line naming the first;
- no output may be one of the inputs (same path, symlink or hard link): :func:`check_distinct_outputs`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from mghkit.errors import UsageError


# ----------------------------------------------------------------------------- what a path is
def is_stdio(path: str | Path) -> bool:
    return str(path) == "-"


def is_special(path: str | Path) -> bool:
    """True for ``-`` and for an existing path that is not a regular file or directory
    (a character device, a FIFO, a socket): written straight through, never replaced.

    >>> is_special("-"), is_special("/dev/null"), is_special("/no/such/file")
    (True, True, False)
    """
    if is_stdio(path):
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _identity(path: str | Path) -> tuple[str, tuple[int, int] | None]:
    """(resolved path, (device, inode) when it exists): equal for symlinks and hard links."""
    p = Path(path)
    try:
        st = p.stat()
        ino: tuple[int, int] | None = (st.st_dev, st.st_ino)
    except OSError:
        ino = None
    return str(p.resolve()), ino


def check_distinct_outputs(sources: str | Path | Iterable[str | Path], **outputs: str | Path | None) -> None:
    """Refuse an output that names one of the inputs (same path, a symlink or a hard link to
    it), or two outputs that name the same file or both stdout.

    >>> check_distinct_outputs("in.jsonl", out="-", rejects="-")
    Traceback (most recent call last):
    mghkit.errors.UsageError: --rejects -: same as --out; give each output its own file
    """
    seen: dict[object, str] = {}
    for source in [sources] if isinstance(sources, str | Path) else sources:
        if is_stdio(source) or is_special(source):
            continue
        where, ino = _identity(source)
        seen[where] = seen[ino or where] = f"the input {source}"
    for opt, value in outputs.items():
        if not value:
            continue
        name = "--" + opt.replace("_", "-")
        if is_stdio(value):
            keys: list[object] = ["-"]
        elif is_special(value):
            continue  # /dev/null twice is fine
        else:
            where, ino = _identity(value)
            keys = [where] + ([ino] if ino else [])
        for key in keys:
            if key in seen:
                raise UsageError(f"{name} {value}: same as {seen[key]}; give each output its own file")
        for key in keys:
            seen[key] = name


def check_writable_path(path: str | Path, option: str = "") -> None:
    """Fail before any work when ``path`` cannot be an output file (a directory, a missing folder)."""
    if is_special(path):
        return
    target = Path(path)
    label = f"{option} {path}" if option else str(path)
    if target.is_dir():
        raise UsageError(f"{label}: is a directory, expected an output file")
    if not target.parent.is_dir():
        raise UsageError(f"{label}: folder {target.parent} does not exist")


# ----------------------------------------------------------------------------- permissions
def _umask() -> int:
    """The process umask, read without changing it where the system allows."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # portable fallback: read by setting, then restore at once
    os.umask(mask)
    return mask


def new_file_mode(replacing: str | Path | None = None) -> int:
    """The mode a plain ``open(path, "w")`` would leave: the replaced file's own mode, else
    0666 minus the umask."""
    if replacing is not None:
        with contextlib.suppress(OSError):
            return stat.S_IMODE(os.stat(replacing).st_mode)
    return 0o666 & ~_umask()


# ----------------------------------------------------------------------------- locks
class OutputLock:
    """An exclusive, non-blocking lock on an output path for the life of a run: a sidecar file
    ``.NAME.lock`` beside it holding the owner's pid, locked with ``flock`` (released by the
    kernel if the process dies, so a kill -9 never leaves a stale lock that matters).

    A second process that asks for the same path gets a UsageError naming the first one.
    """

    def __init__(self, path: str | Path, *, what: str = "writing") -> None:
        target = Path(path)
        self.path = target.with_name(f".{target.name}.lock")
        self._fd: int | None = None
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
                os.close(fd)
                raise UsageError(
                    f"{target}: another mghkit process (pid {owner}) is {what} it; wait for it to finish "
                    "or choose another output"
                ) from None
            try:  # the holder before us may have removed the file after we opened it: retry then
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(self._fd)  # closing releases the flock
        self._fd = None

    def __enter__(self) -> OutputLock:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


# ----------------------------------------------------------------------------- writing
class AtomicFile:
    """A text file written in one piece: a temp file beside ``path``, renamed over it by
    ``commit()`` (or removed by ``abort()``: an existing file is left as it was). ``-`` and
    special files (devices, FIFOs) are opened and written straight through instead."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.tmp: str | None = None
        self.fp: IO[str]
        if is_stdio(path):
            self.fp = sys.stdout
        elif is_special(path):
            self.fp = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed in commit/abort
        else:
            check_writable_path(path)
            target = Path(path)
            fd, self.tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            self.fp = open(fd, "w", encoding="utf-8")  # noqa: SIM115 - closed in commit/abort

    def commit(self) -> None:
        if self.fp is sys.stdout:
            self.fp.flush()
            return
        try:
            self.fp.close()
            if self.tmp is not None:
                os.chmod(self.tmp, new_file_mode(self.path))
                os.replace(self.tmp, self.path)
                self.tmp = None
        finally:
            self.abort()

    def abort(self) -> None:
        if self.fp is not sys.stdout:
            with contextlib.suppress(OSError):
                self.fp.close()
        if self.tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)
            self.tmp = None


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` in one piece (``-``: stdout; a device or FIFO: straight through).
    A failed write leaves the old file as it was. The one whole-document writer."""
    out = AtomicFile(path)
    try:
        out.fp.write(text)
    except BaseException:
        out.abort()
        raise
    out.commit()


# ----------------------------------------------------------------------------- reading
@contextlib.contextmanager
def seekable(path: str | Path, *, prefix: str = "mghkit-input-") -> Iterator[str]:
    """A path that can be read more than once: ``path`` itself for a regular file; for ``-``,
    a FIFO or ``/dev/fd/N`` (process substitution) a temp copy, made by reading it once, removed
    afterwards."""
    if not is_special(path):
        yield str(path)
        return
    with tempfile.NamedTemporaryFile(prefix=prefix, suffix=".jsonl", delete=False) as spool:
        if is_stdio(path):
            shutil.copyfileobj(sys.stdin.buffer, spool, 1 << 20)
        else:
            with open(path, "rb") as src:
                shutil.copyfileobj(src, spool, 1 << 20)
    try:
        yield spool.name
    finally:
        with contextlib.suppress(OSError):
            os.unlink(spool.name)
