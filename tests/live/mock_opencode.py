#!/usr/bin/env python3
"""A scriptable mock of the OpenAI Chat Completions API, to drive the real opencode CLI.

Standard library only. opencode reaches it through a custom provider (npm package
``@ai-sdk/openai-compatible``, bundled in the opencode binary) whose ``options.baseURL`` is
``http://127.0.0.1:<port>/v1``; see ``opencode_config()``. Queue the answers the model should
give, then read back what opencode sent and what usage was served::

    mock = MockOpencode().start()
    mock.reply("hello")                        # next main turn answers "hello"
    mock.slow("ok", delay=5)                   # waits 5 s before streaming
    gate = mock.hold("released.")              # waits until gate.set()
    mock.command("git commit --allow-empty -m x", then="done.")   # a call of opencode's bash tool
    mock.error(429, times=6, headers={"retry-after-ms": "500"})   # rate-limit answers, retried fast
    mock.usage_limit(retry_after=7500)         # opencode Go's usage limit (GoUsageLimitError)
    ...
    mock.user_texts()          # what each main turn's newest user message said
    mock.served_usage_total()  # usage summed over served main turns
    mock.stop()

Only *main* turns (``POST …/chat/completions`` with ``tools``) consume the queue. Side calls
(opencode's session title request has no tools) are answered with a short title. When the
queue is empty a main turn answers ``ack: <newest user text, first 60 chars>`` (or ``ack: tool
result`` after a tool call).

opencode retries a 429 (and 5xx) five times by itself, waiting what ``retry-after-ms`` or
``retry-after`` says (else 2 s, 4 s, 8 s …), then shows the answer's ``error.message``.

Usage served is deterministic per served response number ``n`` (1, 2, …, side calls
included): prompt ``1000+n`` of which cached ``100+10*n``, completion ``50+n``.

Run it alone for manual poking: ``python3 mock_opencode.py [PORT]``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

__all__ = ["MockOpencode", "Turn", "classify", "usage_for", "opencode_config", "MODEL_ID", "PROVIDER_ID"]

PROVIDER_ID = "mock"
MODEL_ID = "mock-model"


def opencode_config(base_url: str, *, permission_allow: bool = False) -> dict[str, Any]:
    """An ``opencode.json`` whose only provider is this mock (its model the default one)."""
    config: dict[str, Any] = {
        "$schema": "https://opencode.ai/config.json",
        "model": f"{PROVIDER_ID}/{MODEL_ID}",
        "small_model": f"{PROVIDER_ID}/{MODEL_ID}",
        "autoupdate": False,
        "share": "disabled",
        "enabled_providers": [PROVIDER_ID],
        "provider": {PROVIDER_ID: {
            "npm": "@ai-sdk/openai-compatible",
            "name": "Mock",
            "options": {"baseURL": base_url, "apiKey": "sk-mock-opencode"},
            "models": {MODEL_ID: {"name": "Mock Model", "limit": {"context": 200000, "output": 8192}}},
        }},
    }
    if permission_allow:
        config["permission"] = "allow"
    return config


@dataclass
class Turn:
    """One scripted answer to one main request.

    kind:
      ``text``   stream ``text`` (chunks of ``chunk_size`` chars, ``chunk_delay`` apart).
      ``call``   optional leading ``text``, then a tool call named ``tool_name`` with
                 ``arguments`` (a dict, sent as JSON text). opencode runs it and calls back
                 with a ``tool`` message, which takes the next queued turn.
      ``error``  HTTP ``status`` with ``body`` (JSON) and ``headers``.
    """

    kind: str = "text"
    text: str = ""
    delay: float = 0.0
    gate: threading.Event | None = None
    chunk_size: int = 20
    chunk_delay: float = 0.0
    tool_name: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)
    status: int = 200
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    repeat: int = 1


def usage_for(n: int) -> dict[str, Any]:
    prompt, cached, completion = 1000 + n, 100 + 10 * n, 50 + n
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached}}


def classify(path: str, method: str, body: Any) -> str:
    """``main`` for a turn of the conversation (chat/completions with tools), ``side`` for a
    tool-less completion (the title request), ``other`` for the rest."""
    if method != "POST" or not path.split("?")[0].endswith("/chat/completions"):
        return "other"
    if isinstance(body, dict) and body.get("tools"):
        return "main"
    return "side"


def message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(c.get("text", "") for c in content if isinstance(c, dict) and c.get("type") == "text")
    return ""


def messages(body: Any) -> list[dict[str, Any]]:
    items = (body or {}).get("messages") if isinstance(body, dict) else None
    return [m for m in items if isinstance(m, dict)] if isinstance(items, list) else []


def newest_user_text(body: Any) -> str:
    for message in reversed(messages(body)):
        if message.get("role") == "user":
            text = message_text(message)
            if text:
                return text
    return ""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    mock: "MockOpencode"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.mock.verbose:
            sys.stderr.write("mock_opencode: " + (format % args) + "\n")

    def _read_body(self) -> Any:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None

    def send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _handle(self) -> None:
        body = self._read_body()
        try:
            self.server.mock._dispatch(self, body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_POST = do_GET = do_PUT = do_DELETE = _handle


class _SSE:
    def __init__(self, handler: _Handler):
        self.h = handler
        handler.send_response(200)
        handler.send_header("content-type", "text/event-stream")
        handler.send_header("cache-control", "no-cache")
        handler.send_header("transfer-encoding", "chunked")
        handler.end_headers()

    def _write(self, payload: bytes) -> None:
        self.h.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
        self.h.wfile.flush()

    def data(self, obj: Any) -> None:
        self._write(f"data: {json.dumps(obj)}\n\n".encode())

    def done(self) -> None:
        self._write(b"data: [DONE]\n\n")
        self.h.wfile.write(b"0\r\n\r\n")
        self.h.wfile.flush()


class MockOpencode:
    """The mock server. Thread-safe; every public method may be called any time."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, verbose: bool = False):
        self.host = host
        self._want_port = port
        self.verbose = verbose
        self._lock = threading.Lock()
        self._queue: list[Turn] = []
        self._requests: list[dict[str, Any]] = []
        self._served: list[dict[str, Any]] = []
        self._n = 0
        self._stopping = threading.Event()
        self._server: _Server | None = None

    # -- lifecycle --

    def start(self) -> "MockOpencode":
        server = _Server((self.host, self._want_port), _Handler)
        server.mock = self
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                         name="mock-opencode", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            gates = [t.gate for t in self._queue if t.gate is not None]
        for gate in gates:
            gate.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    # -- scripting --

    def script(self, *turns: Turn | str) -> None:
        with self._lock:
            self._queue.extend(t if isinstance(t, Turn) else Turn(text=t) for t in turns)

    def reply(self, text: str, **kw: Any) -> Turn:
        turn = Turn(kind="text", text=text, **kw)
        self.script(turn)
        return turn

    def slow(self, text: str, delay: float = 5.0, **kw: Any) -> Turn:
        return self.reply(text, delay=delay, **kw)

    def hold(self, text: str = "released.", **kw: Any) -> threading.Event:
        gate = threading.Event()
        self.reply(text, gate=gate, **kw)
        return gate

    def command(self, command: str, *, then: str | None = "done.", text: str = "") -> Turn:
        """A call of opencode's ``bash`` tool ({command, description})."""
        turn = Turn(kind="call", text=text, tool_name="bash",
                    arguments={"command": command, "description": "Runs the command"})
        self.script(turn)
        if then is not None:
            self.reply(then)
        return turn

    def error(self, status: int = 429, *, times: int = 1, body: dict[str, Any] | None = None,
              headers: dict[str, str] | None = None, delay: float = 0.0) -> Turn:
        if body is None:  # the OpenAI wording
            body = {"error": {"type": "requests", "code": "rate_limit_exceeded",
                              "message": "Rate limit reached for mock-model in organization org-mock on requests "
                                         "per min (RPM): Limit 3, Used 3, Requested 1."}}
        turn = Turn(kind="error", status=status, body=body, headers=dict(headers or {}), repeat=times,
                    delay=delay)
        self.script(turn)
        return turn

    def usage_limit(self, retry_after: int, *, limit_name: str = "5-hour", times: int = 6) -> Turn:
        """opencode Go's usage limit as its gateway answers: 429 with ``GoUsageLimitError`` in the body and
        ``retry-after`` seconds; opencode shows "5-hour usage limit reached. It will reset in …" and waits
        that long before its next attempt."""
        return self.error(429, times=times, headers={"retry-after": str(int(retry_after))}, body={
            "type": "error", "error": {"type": "GoUsageLimitError", "message": "GoUsageLimitError"},
            "metadata": {"workspace": "wrk_mock", "limitName": limit_name}})

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    def pending(self) -> int:
        with self._lock:
            return sum(t.repeat for t in self._queue)

    # -- reading back --

    def requests(self, kind: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._requests if kind is None or r["kind"] == kind]

    def served(self, kind: str | None = "main") -> list[dict[str, Any]]:
        with self._lock:
            return [dict(s) for s in self._served if kind is None or s["kind"] == kind]

    def served_usage_total(self, kind: str | None = None) -> dict[str, int]:
        """Sums over complete served responses: {input, cached, output, total, responses}."""
        total = {"input": 0, "cached": 0, "output": 0, "total": 0, "responses": 0}
        for s in self.served(kind):
            if not s["complete"]:
                continue
            u = s["usage"]
            total["input"] += u["prompt_tokens"]
            total["cached"] += u["prompt_tokens_details"]["cached_tokens"]
            total["output"] += u["completion_tokens"]
            total["total"] += u["total_tokens"]
            total["responses"] += 1
        return total

    def user_texts(self) -> list[str]:
        """The newest user text of each main request, consecutive repeats (retries, tool
        call-backs of the same turn) folded."""
        out: list[str] = []
        for r in self.requests("main"):
            text = newest_user_text(r["body"])
            if text and (not out or out[-1] != text):
                out.append(text)
        return out

    def tool_results(self) -> list[dict[str, Any]]:
        """Every distinct ``tool`` message opencode sent back, in order."""
        seen: dict[str, dict[str, Any]] = {}
        for r in self.requests("main"):
            for message in messages(r["body"]):
                if message.get("role") == "tool":
                    seen.setdefault(str(message.get("tool_call_id")), message)
        return list(seen.values())

    def wait_for(self, predicate: Callable[["MockOpencode"], bool], timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.1)
        return predicate(self)

    # -- serving --

    def _take_turn(self) -> Turn | None:
        with self._lock:
            if not self._queue:
                return None
            head = self._queue[0]
            if head.repeat > 1:
                head.repeat -= 1
                return dataclasses.replace(head, repeat=1)
            return self._queue.pop(0)

    def _wait(self, turn: Turn) -> None:
        if turn.gate is not None:
            while not turn.gate.is_set() and not self._stopping.is_set():
                turn.gate.wait(0.1)
        if turn.delay > 0:
            self._stopping.wait(turn.delay)

    def _dispatch(self, h: _Handler, body: Any) -> None:
        kind = classify(h.path, h.command, body)
        with self._lock:
            rec = {"seq": len(self._requests) + 1, "method": h.command, "path": h.path, "kind": kind,
                   "body": body, "time": time.time(), "answer": None,
                   "headers": {k.lower(): v for k, v in h.headers.items()
                               if k.lower() in ("user-agent", "authorization", "x-session-affinity")}}
            self._requests.append(rec)
        if kind == "other":
            if h.path.split("?")[0].endswith("/models"):
                h.send_json(200, {"object": "list", "data": [{"id": MODEL_ID, "object": "model"}]})
            else:
                h.send_json(404, {"error": {"type": "not_found", "message": f"mock: no {h.path}"}})
            return
        if kind == "side":
            turn = Turn(kind="text", text="Mock session")
        else:
            turn = self._take_turn() or Turn(kind="text", text=self._default_text(body))
        with self._lock:
            rec["answer"] = turn.kind
        self._wait(turn)
        if turn.kind == "error":
            with self._lock:
                rec["status"] = turn.status
            h.send_json(turn.status, turn.body, turn.headers)
            return
        with self._lock:
            self._n += 1
            n = self._n
        model = (body or {}).get("model") or MODEL_ID
        chunk_id = f"chatcmpl-mock-{n}"
        usage = usage_for(n)
        served = {"id": chunk_id, "kind": kind, "model": model, "seq": rec["seq"], "usage": usage,
                  "complete": False}
        with self._lock:
            self._served.append(served)
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
            return {"id": chunk_id, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}

        sse = _SSE(h)
        sse.data(chunk({"role": "assistant", "content": ""}))
        size = max(1, turn.chunk_size)
        for j in range(0, len(turn.text), size):
            if j and turn.chunk_delay:
                self._stopping.wait(turn.chunk_delay)
            sse.data(chunk({"content": turn.text[j:j + size]}))
        finish = "stop"
        if turn.kind == "call":
            call_id = f"call_mock_{n}"
            arguments = json.dumps(turn.arguments)
            sse.data(chunk({"tool_calls": [{"index": 0, "id": call_id, "type": "function",
                                            "function": {"name": turn.tool_name, "arguments": ""}}]}))
            sse.data(chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments}}]}))
            finish = "tool_calls"
            with self._lock:
                served["call"] = {"name": turn.tool_name, "arguments": turn.arguments, "call_id": call_id}
        sse.data(chunk({}, finish))
        sse.data({"id": chunk_id, "object": "chat.completion.chunk", "created": created, "model": model,
                  "choices": [], "usage": usage})
        sse.done()
        with self._lock:
            served["complete"] = True

    @staticmethod
    def _default_text(body: Any) -> str:
        items = messages(body)
        if items and items[-1].get("role") == "tool":
            return "ack: tool result"
        return "ack: " + newest_user_text(body)[:60]


def main(argv: list[str]) -> int:
    mock = MockOpencode(port=int(argv[1]) if len(argv) > 1 else 0, verbose=True).start()
    print(f"mock_opencode listening on {mock.base_url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        mock.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
