#!/usr/bin/env python3
"""A deterministic, realistic Claude Code transcript corpus, with its exact token totals.

Usage: python3 bench/claude_corpus.py OUT [--size MB] [--seed N] [--force]
                                          [--btw-replays] [--requestless-copies]

Writes ``OUT/projects/<slug>/<session>.jsonl`` (and ``<session>/subagents/agent-*.jsonl``)
the way Claude Code does, and ``OUT/expected.json`` with the totals it generated
(per session id and overall). ``CLAUDE_CONFIG_DIR=OUT ccusage claude session --json
--offline`` reads it; so do ``agent-log.py --totals OUT`` and ``agents.py tokens --scan OUT``.
The same seed and size give the same bytes. Standard library only.

What is in it (each seen in real transcripts, see REAL-AGENTS.md and tests/live/):

- Multi-block responses: one line per content block (thinking, text, tool_use), each
  repeating ``message.id`` and the request id, with equal or growing usage (input and
  cache figures equal, output growing; the last block carries the final figures).
- Big tool results: user lines whose ``tool_result`` content is a few hundred bytes to
  a few MB, repeated in ``toolUseResult`` as Claude Code does.
- Sub-agents: ``<session>/subagents/agent-<id>.jsonl``, ``isSidechain: true``, the
  parent's ``sessionId``, their own message and request ids, often another model.
- Resumed and forked sessions: a new file (new session id) that starts with a copy of
  an earlier session's lines (same message ids and request ids; new ``uuid`` and
  ``sessionId``), then goes on with new responses.
- Three request-id eras: ``requestId`` only (Claude Code 2.0), ``requestId`` and
  ``requestRef`` (2.1.x against the API, which sends a ``request-id`` header), and
  ``requestRef`` only (2.1.x behind a gateway that sends no ``request-id``).
- ``<synthetic>`` lines (an API error the CLI gave up on): zero usage, ``speed: null``,
  ``isApiErrorMessage``; never an API call.
- A torn last line (half a JSON line, no newline) in some files, as when the CLI is
  killed mid-write.
- Several models: claude-opus-4-*, claude-sonnet-4-*, claude-haiku-4-5 / 3-5-haiku.
- Bookkeeping lines a reader must skip: mode, permission-mode, file-history-snapshot,
  attachment, api-request, system turn_duration, last-prompt.
- JSON written compactly (``{"a":1,"b":2}``), as Claude Code writes it: ccusage finds
  usage lines by the bytes ``"usage":{`` and ignores a line written ``"usage": {``.

The counting rule of expected.json: ccusage's (20.0.24, the pinned reference)
-------------------------------------------------------------------------------
Read from ccusage's source (``rust/crates/ccusage/src/adapter/claude/mod.rs`` at
ryoppippi/ccusage v20.0.11 and ``rust/crates/ccusage-adapter-claude/src/lib.rs`` in
ccusage/ccusage: ``read_usage_file``, ``is_valid_usage_entry``,
``has_unsupported_null_field``, ``push_deduped_entry``, ``should_replace_deduped_entry``,
``usage_token_total``, ``TokenUsageRaw::cache_creation_token_count``; ``paths.rs``:
``usage_files``, ``extract_session_parts``), its PRs #985, #1661, #1765, and checked
one by one against the 20.0.24 binary on small probes:

1. Files: every ``*.jsonl`` under ``projects/``, recursively, read in the byte order
   of their full paths (so ``<s>.jsonl`` before ``<s>/subagents/…``), lines in order.
2. A line counts only if it contains the bytes ``"usage":{``, has none of the fields
   id, cwd, model, speed, costUSD, version, sessionId, requestId, isApiErrorMessage,
   cache_read_input_tokens, cache_creation_input_tokens set to ``null`` (the real
   ``<synthetic>`` line has ``"speed":null``: skipped), parses as JSON (a torn line
   does not; a complete last line without newline does), has a ``timestamp``, a
   semver-like ``version`` if any, and non-empty sessionId / requestId / message.id /
   model where present. The line's ``type`` is not looked at.
3. ``<synthetic>`` lines are otherwise counted like any other (the model is only
   dropped from the model list): they are harmless because their usage is zero.
4. cache creation = ``usage.cache_creation.ephemeral_5m_input_tokens +
   ephemeral_1h_input_tokens`` when that object is present, else
   ``cache_creation_input_tokens`` (this corpus keeps the two equal).
5. De-duplication key: ``(message.id, requestId)``; **``requestRef`` is never read**.
   With a ``requestId`` the key is global: copies in other files and sessions are one
   response (#1765). Without one, the key is ``(message.id, sessionId)``: copies inside
   one session (by the line's ``sessionId``) are one response, copies in another
   session count again (#1661, for gateways that reuse one message id everywhere).
   A line without ``message.id`` is never de-duplicated.
6. Sidechain replays: a line whose message.id and ``timestamp`` equal those of a kept
   line, where either is ``isSidechain: true``, is the same response even with another
   requestId (the /btw aside logs under ``subagents/`` replay parent messages, #913).
   The timestamp must match the kept line's: a replay of another block of the same
   response counts again (#1661: the regular loader "still requires them"; probed).
7. Of two lines of one response the kept one is: the non-sidechain one; else the one
   with the larger total (input + output + cache creation + cache read); on a tie the
   one with a ``speed``; else the first read. The whole line's usage is kept, not the
   field-wise maximum (this corpus only grows figures, so the two agree).
8. A response belongs to the session of the file its kept line is in: the file name
   for ``<slug>/<s>.jsonl``, the ``<s>`` folder for ``<slug>/<s>/subagents/*.jsonl``
   (not the line's ``sessionId``). Sessions whose totals are zero are not listed.

The rule of SPEC §7 and agent-log.py — one response per ``(message.id, requestId, else
requestRef)``, across all files, ``<synthetic>`` skipped, largest figures kept — is
computed too (``spec_rule`` in expected.json). On the default corpus both rules give
the same totals (``rules_agree``): every copied line carries a requestId, or was
copied inside its own session, and no sidechain replays a parent message. Two flags
make corpora where they part, to test a reader that wants to match ccusage exactly:

  --requestless-copies   gateway sessions (requestRef only) are resumed too: ccusage
                         counts their copied history once per session (rule 5)
  --btw-replays          some sessions get a /btw aside file replaying parent
                         responses with new requestIds: ccusage counts them once (rule 6)
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

# ============================================================================
# Vocabulary: models, eras, projects
# ============================================================================

MAIN_MODELS = ["claude-opus-4-5-20251101", "claude-opus-4-1-20250805", "claude-sonnet-4-5-20250929",
               "claude-sonnet-4-20250514"]
SMALL_MODELS = ["claude-haiku-4-5-20251001", "claude-3-5-haiku-20241022"]
PROJECTS = ["/home/dev/repo", "/home/dev/agents-py", "/home/dev/work/api-server", "/srv/build/frontend",
            "/home/dev/notes"]
ERAS = {  # name: (version, writes requestId, writes requestRef, weight)
    "old": ("2.0.14", True, False, 25),
    "api": ("2.1.330", True, True, 55),
    "gateway": ("2.1.330", False, True, 20),
}
WORDS = ("the of and to in is that for it with as on be at by this an are from or have not but what all "
         "were when we there can file line error test build pass fail return value function class import "
         "module config state agent tmux watchdog token session usage request response cache read write "
         "commit branch merge diff patch python json path folder").split()
BASE_TIME_MS = int(datetime(2026, 11, 1, 8, 0, tzinfo=timezone.utc).timestamp() * 1000)
FIELDS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


def project_slug(cwd: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "-", cwd)


def stamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def dumps(obj: dict) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


# ============================================================================
# Usage records: what each written line carries, for the two counting rules
# ============================================================================

@dataclass
class Record:
    """One usage-carrying line as the counting rules see it."""
    message_id: str | None
    request_id: str | None  # the requestId field, if written
    request_ref: str | None  # the requestRef field, if written
    session_field: str  # the line's sessionId
    sidechain: bool
    usage: tuple[int, int, int, int]  # input, output, cache creation, cache read
    synthetic: bool
    ccusage_reads: bool  # False when a null field makes ccusage skip the line
    speed: bool  # has a usage.speed
    timestamp: str  # the line's timestamp (rule 6 matches on it)


@dataclass
class FileOut:
    """One transcript file being built: its lines and the records of its usage lines."""
    path: Path  # relative to OUT
    session: str  # the session ccusage files it under (rule 8)
    lines: list[str] = field(default_factory=list)
    records: list[Record | None] = field(default_factory=list)  # one per line
    torn: str = ""  # a half line written last, without newline

    size: int = 0  # characters so far (about the bytes: the text is mostly ASCII)

    def add(self, obj: dict, record: Record | None = None) -> None:
        self.append(dumps(obj), record)

    def append(self, line: str, record: Record | None) -> None:
        self.lines.append(line)
        self.records.append(record)
        self.size += len(line) + 1


def ccusage_totals(files: list[FileOut]) -> tuple[dict, dict[str, dict], int]:
    """Rules 1-8 of the module docstring: overall totals, per session, responses kept."""
    kept: list[tuple[Record, str]] = []  # (record, session of its file)
    by_key: dict[tuple, int] = {}
    by_message: dict[str, list[int]] = {}

    def total(r: Record) -> int:
        return sum(r.usage)

    def better(new: Record, old: Record) -> bool:
        if new.sidechain != old.sidechain:
            return old.sidechain
        if total(new) != total(old):
            return total(new) > total(old)
        return new.speed and not old.speed

    for out in sorted(files, key=lambda f: str(f.path)):
        for record in out.records:
            if record is None or not record.ccusage_reads:
                continue
            mid = record.message_id
            if mid is None:
                kept.append((record, out.session))
                continue
            key = (mid, "rid", record.request_id) if record.request_id else (mid, "sid", record.session_field)
            index = by_key.get(key)
            if index is None:
                for candidate in by_message.get(mid, []):
                    other = kept[candidate][0]
                    if (record.sidechain or other.sidechain) and record.timestamp == other.timestamp:
                        index = candidate
                        break
            if index is not None:
                if better(record, kept[index][0]):
                    kept[index] = (record, out.session)
                    by_key[key] = index
                continue
            by_key[key] = len(kept)
            by_message.setdefault(mid, []).append(len(kept))
            kept.append((record, out.session))
    overall = dict.fromkeys(FIELDS, 0)
    sessions: dict[str, dict] = {}
    for record, session in kept:
        row = sessions.setdefault(session, dict.fromkeys(FIELDS, 0))
        for name, value in zip(FIELDS, record.usage):
            row[name] += value
            overall[name] += value
    sessions = {s: row for s, row in sorted(sessions.items()) if any(row.values())}
    return overall, sessions, len(kept)


def spec_totals(files: list[FileOut]) -> tuple[dict, int]:
    """SPEC §7 / agent-log.py: one response per (message.id, requestId else requestRef)
    across all files, <synthetic> skipped, field-wise largest figures."""
    seen: dict[tuple, tuple[int, ...]] = {}
    loose: list[tuple[int, ...]] = []
    for out in sorted(files, key=lambda f: str(f.path)):
        for record in out.records:
            if record is None or record.synthetic:
                continue
            if record.message_id is None:
                loose.append(record.usage)
                continue
            key = (record.message_id, record.request_id or record.request_ref or "")
            old = seen.get(key)
            seen[key] = record.usage if old is None else tuple(max(a, b) for a, b in zip(old, record.usage))
    overall = dict.fromkeys(FIELDS, 0)
    for usage in list(seen.values()) + loose:
        for name, value in zip(FIELDS, usage):
            overall[name] += value
    return overall, len(seen) + len(loose)


# ============================================================================
# The generator
# ============================================================================

class Generator:
    """Builds sessions until the corpus reaches its size; everything from one seeded RNG."""

    def __init__(self, seed: int, size_bytes: int, btw_replays: bool, requestless_copies: bool,
                 out_dir: Path | None = None) -> None:
        self.out_dir = out_dir  # files are written there as they are finished (None: kept in memory)
        self.bytes_written = 0
        self.rng = random.Random(seed)
        self.size_bytes = size_bytes
        self.btw_replays = btw_replays
        self.requestless_copies = requestless_copies
        self.files: list[FileOut] = []
        self.written = 0  # bytes so far (estimated from the lines built)
        self.clock = BASE_TIME_MS
        self.recent: list[tuple[FileOut, str, str, str]] = []  # (file, era, cwd, model) of sessions to resume
        self.text = self._text_pool()
        self.features: Counter[str] = Counter()  # what the corpus holds, for expected.json

    # -- ids and text --

    def uid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def b62(self, n: int) -> str:
        alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    def message_id(self) -> str:
        return "msg_01" + self.b62(22)

    def request_id(self) -> str:
        return "req_011C" + self.b62(20)

    def _text_pool(self) -> str:
        rng = random.Random(self.rng.getrandbits(64))
        lines = []
        for n in range(40000):
            words = rng.choices(WORDS, k=rng.randint(3, 16))
            if n % 7 == 0:
                words.append(f'"{rng.choice(WORDS)}" \\ {rng.randint(0, 99999)} é→✓')
            if n % 11 == 0:
                words.insert(0, f"  File \"/home/dev/repo/{rng.choice(WORDS)}.py\", line {rng.randint(1, 900)}")
            lines.append(" ".join(words))
        return "\n".join(lines)

    def snippet(self, size: int) -> str:
        size = min(size, len(self.text) - 1)
        start = self.rng.randrange(0, len(self.text) - size)
        return self.text[start:start + size]

    def tick(self, low: int = 50, high: int = 4000) -> str:
        self.clock += self.rng.randint(low, high)
        return stamp(self.clock)

    def tool_output_size(self) -> int:
        roll = self.rng.random()
        if roll < 0.75:
            size = self.rng.randint(100, 4000)
        elif roll < 0.97:
            size = self.rng.randint(4000, 60000)
        elif roll < 0.997:
            size = self.rng.randint(60000, 400000)
        else:
            size = self.rng.randint(400000, 2000000)
        return min(size, max(2000, self.size_bytes // 100))  # a small corpus still has many sessions

    # -- lines --

    def envelope(self, out: FileOut, ctx: dict, kind: str, parent: str | None, sidechain: bool) -> dict:
        obj = {"parentUuid": parent, "isSidechain": sidechain}
        if ctx.get("agent_id"):
            obj["agentId"] = ctx["agent_id"]
        obj["type"] = kind
        return obj

    def tail(self, obj: dict, ctx: dict, uid: str) -> dict:
        obj.update({"uuid": uid, "timestamp": self.tick(), "userType": "external", "entrypoint": "cli",
                    "cwd": ctx["cwd"], "sessionId": ctx["session"], "version": ctx["version"],
                    "gitBranch": "main"})
        return obj

    def user_text(self, out: FileOut, ctx: dict, text: str) -> str:
        uid = self.uid()
        obj = self.envelope(out, ctx, "user", ctx["parent"], ctx["sidechain"])
        obj["message"] = {"role": "user", "content": text}
        out.add(self.tail(obj, ctx, uid))
        ctx["parent"] = uid
        return uid

    def bookkeeping(self, out: FileOut, ctx: dict) -> None:
        session = ctx["session"]
        out.add({"type": "mode", "mode": "normal", "sessionId": session})
        out.add({"type": "permission-mode", "permissionMode": "bypassPermissions", "sessionId": session})
        mid = self.uid()
        out.add({"type": "file-history-snapshot", "messageId": mid,
                 "snapshot": {"messageId": mid, "trackedFileBackups": {}, "timestamp": stamp(self.clock)},
                 "isSnapshotUpdate": False})

    def attachment(self, out: FileOut, ctx: dict) -> None:
        uid = self.uid()
        obj = self.envelope(out, ctx, "attachment", ctx["parent"], ctx["sidechain"])
        obj["attachment"] = {"type": "environment", "snapshot": {"workingDirectory": ctx["cwd"], "platform": "linux"}}
        obj["rendered"] = [{"content": "<system-reminder>\n" + self.snippet(self.rng.randint(200, 3000)) +
                            "\n</system-reminder>"}]
        obj["renderedRole"] = "system"
        out.add(self.tail(obj, ctx, uid))
        ctx["parent"] = uid

    def api_request(self, out: FileOut, ctx: dict, ref: str) -> None:
        out.add({"type": "api-request", "sessionId": ctx["session"], "id": ref, "timestamp": stamp(self.clock),
                 "version": ctx["version"], "querySource": "repl_main_thread",
                 "shapeHash": self.b62(40), "params": {"model": ctx["model"], "max_tokens": 64000},
                 "keep": self.rng.randint(0, 40), "requestDigest": self.b62(64)})

    def usage(self, era: str, figures: tuple[int, int, int, int]) -> dict:
        inp, outp, cc, cr = figures
        usage = {"input_tokens": inp, "cache_creation_input_tokens": cc, "cache_read_input_tokens": cr,
                 "output_tokens": outp}
        if era == "old":
            usage["service_tier"] = "standard"
            return usage
        usage.update({"output_tokens_details": {"thinking_tokens": 0},
                      "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
                      "service_tier": "standard",
                      "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": cc},
                      "inference_geo": "", "iterations": [], "speed": "standard", "fallback_credit": None})
        return usage

    def response(self, out: FileOut, ctx: dict, with_tool: bool) -> list[str]:
        """One API response: 1-4 block lines sharing message.id and request id; returns
        the tool_use ids it asked for."""
        era = ctx["era"]
        _, writes_id, writes_ref, _ = ERAS[era]
        mid = self.message_id()
        rid = self.request_id() if writes_id else None
        ref = self.uid() if writes_ref else None
        if ref:
            self.api_request(out, ctx, ref)
        self.features["responses " + {"old": "with requestId only", "api": "with requestId and requestRef",
                                      "gateway": "with requestRef only"}[era]] += 1
        ctx["context"] += self.rng.randint(200, 9000)
        cached = self.rng.random() < 0.9
        inp = self.rng.randint(1, 12) if cached else self.rng.randint(800, 30000)
        cc = self.rng.randint(0, 6000) if cached else 0
        cr = ctx["context"] if cached else 0
        final_out = self.rng.randint(8, 4000)
        blocks = []
        if self.rng.random() < 0.5:
            blocks.append(("thinking", self.snippet(self.rng.randint(40, 3000))))
        blocks.append(("text", self.snippet(self.rng.randint(20, 2500))))
        tool_ids = []
        if with_tool:
            for _ in range(1 if self.rng.random() < 0.85 else 2):
                tool_ids.append("toolu_01" + self.b62(22))
                blocks.append(("tool_use", tool_ids[-1]))
        growing = self.rng.random() < 0.5
        outs = sorted(self.rng.randint(1, final_out) for _ in blocks[:-1]) + [final_out] if growing \
            else [final_out] * len(blocks)
        for (kind, payload), out_tokens in zip(blocks, outs):
            if kind == "thinking":
                content = [{"type": "thinking", "thinking": payload, "signature": self.b62(120)}]
            elif kind == "text":
                content = [{"type": "text", "text": payload}]
            else:
                content = [{"type": "tool_use", "id": payload, "name": self.rng.choice(["Bash", "Read", "Grep", "Edit"]),
                            "input": {"command": self.snippet(self.rng.randint(10, 300))}}]
            figures = (inp, out_tokens, cc, cr)
            message = {"id": mid, "type": "message", "role": "assistant", "model": ctx["model"], "content": content,
                       "stop_reason": "tool_use" if tool_ids else "end_turn", "stop_sequence": None,
                       "usage": self.usage(era, figures)}
            uid = self.uid()
            obj = self.envelope(out, ctx, "assistant", ctx["parent"], ctx["sidechain"])
            obj["message"] = message
            if rid:
                obj["requestId"] = rid
            if ref:
                obj["requestRef"] = ref
            obj = self.tail(obj, ctx, uid)
            out.add(obj, Record(mid, rid, ref, ctx["session"], ctx["sidechain"], figures, False, True,
                                era != "old", obj["timestamp"]))
            ctx["parent"] = uid
        return tool_ids

    def tool_result(self, out: FileOut, ctx: dict, tool_id: str) -> None:
        body = self.snippet(self.tool_output_size())
        self.features["tool results"] += 1
        self.features["tool results over 100 KB"] += len(body) > 100_000
        uid = self.uid()
        obj = self.envelope(out, ctx, "user", ctx["parent"], ctx["sidechain"])
        obj["message"] = {"role": "user", "content": [{"tool_use_id": tool_id, "type": "tool_result",
                                                        "content": body, "is_error": self.rng.random() < 0.05}]}
        obj = self.tail(obj, ctx, uid)
        obj["toolUseResult"] = {"stdout": body, "stderr": "", "interrupted": False, "isImage": False}
        out.add(obj)
        ctx["parent"] = uid

    def synthetic(self, out: FileOut, ctx: dict) -> None:
        """An API error the CLI gave up on: the real 2.1.330 shape (zero usage, speed null)."""
        self.features["<synthetic> lines"] += 1
        uid = self.uid()
        obj = self.envelope(out, ctx, "assistant", ctx["parent"], ctx["sidechain"])
        usage = {"output_tokens_details": None, "input_tokens": 0, "output_tokens": 0,
                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "service_tier": None,
                 "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0},
                 "speed": None}
        mid = self.uid()
        obj["message"] = {"id": mid, "model": "<synthetic>", "role": "assistant", "stop_reason": "stop_sequence",
                          "type": "message", "usage": usage,
                          "content": [{"type": "text", "text": "API Error: Request rejected (429) · Rate limited"}]}
        rid = self.request_id() if ERAS[ctx["era"]][1] else None
        if rid:
            obj["requestId"] = rid
        obj.update({"error": "rate_limit", "isApiErrorMessage": True, "apiErrorStatus": 429,
                    "apiErrorType": "rate_limit_error"})
        obj = self.tail(obj, ctx, uid)
        out.add(obj, Record(mid, rid, None, ctx["session"], ctx["sidechain"], (0, 0, 0, 0), True, False, False,
                            obj["timestamp"]))
        ctx["parent"] = uid

    def turn_duration(self, out: FileOut, ctx: dict) -> None:
        obj = self.envelope(out, ctx, "system", ctx["parent"], ctx["sidechain"])
        obj.update({"subtype": "turn_duration", "durationMs": self.rng.randint(300, 90000),
                    "messageCount": len(out.lines), "isMeta": False})
        out.add(self.tail(obj, ctx, self.uid()))

    def turns(self, out: FileOut, ctx: dict, count: int, subagents: bool) -> None:
        for _ in range(count):
            if self.written + out.size > self.size_bytes:
                break
            self.user_text(out, ctx, self.snippet(self.rng.randint(20, 600)))
            if self.rng.random() < 0.3:
                self.attachment(out, ctx)
            for _ in range(self.rng.randint(1, 6)):  # tool round trips within the turn
                if self.rng.random() < 0.03:
                    self.synthetic(out, ctx)
                    break
                tool_ids = self.response(out, ctx, with_tool=self.rng.random() < 0.7)
                if not tool_ids:
                    break
                for tool_id in tool_ids:
                    if subagents and self.rng.random() < 0.06:
                        self.subagent(out, ctx)
                    self.tool_result(out, ctx, tool_id)
            self.turn_duration(out, ctx)

    def subagent(self, parent: FileOut, pctx: dict) -> None:
        agent_id = "a" + "".join(self.rng.choice("0123456789abcdef") for _ in range(16))
        path = parent.path.with_suffix("") / "subagents" / f"agent-{agent_id}.jsonl"
        out = FileOut(path, parent.session)
        model = self.rng.choice(SMALL_MODELS + MAIN_MODELS[2:])
        ctx = dict(pctx, parent=None, sidechain=True, agent_id=agent_id, model=model, context=0)
        self.turns(out, ctx, self.rng.randint(1, 4), subagents=False)
        if out.lines:
            self.features["sub-agent files"] += 1
            self.finish(out)

    def btw_aside(self, parent: FileOut, pctx: dict) -> None:
        """A /btw aside log: replays some parent responses (same message.id, new requestId,
        isSidechain, more cache read), then answers with a response of its own."""
        replayed = [(line, r) for line, r in zip(parent.lines, parent.records) if r and not r.synthetic]
        if not replayed:
            return
        agent_id = "aside_question-" + "".join(self.rng.choice("0123456789abcdef") for _ in range(16))
        out = FileOut(parent.path.with_suffix("") / "subagents" / f"agent-{agent_id}.jsonl", parent.session)
        self.features["/btw aside files"] += 1
        ctx = dict(pctx, parent=None, sidechain=True, agent_id=agent_id, context=pctx["context"])
        for line, record in self.rng.sample(replayed, min(3, len(replayed))):
            obj = json.loads(line)
            obj["isSidechain"], obj["agentId"], obj["uuid"] = True, agent_id, self.uid()
            rid = self.request_id()
            obj["requestId"] = rid
            figures = record.usage[:3] + (record.usage[3] + 5000,)
            obj["message"]["usage"]["cache_read_input_tokens"] = figures[3]
            out.add(obj, Record(record.message_id, rid, record.request_ref, ctx["session"], True, figures, False,
                                True, record.speed, record.timestamp))
        self.turns(out, ctx, 1, subagents=False)
        self.finish(out)

    def finish(self, out: FileOut) -> None:
        self.files.append(out)
        self.written += out.size + len(out.torn)
        if self.out_dir is not None:
            self.bytes_written += write_file(self.out_dir, out)

    # -- sessions --

    def session(self) -> None:
        resume = self.recent and self.rng.random() < 0.2
        if resume:
            source, era, cwd, model = self.rng.choice(self.recent)
        else:
            era = self.rng.choices(list(ERAS), weights=[e[3] for e in ERAS.values()])[0]
            cwd, model, source = self.rng.choice(PROJECTS), self.rng.choice(MAIN_MODELS), None
        session = self.uid()
        out = FileOut(Path("projects") / project_slug(cwd) / f"{session}.jsonl", session)
        ctx = {"era": era, "cwd": cwd, "model": model, "version": ERAS[era][0], "session": session,
               "parent": None, "sidechain": False, "agent_id": None, "context": 0}
        self.clock += self.rng.randint(60_000, 6 * 3600_000)
        self.bookkeeping(out, ctx)
        self.features[f"sessions ({era})"] += 1
        if source is not None:
            fork = self.rng.random() < 0.4
            self.features["forked sessions" if fork else "resumed sessions"] += 1
            self.copy_history(source, out, ctx, fork)
        self.turns(out, ctx, self.rng.randint(2, max(3, min(25, self.size_bytes // 200_000))), subagents=True)
        if self.btw_replays and era != "gateway" and self.rng.random() < 0.15:
            self.btw_aside(out, ctx)
        if self.rng.random() < 0.15:
            self.torn_line(out, ctx)
        if not out.torn:
            out.add({"type": "last-prompt", "lastPrompt": self.snippet(40), "sessionId": session})
        self.finish(out)
        if era != "gateway" or self.requestless_copies:
            self.recent = (self.recent + [(out, era, cwd, model)])[-6:]
        if self.out_dir is not None:  # keep in memory only the lines a later session may copy
            keep = {id(f) for f, *_ in self.recent}
            for f in self.files[-50:]:
                if id(f) not in keep and f.lines:
                    f.lines = []

    def copy_history(self, source: FileOut, out: FileOut, ctx: dict, fork: bool) -> None:
        """Copy the source session's complete lines (all, or a prefix for a fork) with new
        uuids and this session's id; the copies keep message ids and request ids."""
        lines = list(zip(source.lines, source.records))
        if fork:
            lines = lines[:self.rng.randint(1, max(1, len(lines)))]
        old = source.session
        mapping: dict[str, str] = {}

        def new_uuid(match: re.Match) -> str:
            value = match.group(2)
            if value not in mapping:
                mapping[value] = self.uid()
            return f'{match.group(1)}"{mapping[value]}"'

        for line, record in lines:
            if '"type":"last-prompt"' in line[:40]:
                continue
            line = re.sub(r'("(?:uuid|parentUuid)":)"([0-9a-f-]{36})"', new_uuid, line)
            line = line.replace(f'"sessionId":"{old}"', f'"sessionId":"{ctx["session"]}"')
            if record is not None:
                record = Record(record.message_id, record.request_id, record.request_ref, ctx["session"],
                                record.sidechain, record.usage, record.synthetic, record.ccusage_reads, record.speed,
                                record.timestamp)
            out.append(line, record)
        ctx["context"] = max((r.usage[3] for _, r in lines if r), default=0)

    def torn_line(self, out: FileOut, ctx: dict) -> None:
        """Half of one more response's first line, no newline: never counted."""
        probe = FileOut(out.path, out.session)
        self.response(probe, ctx, with_tool=False)
        line = next(l for l, r in zip(probe.lines, probe.records) if r is not None)
        out.torn = line[:int(len(line) * self.rng.uniform(0.3, 0.95))]
        self.features["files with a torn last line"] += 1

    def run(self) -> None:
        while self.written < self.size_bytes:
            self.session()


def append_responses(path: Path, size: int, seed: int) -> tuple[str, dict]:
    """Append about ``size`` bytes of new turns (new message and request ids) to the
    session file ``path``, which must end with a newline. Returns the session ccusage
    files them under and the totals they add (all new responses: nothing de-duplicates)."""
    session = path.parent.parent.name if path.parent.name == "subagents" else path.stem
    first = next((json.loads(line) for line in path.open(encoding="utf-8") if '"cwd":' in line), {})
    gen = Generator(seed, size, btw_replays=False, requestless_copies=False)
    gen.clock = BASE_TIME_MS + 400 * 86400_000  # after everything the corpus holds
    out = FileOut(path, session)
    ctx = {"era": "api", "cwd": first.get("cwd", PROJECTS[0]), "model": MAIN_MODELS[2], "version": "2.1.330",
           "session": first.get("sessionId", session), "parent": None, "sidechain": bool(first.get("isSidechain")),
           "agent_id": first.get("agentId"), "context": 0}
    while out.size < size:
        gen.turns(out, ctx, 1, subagents=False)
    with path.open("a", encoding="utf-8") as fh:
        fh.write("\n".join(out.lines) + "\n")
    added, _, _ = ccusage_totals([out])
    return session, added


def write_file(out_dir: Path, f: FileOut) -> int:
    path = out_dir / f.path
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = (("\n".join(f.lines) + "\n" if f.lines else "") + f.torn).encode("utf-8")
    path.write_bytes(raw)
    return len(raw)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder to write projects/ and expected.json into")
    parser.add_argument("--size", type=float, default=200, help="target size in MB (default 200)")
    parser.add_argument("--seed", type=int, default=1, help="RNG seed (default 1)")
    parser.add_argument("--force", action="store_true", help="replace OUT/projects and OUT/expected.json")
    parser.add_argument("--btw-replays", action="store_true", help="add /btw aside files (see rule 6)")
    parser.add_argument("--requestless-copies", action="store_true", help="resume gateway sessions too (rule 5)")
    args = parser.parse_args(argv)
    projects = args.out / "projects"
    if projects.exists():
        if not args.force:
            print(f"claude_corpus: {projects} exists (use --force to replace it)", file=sys.stderr)
            return 2
        shutil.rmtree(projects)
    started = time.perf_counter()
    gen = Generator(args.seed, int(args.size * 1_000_000), args.btw_replays, args.requestless_copies, args.out)
    gen.run()
    size = gen.bytes_written
    overall, sessions, responses = ccusage_totals(gen.files)
    spec, spec_responses = spec_totals(gen.files)
    elapsed = time.perf_counter() - started
    expected = {
        "generator": {"seed": args.seed, "size_mb": args.size, "btw_replays": args.btw_replays,
                      "requestless_copies": args.requestless_copies, "files": len(gen.files), "bytes": size,
                      "seconds": round(elapsed, 2), "features": dict(sorted(gen.features.items()))},
        "rule": "ccusage 20.0.24 (bench/claude_corpus.py docstring, rules 1-8)",
        "total": overall,
        "responses": responses,
        "sessions": sessions,
        "spec_rule": {"total": spec, "responses": spec_responses},
        "rules_agree": spec == overall,
    }
    (args.out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n", encoding="utf-8")
    print(f"{len(gen.files)} files, {len(sessions)} sessions, {size / 1e6:.1f} MB in {elapsed:.1f} s "
          f"({size / 1e6 / elapsed:.0f} MB/s); {responses} responses; rules agree: {spec == overall}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
