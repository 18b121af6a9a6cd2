"""The real LiteLLM path against a loopback server that injects faults: retries, Retry-After,
timeouts, dropped connections, cache, cost, budget, rate limits - asserted on what the server got."""

from __future__ import annotations

import asyncio
import time

import pytest

from mghkit.errors import UsageError
from mghkit.llm import BudgetExceeded, LLMError, resolve_api_key
from tests.fakeserver import Drop, Malformed, Raw, Slow, Status, Truncated

MSG = [{"role": "user", "content": "hello"}]


def ask(client, messages=MSG, **kw):
    return asyncio.run(client.complete(messages, **kw))


@pytest.mark.parametrize(
    "fault",
    [Status(500), Status(502), Status(503), Status(429), Malformed(), Truncated(), Drop()],
    ids=["500", "502", "503", "429", "malformed-body", "truncated-body", "dropped-connection"],
)
def test_transient_faults_are_retried_then_answered(server, make_client, fault):
    server.add_fault(fault, times=2)
    client = make_client(server)
    c = ask(client)
    assert '"query"' in c.text
    assert server.count == 3 and client.stats.retries == 2 and client.stats.requests == 3
    assert len(server.answered) == 1


def test_an_answer_without_choices_is_retried(server, make_client):
    server.add_fault(Raw('{"id": "x", "object": "chat.completion", "created": 1, "model": "m", "choices": []}'))
    client = make_client(server)
    assert '"query"' in ask(client).text and server.count == 2


def test_a_null_content_is_an_empty_reply_not_a_crash(server, make_client):
    body = ('{"id": "x", "object": "chat.completion", "created": 1, "model": "m", "choices": [{"index": 0, '
            '"message": {"role": "assistant", "content": null}, "finish_reason": "stop"}]}')  # fmt: skip
    server.add_fault(Raw(body))
    c = ask(make_client(server))
    assert c.text == "" and server.count == 1


def test_retry_after_is_honoured(server, make_client):
    server.add_fault(Status(429, headers={"Retry-After": "1"}))
    client = make_client(server, backoff_base=0.001)
    t0 = time.monotonic()
    ask(client)
    assert server.count == 2
    assert time.monotonic() - t0 >= 0.95  # it waited what the server asked, not the 1 ms backoff


def test_slow_reply_times_out_and_is_retried(server, make_client):
    server.add_fault(Slow(3.0))
    client = make_client(server, timeout=0.5, resend_timeouts=True)  # as a hosted API
    c = ask(client)
    assert c.text and server.count == 2 and client.stats.retries == 1


def test_gives_up_after_max_retries(server, make_client):
    server.add_fault(Status(500), times=100)
    client = make_client(server, max_retries=2)
    with pytest.raises(LLMError) as e:
        ask(client)
    assert e.value.kind == "retry" and "3 attempts" in str(e.value)
    assert server.count == 3


@pytest.mark.parametrize(("code", "kind"), [(400, "request"), (422, "request"), (401, "fatal"), (404, "fatal")])
def test_client_errors_are_not_retried(server, make_client, code, kind):
    server.add_fault(Status(code))
    client = make_client(server)
    with pytest.raises(LLMError) as e:
        ask(client)
    assert e.value.kind == kind and server.count == 1


def test_cache_answers_repeats_and_keys_on_messages_params_and_seed(server, make_client, tmp_path):
    client = make_client(server)
    a = ask(client, seed=1)
    b = ask(client, seed=1)
    assert server.count == 1 and b.cached and b.text == a.text and client.stats.cache_hits == 1
    ask(client, seed=2)
    ask(client, [{"role": "user", "content": "hello!"}], seed=1)
    ask(client, seed=1, temperature=0.5)
    assert server.count == 4
    # a new client (a rerun) on the same cache dir pays for nothing
    rerun = make_client(server)
    assert ask(rerun, seed=1).cached and server.count == 4 and rerun.stats.requests == 0


def test_failed_requests_are_not_cached(server, make_client):
    server.add_fault(Status(500), times=1)
    client = make_client(server, max_retries=0)
    with pytest.raises(LLMError):
        ask(client)
    c = ask(client)
    assert not c.cached and server.count == 2


def test_api_key_is_used_but_never_stored(server, make_client, tmp_path, monkeypatch):
    secret = "sk-test-SECRET0123456789abcdef"
    monkeypatch.setenv("MY_LLM_KEY", secret)
    client = make_client(server, api_key_env="MY_LLM_KEY")
    ask(client)
    assert server.headers_seen[0].get("authorization") == f"Bearer {secret}"
    server.add_fault(Status(401))
    with pytest.raises(LLMError) as e:
        ask(client, seed=9)
    assert secret not in str(e.value)
    for f in (tmp_path / "cache").iterdir():
        assert secret.encode() not in f.read_bytes()


def test_no_provider_key_goes_to_an_arbitrary_api_base(server, make_client, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real-key-should-not-leak-123456")
    client = make_client(server)
    ask(client)
    assert "sk-real-key" not in str(server.headers_seen[0])


def test_missing_key_fails_at_once_naming_the_local_model(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(UsageError, match=r"OPENAI_API_KEY.*--model local"):
        resolve_api_key("gpt-4o", None, None)
    with pytest.raises(UsageError, match="NOPE_KEY"):
        resolve_api_key("gpt-4o", None, "NOPE_KEY")


def test_cost_from_the_price_table_and_unknown_price(server, make_client):
    priced = make_client(server, model="gpt-4o")  # a known model served by the loopback server
    c = ask(priced)
    assert priced.price_known
    assert c.cost_usd == pytest.approx(100 * priced.price_in + 50 * priced.price_out)
    assert c.cost_usd > 0 and priced.stats.cost_usd == pytest.approx(c.cost_usd)
    unknown = make_client(server, model="openai/some-local-model")
    assert not unknown.price_known and ask(unknown, seed=3).cost_usd == 0.0


def test_budget_stops_before_exceeding(server, make_client):
    client = make_client(server, model="gpt-4o", max_budget=0.02)
    sent = 0
    with pytest.raises(BudgetExceeded):
        for i in range(100):
            ask(client, seed=i, max_tokens=1000)  # worst case ~$0.01 each
            sent += 1
    assert 0 < sent < 100 and server.count == sent
    assert client.stats.cost_usd <= 0.02


def test_rpm_spaces_requests(server, make_client):
    client = make_client(server, rpm=240)  # 4 a second, burst of 4

    async def many():
        await asyncio.gather(*(client.complete(MSG, seed=i) for i in range(8)))

    t0 = time.monotonic()
    asyncio.run(many())
    assert server.count == 8
    assert time.monotonic() - t0 >= 0.9  # 4 had to wait for the bucket to refill


def test_tpm_spaces_requests_by_their_tokens(server, make_client):
    client = make_client(server, tpm=120_000)  # 2,000 tokens a second, burst of 2,000

    async def two():
        await asyncio.gather(*(client.complete(MSG, seed=i, max_tokens=1990) for i in range(2)))

    t0 = time.monotonic()
    asyncio.run(two())
    assert server.count == 2
    assert time.monotonic() - t0 >= 0.9  # the second waited for ~2,000 tokens of refill
