"""JSON extraction from LLM replies: fences, prose, trivial repair - and what is not guessed at."""

from __future__ import annotations

import pytest

from mghkit.synth.extract import extract_json

OBJ = '{"query": "q", "list": [1, 2]}'


@pytest.mark.parametrize(
    "text",
    [
        OBJ,
        f"```json\n{OBJ}\n```",
        f"```\n{OBJ}\n```\nLet me know if you need more!",
        f"Here is the JSON you asked for:\n{OBJ}\nI hope it helps. {{not json}}",
        f"Use {{braces}} like this: {OBJ}",
        '{"query": "q", "list": [1, 2,],}',  # trailing commas
        '{"query": "q", "list": [1, 2]',  # cut between values
        f"```json\n{OBJ}",  # unclosed fence
    ],
)
def test_extracts_the_object(text):
    obj, why = extract_json(text)
    assert why is None
    assert obj == {"query": "q", "list": [1, 2]}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("I cannot help with that.", "no JSON object"),
        ('{"query": "an answer that was cut off in the mid', "cut off inside a string"),
        ('{"query": ', "cut off after a key"),
        ('{"query": "q"]', "unbalanced"),
    ],
)
def test_refuses_to_guess(text, reason):
    obj, why = extract_json(text)
    assert obj is None
    assert reason in why


def test_braces_inside_strings_do_not_confuse_the_repair():
    obj, why = extract_json('{"a": "x } y ] z", "b": [1,],')
    assert why is None and obj == {"a": "x } y ] z", "b": [1]}
