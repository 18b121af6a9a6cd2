"""`mghkit pool-inspect` on a tiny random model dir (in-process through the real CLI entry point,
plus real subprocesses for the exit codes) and on the real embedded model (slow)."""

from __future__ import annotations

import io
import json
import sys

import pytest

from mghkit.cli import main
from mghkit.model.tiny import save_tiny_model
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(save_tiny_model(tmp_path_factory.mktemp("inspect") / "tiny", family="mistral"))


def invoke(monkeypatch, capsys, *args: str, stdin: str = "") -> tuple[int, str, str]:
    """Run ``mghkit ARGS`` through ``mghkit.cli.main`` in this process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["mghkit", *args])
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    try:
        main()
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_json_document_and_html_heatmap(tiny, tmp_path, monkeypatch, capsys):
    page = tmp_path / "heat.html"
    code, out, err = invoke(monkeypatch, capsys, "pool-inspect", "sodium latin name", "The earth orbits the sun.",
                            "--model", tiny, "--json", "--html", str(page), "--instruction", "Retrieve passages")  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)  # stdout is exactly one JSON document
    assert doc["pooling"] == "ata" and doc["bidirectional"] is True
    assert [t["text"] for t in doc["texts"]] == ["sodium latin name", "The earth orbits the sun."]
    for text in doc["texts"]:
        pooled = [t for t in text["tokens"] if t["pooled"]]
        assert all(t["weight"] >= 0 for t in text["tokens"])
        assert abs(sum(t["weight"] for t in pooled) - 1) < 1e-4
        assert abs(sum(t["mean"] for t in pooled) - 1) < 1e-4
        assert pooled[-1]["last"] == pytest.approx(1)
        assert any(not t["pooled"] for t in text["tokens"])  # instruction tokens shown, not pooled
        assert all(t["weight"] == 0 for t in text["tokens"] if not t["pooled"])
    html = page.read_text()
    assert html.startswith("<!doctype html>") and "weighted-mean" in html
    n_tokens = sum(len(t["tokens"]) for t in doc["texts"])
    assert html.count("<span") == n_tokens
    assert f"wrote {page}" in err


def test_rich_view_from_stdin(tiny, monkeypatch, capsys):
    code, out, err = invoke(monkeypatch, capsys, "pool-inspect", "--model", tiny, "--pooling", "mean", "--top", "3",
                            stdin="first text\n\nsecond text\n")  # fmt: skip
    assert code == 0, err
    assert "[1]" in out and "[2]" in out and "[3]" not in out  # the blank line is skipped
    assert "top tokens by mean weight" in out


@pytest.mark.parametrize(
    "args, needle",
    [
        (["", "--model", "TINY"], "empty text"),
        (["--model", "TINY"], "no text given"),
        (["x", "--model", "TINY", "--pooling", "max"], "unknown pooling 'max'"),
        (["x", "--model", "TINY", "--ata-direction", "up"], "unknown ata direction"),
        (["x", "--model", "/no/such/dir"], "no such model dir"),
        (["x", "--model", "TINY", "--html", "/no/such/dir/x.html"], "cannot write the HTML file"),
    ],
)
def test_bad_input_is_one_line_exit_2(tiny, monkeypatch, capsys, args, needle):
    code, out, err = invoke(monkeypatch, capsys, "pool-inspect", *[tiny if a == "TINY" else a for a in args])
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("mghkit: error")]
    assert len(lines) == 1 and needle in lines[0], err
    assert "Traceback" not in err and out == ""


def test_check_exits_0_bidirectional_and_1_causal(tiny, monkeypatch, capsys):
    code, out, err = invoke(monkeypatch, capsys, "pool-inspect", "--check", "--model", tiny)
    assert code == 0, err
    assert "is bidirectional" in out
    bad = run_cli("pool-inspect", "--check", "--causal", "--model", tiny)  # a real process: the exit code
    assert bad.returncode == 1
    assert "NOT bidirectional" in bad.stderr.decode() and b"Traceback" not in bad.stderr


@pytest.mark.slow
def test_real_model_shows_anchor_tokens():
    r = run_cli("pool-inspect", "sodium latin name", "--json")
    assert r.returncode == 0, r.stderr.decode()
    assert "model 'local'" in r.stderr.decode()
    tokens = json.loads(r.stdout)["texts"][0]["tokens"]
    assert abs(sum(t["weight"] for t in tokens) - 1) < 1e-4
    top = max(tokens, key=lambda t: t["weight"])
    # an anchor: the first token or the template's closing token (measured: the first, "s" of "sodium")
    assert top["position"] == 0 or top["text"] == "<|im_end|>", tokens
    assert top["weight"] > 2 * top["mean"]  # clearly above what mean pooling gives it
    assert run_cli("pool-inspect", "--check").returncode == 0


def test_library_returns_data_and_pure_renderings(tiny):
    """No printing in the library: weights as records, the views as rich renderables and HTML text."""
    from mghkit.pool_inspect import inspect_texts, load_for_inspect, render_html, render_rich, to_document

    enc = load_for_inspect(tiny, pooling="ata")
    docs = inspect_texts(enc, ["sodium latin name"], instruction="Retrieve passages")
    [doc] = docs
    pooled = [t for t in doc.tokens if t.pooled]
    assert abs(sum(t.weight for t in pooled) - 1) < 1e-4 and doc.top(2)[0].weight >= doc.top(2)[1].weight
    assert to_document(docs, enc, tiny)["texts"][0]["tokens"][0]["position"] == 0
    page = render_html(docs, "ata", tiny, top=3)
    assert page.startswith("<!doctype html>") and page.count("<span") == len(doc.tokens)
    assert len(render_rich(docs, "ata", top=3)) == 2  # the coloured line and the top-tokens table
