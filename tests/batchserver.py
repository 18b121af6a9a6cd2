"""A loopback OpenAI-compatible files + batches server (``/v1/files``, ``/v1/batches``) for the
batch mode of generate and brainstorm.

Batches complete asynchronously and deterministically: each ``GET /v1/batches/ID`` is one tick
(validating -> in_progress -> completed after ``ticks`` polls), so tests never depend on timing.
Answers come from :func:`tests.fakeserver.default_responder` (or a given responder). Faults:

- ``fail(match, times)``: lines whose prompt contains ``match`` fail (error file, HTTP 500 body)
  the next ``times`` times they are run;
- ``fail_next_batch()``: the next batch to finish fails as a whole (no output at all);
- ``expire_next(k)``: the next batch to finish expires after answering only its first ``k`` lines;
- a restart: all state lives in ``state_dir`` (JSON + files), so a new server on the same port and
  directory carries on where the old one stopped.

    with BatchServer(tmp_path / "srv") as srv:
        ...  # point a client at srv.url ("http://127.0.0.1:PORT/v1")
        srv.submitted  # custom_id -> how many times it was submitted in a batch
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.fakeserver import default_responder


class BatchServer:
    def __init__(
        self,
        state_dir: str | Path,
        *,
        port: int = 0,
        ticks: int = 2,
        responder: Callable[[dict[str, Any]], str] = default_responder,
        cached_tokens: int = 0,
    ) -> None:
        self.dir = Path(state_dir)
        (self.dir / "files").mkdir(parents=True, exist_ok=True)
        self.ticks = ticks
        self.responder = responder
        self.cached_tokens = cached_tokens
        self._lock = threading.Lock()
        self.state: dict[str, Any] = {"files": {}, "batches": {}, "next": 1, "submitted": {}, "faults": [],
                                      "expire_next": None}  # fmt: skip
        path = self.dir / "state.json"
        if path.exists():
            self.state = json.loads(path.read_text())
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._httpd.daemon_threads = True
        self.calls: list[str] = []  # "METHOD path" of every request this process served

    # -- scripting and inspection
    def fail(self, match: str, times: int = 1) -> None:
        with self._lock:
            self.state["faults"].append([match, times])
            self._save()

    def fail_next_batch(self) -> None:
        """The next batch to finish fails as a whole (the provider refused its file)."""
        with self._lock:
            self.state["fail_next"] = True
            self._save()

    def expire_next(self, answered: int) -> None:
        with self._lock:
            self.state["expire_next"] = answered
            self._save()

    @property
    def submitted(self) -> dict[str, int]:
        return dict(self.state["submitted"])

    @property
    def batches(self) -> list[dict[str, Any]]:
        return list(self.state["batches"].values())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    # -- lifecycle
    def start(self) -> BatchServer:
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> BatchServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- state
    def _save(self) -> None:
        tmp = self.dir / "state.json.tmp"
        tmp.write_text(json.dumps(self.state))
        tmp.replace(self.dir / "state.json")

    def _new_id(self, prefix: str) -> str:
        n = self.state["next"]
        self.state["next"] = n + 1
        return f"{prefix}-{n:06d}"

    def _put_file(self, data: bytes, filename: str, purpose: str) -> dict[str, Any]:
        fid = self._new_id("file")
        (self.dir / "files" / fid).write_bytes(data)
        meta = {"id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                "filename": filename, "purpose": purpose, "status": "processed"}  # fmt: skip
        self.state["files"][fid] = meta
        return meta

    def _tick(self, batch: dict[str, Any]) -> None:
        if batch["status"] not in ("validating", "in_progress"):
            return
        batch["_ticks"] += 1
        if batch["_ticks"] < self.ticks:
            batch["status"] = "in_progress"
            batch["in_progress_at"] = batch["in_progress_at"] or int(time.time())
            return
        self._finish(batch)

    def _finish(self, batch: dict[str, Any]) -> None:
        if self.state.get("fail_next"):
            self.state["fail_next"] = False
            batch["status"] = "failed"
            batch["errors"] = {"object": "list", "data": [{"code": "invalid_file", "message": "injected: bad file"}]}
            return
        lines = (self.dir / "files" / batch["input_file_id"]).read_bytes().decode().splitlines()
        expire = self.state["expire_next"]
        self.state["expire_next"] = None
        out, err = [], []
        for i, line in enumerate(lines):
            if expire is not None and i >= expire:
                break
            req = json.loads(line)
            body = req["body"]
            prompt = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
            line_id = f"batch_req_{batch['id']}_{i}"
            fault = next((f for f in self.state["faults"] if f[1] > 0 and f[0] in prompt), None)
            if fault is not None:
                fault[1] -= 1
                err.append({"id": line_id, "custom_id": req["custom_id"], "error": None,
                            "response": {"status_code": 500, "request_id": line_id,
                                         "body": {"error": {"message": "injected line failure", "type": "server_error"}}}})  # fmt: skip
                continue
            text = self.responder(body)
            p = max(1, len(prompt) // 4)
            c = max(1, len(text) // 4)
            completion = {"id": f"chatcmpl-{line_id}", "object": "chat.completion", "created": int(time.time()),
                          "model": body.get("model"),
                          "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                       "finish_reason": "stop"}],
                          "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c,
                                    "prompt_tokens_details": {"cached_tokens": min(p, self.cached_tokens)}}}  # fmt: skip
            out.append({"id": line_id, "custom_id": req["custom_id"], "error": None,
                        "response": {"status_code": 200, "request_id": line_id, "body": completion}})  # fmt: skip
        if out:
            data = "".join(json.dumps(o) + "\n" for o in out).encode()
            batch["output_file_id"] = self._put_file(data, f"{batch['id']}_output.jsonl", "batch_output")["id"]
        if err:
            data = "".join(json.dumps(o) + "\n" for o in err).encode()
            batch["error_file_id"] = self._put_file(data, f"{batch['id']}_error.jsonl", "batch_output")["id"]
        batch["status"] = "expired" if expire is not None else "completed"
        batch["request_counts"] = {"total": len(lines), "completed": len(out), "failed": len(err)}
        batch["completed_at" if expire is None else "expired_at"] = int(time.time())

    def _public(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in batch.items() if not k.startswith("_")}

    # -- HTTP
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, payload: Any, raw: bytes | None = None) -> None:
                data = raw if raw is not None else json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json" if raw is None else "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _not_found(self) -> None:
                self._send(404, {"error": {"message": f"no such path {self.path}", "type": "invalid_request_error"}})

            def do_GET(self) -> None:
                path = self.path.split("?")[0].rstrip("/")
                parts = path.split("/")  # '', 'v1', 'batches', ID
                with server._lock:
                    server.calls.append(f"GET {path}")
                    if path == "/v1/batches":
                        data = [server._public(b) for b in reversed(server.state["batches"].values())]
                        self._send(200, {"object": "list", "data": data, "has_more": False})
                        return
                    if len(parts) == 4 and parts[2] == "batches" and parts[3] in server.state["batches"]:
                        batch = server.state["batches"][parts[3]]
                        server._tick(batch)
                        server._save()
                        self._send(200, server._public(batch))
                        return
                    if len(parts) == 5 and parts[2] == "files" and parts[4] == "content":
                        f = server.dir / "files" / parts[3]
                        if f.exists():
                            self._send(200, None, f.read_bytes())
                            return
                self._not_found()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                path = self.path.split("?")[0].rstrip("/")
                with server._lock:
                    server.calls.append(f"POST {path}")
                    if path == "/v1/files":
                        head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
                        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
                        fields: dict[str, Any] = {}
                        for part in msg.iter_parts():
                            fields[part.get_param("name", header="content-disposition")] = (
                                part.get_filename(), part.get_payload(decode=True))  # fmt: skip
                        filename, data = fields["file"]
                        purpose = fields.get("purpose", (None, b"batch"))[1].decode()
                        meta = server._put_file(data, filename or "upload.jsonl", purpose)
                        server._save()
                        self._send(200, meta)
                        return
                    body = json.loads(raw or b"{}")
                    if path == "/v1/batches":
                        fid = body.get("input_file_id")
                        if fid not in server.state["files"]:
                            self._send(400, {"error": {"message": f"no file {fid}", "type": "invalid_request_error"}})
                            return
                        for line in (server.dir / "files" / fid).read_bytes().decode().splitlines():
                            cid = json.loads(line)["custom_id"]
                            server.state["submitted"][cid] = server.state["submitted"].get(cid, 0) + 1
                        bid = server._new_id("batch")
                        batch = {"id": bid, "object": "batch", "endpoint": body.get("endpoint"), "errors": None,
                                 "input_file_id": fid, "completion_window": body.get("completion_window", "24h"),
                                 "status": "validating", "output_file_id": None, "error_file_id": None,
                                 "created_at": int(time.time()), "in_progress_at": None,
                                 "expires_at": int(time.time()) + 86400, "metadata": body.get("metadata") or {},
                                 "request_counts": {"total": 0, "completed": 0, "failed": 0}, "_ticks": 0}  # fmt: skip
                        server.state["batches"][bid] = batch
                        server._save()
                        self._send(200, server._public(batch))
                        return
                    parts = path.split("/")
                    if len(parts) == 5 and parts[2] == "batches" and parts[4] == "cancel":
                        batch = server.state["batches"].get(parts[3])
                        if batch is not None:
                            if batch["status"] in ("validating", "in_progress"):
                                batch["status"] = "cancelled"
                            server._save()
                            self._send(200, server._public(batch))
                            return
                self._not_found()

        return Handler


def main() -> None:
    import argparse
    import sys

    ap = argparse.ArgumentParser(description="Serve fake OpenAI files + batches APIs until stdin closes.")
    ap.add_argument("--dir", required=True)
    ap.add_argument("--ticks", type=int, default=1)
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    srv = BatchServer(args.dir, port=args.port, ticks=args.ticks).start()
    print(srv.url, flush=True)
    try:
        while sys.stdin.readline():
            pass
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
