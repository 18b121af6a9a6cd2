"""Output files that cannot destroy inputs, devices or each other's work.

The one place that decides how mghkit creates a file:

- a regular file (or a new path) is written to a temp file beside it and renamed into place
  (:class:`AtomicFile`), with the permissions a plain ``open`` would give (the umask, or the
  mode of the file it replaces) - never mkstemp's 0600;
- ``-``, a character device (``/dev/null``), a FIFO or a name of one of the process's own
  descriptors (``/dev/stdout``, ``/dev/fd/3``: they may point at a regular file the shell opened)
  is written straight through: renaming a temp file over ``/dev/null`` would replace the device;
- an OSError of an output (a full disk, a read-only folder) names the output the user gave, not
  a temp file (``e.filename``), so the CLI can say which path failed in one line;
- every regular output is locked for the life of the run (:class:`OutputLock`), so a second
  mghkit process writing the same file stops at once with a line naming the first;
- no output may be one of the inputs (same path, symlink or hard link): :func:`check_distinct_outputs`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from mghkit.errors import UsageError


# ----------------------------------------------------------------------------- what a path is
def is_stdio(path: str | Path) -> bool:
    return str(path) == "-"


_FD_PATH = re.compile(r"/(?:dev/(?:(std(?:in|out|err))|fd/(\d+))|proc/(self|thread-self|\d+)/fd/(\d+))")
_STD_FD = {"stdin": 0, "stdout": 1, "stderr": 2}


def _fd_path(path: str | Path) -> tuple[int | None, bool]:
    """(this process's descriptor, True) when ``path`` - or a chain of symlinks from it - is
    ``/dev/stdout``, ``/dev/fd/N`` or ``/proc/self/fd/N``; (None, True) for another process's
    ``/proc/PID/fd/N``; (None, False) otherwise."""
    p = os.path.abspath(path)
    for _ in range(16):
        m = _FD_PATH.fullmatch(p)
        if m:
            std, fd, proc, pfd = m.groups()
            if std or fd:
                return (_STD_FD[std] if std else int(fd)), True
            own = proc in ("self", "thread-self") or int(proc) == os.getpid()
            return (int(pfd) if own else None), True
        try:
            target = os.readlink(p)
        except OSError:
            return None, False
        p = os.path.normpath(os.path.join(os.path.dirname(p), target))
    return None, False


def fd_of(path: str | Path) -> int | None:
    """The descriptor of this process that ``path`` names (``/dev/stdout`` -> 1), else None.

    >>> fd_of("/dev/stdout"), fd_of("/dev/fd/3"), fd_of("/proc/self/fd/2"), fd_of("out.jsonl")
    (1, 3, 2, None)
    """
    return _fd_path(path)[0]


def is_special(path: str | Path) -> bool:
    """True for ``-``, for a name of a process's descriptor (``/dev/stdout``, ``/dev/fd/N``:
    when stdout is redirected to a file it stats as a regular file, but a rename would replace
    the name itself) and for an existing path that is not a regular file or directory (a
    character device, a FIFO, a socket): written straight through, never replaced.

    >>> is_special("-"), is_special("/dev/null"), is_special("/dev/stdout"), is_special("/no/such/file")
    (True, True, True, False)
    """
    if is_stdio(path) or _fd_path(path)[1]:
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
        if is_stdio(value) or fd_of(value) == 1:
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
            with naming(target):  # a read-only folder: name the output, not its lock
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
        self._fd = fd
        try:
            with naming(target):  # a full disk: name the output, and leave no lock file behind
                os.ftruncate(fd, 0)
                os.pwrite(fd, str(os.getpid()).encode(), 0)
        except OSError:
            self.release()
            raise

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
@contextlib.contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """Let an OSError raised inside name ``path`` (``e.filename``): the output the user gave,
    not the temp file beside it, nor nothing (a buffered write to a full disk names no file)."""
    try:
        yield
    except OSError as e:
        raise named(e, path)  # noqa: B904 - the same exception, its filename set


def named(e: OSError, path: str | Path) -> OSError:
    """``e`` with ``e.filename`` the output ``path`` (``<stdout>`` for ``-``)."""
    e.filename, e.filename2 = "<stdout>" if is_stdio(path) else str(path), None
    return e


class AtomicFile:
    """A file written in one piece: a temp file beside ``path``, renamed over it by ``commit()``
    (or removed by ``abort()``: an existing file is left as it was). ``-``, a name of one of the
    process's descriptors (``/dev/stdout``) and other special files (devices, FIFOs) are opened
    and written straight through instead. ``binary``: ``fp`` takes bytes (e.g. a PNG).

    A kill -9 leaves the temp file behind (``.NAME.XXXXXXXX.tmp`` beside ``path``; the output
    itself is untouched); no later run removes it: delete it by hand.
    """

    def __init__(self, path: str | Path, *, binary: bool = False) -> None:
        self.path = str(path)
        self.tmp: str | None = None
        self.fp: IO[Any]
        self._stdout = is_stdio(path)
        mode = "wb" if binary else "w"
        encoding = None if binary else "utf-8"
        with naming(path):
            if self._stdout:
                if binary:
                    sys.stdout.flush()
                self.fp = sys.stdout.buffer if binary else sys.stdout
            elif (fd := fd_of(path)) is not None:  # /dev/stdout: the descriptor, never reopened
                self.fp = open(os.dup(fd), mode, encoding=encoding)  # noqa: SIM115 - closed in commit/abort
            elif is_special(path):
                self.fp = open(path, mode, encoding=encoding)  # noqa: SIM115 - closed in commit/abort
            else:
                check_writable_path(path)
                target = Path(path)
                fd, self.tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
                self.fp = open(fd, mode, encoding=encoding)  # noqa: SIM115 - closed in commit/abort

    def commit(self) -> None:
        with naming(self.path):
            if self._stdout:
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
        if not self._stdout:
            with contextlib.suppress(OSError):
                self.fp.close()
        if self.tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)
            self.tmp = None

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` in one piece (``-``: stdout; a device or FIFO: straight through).
    A failed write leaves the old file as it was. The one whole-document writer."""
    with AtomicFile(path) as out, naming(path):
        out.fp.write(text)


# ----------------------------------------------------------------------------- reading
@contextlib.contextmanager
def seekable(path: str | Path, *, prefix: str = "mghkit-input-") -> Iterator[str]:
    """A path that can be read more than once: ``path`` itself for a regular file; for ``-``,
    a FIFO or ``/dev/fd/N`` (process substitution) a temp copy (in ``$TMPDIR``), made by
    reading it once, removed afterwards - also when the copy itself fails or is interrupted."""
    if not is_special(path):
        yield str(path)
        return
    spool = tempfile.NamedTemporaryFile(prefix=prefix, suffix=".jsonl", delete=False)  # noqa: SIM115
    try:
        source = contextlib.nullcontext(sys.stdin.buffer) if is_stdio(path) else open(path, "rb")  # noqa: SIM115
        with spool, source as src, naming(spool.name):  # a full $TMPDIR names the spool
            shutil.copyfileobj(src, spool, 1 << 20)
        yield spool.name
    finally:
        with contextlib.suppress(OSError):
            os.unlink(spool.name)
