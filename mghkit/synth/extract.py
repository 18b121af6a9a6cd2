"""Getting a JSON object out of an LLM's reply: code fences, trailing prose, trivial breakage.

>>> extract_json('Sure! ```json\\n{"a": 1}\\n``` Hope this helps.')
({'a': 1}, None)
>>> extract_json('Here it is: {"a": [1, 2,],} -- done')
({'a': [1, 2]}, None)
>>> extract_json('{"a": {"b": 1')
({'a': {'b': 1}}, None)
>>> extract_json('{"a": "cut off in the mid')
(None, 'the JSON is cut off inside a string')
>>> extract_json('no json here')
(None, 'no JSON object in the reply')
"""

from __future__ import annotations

import json
import re
from typing import Any

_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*\n?(.*?)(?:```|$)", re.DOTALL)
_DECODER = json.JSONDecoder(strict=False)  # raw newlines/tabs inside strings: a trivial slip, accepted
_CLOSE = {"{": "}", "[": "]"}
_MAX_STARTS = 8


def extract_json(text: str) -> tuple[Any, str | None]:
    """(the first JSON object found, None) or (None, why not)."""
    if not text or not text.strip():
        return None, "the reply is empty"
    start = text.find("{")  # the common case: one object, maybe with prose around it
    if start >= 0:
        try:
            return _DECODER.raw_decode(text, start)[0], None
        except ValueError:
            pass
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text] if "```" in text else [text]
    reason = "no JSON object in the reply"
    for cand in candidates:
        for start in [m.start() for m in re.finditer(r"\{", cand)][:_MAX_STARTS]:
            obj, why = _parse_from(cand[start:])
            if why is None:
                return obj, None
            if reason == "no JSON object in the reply":
                reason = why
    return None, reason


def _parse_from(body: str) -> tuple[Any, str | None]:
    """Parse one JSON value at the start of ``body``, repairing it when trivially broken."""
    try:
        return _DECODER.raw_decode(body)[0], None
    except json.JSONDecodeError as e:
        first_error = f"not valid JSON ({e.msg} at char {e.pos})"
    repaired, why = repair_json(body)
    if repaired is None:
        return None, why or first_error
    try:
        return _DECODER.raw_decode(repaired)[0], None
    except ValueError:
        return None, first_error


def repair_json(text: str) -> tuple[str | None, str | None]:
    """Fix trivial breakage of one JSON value: trailing commas, and closers missing at the end
    (a reply cut short between values). A value cut inside a string is not guessed at.

    >>> repair_json('{"a": [1, {"b": 2},], }')
    ('{"a": [1, {"b": 2}]}', None)
    >>> repair_json('[1, 2')
    ('[1, 2]', None)
    """
    out: list[str] = []
    stack: list[str] = []
    in_str = esc = False
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if in_str:
            out.append(ch)
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
            out.append(ch)
        elif ch in "{[":
            stack.append(_CLOSE[ch])
            out.append(ch)
        elif ch in "}]":
            if not stack or stack[-1] != ch:
                return None, "unbalanced brackets"
            stack.pop()
            _drop_trailing_comma(out)
            out.append(ch)
            if not stack:
                return "".join(out), None  # one complete value: ignore what follows
        else:
            out.append(ch)
        i += 1
    if in_str:
        return None, "the JSON is cut off inside a string"
    _drop_trailing_comma(out)
    tail = "".join(out).rstrip()
    if tail.endswith(":"):
        return None, "the JSON is cut off after a key"
    return tail + "".join(reversed(stack)), None


def _drop_trailing_comma(out: list[str]) -> None:
    j = len(out) - 1
    while j >= 0 and out[j].isspace():
        j -= 1
    if j >= 0 and out[j] == ",":
        del out[j:]
