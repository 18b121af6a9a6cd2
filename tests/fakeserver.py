"""An OpenAI-compatible chat-completions server on loopback that scripts replies and injects faults.

It speaks real HTTP, so what is under test is the real LiteLLM -> OpenAI SDK -> httpx path.
Default replies are produced by a ``responder(body) -> str`` (the assistant's text); faults are
rules consumed in order, each matching requests by a substring of the prompt::

    with FakeLLMServer() as srv:
        srv.add_fault(Status(429, headers={"Retry-After": "1"}), times=1)
        ...  # point a client at srv.url ("http://127.0.0.1:PORT/v1")
        assert srv.count == 2 and srv.max_concurrency == 1

Run it alone (the benchmark does, in a separate process)::

    python -m tests.fakeserver --latency 0.2 --port 0     # prints the URL on stdout
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LEVELS = ("high", "medium", "medium-low", "low")


# ----------------------------------------------------------------------------- actions
@dataclass
class Reply:
    """A 200 reply whose assistant text is ``text`` (None: the responder's text)."""

    text: str | None = None
    delay: float = 0.0


@dataclass
class Status:
    """An HTTP error status with optional headers (e.g. Retry-After)."""

    code: int
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    message: str | None = None  # the error message (default: "injected CODE")


@dataclass
class Malformed:
    """A 200 reply whose BODY is not JSON at all."""


@dataclass
class Raw:
    """A 200 reply with exactly this JSON body (e.g. no choices, a null content)."""

    body: str


@dataclass
class Truncated:
    """A 200 reply whose body is cut mid-way (Content-Length promises more), then the socket closes."""


@dataclass
class Drop:
    """Close the connection without any reply."""


@dataclass
class Slow:
    """Sleep ``seconds`` (past the client's timeout), then reply normally if anyone is listening."""

    seconds: float


Action = Reply | Status | Malformed | Raw | Truncated | Drop | Slow


@dataclass
class Rule:
    action: Action
    times: int
    match: str | None = None  # a substring of the last user message; None matches all


# ----------------------------------------------------------------------------- default content
def prompt_of(body: dict[str, Any]) -> str:
    msgs = body.get("messages") or []
    return "\n".join(str(m.get("content", "")) for m in msgs if m.get("role") == "user")


def _word(h: str, i: int, j: int) -> str:
    return "w" + hashlib.sha256(f"{h}{i}{j}".encode()).hexdigest()[:8]


def default_responder(body: dict[str, Any]) -> str:
    """Brainstorm prompts get a tasks object, everything else a valid triplet, both derived from
    the prompt so different prompts get different (deterministic) answers."""
    prompt = prompt_of(body)
    h = hashlib.sha256(prompt.encode()).hexdigest()[:10]
    m = re.search(r"exactly (\d+) tasks", prompt)
    if m:  # distinct tasks: each names words no other task of any prompt shares
        n = int(m.group(1))
        tasks = [
            {
                "task": f"Retrieve {_word(h, i, 0)} {_word(h, i, 1)} passages given a {_word(h, i, 2)} question",
                "query_desc": f"a question about {_word(h, i, 1)}",
                "doc_desc": f"a passage about {_word(h, i, 0)}",
            }
            for i in range(n)
        ]
        return json.dumps({"tasks": tasks})
    return json.dumps(
        {
            "query": f"query {h}",
            "positive_example": f"positive passage {h}",
            "hard_negative_examples": [{"similarity_level": lv, "text": f"{lv} negative {h}"} for lv in LEVELS],
        }
    )


# ----------------------------------------------------------------------------- the server
class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # socketserver's default listen backlog of 5 drops connections at concurrency 32


class FakeLLMServer:
    def __init__(
        self,
        responder: Callable[[dict[str, Any]], str] = default_responder,
        *,
        latency: float = 0.0,
        port: int = 0,
        usage: tuple[int, int] = (100, 50),
        refuse_formats: dict[str, int] | None = None,
    ) -> None:
        self.responder = responder
        self.latency = latency
        self.usage = usage
        # response_format types this server refuses, with the status it answers (llama-cpp-python's
        # server: json_schema -> 500), as a server without structured output does
        self.refuse_formats = dict(refuse_formats or {})
        self.rules: list[Rule] = []
        self.requests: list[dict[str, Any]] = []  # every body received, in arrival order
        self.answered: list[str] = []  # prompt of each request answered with a 200 and valid body
        self.headers_seen: list[dict[str, str]] = []
        self.in_flight = 0
        self.max_concurrency = 0
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", port), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- scripting
    def add_fault(self, action: Action, *, times: int = 1, match: str | None = None) -> None:
        with self._lock:
            self.rules.append(Rule(action, times, match))

    @property
    def count(self) -> int:
        return len(self.requests)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def _next_action(self, prompt: str) -> Action:
        with self._lock:
            for rule in self.rules:
                if rule.times > 0 and (rule.match is None or rule.match in prompt):
                    rule.times -= 1
                    return rule.action
        return Reply()

    # -- lifecycle
    def start(self) -> FakeLLMServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- HTTP
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out as two writes: with Nagle on, the body waits for the client's
            # delayed ACK (~40 ms), a stall a real server does not add
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.requests.append(body)
                    server.headers_seen.append(dict(self.headers))
                    server.in_flight += 1
                    server.max_concurrency = max(server.max_concurrency, server.in_flight)
                try:
                    self._serve(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _serve(self, body: dict[str, Any]) -> None:
                prompt = prompt_of(body)
                fmt = (body.get("response_format") or {}).get("type")
                if fmt in server.refuse_formats:
                    message = f"response_format: input should be 'text' or 'json_object', got {fmt!r}"
                    self._send(server.refuse_formats[fmt], json.dumps({"error": {"message": message}}).encode(), {})
                    return
                action = server._next_action(prompt)
                delay = server.latency + getattr(action, "delay", 0.0)
                if isinstance(action, Slow):
                    delay += action.seconds
                if delay:
                    time.sleep(delay)
                if isinstance(action, Drop):
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if isinstance(action, Status):
                    message = action.message or f"injected {action.code}"
                    payload = json.dumps({"error": {"message": message, "type": "fault"}}).encode()
                    self._send(action.code, payload, action.headers)
                    return
                if isinstance(action, Malformed):
                    self._send(200, b"<html>this is not json", {})
                    return
                if isinstance(action, Raw):
                    self._send(200, action.body.encode(), {})
                    return
                text = action.text if isinstance(action, Reply) and action.text is not None else server.responder(body)
                payload = self._completion(body, text)
                if isinstance(action, Truncated):
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self._send(200, payload, {})
                with server._lock:
                    server.answered.append(prompt)

            def _completion(self, body: dict[str, Any], text: str) -> bytes:
                p, c = server.usage
                return json.dumps(
                    {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body.get("model", "fake"),
                        "choices": [
                            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                        ],
                        "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
                    }
                ).encode()

            def _send(self, code: int, payload: bytes, headers: dict[str, str]) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

        return Handler


def main() -> None:
    ap = argparse.ArgumentParser(description="Serve a fake OpenAI-compatible API until killed.")
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    srv = FakeLLMServer(latency=args.latency, port=args.port).start()
    print(srv.url, flush=True)
    try:
        while True:
            line = sys.stdin.readline()
            if not line:  # parent closed stdin: exit
                break
            if line.strip() == "count":
                print(srv.count, flush=True)
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
