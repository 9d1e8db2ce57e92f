#!/usr/bin/env python3
"""A scriptable mock of the OpenAI Responses API, to drive the real Codex CLI.

Standard library only. Start it, point Codex at it with a custom model provider
in ``CODEX_HOME/config.toml`` (``base_url = "http://127.0.0.1:<port>/v1"``,
``wire_api = "responses"``; see codex_sandbox.py), queue the answers the model
should give, then read back what Codex sent and what usage was served::

    mock = MockOpenAI().start()
    mock.reply("hello")                        # next main turn answers "hello"
    mock.slow("ok", delay=5)                   # waits 5 s before streaming
    gate = mock.hold("released.")              # waits until gate.set()
    mock.command("git commit --allow-empty -m x", then="done.")   # a shell function call
    mock.error(429, times=3)                   # rate-limit answers
    mock.usage_limit(resets_at=epoch)          # 429 usage_limit_reached (ChatGPT plan limit)
    ...
    mock.user_texts()          # what each main turn's newest user message said
    mock.served_usage_total()  # usage summed over served main turns
    mock.stop()

Only *main* turns (requests that carry ``tools``) consume the queue. Codex 0.171
also makes side calls: a streamed title request with a ``text.format`` JSON
schema and no tools, answered with an object that fits the schema; ``GET
/v1/models`` is answered with an empty list. See ``classify()``.

When the queue is empty a main turn answers ``ack: <newest user text, first 60
chars>`` (or ``ack: tool result`` after a function call).

Usage served is deterministic per served response number ``n`` (1, 2, ...,
side calls included): input ``1000+n`` of which cached ``200*n``, output
``50+n`` of which reasoning ``10``. Totals as the Responses API counts them:
input includes cached, output includes reasoning.

Run it alone for manual poking: ``python3 mock_openai.py [PORT]``.
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

__all__ = ["MockOpenAI", "Turn", "classify", "usage_for"]


@dataclass
class Turn:
    """One scripted answer to one main request.

    kind:
      ``text``      stream ``text`` (chunks of ``chunk_size`` chars, ``chunk_delay`` apart).
      ``call``      optional leading ``text``, then a ``function_call`` item named
                    ``tool_name`` with ``arguments`` (a dict, sent as JSON text).
                    Codex runs it and calls back with a ``function_call_output``,
                    which takes the next queued turn.
      ``error``     HTTP ``status`` with ``body`` (JSON) and ``headers``.
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
    """The n-th response's usage: distinct figures, the cached part always within the input (as the API's)."""
    cached, output, reasoning = 90 * (n % 11), 50 + n, 10
    return {"input_tokens": 1000 + n, "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": output, "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": 1000 + n + output}


def classify(path: str, method: str, body: Any) -> str:
    """``main`` for a turn of the conversation (POST …/responses with tools),
    ``side`` for a tool-less responses call (the title request), ``other`` for the rest."""
    if method != "POST" or not path.split("?")[0].endswith("/responses"):
        return "other"
    if isinstance(body, dict) and body.get("tools"):
        return "main"
    return "side"


def input_items(body: dict[str, Any] | None) -> list[dict[str, Any]]:
    items = (body or {}).get("input")
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def user_text(item: dict[str, Any]) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(c.get("text", "") for c in content if isinstance(c, dict)
                       and c.get("type") in ("input_text", "text"))
    return ""


def newest_user_text(body: dict[str, Any] | None) -> str:
    """The newest user message that is what a human typed (not Codex's context preamble)."""
    for item in reversed(input_items(body)):
        if item.get("type", "message") == "message" and item.get("role") == "user":
            text = user_text(item)
            if text and not text.lstrip().startswith("<"):
                return text
    return ""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    mock: "MockOpenAI"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.mock.verbose:
            sys.stderr.write("mock_openai: " + (format % args) + "\n")

    def _read_body(self) -> Any:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.headers.get("content-encoding", "").lower() == "zstd":
            return None  # not expected: Codex sends plain JSON to a custom provider
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

    def event(self, data: dict[str, Any]) -> None:
        payload = f"event: {data['type']}\ndata: {json.dumps(data)}\n\n".encode()
        self.h.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
        self.h.wfile.flush()

    def close(self) -> None:
        self.h.wfile.write(b"0\r\n\r\n")
        self.h.wfile.flush()


class MockOpenAI:
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

    def start(self) -> "MockOpenAI":
        server = _Server((self.host, self._want_port), _Handler)
        server.mock = self
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                         name="mock-openai", daemon=True).start()
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
        """A call of Codex's shell tool; the name and argument shape are taken from the
        request's ``tools`` when it comes (``exec_command`` {cmd} or ``shell`` {command: [argv]})."""
        turn = Turn(kind="call", text=text, tool_name="", arguments={"__command__": command})
        self.script(turn)
        if then is not None:
            self.reply(then)
        return turn

    def error(self, status: int = 429, *, times: int = 1, body: dict[str, Any] | None = None,
              headers: dict[str, str] | None = None, delay: float = 0.0) -> Turn:
        body = body or {"error": {"type": "rate_limit_exceeded", "message": "Rate limit reached (mock)"}}
        turn = Turn(kind="error", status=status, body=body, headers=dict(headers or {}), repeat=times,
                    delay=delay)
        self.script(turn)
        return turn

    def usage_limit(self, resets_at: int, *, plan_type: str = "plus", times: int = 1) -> Turn:
        """The ChatGPT-plan usage limit as the backend sends it: 429 ``usage_limit_reached``."""
        return self.error(429, times=times, body={"error": {
            "type": "usage_limit_reached", "message": "The usage limit has been reached",
            "plan_type": plan_type, "resets_at": int(resets_at)}})

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
        """Sums over complete served responses: {input, cached, output, reasoning, total, responses}."""
        total = {"input": 0, "cached": 0, "output": 0, "reasoning": 0, "total": 0, "responses": 0}
        for s in self.served(kind):
            if not s["complete"]:
                continue
            u = s["usage"]
            total["input"] += u["input_tokens"]
            total["cached"] += u["input_tokens_details"]["cached_tokens"]
            total["output"] += u["output_tokens"]
            total["reasoning"] += u["output_tokens_details"]["reasoning_tokens"]
            total["total"] += u["total_tokens"]
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

    def function_outputs(self) -> list[dict[str, Any]]:
        """Every distinct ``function_call_output`` item Codex sent back, in order."""
        seen: dict[str, dict[str, Any]] = {}
        for r in self.requests("main"):
            for item in input_items(r["body"]):
                if item.get("type") == "function_call_output":
                    seen.setdefault(str(item.get("call_id")), item)
        return list(seen.values())

    def wait_for(self, predicate: Callable[["MockOpenAI"], bool], timeout: float = 30.0) -> bool:
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
                               if k.lower() in ("user-agent", "originator", "session_id", "session-id",
                                                "x-client-request-id", "conversation_id", "authorization")}}
            self._requests.append(rec)
        if kind == "other":
            if h.path.split("?")[0].endswith("/models"):
                h.send_json(200, {"object": "list", "data": [], "models": []})
            else:
                h.send_json(404, {"error": {"type": "not_found", "message": f"mock: no {h.path}"}})
            return
        if kind == "side":
            turn = Turn(kind="text", text=self._side_text(body))
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
        model = (body or {}).get("model") or "gpt-mock"
        resp_id = f"resp_mock_{n}"
        usage = usage_for(n)
        served = {"id": resp_id, "kind": kind, "model": model, "seq": rec["seq"], "usage": usage,
                  "complete": False}
        with self._lock:
            self._served.append(served)
        sse = _SSE(h)
        base = {"id": resp_id, "object": "response", "created_at": int(time.time()), "model": model,
                "status": "in_progress", "output": []}
        sse.event({"type": "response.created", "response": base})
        items: list[dict[str, Any]] = []
        index = 0
        if turn.text:
            item_id = f"msg_mock_{n}"
            sse.event({"type": "response.output_item.added", "output_index": index,
                       "item": {"type": "message", "id": item_id, "role": "assistant", "status": "in_progress",
                                "content": []}})
            size = max(1, turn.chunk_size)
            for j in range(0, len(turn.text), size):
                if j and turn.chunk_delay:
                    self._stopping.wait(turn.chunk_delay)
                sse.event({"type": "response.output_text.delta", "item_id": item_id, "output_index": index,
                           "content_index": 0, "delta": turn.text[j:j + size]})
            item = {"type": "message", "id": item_id, "role": "assistant", "status": "completed",
                    "content": [{"type": "output_text", "text": turn.text, "annotations": []}]}
            sse.event({"type": "response.output_item.done", "output_index": index, "item": item})
            items.append(item)
            index += 1
        if turn.kind == "call":
            name, arguments = self._shell_call(body, turn)
            item = {"type": "function_call", "id": f"fc_mock_{n}", "call_id": f"call_mock_{n}", "name": name,
                    "arguments": json.dumps(arguments), "status": "completed"}
            sse.event({"type": "response.output_item.added", "output_index": index,
                       "item": {**item, "arguments": "", "status": "in_progress"}})
            sse.event({"type": "response.output_item.done", "output_index": index, "item": item})
            items.append(item)
            with self._lock:
                served["call"] = {"name": name, "arguments": arguments, "call_id": item["call_id"]}
        sse.event({"type": "response.completed",
                   "response": {**base, "status": "completed", "output": items, "usage": usage}})
        sse.close()
        with self._lock:
            served["complete"] = True

    @staticmethod
    def _shell_call(body: Any, turn: Turn) -> tuple[str, dict[str, Any]]:
        """The function name and arguments for a shell command, fitted to the tools offered."""
        command = turn.arguments.get("__command__")
        if command is None:
            return turn.tool_name, turn.arguments
        names = {t.get("name") for t in (body or {}).get("tools") or [] if isinstance(t, dict)}
        if "exec_command" in names:
            return "exec_command", {"cmd": command}
        if "shell_command" in names:
            return "shell_command", {"command": command}
        return "shell", {"command": ["bash", "-lc", command]}

    @staticmethod
    def _default_text(body: Any) -> str:
        items = input_items(body)
        if items and items[-1].get("type") == "function_call_output":
            return "ack: tool result"
        return "ack: " + newest_user_text(body)[:60]

    @staticmethod
    def _side_text(body: Any) -> str:
        fmt = ((body or {}).get("text") or {}).get("format") or {}
        if fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
            return json.dumps(_fit_schema(fmt["schema"]))
        return "Mock session"


def _fit_schema(schema: dict[str, Any]) -> Any:
    """A small value matching a JSON schema."""
    if schema.get("enum"):
        return schema["enum"][0]
    typ = schema.get("type")
    if isinstance(typ, list):
        typ = next((t for t in typ if t != "null"), "null")
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
    return "Mock session"


def main(argv: list[str]) -> int:
    mock = MockOpenAI(port=int(argv[1]) if len(argv) > 1 else 0, verbose=True).start()
    print(f"mock_openai listening on {mock.base_url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        mock.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
