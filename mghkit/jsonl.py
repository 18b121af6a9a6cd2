"""The one JSONL reader and writer: streaming, ``-`` for stdio, atomic output files.

Reading never loads a whole file: lines are read one at a time with a size bound, so memory
stays flat in the file size and a 100 MB line costs one bounded buffer, not 100 MB.
A bad line is reported with its line number, never a traceback::

    >>> import io
    >>> [(l.lineno, l.obj, l.error) for l in iter_lines(io.BytesIO(b'{"a": 1}\\n[1]\\n{bad\\n'))]
    [(1, {'a': 1}, None), (2, None, 'expected a JSON object, got array'), (3, None, 'not valid JSON')]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
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
    mode "append": append to the target, flushing each line (after cutting off a partial last
    line left by a crash), so a killed run leaves valid JSONL that a rerun can resume.
    """

    def __init__(self, path: str | Path, *, mode: Literal["atomic", "append"] = "atomic") -> None:
        self.path = str(path)
        self.mode = mode
        self.count = 0
        self._tmp: str | None = None
        self._fp: IO[str]
        if self.path == "-":
            self._fp = sys.stdout
        else:
            target = Path(self.path)
            if target.is_dir():
                raise UsageError(f"{target}: is a directory, expected an output file")
            if not target.parent.exists():
                raise UsageError(f"{target}: folder {target.parent} does not exist")
            if mode == "append":
                repair_tail(target)
                self._fp = target.open("a", encoding="utf-8")
            else:
                fd, self._tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
                self._fp = open(fd, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._flush = self.mode == "append" or self.path == "-"
        self._writer = jsonlines.Writer(self._fp, flush=self._flush, dumps=dumps)

    def write(self, record: BaseModel | dict[str, Any] | JsonText) -> None:
        if isinstance(record, JsonText):
            self._fp.write(record + "\n")
            if self._flush:
                self._fp.flush()
        else:
            self._writer.write(_to_obj(record))
        self.count += 1

    def write_all(self, records: Iterable[BaseModel | dict[str, Any] | JsonText]) -> int:
        for r in records:
            self.write(r)
        return self.count

    def close(self, ok: bool = True) -> None:
        if self.path == "-":
            self._fp.flush()
            return
        self._fp.close()
        if self._tmp is not None:
            if ok:
                os.replace(self._tmp, self.path)
            else:
                os.unlink(self._tmp)
            self._tmp = None

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
    """Cut off an incomplete last line (no trailing newline), as a kill -9 may leave.
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
        fp.truncate(keep)
        return size - keep


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write one JSON document (e.g. a report) to ``path`` via a temp file and rename; ``-`` is stdout."""
    text = json.dumps(obj, ensure_ascii=False, indent=2) + "\n"
    if str(path) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    target = Path(path)
    if target.is_dir() or not target.parent.exists():
        raise UsageError(f"{target}: cannot write here (a directory, or its folder does not exist)")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with open(fd, "w", encoding="utf-8") as fp:
            fp.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_distinct_outputs(source: str | Path, **outputs: str | Path | None) -> None:
    """Refuse two outputs (or an output and the input) that name the same file or both stdout.

    >>> check_distinct_outputs("in.jsonl", out="-", rejects="-")
    Traceback (most recent call last):
    mghkit.errors.UsageError: --rejects -: same as --out; give each output its own file
    """
    seen: dict[str, str] = {} if str(source) == "-" else {str(Path(source).resolve()): "the input"}
    for opt, value in outputs.items():
        if not value:
            continue
        key = "-" if str(value) == "-" else str(Path(value).resolve())
        name = "--" + opt.replace("_", "-")
        if key in seen:
            raise UsageError(f"{name} {value}: same as {seen[key]}; give each output its own file")
        seen[key] = name
