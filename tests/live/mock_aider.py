#!/usr/bin/env python3
"""A scriptable mock of the OpenAI Chat Completions API, to drive the real aider CLI.

Standard library only. aider talks Chat Completions through litellm; point it here with
``OPENAI_API_BASE=http://127.0.0.1:<port>/v1``, ``OPENAI_API_KEY=<anything>`` and
``--model openai/<name>``. The preset passes ``--no-stream``, so answers are one JSON body
(a streamed request, ``"stream": true``, is answered as server-sent events all the same)::

    mock = MockAider().start()
    mock.reply("hello")                  # the next chat turn answers "hello"
    mock.slow("ok", delay=5)             # waits 5 s before answering
    gate = mock.hold("released.")        # waits until gate.set()
    mock.error(429, times=3)             # rate-limit answers (litellm.RateLimitError in aider)
    ...
    mock.user_texts()                    # the newest user message of each chat turn
    mock.served_usage_total()            # usage summed over the answers served
    mock.stop()

Every POST to ``/chat/completions`` is a chat turn and takes the next queued answer; with the
queue empty it answers ``ack: <newest user text, first 60 chars>``. ``GET /models`` answers an
empty list; anything else is a 404 and recorded (``foreign()``): point ``HTTPS_PROXY`` here and
a CONNECT to any internet host shows up there instead of leaving the machine.

Usage served is deterministic per served answer number ``n`` (1, 2, ...): prompt ``1000+n``,
completion ``50+n`` tokens.

Run it alone for manual poking: ``python3 mock_aider.py [PORT]``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["MockAider", "Answer", "usage_for"]


@dataclass
class Answer:
    """One scripted answer: ``text`` (status 200) or an HTTP error ``status`` with ``body``."""

    text: str = ""
    status: int = 200
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    gate: threading.Event | None = None
    repeat: int = 1


def usage_for(n: int) -> dict[str, int]:
    prompt, completion = 1000 + n, 50 + n
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


def newest_user_text(body: Any) -> str:
    for message in reversed((body or {}).get("messages") or []):
        if message.get("role") == "user":
            return message_text(message)
    return ""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    mock: "MockAider"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.mock.verbose:
            sys.stderr.write("mock_aider: " + (format % args) + "\n")

    def read_body(self) -> Any:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None

    def send_bytes(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self.send_bytes(status, json.dumps(obj).encode(), "application/json", headers)

    def handle_any(self) -> None:
        body = self.read_body()
        try:
            self.server.mock.dispatch(self, body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_POST = do_GET = do_PUT = do_DELETE = do_CONNECT = handle_any


class MockAider:
    """The mock server. Thread-safe; every public method may be called any time."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, verbose: bool = False):
        self.host, self.want_port, self.verbose = host, port, verbose
        self.lock = threading.Lock()
        self.queue: list[Answer] = []
        self.requests: list[dict[str, Any]] = []
        self.served: list[dict[str, Any]] = []
        self.stopping = threading.Event()
        self.server: _Server | None = None

    # -- lifecycle --

    def start(self) -> "MockAider":
        server = _Server((self.host, self.want_port), _Handler)
        server.mock = self
        self.server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                         name="mock-aider", daemon=True).start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        with self.lock:
            gates = [answer.gate for answer in self.queue if answer.gate is not None]
        for gate in gates:
            gate.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def port(self) -> int:
        assert self.server is not None, "start() first"
        return self.server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    # -- scripting --

    def script(self, *answers: Answer | str) -> None:
        with self.lock:
            self.queue.extend(a if isinstance(a, Answer) else Answer(text=a) for a in answers)

    def reply(self, text: str, **kw: Any) -> Answer:
        answer = Answer(text=text, **kw)
        self.script(answer)
        return answer

    def slow(self, text: str, delay: float = 5.0) -> Answer:
        return self.reply(text, delay=delay)

    def hold(self, text: str = "released.") -> threading.Event:
        gate = threading.Event()
        self.reply(text, gate=gate)
        return gate

    def error(self, status: int = 429, *, times: int = 1, delay: float = 0.0, message: str = "",
              client_retries: bool = False) -> Answer:
        """``times`` error answers in a row, shaped like OpenAI's.

        The openai client under litellm retries a 429 twice by itself (about 2 s) before aider sees it;
        ``x-should-retry: false`` (unless ``client_retries``) turns that off, so each of aider's own
        retries ("Retrying in 0.2 seconds...") is one request."""
        kind = {429: "rate_limit_exceeded"}.get(status, "server_error")
        text = message or {429: "Rate limit reached for requests (mock)"}.get(status, f"mock error {status}")
        headers = {} if client_retries else {"x-should-retry": "false"}
        answer = Answer(status=status, delay=delay, repeat=times, headers=headers,
                        body={"error": {"message": text, "type": "requests", "param": None, "code": kind}})
        self.script(answer)
        return answer

    def clear(self) -> None:
        with self.lock:
            gates = [answer.gate for answer in self.queue if answer.gate is not None]
            self.queue.clear()
        for gate in gates:
            gate.set()

    def pending(self) -> int:
        with self.lock:
            return sum(answer.repeat for answer in self.queue)

    # -- reading back --

    def chat_requests(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(r) for r in self.requests if r["chat"]]

    def user_texts(self) -> list[str]:
        return [newest_user_text(r["body"]) for r in self.chat_requests()]

    def foreign(self) -> list[dict[str, Any]]:
        """Requests that were neither a chat turn nor ``/models`` (a proxied CONNECT, a stray path)."""
        with self.lock:
            return [dict(r) for r in self.requests if not r["chat"] and not r["path"].split("?")[0].endswith("/models")]

    def statuses(self) -> list[int]:
        return [r.get("status", 0) for r in self.chat_requests()]

    def served_usage_total(self) -> dict[str, int]:
        with self.lock:
            served = list(self.served)
        return {"prompt": sum(s["usage"]["prompt_tokens"] for s in served),
                "completion": sum(s["usage"]["completion_tokens"] for s in served), "answers": len(served)}

    def served_usages(self) -> list[dict[str, int]]:
        with self.lock:
            return [dict(s["usage"]) for s in self.served]

    # -- serving --

    def take(self) -> Answer | None:
        with self.lock:
            if not self.queue:
                return None
            head = self.queue[0]
            if head.repeat > 1:
                head.repeat -= 1
                return dataclasses.replace(head, repeat=1)
            return self.queue.pop(0)

    def wait(self, answer: Answer) -> None:
        if answer.gate is not None:
            while not answer.gate.is_set() and not self.stopping.is_set():
                answer.gate.wait(0.1)
        if answer.delay > 0:
            self.stopping.wait(answer.delay)

    def dispatch(self, h: _Handler, body: Any) -> None:
        path = h.path.split("?")[0]
        chat = h.command == "POST" and path.endswith("/chat/completions")
        record = {"seq": len(self.requests) + 1, "method": h.command, "path": h.path, "chat": chat, "body": body,
                  "time": time.time()}
        with self.lock:
            self.requests.append(record)
        if not chat:
            if path.endswith("/models"):
                h.send_json(200, {"object": "list", "data": []})
            else:
                h.send_json(404, {"error": {"message": f"mock: no {h.path}", "type": "not_found"}})
            return
        answer = self.take() or Answer(text="ack: " + newest_user_text(body)[:60])
        self.wait(answer)
        if answer.status != 200:
            with self.lock:
                record["status"] = answer.status
            h.send_json(answer.status, answer.body, answer.headers)
            return
        with self.lock:
            n = len(self.served) + 1
            usage = usage_for(n)
            self.served.append({"n": n, "seq": record["seq"], "usage": usage})
            record["status"] = 200
        model = (body or {}).get("model") or "mock"
        reply_id, created = f"chatcmpl-mock-{n}", int(time.time())
        if not (body or {}).get("stream"):
            h.send_json(200, {"id": reply_id, "object": "chat.completion", "created": created, "model": model,
                              "choices": [{"index": 0, "finish_reason": "stop",
                                           "message": {"role": "assistant", "content": answer.text}}],
                              "usage": usage})
            return
        chunks = [{"index": 0, "delta": {"role": "assistant", "content": answer.text}, "finish_reason": None},
                  {"index": 0, "delta": {}, "finish_reason": "stop"}]
        events = [{"id": reply_id, "object": "chat.completion.chunk", "created": created, "model": model,
                   "choices": [choice]} for choice in chunks]
        events[-1]["usage"] = usage
        data = "".join(f"data: {json.dumps(event)}\n\n" for event in events) + "data: [DONE]\n\n"
        h.send_bytes(200, data.encode(), "text/event-stream")


def main(argv: list[str]) -> int:
    mock = MockAider(port=int(argv[1]) if len(argv) > 1 else 0, verbose=True).start()
    print(f"mock_aider on {mock.base_url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        mock.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
