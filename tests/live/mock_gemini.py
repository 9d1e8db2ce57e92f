#!/usr/bin/env python3
"""A scriptable mock of the Gemini API (``generativelanguage`` v1beta REST), to drive the real Gemini CLI.

Standard library only. Start it, point Gemini CLI at it with ``GOOGLE_GEMINI_BASE_URL=<base_url>``
and ``GEMINI_API_KEY=<anything>`` (see gemini_sandbox.py), queue the answers the model should
give, then read back what the CLI sent and what usage was served::

    mock = MockGemini().start()
    mock.reply("hello")                        # next main turn answers "hello"
    mock.slow("ok", delay=5)                   # waits 5 s before streaming
    gate = mock.hold("released.")              # waits until gate.set()
    mock.command("git commit --allow-empty -m x", then="done.")   # a run_shell_command call
    mock.error(429, times=3)                   # rate-limit answers (RESOURCE_EXHAUSTED)
    mock.quota_limit(retry_seconds=3600)       # 429 with a daily QuotaFailure: the CLI's usage limit
    ...
    mock.user_texts()          # the newest typed user text of each main turn
    mock.served_usage_total()  # usage summed over served main turns
    mock.stop()

Requests are ``POST /v1beta/models/<model>:<method>``. Only *main* turns (``streamGenerateContent``
with ``tools``: the conversation) consume the queue. Side calls are answered without it:
``generateContent`` (the CLI's router / next-speaker / loop checks, asked for JSON) gets an object
that fits the request's response schema, a tool-less stream gets a short text, ``countTokens`` a
count, ``GET …/models`` an empty list. See ``classify()``.

When the queue is empty a main turn answers ``ack: <newest user text, first 60 chars>`` (or
``ack: tool result`` after a function response).

Usage served is deterministic per served response number ``n`` (1, 2, …, side calls included):
prompt ``1000+n`` of which cached ``10*n``, candidates ``50+n``, thoughts ``10``; total their sum
(prompt + candidates + thoughts), as the Gemini API counts it. It is sent in the last chunk only.

Run it alone for manual poking: ``python3 mock_gemini.py [PORT]``.
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

__all__ = ["MockGemini", "Turn", "classify", "usage_for"]

SHELL_TOOL = "run_shell_command"  # Gemini CLI 0.61's shell tool: {"command": "...", "description": "..."}


@dataclass
class Turn:
    """One scripted answer to one main request.

    kind:
      ``text``   stream ``text`` (chunks of ``chunk_size`` chars, ``chunk_delay`` apart).
      ``call``   optional leading ``text``, then a ``functionCall`` named ``tool_name`` with
                 ``arguments``; the CLI runs it and calls back with a ``functionResponse``,
                 which takes the next queued turn.
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


def usage_for(n: int) -> dict[str, int]:
    prompt, cached, candidates, thoughts = 1000 + n, 10 * n, 50 + n, 10
    return {"promptTokenCount": prompt, "cachedContentTokenCount": cached, "candidatesTokenCount": candidates,
            "thoughtsTokenCount": thoughts, "totalTokenCount": prompt + candidates + thoughts}


def method_of(path: str) -> str:
    """``streamGenerateContent`` from ``/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse``."""
    tail = path.split("?")[0].rsplit("/", 1)[-1]
    return tail.rsplit(":", 1)[-1] if ":" in tail else ""


def model_of(path: str) -> str:
    tail = path.split("?")[0].rsplit("/", 1)[-1]
    return tail.split(":", 1)[0]


def classify(path: str, method: str, body: Any) -> str:
    """``main`` for a turn of the conversation (a stream with tools), ``side`` for other
    generate calls, ``count`` for countTokens, ``other`` for the rest."""
    rpc = method_of(path)
    if method != "POST" or rpc not in ("streamGenerateContent", "generateContent", "countTokens"):
        return "other"
    if rpc == "countTokens":
        return "count"
    if rpc == "streamGenerateContent" and isinstance(body, dict) and body.get("tools"):
        return "main"
    return "side"


def contents(body: dict[str, Any] | None) -> list[dict[str, Any]]:
    items = (body or {}).get("contents")
    return [c for c in items if isinstance(c, dict)] if isinstance(items, list) else []


def parts(content: dict[str, Any]) -> list[dict[str, Any]]:
    found = content.get("parts")
    return [p for p in found if isinstance(p, dict)] if isinstance(found, list) else []


def newest_user_text(body: dict[str, Any] | None) -> str:
    """The newest user content's text that is what a human typed (not the CLI's context preamble,
    nor a function response)."""
    for content in reversed(contents(body)):
        if content.get("role", "user") != "user":
            continue
        texts = [p["text"] for p in parts(content) if isinstance(p.get("text"), str)]
        if any("functionResponse" in p for p in parts(content)):
            return ""
        for text in reversed(texts):
            if text.strip() and not text.lstrip().startswith("<"):
                return text
    return ""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    mock: "MockGemini"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.mock.verbose:
            sys.stderr.write("mock_gemini: " + (format % args) + "\n")

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
        for key, value in (headers or {}).items():
            self.send_header(key, value)
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
    """``alt=sse``: one ``data: <GenerateContentResponse>`` event per chunk."""

    def __init__(self, handler: _Handler):
        self.h = handler
        handler.send_response(200)
        handler.send_header("content-type", "text/event-stream")
        handler.send_header("cache-control", "no-cache")
        handler.send_header("transfer-encoding", "chunked")
        handler.end_headers()

    def event(self, data: dict[str, Any]) -> None:
        payload = f"data: {json.dumps(data)}\r\n\r\n".encode()
        self.h.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
        self.h.wfile.flush()

    def close(self) -> None:
        self.h.wfile.write(b"0\r\n\r\n")
        self.h.wfile.flush()


class MockGemini:
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

    def start(self) -> "MockGemini":
        server = _Server((self.host, self._want_port), _Handler)
        server.mock = self
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                         name="mock-gemini", daemon=True).start()
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
        """What GOOGLE_GEMINI_BASE_URL names: the SDK appends ``/v1beta/models/…`` itself."""
        return f"http://{self.host}:{self.port}"

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
        """A call of the CLI's shell tool (``run_shell_command`` {command, description})."""
        turn = Turn(kind="call", text=text, tool_name=SHELL_TOOL,
                    arguments={"command": command, "description": "mock command"})
        self.script(turn)
        if then is not None:
            self.reply(then)
        return turn

    def error(self, status: int = 429, *, times: int = 1, body: dict[str, Any] | None = None,
              headers: dict[str, str] | None = None, delay: float = 0.0) -> Turn:
        """The Google API error shape; by default a plain 429 RESOURCE_EXHAUSTED (no details):
        the CLI retries it, then gives up."""
        body = body or {"error": {"code": status, "status": "RESOURCE_EXHAUSTED",
                                  "message": "Resource has been exhausted (e.g. check quota). (mock)"}}
        turn = Turn(kind="error", status=status, body=body, headers=dict(headers or {}), repeat=times, delay=delay)
        self.script(turn)
        return turn

    def quota_limit(self, retry_seconds: int = 3600, *, times: int = 1) -> Turn:
        """A daily quota exhausted, as the API says it: 429 with a QuotaFailure whose quotaId names a
        per-day quota and a RetryInfo delay. The CLI reads it as a terminal quota error."""
        return self.error(429, times=times, body={"error": {
            "code": 429, "status": "RESOURCE_EXHAUSTED",
            "message": "You exceeded your current quota, please check your plan and billing details. (mock)",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
                    "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                    "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
                    "quotaDimensions": {"location": "global", "model": "gemini-2.5-pro"}, "quotaValue": "50"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{int(retry_seconds)}s"},
            ]}})

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

    def served_usage_total(self, kind: str | None = "main") -> dict[str, int]:
        """Sums over complete served responses: {prompt, cached, candidates, thoughts, total, responses}."""
        total = {"prompt": 0, "cached": 0, "candidates": 0, "thoughts": 0, "total": 0, "responses": 0}
        for s in self.served(kind):
            if not s["complete"]:
                continue
            u = s["usage"]
            total["prompt"] += u["promptTokenCount"]
            total["cached"] += u["cachedContentTokenCount"]
            total["candidates"] += u["candidatesTokenCount"]
            total["thoughts"] += u["thoughtsTokenCount"]
            total["total"] += u["totalTokenCount"]
            total["responses"] += 1
        return total

    def user_texts(self) -> list[str]:
        """The newest typed user text of each main request, consecutive repeats (retries, tool
        call-backs of the same turn) folded."""
        out: list[str] = []
        for r in self.requests("main"):
            text = newest_user_text(r["body"])
            if text and (not out or out[-1] != text):
                out.append(text)
        return out

    def function_responses(self) -> list[dict[str, Any]]:
        """Every distinct ``functionResponse`` part the CLI sent back, in order."""
        seen: dict[str, dict[str, Any]] = {}
        for r in self.requests("main"):
            for content in contents(r["body"]):
                for part in parts(content):
                    response = part.get("functionResponse")
                    if isinstance(response, dict):
                        seen.setdefault(json.dumps(response, sort_keys=True), response)
        return list(seen.values())

    def wait_for(self, predicate: Callable[["MockGemini"], bool], timeout: float = 30.0) -> bool:
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
                               if k.lower() in ("user-agent", "x-goog-api-key", "x-goog-api-client")}}
            self._requests.append(rec)
        if kind == "other":
            if h.path.split("?")[0].rstrip("/").endswith("/models"):
                h.send_json(200, {"models": []})
            else:
                h.send_json(404, {"error": {"code": 404, "status": "NOT_FOUND", "message": f"mock: no {h.path}"}})
            return
        if kind == "count":
            h.send_json(200, {"totalTokens": 1000})
            return
        if kind == "side":
            self._side(h, body, rec)
            return
        turn = self._take_turn() or Turn(kind="text", text=self._default_text(body))
        with self._lock:
            rec["answer"] = turn.kind
        self._wait(turn)
        if turn.kind == "error":
            with self._lock:
                rec["status"] = turn.status
            h.send_json(turn.status, turn.body, turn.headers)
            return
        served = self._serve_record("main", model_of(h.path), rec)
        sse = _SSE(h)
        size = max(1, turn.chunk_size)
        chunks = [turn.text[j:j + size] for j in range(0, len(turn.text), size)]
        for index, chunk in enumerate(chunks):
            if index and turn.chunk_delay:
                self._stopping.wait(turn.chunk_delay)
            sse.event(self._chunk([{"text": chunk}], served))
        if turn.kind == "call":
            sse.event(self._chunk([{"functionCall": {"name": turn.tool_name, "args": turn.arguments}}], served))
            with self._lock:
                served["call"] = {"name": turn.tool_name, "arguments": turn.arguments}
        sse.event(self._chunk([{"text": ""}] if chunks or turn.kind == "call" else [{"text": "(empty)"}],
                              served, final=True))
        sse.close()
        with self._lock:
            served["complete"] = True

    def _serve_record(self, kind: str, model: str, rec: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._n += 1
            n = self._n
            served = {"id": f"resp_mock_{n}", "kind": kind, "model": model, "seq": rec["seq"],
                      "usage": usage_for(n), "complete": False}
            self._served.append(served)
        return served

    @staticmethod
    def _chunk(chunk_parts: list[dict[str, Any]], served: dict[str, Any], final: bool = False) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": chunk_parts}, "index": 0}
        out: dict[str, Any] = {"candidates": [candidate], "modelVersion": served["model"],
                               "responseId": served["id"]}
        if final:
            candidate["finishReason"] = "STOP"
            out["usageMetadata"] = served["usage"]
        return out

    def _side(self, h: _Handler, body: Any, rec: dict[str, Any]) -> None:
        config = (body or {}).get("generationConfig") or {}
        schema = config.get("responseJsonSchema") or config.get("responseSchema")
        text = json.dumps(_fit_schema(schema)) if isinstance(schema, dict) else "Mock session"
        served = self._serve_record("side", model_of(h.path), rec)
        with self._lock:
            rec["answer"] = "side"
        response = self._chunk([{"text": text}], served, final=True)
        if method_of(h.path) == "generateContent":
            h.send_json(200, response)
        else:
            sse = _SSE(h)
            sse.event(response)
            sse.close()
        with self._lock:
            served["complete"] = True

    @staticmethod
    def _default_text(body: Any) -> str:
        items = contents(body)
        if items and any("functionResponse" in p for p in parts(items[-1])):
            return "ack: tool result"
        return "ack: " + newest_user_text(body)[:60]


def _fit_schema(schema: dict[str, Any]) -> Any:
    """A small value matching a JSON schema (or the API's OpenAPI-style ``responseSchema``)."""
    if schema.get("enum"):
        return schema["enum"][0]
    typ = schema.get("type")
    if isinstance(typ, list):
        typ = next((t for t in typ if t != "null"), "null")
    typ = typ.lower() if isinstance(typ, str) else typ
    if typ == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {k: _fit_schema(props.get(k) or {}) for k in (schema.get("required") or list(props))}
    if typ == "array":
        return []
    if typ in ("number", "integer"):
        return 0
    if typ == "boolean":
        return False
    if typ == "null":
        return None
    return "mock"


def main(argv: list[str]) -> int:
    mock = MockGemini(port=int(argv[1]) if len(argv) > 1 else 0, verbose=True).start()
    print(f"mock_gemini listening on {mock.base_url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        mock.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
