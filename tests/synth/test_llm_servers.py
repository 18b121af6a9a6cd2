"""Self-hosted servers (llama.cpp, vLLM, Ollama, LM Studio) through the real LiteLLM path, against
the loopback server: structured output and its fall-back, the options that reach the server, a
timeout that is not resent, and the one-line errors for a too-small context or no server at all."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest

from mghkit.llm import LLMError
from tests.conftest import run_cli, run_main
from tests.fakeserver import FakeLLMServer, Slow, Status

MSG = [{"role": "user", "content": "hello"}]
SCHEMA_FORMAT = {"type": "json_schema", "json_schema": {"name": "t", "schema": {"type": "object"}}}
# llama-cpp-python's server, for a prompt longer than its n_ctx
CONTEXT_MESSAGE = (
    "This model's maximum context length is 2048 tokens. However, you requested 6171 tokens "
    "(2075 in the messages, 4096 in the completion). Please reduce the length of the messages or completion."
)


def ask(client, messages=MSG, **kw):
    return asyncio.run(client.complete(messages, **kw))


def write_tasks(path, n=3):
    path.write_text("".join(json.dumps({"id": f"t{i}", "kind": "sts", "task": f"Find facts, sort {i}."}) + "\n"
                            for i in range(n)))  # fmt: skip
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_json_schema_goes_to_a_server_with_the_options(server, tmp_path, monkeypatch, capsys):
    tasks = write_tasks(tmp_path / "tasks.jsonl")
    monkeypatch.setenv("MGHKIT_CACHE_DIR", str(tmp_path / "cache"))
    code = run_main("generate", str(tasks), "--model", "openai/fake", "--api-base", server.url, "--out",
                    str(tmp_path / "t.jsonl"), "--max-tokens", "333", "--temperature", "0.25", "--extra-body",
                    '{"top_k": 7, "chat_template_kwargs": {"enable_thinking": false}}')  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert len((tmp_path / "t.jsonl").read_text().splitlines()) == 3 and server.count == 3
    for body in server.requests:
        fmt = body["response_format"]
        assert fmt["type"] == "json_schema" and fmt["json_schema"]["name"] == "triplet"
        assert fmt["json_schema"]["schema"]["required"] == ["query", "positive_example", "hard_negative_examples"]
        assert body["max_tokens"] == 333 and body["temperature"] == 0.25
        assert body["top_k"] == 7 and body["chat_template_kwargs"] == {"enable_thinking": False}


def test_brainstorm_takes_the_same_options(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MGHKIT_CACHE_DIR", str(tmp_path / "cache"))
    code = run_main("brainstorm", "--model", "openai/fake", "--api-base", server.url, "--n-tasks", "2", "--kinds",
                    "sts", "--per-call", "2", "--out", str(tmp_path / "tasks.jsonl"), "--max-tokens", "500",
                    "--temperature", "0", "--extra-body", '{"min_p": 0.1}')  # fmt: skip
    assert code == 0, capsys.readouterr().err
    body = server.requests[0]
    assert (
        body["response_format"]["type"] == "json_schema" and body["response_format"]["json_schema"]["name"] == "tasks"
    )
    assert body["max_tokens"] == 500 and body["temperature"] == 0 and body["min_p"] == 0.1


def test_a_hosted_model_gets_json_mode_and_the_defaults(server, make_client):
    from mghkit.synth.triplets import MAX_TOKENS, TEMPERATURE, RequestParams

    hosted = RequestParams.for_client("gpt-4o")
    assert hosted.response_format == {"type": "json_object"}
    assert (hosted.max_tokens, hosted.temperature) == (MAX_TOKENS, TEMPERATURE)
    served = RequestParams.for_client(make_client(server))
    assert served.response_format["type"] == "json_schema" and served.max_tokens == MAX_TOKENS


@pytest.mark.parametrize("status", [400, 422, 500])
def test_a_server_that_refuses_the_schema_is_asked_again_without_it_and_it_is_remembered(make_client, status):
    # llama-cpp-python's server: json_schema -> 500 naming response_format; json_object with the schema is its own form
    with FakeLLMServer(refuse_formats={"json_schema": status}) as srv:
        client = make_client(srv)
        assert '"query"' in ask(client, response_format=SCHEMA_FORMAT).text
        assert [b["response_format"]["type"] for b in srv.requests] == ["json_schema", "json_object"]
        assert srv.requests[1]["response_format"]["schema"] == {"type": "object"}
        ask(client, [{"role": "user", "content": "again"}], response_format=SCHEMA_FORMAT)
        assert srv.count == 3 and srv.requests[2]["response_format"]["type"] == "json_object"  # remembered
        assert client.stats.retries == 0


def test_a_server_that_refuses_any_format_gets_none(make_client):
    with FakeLLMServer(refuse_formats={"json_schema": 400, "json_object": 400}) as srv:
        client = make_client(srv)
        assert '"query"' in ask(client, response_format=SCHEMA_FORMAT).text
        assert srv.count == 3 and "response_format" not in srv.requests[2]
        ask(client, [{"role": "user", "content": "again"}], response_format={"type": "json_object"})
        assert srv.count == 4 and "response_format" not in srv.requests[3]


def test_a_400_about_something_else_keeps_the_format_and_is_reported(server, make_client):
    server.add_fault(Status(400, message="unknown field: top_kk"))
    with pytest.raises(LLMError, match="top_kk") as e:
        ask(make_client(server), response_format=SCHEMA_FORMAT)
    assert e.value.kind == "request" and server.count == 1


def test_a_timeout_on_a_self_hosted_server_is_not_resent(server, make_client):
    server.add_fault(Slow(2.0))
    client = make_client(server, timeout=0.3)
    t0 = time.monotonic()
    with pytest.raises(LLMError, match=r"within --timeout 0.3 s; not resent") as e:
        ask(client)
    assert time.monotonic() - t0 < 1.9 and e.value.kind == "request"
    time.sleep(2.0)  # the server finishes the abandoned request: it was the only one
    assert server.count == 1 and client.stats.retries == 0


def test_the_default_timeout_is_long_for_a_server_and_short_for_an_api():
    from mghkit.llm import ClientConfig

    assert ClientConfig(api_base="http://127.0.0.1:8080/v1").request_timeout == 600
    assert ClientConfig().request_timeout == 120
    assert ClientConfig(api_base="http://h/v1", timeout=30).request_timeout == 30


def test_extra_body_reaches_the_server_and_keys_the_cache(server, make_client):
    ask(make_client(server, extra_body={"top_k": 3}))
    ask(make_client(server, extra_body={"top_k": 3}))  # cached
    ask(make_client(server, extra_body={"top_k": 4}))  # another answer: sent
    assert [b.get("top_k") for b in server.requests] == [3, 4]


def test_a_context_window_error_is_one_line_with_the_size_and_the_fix(server, tmp_path):
    server.add_fault(Status(400, message=CONTEXT_MESSAGE), times=100)
    tasks = write_tasks(tmp_path / "tasks.jsonl", 1)
    r = run_cli("generate", str(tasks), "--model", "openai/fake", "--api-base", server.url, "--out",
                str(tmp_path / "t.jsonl"), env={"MGHKIT_CACHE_DIR": str(tmp_path / "cache")}, timeout=120)  # fmt: skip
    err = r.stderr.decode()
    assert r.returncode != 0 and "Traceback" not in err
    [line] = [ln for ln in err.splitlines() if ln.startswith("mghkit: error:")]
    assert f"context window of {server.url}" in line and "the prompt is about" in line
    assert "--max-tokens 4,096" in line and "--n_ctx 4096" in line and "fix that, then rerun" in line
    assert server.count == 1  # not retried, and no re-ask: there was no reply


@pytest.mark.parametrize("suffix", ["", "/v1"])
def test_no_server_is_one_line_naming_the_url(tmp_path, suffix):
    base = f"http://127.0.0.1:{free_port()}{suffix}"
    tasks = write_tasks(tmp_path / "tasks.jsonl", 2)
    r = run_cli("generate", str(tasks), "--model", "openai/fake", "--api-base", base, "--max-retries", "1",
                env={"MGHKIT_CACHE_DIR": str(tmp_path / "cache")}, timeout=120)  # fmt: skip
    err = r.stderr.decode()
    assert r.returncode != 0 and "Traceback" not in err
    [line] = [ln for ln in err.splitlines() if ln.startswith("mghkit: error:")]
    assert f"cannot reach {base} after 2 attempts" in line and "is the server running?" in line
    assert ("try --api-base " + base + "/v1" in line) == (suffix == "")


def test_a_404_without_v1_hints_at_it(server, make_client):
    base = server.url.removesuffix("/v1")
    server.add_fault(Status(404, message="Not Found"))
    with pytest.raises(LLMError, match=f"try --api-base {base}/v1"):
        ask(make_client(server, api_base=base))


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["--extra-body", "{nope"], "--extra-body: not valid JSON"),
        (["--extra-body", "[1]"], "--extra-body: expected a JSON object"),
        (["--max-tokens", "0"], "--max-tokens must be at least 1"),
        (["--temperature", "3"], "--temperature must be between 0 and 2"),
        (["--timeout", "0"], "--timeout must be positive"),
    ],
)
def test_bad_server_options_are_one_line_exit_2(server, tmp_path, monkeypatch, capsys, args, expect):
    monkeypatch.setenv("MGHKIT_CACHE_DIR", str(tmp_path / "cache"))
    tasks = write_tasks(tmp_path / "tasks.jsonl", 1)
    code = run_main("generate", str(tasks), "--model", "openai/fake", "--api-base", server.url, *args)
    assert code == 2 and expect in capsys.readouterr().err and server.count == 0
