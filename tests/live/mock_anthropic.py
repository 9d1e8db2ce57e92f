#!/usr/bin/env python3
"""A scriptable mock of the Anthropic Messages API, to drive the real Claude Code CLI.

Standard library only. Start it, point the CLI at it with
``ANTHROPIC_BASE_URL=http://127.0.0.1:<port>``, queue the answers the model
should give, then read back what the CLI sent and what usage was served::

    mock = MockAnthropic()
    mock.start()
    mock.reply("hello")                       # next main turn answers "hello"
    mock.slow("ok", delay=5)                  # waits 5 s before streaming
    mock.tool_use("git commit --allow-empty -m x", then="done.")
    mock.error(429, times=3, retry_after=0)   # three rate-limit answers
    ...
    mock.user_texts()          # what each main turn's last user message said
    mock.served_usage_total()  # usage summed over served main-turn messages
    mock.stop()

Only *main-conversation* turns consume the queue. Claude Code also makes side
calls: with ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC`` unset, 2.1.330 sends
``HEAD /api/hello`` at startup and a streamed session-title request (model
``claude-haiku-*``, ``"tools": []``, ``output_config.format`` a JSON schema
``{"title": string}``); older versions and other setups also make a
non-streaming ``max_tokens: 1`` quota probe. Side calls get a short harmless
answer (an object fitting the asked schema when there is one). See
``classify()`` for the exact rule. Sub-agents (the Agent tool) send tools, so
their turns count as main turns and take from the queue too.

When the queue is empty a main turn answers ``ack: <last user text, first 60
chars>``.

Usage served is deterministic and distinct per served message number ``n``
(1, 2, ... counting every message answered, side calls included):
input ``1000+n``, cache_creation ``300``, cache_read ``2000*n``, output ``50+n``.

Run it alone for manual poking: ``python3 mock_anthropic.py [PORT]``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import urlsplit

__all__ = ["MockAnthropic", "Turn", "classify", "usage_for", "text_turn", "last_user_message",
           "text_blocks", "typed_text", "tool_results"]

# Request headers worth keeping in the record (lower case).
RECORDED_HEADERS = (
    "user-agent", "x-app", "anthropic-version", "anthropic-beta", "content-type",
    "x-stainless-retry-count", "x-stainless-timeout", "x-stainless-lang",
    "x-stainless-package-version", "x-claude-code-session-id", "accept",
)

SYSTEM_REMINDER_OPEN = "<system-reminder>"


# ----------------------------------------------------------------------------
# Turns: what a main-conversation request is answered with
# ----------------------------------------------------------------------------

@dataclass
class Turn:
    """One scripted answer to one main-conversation request.

    kind:
      ``text``      stream ``text`` (split in chunks of ``chunk_size`` chars,
                    ``chunk_delay`` seconds apart), stop_reason ``end_turn``.
      ``tool_use``  optional leading ``text`` block, then a ``tool_use`` block
                    named ``tool_name`` with ``tool_input``; stop_reason
                    ``tool_use``. The CLI then runs the tool and calls back with
                    a ``tool_result``, which takes the next queued turn.
      ``error``     HTTP ``status`` with the API's JSON error body
                    (``error_type``, ``message``) and, if set, a
                    ``retry-after`` header. With ``in_stream`` (and a
                    streaming request) it is instead a 200 event stream
                    holding one ``error`` event, as the API does when it
                    overloads mid-answer.
    delay:   seconds to wait before answering at all (a slow model).
    gate:    a threading.Event; the answer waits until it is set (or the mock
             stops). Lets a test hold a turn "busy" for exactly as long as it
             wants.
    headers: extra response headers (e.g. anthropic-ratelimit-* ones).
    repeat:  how many consecutive main requests this turn answers (errors
             that the CLI retries need one per attempt).
    usage:   serve these usage figures instead of ``usage_for(n)`` (keys
             input_tokens, output_tokens, cache_creation_input_tokens,
             cache_read_input_tokens; missing ones come from ``usage_for``).
    """

    kind: str = "text"
    text: str = ""
    delay: float = 0.0
    chunk_delay: float = 0.0
    chunk_size: int = 8
    tool_name: str = "Bash"
    tool_input: dict[str, Any] = field(default_factory=dict)
    status: int = 200
    error_type: str = ""
    message: str = ""
    retry_after: float | None = None
    in_stream: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    gate: threading.Event | None = None
    repeat: int = 1
    usage: dict[str, int] | None = None


def text_turn(text: str, **kw: Any) -> Turn:
    return Turn(kind="text", text=text, **kw)


def usage_for(n: int) -> dict[str, int]:
    """The usage served with message number ``n`` (deterministic, distinct)."""
    return {
        "input_tokens": 1000 + n,
        "cache_creation_input_tokens": 300,
        "cache_read_input_tokens": 2000 * n,
        "output_tokens": 50 + n,
    }


# ----------------------------------------------------------------------------
# Reading requests
# ----------------------------------------------------------------------------

def _system_text(body: dict[str, Any]) -> str:
    system = body.get("system")
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return "\n".join(b.get("text", "") for b in system if isinstance(b, dict))
    return ""


def classify(path: str, body: dict[str, Any] | None) -> str:
    """``main``, ``side``, ``count_tokens`` or ``other``.

    Claude Code 2.1.330's main-conversation requests always stream, always
    send the full ``tools`` list (Agent, Bash, Edit, Read, ...; 13 of them)
    and ``max_tokens`` 128000. Its side calls -- title generation (streamed,
    ``"tools": []``), quota probes (non-streaming, ``max_tokens`` 1) and the
    like -- send no tools.
    """
    route = urlsplit(path).path.rstrip("/")
    if route.endswith("/messages/count_tokens"):
        return "count_tokens"
    if not route.endswith("/v1/messages") or not isinstance(body, dict):
        return "other"
    if not body.get("stream"):
        return "side"
    if not body.get("tools"):
        return "side"
    if (body.get("max_tokens") or 0) <= 1:
        return "side"
    return "main"


def last_user_message(body: dict[str, Any]) -> dict[str, Any] | None:
    for msg in reversed(body.get("messages") or []):
        if msg.get("role") == "user":
            return msg
    return None


def text_blocks(msg: dict[str, Any] | None) -> list[str]:
    """The text blocks of a message, in order (a string content is one block)."""
    if not msg:
        return []
    content = msg.get("content")
    if isinstance(content, str):
        return [content]
    out = []
    for block in content or []:
        if isinstance(block, dict) and block.get("type") == "text":
            out.append(block.get("text", ""))
    return out


def tool_results(msg: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not msg or not isinstance(msg.get("content"), list):
        return []
    return [b for b in msg["content"] if isinstance(b, dict) and b.get("type") == "tool_result"]


def typed_text(msg: dict[str, Any] | None) -> str:
    """The last text block that is not a pure ``<system-reminder>`` block."""
    blocks = [b for b in text_blocks(msg) if not b.lstrip().startswith(SYSTEM_REMINDER_OPEN)]
    if blocks:
        return blocks[-1]
    all_blocks = text_blocks(msg)
    return all_blocks[-1] if all_blocks else ""


# ----------------------------------------------------------------------------
# The server
# ----------------------------------------------------------------------------

class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    mock: "MockAnthropic"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.mock.verbose:
            sys.stderr.write("mock_anthropic: " + (format % args) + "\n")

    # -- plumbing ----------------------------------------------------------

    def _read_body(self) -> tuple[bytes, Any]:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return raw, json.loads(raw) if raw else None
        except ValueError:
            return raw, None

    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
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
        mock = self.server.mock
        raw, body = self._read_body()
        try:
            mock._dispatch(self, body)
        except (BrokenPipeError, ConnectionResetError):
            mock._note_disconnect()

    do_POST = _handle
    do_GET = _handle
    do_PUT = _handle
    do_DELETE = _handle
    do_PATCH = _handle

    def do_HEAD(self) -> None:
        self.server.mock._record(self, None, "other", 200)
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()


class _SSE:
    """Writes server-sent events with chunked transfer encoding."""

    def __init__(self, handler: _Handler, status: int, headers: dict[str, str]):
        self.h = handler
        handler.send_response(status)
        handler.send_header("content-type", "text/event-stream")
        handler.send_header("cache-control", "no-cache")
        handler.send_header("transfer-encoding", "chunked")
        for k, v in headers.items():
            handler.send_header(k, v)
        handler.end_headers()

    def event(self, name: str, data: dict[str, Any]) -> None:
        payload = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
        self.h.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
        self.h.wfile.flush()

    def close(self) -> None:
        self.h.wfile.write(b"0\r\n\r\n")
        self.h.wfile.flush()


class MockAnthropic:
    """The mock server. Thread-safe; every public method may be called any time."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, verbose: bool = False,
                 default: Callable[[dict[str, Any]], str] | None = None, tag: str = "mock"):
        """``tag`` names the served ids (``msg_<tag>_<n>``, ``req_<tag>_<n>``, ``toolu_<tag>_<n>``): two
        mocks behind one transcript reader need distinct tags, as real message ids are unique."""
        self.host = host
        self.tag = tag
        self._want_port = port
        self.verbose = verbose
        self._default = default
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._queue: list[Turn] = []
        self._requests: list[dict[str, Any]] = []
        self._served: list[dict[str, Any]] = []
        self._n = 0
        self._disconnects = 0
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> "MockAnthropic":
        server = _Server((self.host, self._want_port), _Handler)
        server.mock = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="mock-anthropic", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            gates = [t.gate for t in self._queue if t.gate is not None]
            self._cond.notify_all()
        for g in gates:
            g.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "MockAnthropic":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- scripting ---------------------------------------------------------

    def script(self, *turns: Turn | str) -> None:
        """Queue turns (a plain string is a text turn)."""
        with self._lock:
            for t in turns:
                self._queue.append(text_turn(t) if isinstance(t, str) else t)

    def reply(self, text: str, **kw: Any) -> Turn:
        """Queue a plain text answer. ``kw``: any Turn field (delay, chunk_delay, gate...)."""
        turn = Turn(kind="text", text=text, **kw)
        self.script(turn)
        return turn

    def slow(self, text: str, delay: float = 5.0, chunk_delay: float = 0.0, **kw: Any) -> Turn:
        """Queue a text answer that waits ``delay`` s, then streams ``chunk_delay`` s apart."""
        return self.reply(text, delay=delay, chunk_delay=chunk_delay, **kw)

    def hold(self, text: str = "released.", **kw: Any) -> threading.Event:
        """Queue a text answer that waits until the returned Event is set."""
        gate = threading.Event()
        self.reply(text, gate=gate, **kw)
        return gate

    def tool_use(self, command: str, description: str = "Run a command", *,
                 then: str | Turn | None = "done.", text: str = "", **kw: Any) -> Turn:
        """Queue a Bash tool_use (the CLI runs ``command``), then ``then`` for the tool_result."""
        turn = Turn(kind="tool_use", text=text, tool_name="Bash",
                    tool_input={"command": command, "description": description}, **kw)
        self.script(turn)
        if then is not None:
            self.script(then)
        return turn

    def tool(self, name: str, tool_input: dict[str, Any], *, then: str | Turn | None = "done.",
             **kw: Any) -> Turn:
        """Queue a tool_use of any tool."""
        turn = Turn(kind="tool_use", tool_name=name, tool_input=dict(tool_input), **kw)
        self.script(turn)
        if then is not None:
            self.script(then)
        return turn

    def error(self, status: int = 429, *, times: int = 1, retry_after: float | None = 0,
              error_type: str | None = None, message: str | None = None, **kw: Any) -> Turn:
        """Queue ``times`` error answers: 429 ``rate_limit_error`` or 529 ``overloaded_error``
        (or any status / type). ``retry_after`` sets the ``retry-after`` header (None: omit).
        Claude Code 2.1.330 honours retry-after up to about a minute (waits
        max(its backoff, retry-after)); a longer one makes it give up at once."""
        etype = error_type or {429: "rate_limit_error", 529: "overloaded_error",
                               500: "api_error", 401: "authentication_error",
                               400: "invalid_request_error"}.get(status, "api_error")
        msg = message or {429: "Rate limited", 529: "Overloaded"}.get(status, etype)
        turn = Turn(kind="error", status=status, error_type=etype, message=msg,
                    retry_after=retry_after, repeat=times, **kw)
        self.script(turn)
        return turn

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    def pending(self) -> int:
        """Main requests still scripted (an error with repeat=3 counts 3)."""
        with self._lock:
            return sum(t.repeat for t in self._queue)

    # -- records -----------------------------------------------------------

    def requests(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Every request recorded (deep copies), optionally of one kind
        (``main``, ``side``, ``count_tokens``, ``other``). Each: ``seq``,
        ``time``, ``method``, ``path``, ``headers`` (a subset), ``body``,
        ``kind``, ``status`` answered, ``message_id`` (if one was served),
        ``answer`` (turn kind)."""
        with self._lock:
            reqs = [r for r in self._requests if kind is None or r["kind"] == kind]
            return copy.deepcopy(reqs)

    def main_requests(self) -> list[dict[str, Any]]:
        return self.requests("main")

    def served(self, kind: str | None = "main", complete_only: bool = False) -> list[dict[str, Any]]:
        """Messages served (``message_start`` written): ``id``, ``kind``, ``model``,
        ``seq``, ``stop_reason``, ``usage``, ``complete`` (``message_stop``
        written too; False when the client hung up mid-answer, e.g. Esc).
        ``usage`` is what the client was sent: an answer cut off before its
        ``message_delta`` has output_tokens 1 (from ``message_start``), which
        is what Claude Code then writes to its transcript."""
        with self._lock:
            return [copy.deepcopy(s) for s in self._served
                    if (kind is None or s["kind"] == kind) and (s["complete"] or not complete_only)]

    def served_usage(self, kind: str | None = "main",
                     complete_only: bool = False) -> dict[str, dict[str, int]]:
        """Per message id: {input, output, cache_creation, cache_read}."""
        out = {}
        for s in self.served(kind, complete_only):
            u = s["usage"]
            out[s["id"]] = {"input": u["input_tokens"], "output": u["output_tokens"],
                            "cache_creation": u["cache_creation_input_tokens"],
                            "cache_read": u["cache_read_input_tokens"]}
        return out

    def served_usage_total(self, kind: str | None = "main",
                           complete_only: bool = False) -> dict[str, int]:
        """Sum of ``served_usage``: {input, output, cache_creation, cache_read, messages}."""
        total = {"input": 0, "output": 0, "cache_creation": 0, "cache_read": 0, "messages": 0}
        for u in self.served_usage(kind, complete_only).values():
            for k in ("input", "output", "cache_creation", "cache_read"):
                total[k] += u[k]
            total["messages"] += 1
        return total

    def user_texts(self, *, with_tool_results: bool = False, dedupe_retries: bool = True) -> list[str]:
        """The text of each main turn's last user message: its text blocks joined
        by a blank line, wrappers (``<system-reminder>``, ``<pasted_content>``)
        left in, so tests can check verbatim delivery. Requests whose last user
        message holds only ``tool_result`` blocks are left out unless
        ``with_tool_results``. A retried request (same messages as the one
        before it) is listed once when ``dedupe_retries``."""
        out: list[str] = []
        prev_key = None
        for r in self.main_requests():
            body = r["body"] or {}
            msg = last_user_message(body)
            blocks = text_blocks(msg)
            if not blocks and not with_tool_results:
                continue
            key = json.dumps(body.get("messages"), sort_keys=True)
            if dedupe_retries and key == prev_key:
                continue
            prev_key = key
            out.append("\n\n".join(blocks))
        return out

    def typed_texts(self) -> list[str]:
        """Like ``user_texts`` but only the last non-system-reminder block of each."""
        out = []
        prev_key = None
        for r in self.main_requests():
            body = r["body"] or {}
            msg = last_user_message(body)
            if not text_blocks(msg):
                continue
            key = json.dumps(body.get("messages"), sort_keys=True)
            if key == prev_key:
                continue
            prev_key = key
            out.append(typed_text(msg))
        return out

    def tool_results(self) -> list[dict[str, Any]]:
        """Every tool_result block the CLI sent back (first time each tool_use_id is seen)."""
        seen, out = set(), []
        for r in self.main_requests():
            for b in tool_results(last_user_message(r["body"] or {})):
                if b.get("tool_use_id") not in seen:
                    seen.add(b.get("tool_use_id"))
                    out.append(b)
        return out

    def disconnects(self) -> int:
        """Streams the client hung up on (e.g. the user pressed Esc)."""
        with self._lock:
            return self._disconnects

    def wait_for(self, predicate: Callable[["MockAnthropic"], bool], timeout: float = 30.0,
                 interval: float = 0.05) -> bool:
        """Poll ``predicate(self)`` until true or ``timeout``; returns the last value."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate(self):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(interval)

    def wait_requests(self, count: int, kind: str = "main", timeout: float = 30.0) -> bool:
        return self.wait_for(lambda m: len(m.requests(kind)) >= count, timeout)

    # -- internals ---------------------------------------------------------

    def _note_disconnect(self) -> None:
        with self._lock:
            self._disconnects += 1

    def _record(self, handler: _Handler, body: Any, kind: str, status: int) -> dict[str, Any]:
        headers = {k: handler.headers[k] for k in RECORDED_HEADERS if handler.headers.get(k) is not None}
        rec = {"seq": 0, "time": time.time(), "method": handler.command, "path": handler.path,
               "headers": headers, "body": body, "kind": kind, "status": status,
               "message_id": None, "answer": None}
        with self._lock:
            rec["seq"] = len(self._requests) + 1
            self._requests.append(rec)
        return rec

    def _next_number(self) -> int:
        with self._lock:
            self._n += 1
            return self._n

    def _take_turn(self) -> Turn | None:
        with self._lock:
            if not self._queue:
                return None
            head = self._queue[0]
            if head.repeat > 1:
                head.repeat -= 1
                return dataclasses.replace(head, repeat=1)
            return self._queue.pop(0)

    def _default_text(self, body: dict[str, Any]) -> str:
        if self._default is not None:
            return self._default(body)
        msg = last_user_message(body)
        if not text_blocks(msg) and tool_results(msg):
            return "ack: tool result"
        return "ack: " + typed_text(msg)[:60]

    def _wait(self, seconds: float, gate: threading.Event | None = None) -> None:
        if gate is not None:
            while not gate.is_set() and not self._stopping.is_set():
                gate.wait(0.1)
        if seconds > 0:
            self._stopping.wait(seconds)

    def _dispatch(self, h: _Handler, body: Any) -> None:
        kind = classify(h.path, body) if h.command == "POST" else "other"
        rec = self._record(h, body, kind, 200)
        if kind == "count_tokens":
            h._send_json(200, {"input_tokens": max(1, len(json.dumps(body or {})) // 4)})
            return
        if kind == "other":
            h._send_json(200, {})
            return
        model = (body or {}).get("model") or "claude-mock"
        stream = bool((body or {}).get("stream"))
        if kind == "side":
            turn = Turn(kind="text", text=self._side_text(body))
        else:
            turn = self._take_turn() or Turn(kind="text", text=self._default_text(body))
        with self._lock:
            rec["answer"] = turn.kind
        self._wait(turn.delay, turn.gate)
        if turn.kind == "error" and not (turn.in_stream and stream):
            with self._lock:
                rec["status"] = turn.status
            headers = dict(turn.headers)
            if turn.retry_after is not None:
                ra = float(turn.retry_after)
                headers["retry-after"] = str(int(ra)) if ra.is_integer() else str(ra)
            headers.setdefault("request-id", f"req_mock_err_{rec['seq']}")
            if turn.status == 429:
                headers.setdefault("x-should-retry", "true")
            h._send_json(turn.status, self._error_body(turn), headers)
            return
        if turn.kind == "error":  # an error event inside a 200 stream
            sse = _SSE(h, 200, {"request-id": f"req_mock_err_{rec['seq']}", **turn.headers})
            sse.event("error", self._error_body(turn))
            sse.close()
            return
        n = self._next_number()
        msg_id = f"msg_{self.tag}_{n}"
        usage = {**usage_for(n), **(turn.usage or {})}
        blocks: list[dict[str, Any]] = []
        if turn.text:
            blocks.append({"type": "text", "text": turn.text})
        if turn.kind == "tool_use":
            blocks.append({"type": "tool_use", "id": f"toolu_{self.tag}_{n}", "name": turn.tool_name,
                           "input": turn.tool_input})
        stop_reason = "tool_use" if turn.kind == "tool_use" else "end_turn"
        served = {"id": msg_id, "kind": kind, "model": model, "seq": rec["seq"],
                  "stop_reason": stop_reason, "usage": dict(usage), "complete": False}
        headers = {"request-id": f"req_{self.tag}_{n}", **turn.headers}
        wire_usage = {**usage, "cache_creation": {
            "ephemeral_5m_input_tokens": usage["cache_creation_input_tokens"],
            "ephemeral_1h_input_tokens": 0}, "service_tier": "standard"}
        if not stream:
            h._send_json(200, {"id": msg_id, "type": "message", "role": "assistant", "model": model,
                               "content": blocks, "stop_reason": stop_reason,
                               "stop_sequence": None, "usage": wire_usage}, headers)
            self._note_served(rec, served, complete=True)
            return
        sse = _SSE(h, 200, headers)
        start_usage = {**wire_usage, "output_tokens": 1}
        sse.event("message_start", {"type": "message_start", "message": {
            "id": msg_id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": start_usage}})
        served["usage"]["output_tokens"] = 1  # what the client has seen so far
        self._note_served(rec, served, complete=False)
        for i, block in enumerate(blocks):
            if block["type"] == "text":
                sse.event("content_block_start", {"type": "content_block_start", "index": i,
                                                  "content_block": {"type": "text", "text": ""}})
                text = block["text"]
                size = max(1, turn.chunk_size)
                for j in range(0, len(text), size):
                    if j and turn.chunk_delay:
                        self._wait(turn.chunk_delay)
                    sse.event("content_block_delta", {"type": "content_block_delta", "index": i,
                                                      "delta": {"type": "text_delta",
                                                                "text": text[j:j + size]}})
            else:
                sse.event("content_block_start", {"type": "content_block_start", "index": i,
                                                  "content_block": {"type": "tool_use",
                                                                    "id": block["id"],
                                                                    "name": block["name"],
                                                                    "input": {}}})
                sse.event("content_block_delta", {"type": "content_block_delta", "index": i,
                                                  "delta": {"type": "input_json_delta",
                                                            "partial_json": json.dumps(block["input"])}})
            sse.event("content_block_stop", {"type": "content_block_stop", "index": i})
        sse.event("message_delta", {"type": "message_delta",
                                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                                    "usage": {"output_tokens": usage["output_tokens"]}})
        with self._lock:
            served["usage"]["output_tokens"] = usage["output_tokens"]
        sse.event("message_stop", {"type": "message_stop"})
        sse.close()
        with self._lock:
            served["complete"] = True

    def _note_served(self, rec: dict[str, Any], served: dict[str, Any], complete: bool) -> None:
        with self._lock:
            served["complete"] = complete
            rec["message_id"] = served["id"]
            self._served.append(served)

    @staticmethod
    def _error_body(turn: Turn) -> dict[str, Any]:
        return {"type": "error", "error": {"type": turn.error_type, "message": turn.message}}

    @staticmethod
    def _side_text(body: Any) -> str:
        """A harmless answer for side calls. Claude Code 2.1.330 asks for titles
        with ``output_config.format`` = a JSON schema: answer an object that fits."""
        body = body or {}
        fmt = (body.get("output_config") or {}).get("format") or {}
        if fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
            return json.dumps(_fit_schema(fmt["schema"]))
        system = _system_text(body).lower()
        if "json" in system:
            if "title" in system:
                return json.dumps({"title": "Mock session"})
            return json.dumps({"isNewTopic": False, "title": None})
        return "Mock session"


def _fit_schema(schema: dict[str, Any]) -> Any:
    """A small value matching a JSON schema (objects, strings, numbers, booleans, arrays)."""
    if "enum" in schema and schema["enum"]:
        return schema["enum"][0]
    typ = schema.get("type")
    if isinstance(typ, list):
        typ = next((t for t in typ if t != "null"), "null")
    if typ == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        keys = schema.get("required") or list(props)
        return {k: _fit_schema(props.get(k) or {}) for k in keys}
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
    port = int(argv[1]) if len(argv) > 1 else 0
    mock = MockAnthropic(port=port, verbose=True).start()
    print(f"mock Anthropic API on {mock.base_url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        mock.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
