"""The one JSONL reader and writer: streaming, ``-`` for stdio, atomic output files.

Reading never loads a whole file: lines are read one at a time with a size bound, so memory
stays flat in the file size and a 100 MB line costs one bounded buffer, not 100 MB.
A bad line is reported with its line number, never a traceback::

    >>> import io
    >>> [(l.lineno, l.obj, l.error) for l in iter_lines(io.BytesIO(b'{"a": 1}\\n[1]\\n{bad\\n'))]
    [(1, {'a': 1}, None), (2, None, 'expected a JSON object, got array'), (3, None, 'not valid JSON')]
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, TypeVar

import jsonlines

try:  # 2-5x faster than json, and strict: NaN and lone surrogates are not JSON
    import orjson as _orjson

    loads: Callable[[str | bytes], Any] = _orjson.loads
except ImportError:  # pragma: no cover
    _orjson = None  # type: ignore[assignment]
    loads = json.loads
from pydantic import BaseModel, ValidationError

from mghkit.errors import InputError, UsageError
from mghkit.files import (  # noqa: F401 - check_distinct_outputs and write_text_atomic are re-exported
    AtomicFile,
    OutputLock,
    check_distinct_outputs,
    check_writable_path,
    is_special,
    named,
    naming,
    write_text_atomic,
)

M = TypeVar("M", bound=BaseModel)

MAX_LINE_BYTES = 8 * 1024 * 1024  # a record larger than this is a mistake, not data
_CHUNK = 1 << 20
_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number", float: "number",
               bool: "boolean", type(None): "null"}  # fmt: skip


RawLine = tuple[int, bytes | int]  # (line number, the line's bytes | its size when over the limit)


@dataclass(frozen=True, slots=True)
class Line:
    """One line of a JSONL file: its 1-based number and either the object or an error."""

    lineno: int
    obj: dict[str, Any] | None
    error: str | None = None
    raw: str | None = None  # the text of a bad line, cut to 2,000 characters


def display_name(path: str | Path) -> str:
    return "<stdin>" if str(path) == "-" else str(path)


def _open_binary(path: str | Path) -> IO[bytes]:
    if str(path) == "-":
        return sys.stdin.buffer
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{p}: no such file")
    if p.is_dir():
        raise UsageError(f"{p}: is a directory, expected a JSONL file")
    try:
        return p.open("rb")
    except OSError as e:
        raise UsageError(f"{p}: cannot open ({e.strerror})") from None


def _bounded_lines(fp: IO[bytes], max_bytes: int) -> Iterator[bytes | int]:
    """Yield each line's bytes, or its byte length (an int) when it is over ``max_bytes``."""
    while True:
        raw = fp.readline(max_bytes + 1)
        if not raw:
            return
        if len(raw) > max_bytes and not raw.endswith(b"\n"):
            size = len(raw)
            while True:  # skip the rest of the over-long line without holding it
                chunk = fp.readline(_CHUNK)
                size += len(chunk)
                if not chunk or chunk.endswith(b"\n"):
                    break
            yield size
        else:
            yield raw


def iter_lines(source: str | Path | IO[bytes], *, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[Line]:
    """Stream the lines of a JSONL file (or ``-`` for stdin); blank lines are skipped."""
    return parse_lines(iter_raw_lines(source, max_line_bytes=max_line_bytes), max_line_bytes=max_line_bytes)


def iter_raw_lines(source: str | Path | IO[bytes], *, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[RawLine]:
    """(line number, bytes) for each line, or (line number, size) for a line over the limit:
    the unparsed half of ``iter_lines``, for handing batches of lines to worker processes."""
    fp: IO[bytes] = source if not isinstance(source, str | Path) else _open_binary(source)
    close = fp is not sys.stdin.buffer and not hasattr(source, "readline")
    try:
        yield from enumerate(_bounded_lines(fp, max_line_bytes), 1)
    finally:
        if close:
            fp.close()


def parse_lines(raw_lines: Iterable[RawLine], *, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[Line]:
    """Parse ``iter_raw_lines`` output into Lines (the parsing half of ``iter_lines``)."""
    pending: list[bytes] = []
    reader = jsonlines.Reader(iter(pending.pop, None), loads=loads)  # fed one vetted line at a time
    for lineno, raw in raw_lines:
        if isinstance(raw, int):
            yield Line(lineno, None, f"line is {raw:,} bytes, over the {max_line_bytes:,}-byte limit")
            continue
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            yield Line(lineno, None, "not valid UTF-8 (binary data?)", _cut(raw.decode("utf-8", "replace")))
            continue
        pending.append(raw)
        try:
            obj = reader.read()
        except jsonlines.InvalidLineError:
            yield Line(lineno, None, "not valid JSON", _cut(text))
            continue
        if not isinstance(obj, dict):
            kind = _JSON_TYPES.get(type(obj), "value")
            yield Line(lineno, None, f"expected a JSON object, got {kind}", _cut(text))
            continue
        yield Line(lineno, obj)


def _cut(text: str, n: int = 2000) -> str:
    text = text.rstrip("\n")
    return text if len(text) <= n else text[:n] + "..."


def read_records(path: str | Path, model: type[M]) -> Iterator[tuple[int, M]]:
    """Stream records of one type; the first bad line raises InputError naming file:line:field."""
    name = display_name(path)
    for line in iter_lines(path):
        if line.obj is None:
            raise InputError(line.error or "bad line", path=name, line=line.lineno)
        yield line.lineno, parse_record(line.obj, model, path=name, line=line.lineno)


def parse_record(obj: dict[str, Any], model: type[M], *, path: str, line: int) -> M:
    try:
        return model.model_validate(obj)
    except ValidationError as e:
        field, message = describe_validation_error(e)
        raise InputError(message, path=path, line=line, field=field) from None


def describe_validation_error(e: ValidationError) -> tuple[str, str]:
    """The first error of a pydantic ValidationError as (dotted field, short message)."""
    err = e.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "record"
    if err["type"] == "missing":
        return field, "missing field"
    got = err.get("input")
    kind = _JSON_TYPES.get(type(got), type(got).__name__)
    return field, f"{err['msg'].lower()} (got {kind})"


def _to_obj(record: BaseModel | dict[str, Any]) -> dict[str, Any]:
    if isinstance(record, BaseModel):
        dump = getattr(record, "to_json", None)
        return dump() if dump else record.model_dump(mode="json")
    return record


class JsonText(str):
    """A record already encoded as one line of JSON (no newline): ``JsonlWriter`` writes it as it
    is. Worker processes hand records over this way - far cheaper to pass than dicts."""


class JsonlWriter:
    """Write records as JSONL to a file or ``-`` (stdout), one complete line at a time.

    mode "atomic": write a temp file beside the target and rename it into place on success; on
    failure the temp file is removed and an existing target is left untouched.
    mode "append": append to the target, flushing each line (after repairing a partial last
    line left by a crash), so a killed run leaves valid JSONL that a rerun can resume.
    Either way a regular file is locked for the writer's life (a second process writing it
    stops with a line naming the first), and a device or FIFO is written straight through.
    """

    def __init__(self, path: str | Path, *, mode: Literal["atomic", "append"] = "atomic") -> None:
        self.path = str(path)
        self.mode = mode
        self.count = 0
        self._lock: OutputLock | None = None
        self._atomic: AtomicFile | None = None
        self._fd: int | None = None  # append mode: unbuffered, one write per line
        self._fp: IO[str] | None = None
        if is_special(self.path):
            self._atomic = AtomicFile(self.path)  # straight through
        else:
            check_writable_path(self.path)
            self._lock = OutputLock(self.path)
            try:
                if mode == "append":
                    repair_tail(self.path)
                    with naming(self.path):
                        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
                else:
                    self._atomic = AtomicFile(self.path)
            except BaseException:
                self._lock.release()
                raise
        if self._atomic is not None:
            self._fp = self._atomic.fp
        self._flush = is_special(self.path)

    def write(self, record: BaseModel | dict[str, Any] | JsonText) -> None:
        line = (record if isinstance(record, JsonText) else dumps(_to_obj(record))) + "\n"
        if self._fd is not None:
            self._append(line.encode("utf-8"))
        else:
            assert self._fp is not None
            try:
                self._fp.write(line)
                if self._flush:
                    self._fp.flush()
            except OSError as e:  # a full disk names the output, not nothing
                raise named(e, self.path) from None
        self.count += 1

    def _append(self, data: bytes) -> None:
        """Append one whole line; when the write fails (a full disk) cut back what got out, so the
        file still ends on a complete record."""
        assert self._fd is not None
        start = os.fstat(self._fd).st_size
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as e:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)
            raise named(e, self.path) from None

    def write_all(self, records: Iterable[BaseModel | dict[str, Any] | JsonText]) -> int:
        for r in records:
            self.write(r)
        return self.count

    def close(self, ok: bool = True) -> None:
        try:
            if self._atomic is not None:
                if ok:
                    self._atomic.commit()
                else:
                    self._atomic.abort()
            elif self._fd is not None:
                os.close(self._fd)
                self._fd = None
        finally:
            if self._lock is not None:
                self._lock.release()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.close(ok=exc_type is None)


def dumps(obj: Any) -> str:
    if _orjson is not None:
        try:
            return _orjson.dumps(obj, option=_orjson.OPT_NON_STR_KEYS | _orjson.OPT_SERIALIZE_NUMPY).decode("utf-8")
        except TypeError:  # e.g. an int over 64 bits: the standard library copes
            pass
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def repair_tail(path: str | Path) -> int:
    """Make a file that a kill -9 interrupted end on a complete line: a last line without its
    newline is kept (newline added) when it parses as a JSON object, cut off otherwise.
    Returns the number of bytes removed."""
    p = Path(path)
    if not p.exists() or p.stat().st_size == 0:
        return 0
    with p.open("rb+") as fp:
        size = fp.seek(0, os.SEEK_END)
        fp.seek(size - 1)
        if fp.read(1) == b"\n":
            return 0
        pos = size
        while pos > 0:  # walk back to the previous newline
            step = min(_CHUNK, pos)
            fp.seek(pos - step)
            block = fp.read(step)
            nl = block.rfind(b"\n")
            if nl >= 0:
                keep = pos - step + nl + 1
                break
            pos -= step
        else:
            keep = 0
        fp.seek(keep)
        tail = fp.read()
        if len(tail) <= MAX_LINE_BYTES:
            try:
                complete = isinstance(loads(tail), dict)
            except ValueError:
                complete = False
            if complete:
                fp.write(b"\n")
                return 0
        fp.truncate(keep)
        return size - keep


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write one JSON document (e.g. a report) to ``path`` atomically; ``-`` is stdout."""
    write_text_atomic(path, json.dumps(obj, ensure_ascii=False, indent=2, default=str) + "\n")


def read_jsonl(path: str | Path, model: type[M] | None = None) -> list[Any]:
    """All records of a JSONL file (``-``: stdin) as dicts, or as ``model`` instances (e.g.
    :class:`~mghkit.schema.Triplet`). A bad line raises :class:`~mghkit.errors.InputError`
    naming file, line and field."""
    if model is not None:
        return [record for _, record in read_records(path, model)]
    out = []
    for line in iter_lines(path):
        if line.error:
            raise InputError(line.error, path=display_name(path), line=line.lineno)
        out.append(line.obj)
    return out


def write_jsonl(path: str | Path, records: Iterable[BaseModel | dict[str, Any]]) -> int:
    """Write records to ``path`` atomically (``-``: stdout); returns how many were written."""
    with JsonlWriter(path) as writer:
        return writer.write_all(records)
