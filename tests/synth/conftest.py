"""Fixtures for synthesis tests: the loopback OpenAI-compatible server and clients pointed at it."""

from __future__ import annotations

import pytest

from tests.fakeserver import FakeLLMServer


def pytest_configure(config):
    # LiteLLM's pydantic models warn about ReadOnly TypedDict items when first used: not ours to fix
    config.addinivalue_line("filterwarnings", "ignore:.*ReadOnly.*:UserWarning")


@pytest.fixture(autouse=True)
def _restore_process_settings(monkeypatch):
    """The CLI's set-up (setup_synth) writes OMP_WAIT_POLICY for --model local: undo it after each
    in-process CLI test, so the rest of the suite runs as it would alone."""
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)


@pytest.fixture
def server():
    with FakeLLMServer() as srv:
        yield srv


@pytest.fixture
def make_client(tmp_path):
    """A real LiteLLM client against a server, with fast backoff and a private cache."""
    from mghkit.llm import ClientConfig, open_client

    made = []

    def make(srv, **kw):
        cfg = dict(
            model="openai/fake",
            api_base=srv.url,
            cache_dir=tmp_path / "cache",
            backoff_base=0.01,
            timeout=10.0,
            max_retries=3,
        )
        cfg.update(kw)
        client = open_client(ClientConfig(**cfg))
        made.append(client)
        return client

    yield make
    for c in made:
        c.close()
