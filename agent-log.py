#!/usr/bin/env python3
"""agent-log.py: render coding-agent transcripts as plain, greppable text.

One file, Python 3.11+, standard library only; it does not import agents.py and
needs nothing installed. It reads Claude Code session files
(``~/.claude/projects/<project>/<session>.jsonl`` and their sub-agent files),
Codex rollouts (``~/.codex/sessions/YYYY/MM/DD/rollout-*.jsonl``), Gemini CLI
chats (``~/.gemini/tmp/<project>/chats/session-*.jsonl``) and opencode's SQLite
store (``~/.local/share/opencode/opencode.db``, read-only) and prints one block
per event. Every printed line starts with the same fixed prefix::

    HH:MM:SS ROLE    [sub:AGENT] text

so ``grep ASSIST``, ``grep 'TOOL<'`` or ``grep '\\[sub:'`` pull out whole answers,
tool results or sub-agent work. Noise is stripped on the way: ANSI escapes,
base64 images, ``<system-reminder>`` and similar wrappers the CLIs inject.
Token usage is printed once per API response, after de-duplication, and
totalled per file (an opencode store is one file).

The file is cut into sections, each using only the ones above it:

    Basics        the line prefix, clocks, cleaning text (ANSI, images, wrapper noise)
    Events        what a transcript line becomes: an Event, and Usage figures
    Usage ledger  de-duplication of API responses and the totals
    Claude Code   one transcript line → events
    Codex         one rollout line → events
    Gemini CLI    one chat line → events
    opencode      one message of opencode's store, with its parts → events
    Files         reading a file incrementally, choosing its reader; reading opencode's store
    Finding       paths, folders, and an agent's transcripts from agents.toml
    Output        rendering events as prefixed lines; the run and follow loops
    main          argument parsing and --help
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shlex
import signal
import sqlite3
import sys
import time
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TextIO

VERSION = "0.1.0"

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2


# ============================================================================
# Basics
#   The line prefix, timestamps, and cleaning text: ANSI escapes, base64
#   images and the wrapper blocks CLIs inject into what the model sees.
# ============================================================================

# Every role a printed line can carry. The width of the widest keeps columns aligned.
ROLES = ("USER", "ASSIST", "THINK", "TOOL>", "TOOL<", "SYS", "COMPACT", "USAGE", "TOTAL")
ROLE_WIDTH = max(len(role) for role in ROLES)
NO_CLOCK = "--:--:--"  # the time column of a line whose event carries no timestamp


def parse_timestamp(value: Any) -> datetime | None:
    """An ISO 8601 string (``2026-11-23T22:57:58.046Z``) or epoch number → aware datetime."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = value / 1000 if value > 1e11 else value  # milliseconds or seconds
        try:
            return datetime.fromtimestamp(seconds, timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def prefix(clock: str, role: str, side: str) -> str:
    """The fixed start of every line: ``HH:MM:SS ROLE    [sub:x] ``."""
    return f"{clock} {role:<{ROLE_WIDTH}} " + (f"[{side}] " if side else "")


# CSI sequences (colours, cursor moves), OSC sequences (titles, hyperlinks) and
# the remaining two-byte escapes. Then any other control character but tab and newline.
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

# A data URI of an image inside text (tool output, Codex input_image).
DATA_URI = re.compile(r"data:(image/[\w.+-]+);base64,([A-Za-z0-9+/]{16,}=*)")

# Blocks the CLIs wrap around what the model is told, which a reader of the log
# never wants: Claude Code's reminders and local-command caveats, Codex's
# environment and instruction blocks, Gemini CLI's session context. Removed with their content.
WRAPPER_TAGS = ("system-reminder", "local-command-caveat", "environment_context", "user_instructions",
                "skills_instructions", "permissions instructions", "collaboration_mode", "user_shell_command_caveat",
                "session_context")
WRAPPERS = re.compile(
    r"<(" + "|".join(re.escape(tag) for tag in WRAPPER_TAGS) + r")(?:\s[^>]*)?>.*?(?:</\1>|\Z)", re.S)
# Whole messages that are injected context rather than anything a person typed.
INJECTED_MESSAGE = re.compile(r"\A\s*(# AGENTS\.md instructions for |<INSTRUCTIONS>|Caveat: The messages below)")


def image_note(media_type: str, base64_data: str) -> str:
    """``[image: image/png, 12.3 KB]`` for a base64 image (its decoded size)."""
    size = len(re.sub(r"\s", "", base64_data)) * 3 / 4 / 1024
    return f"[image: {media_type or 'image'}, {size:.1f} KB]"


def clean(text: str) -> str:
    """Text as a reader should see it: no ANSI, no control bytes, no inline
    base64 images, no wrapper noise, no carriage-return overdraws."""
    if not text:
        return ""
    text = ANSI.sub("", text)
    text = DATA_URI.sub(lambda m: image_note(m.group(1), m.group(2)), text)
    text, removed = WRAPPERS.subn("", text)
    if removed:  # the blank lines around a removed block would pile up
        text = re.sub(r"\n[ \t]*\n(?:[ \t]*\n)+", "\n\n", text)
    text = text.replace("\r\n", "\n")
    # A progress bar redraws its line with \r: keep what was finally shown.
    text = "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))
    text = CONTROL.sub("", text)
    return text.strip("\n")


def as_text(value: Any) -> str:
    """Any JSON value as plain text (strings as they are, the rest as JSON)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def as_int(value: Any) -> int:
    """A count as a transcript writes it (a number, now and then a numeric string); 0 if none."""
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError, OverflowError):  # (OverflowError: 1e999, read as infinity)
        return 0


# ============================================================================
# Events
#   What a transcript line becomes. A reader turns each line into zero or more
#   Events; the output section turns each Event into prefixed lines.
# ============================================================================

@dataclass
class Usage:
    """Token figures of one API response (or a sum of them). ``input`` is
    uncached input; the four parts add up to ``total``."""

    input: int = 0  # input tokens not read from or written to the cache
    output: int = 0  # output tokens (thinking / reasoning included)
    cache_creation: int = 0  # input tokens written to the prompt cache
    cache_read: int = 0  # input tokens read from the prompt cache

    FIELDS = ("input", "output", "cache_creation", "cache_read")

    @property
    def total(self) -> int:
        return self.input + self.output + self.cache_creation + self.cache_read

    def add(self, other: Usage) -> None:
        for name in self.FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def larger(self, other: Usage) -> Usage:
        """Field by field, the larger of the two (a response re-written with grown usage)."""
        return Usage(*(max(getattr(self, name), getattr(other, name)) for name in self.FIELDS))

    def covers(self, other: Usage) -> bool:
        return all(getattr(self, name) >= getattr(other, name) for name in self.FIELDS)

    def text(self) -> str:
        return (f"in={self.input} out={self.output} cache_creation={self.cache_creation} "
                f"cache_read={self.cache_read}")


@dataclass
class Event:
    """One block of output.

    ``head`` goes first on the block's first line (a tool's name and id);
    ``text`` follows, its first line beside the head and every further line on
    its own prefixed line. ``cut`` marks tool input and output, which
    ``--max-lines`` shortens. ``response`` names the API response an event
    belongs to (its blocks and its usage); ``usage`` and ``usage_key`` carry
    that response's figures and its de-duplication key (None: never a copy).
    The ledger decides whether and when figures are printed.
    """

    role: str
    text: str = ""
    head: str = ""
    time: datetime | None = None
    side: str = ""  # sub-agent tag, e.g. "sub:ae28203a805312fa4"; "" for the main conversation
    cut: bool = False
    response: object = None  # the API response this event is part of (None: not part of one)
    usage: Usage | None = None
    usage_key: tuple | None = None


class Shown:
    """What a reader has printed of the things that come back as they are rewritten (a Gemini
    message, an opencode message or part): each thing once, the first time ``first`` is asked
    about it. A thing without an id cannot be told from another: it is always new."""

    def __init__(self) -> None:
        # id → what of it was printed ("text", "call", …: a few at most, so a tuple, smaller than a set)
        self.things: dict[str, tuple] = {}

    def first(self, ident: str, what: Any) -> bool:
        """Whether this is new, marking it printed."""
        if not ident:
            return True
        printed = self.things.get(ident, ())
        if what in printed:
            return False
        self.things[ident] = printed + (what,)
        return True

    def forget(self, ident: str) -> None:
        """Drop what was printed of a thing that will not be read again."""
        self.things.pop(ident, None)


# A shape no reader expected (a string where an object was, a number too large) raises one of
# these inside a reader: the line or message is skipped, said so under --debug, and the run goes on.
SHAPE_ERRORS = (TypeError, ValueError, AttributeError, KeyError, OverflowError)


# ============================================================================
# Usage ledger
#   One API response is written as several transcript lines (one per content
#   block) that repeat its message id and request id with equal or growing
#   usage; resumed sessions copy old lines into new files. The ledger counts
#   each response once, with its largest figures, across every file of a run.
# ============================================================================

@dataclass
class Totals:
    """Usage summed over the responses first counted in one file (or in all)."""

    usage: Usage = field(default_factory=Usage)
    responses: int = 0

    def text(self) -> str:
        return f"{self.usage.text()} total={self.usage.total} responses={self.responses}"


class Ledger:
    """Decides which usage to print and count.

    A response's figures are held back (``pending``) while more lines of the
    same response may follow, then printed once as a USAGE event by
    ``flush()``: when an event of anything else arrives, at the end of a file,
    or when a followed file goes quiet. A response seen again after that (a copy
    in a resumed session) is not counted again; if its figures grew, the
    difference is counted and a second USAGE line says so.
    """

    def __init__(self) -> None:
        self.seen: dict[tuple, Usage] = {}  # response key → largest usage counted so far
        self.pending: dict[int, Event] = {}  # file id → the held-back usage event of that file
        self.grand = Totals()

    def offer(self, event: Event, file_totals: Totals, file_id: int) -> list[Event]:
        """Take a usage-carrying event; return the events to print now."""
        key, usage = event.usage_key, event.usage
        out: list[Event] = []
        held = self.pending.get(file_id)
        if held is not None and held.response == event.response:
            held.usage = held.usage.larger(usage)
            held.time = event.time or held.time
            return out
        out += self.flush(file_id, file_totals)
        if key is None or key not in self.seen:
            self.pending[file_id] = Event("USAGE", time=event.time, side=event.side, response=event.response,
                                          usage=usage, usage_key=key)
            return out
        counted = self.seen[key]
        if counted.covers(usage):
            return out  # a copy of a response counted before
        grown = counted.larger(usage)
        delta = Usage(*(getattr(grown, name) - getattr(counted, name) for name in Usage.FIELDS))
        self.seen[key] = grown
        self._count(delta, file_totals, responses=0)
        out.append(Event("USAGE", text=f"{delta.text()} (more for a response counted above)",
                         time=event.time, side=event.side))
        return out

    def holds(self, file_id: int, response: object) -> bool:
        """Whether the figures held back for this file are those of ``response``."""
        held = self.pending.get(file_id)
        return response is not None and held is not None and held.response == response

    def flush(self, file_id: int, file_totals: Totals) -> list[Event]:
        held = self.pending.pop(file_id, None)
        if held is None:
            return []
        if held.usage_key is not None:
            self.seen[held.usage_key] = held.usage
        self._count(held.usage, file_totals, responses=1)
        held.text = held.usage.text()
        return [held]

    def _count(self, usage: Usage, file_totals: Totals, responses: int) -> None:
        for totals in (file_totals, self.grand):
            totals.usage.add(usage)
            totals.responses += responses


# ============================================================================
# Claude Code
#   One JSON line of a Claude Code session file → events. Read: user,
#   assistant, system (subtype turn_duration, compact_boundary, api_error, …)
#   and summary. Skipped, as bookkeeping (seen in 2.1.330): attachment,
#   file-history-snapshot, permission-mode, mode, atis-latch, api-request,
#   api-request-shape, api-request-blob, tools-used, cost-state, last-prompt,
#   queue-operation; anything unknown too. --debug shows what was skipped.
# ============================================================================

COMMAND_TAGS = re.compile(r"<command-(name|message|args)>(.*?)</command-\1>", re.S)
LOCAL_OUTPUT = re.compile(r"<(local-command-stdout|local-command-stderr|bash-stdout|bash-stderr)>(.*?)</\1>", re.S)
BASH_INPUT = re.compile(r"<bash-input>(.*?)</bash-input>", re.S)
TAG_VALUE = re.compile(r"<(summary|status|result)>(.*?)</\1>", re.S)
INTERRUPTED = re.compile(r"^\[Request interrupted by user[^\]]*\]$")


def render_tool_input(value: Any) -> str:
    """A tool call's input, readable: ``$ command`` for shell tools, then
    ``key: value`` lines (multi-line values indented below their key)."""
    if isinstance(value, str):
        parsed = _json_or_none(value)
        if not isinstance(parsed, dict):
            return value
        value = parsed
    if not isinstance(value, dict):
        return as_text(value)
    lines: list[str] = []
    rest = dict(value)
    for key in ("command", "cmd"):
        command = rest.get(key)
        if isinstance(command, list) and all(isinstance(part, str) for part in command):
            command = shlex.join(command)
        if isinstance(command, str):
            lines.append("$ " + command)
            del rest[key]
            break
    for key, item in rest.items():
        text = item if isinstance(item, str) else json.dumps(item, ensure_ascii=False)
        if "\n" in text:
            lines.append(f"{key}:")
            lines += ["  " + line for line in text.split("\n")]
        else:
            lines.append(f"{key}: {text}")
    return "\n".join(lines)


def tool_head(name: Any, call_id: Any) -> str:
    """``Bash (toolu_01…)`` for a call, ``(toolu_01…)`` for a result: the id is what pairs them."""
    ident = as_text(call_id)
    return " ".join(part for part in (as_text(name), f"({ident})" if ident else "") if part)


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, TypeError, RecursionError):  # RecursionError: nested past Python's limit
        return None


def content_text(content: Any) -> str:
    """Tool-result (or message) content → text: strings, text blocks, images as notes."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return as_text(content)
    parts = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict):
            kind = block.get("type")
            if kind in ("text", "input_text", "output_text"):
                parts.append(as_text(block.get("text")))
            elif kind in ("image", "input_image"):
                parts.append(image_block_note(block))
            elif kind == "tool_reference":
                parts.append(f"[tool: {block.get('tool_name', '?')}]")
            else:
                parts.append(f"[{kind}]")
    return "\n".join(part for part in parts if part)


def image_block_note(block: dict) -> str:
    source = block.get("source") if isinstance(block.get("source"), dict) else {}
    if source.get("type") == "base64" or "data" in source:
        return image_note(as_text(source.get("media_type")), as_text(source.get("data")))
    url = block.get("image_url")
    if isinstance(url, dict):
        url = url.get("url")
    if isinstance(url, str):
        match = DATA_URI.match(url)
        if match:
            return image_note(match.group(1), match.group(2))
        return f"[image: {url}]"
    return "[image]"


class ClaudeReader:
    """Turns Claude Code transcript lines into events, one line at a time."""

    def __init__(self, path: Path, debug: bool = False) -> None:
        self.debug = debug
        # Sub-agent files of older versions carry no agentId: the file name does.
        stem = path.stem
        self.file_agent = stem[len("agent-"):] if stem.startswith("agent-") else ""
        self.session = ""  # session id already announced

    def read(self, obj: dict) -> list[Event]:
        kind = obj.get("type")
        when = parse_timestamp(obj.get("timestamp"))
        side = ""
        if obj.get("isSidechain"):
            side = "sub:" + (as_text(obj.get("agentId")) or self.file_agent or "?")
        if kind == "user":
            events = self._user(obj, when)
        elif kind == "assistant":
            events = self._assistant(obj, when)
        elif kind == "system":
            events = self._system(obj, when)
        elif kind == "summary":
            events = [Event("SYS", "summary: " + clean(as_text(obj.get("summary"))), time=when)]
        else:
            events = []
        if not events:  # bookkeeping, unknown, or nothing left once the noise is gone
            events = self._skipped(obj, when, side)
        events = self._announce(obj, when) + events
        for event in events:
            event.side = event.side or side
        return events

    def _announce(self, obj: dict, when: datetime | None) -> list[Event]:
        session = obj.get("sessionId")
        if not isinstance(session, str) or session == self.session or obj.get("type") not in ("user", "assistant"):
            return []
        self.session = session
        version = as_text(obj.get("version")) or "?"
        cwd = as_text(obj.get("cwd"))
        return [Event("SYS", f"session {session} (claude-code {version})" + (f" cwd {cwd}" if cwd else ""),
                      time=when)]

    def _skipped(self, obj: dict, when: datetime | None, side: str) -> list[Event]:
        if not self.debug:
            return []
        kind = as_text(obj.get("type")) or "(no type)"
        detail = obj.get("attachment") if isinstance(obj.get("attachment"), dict) else obj
        if kind in ("attachment", "system") and detail.get("type" if kind == "attachment" else "subtype"):
            kind += "/" + as_text(detail.get("type" if kind == "attachment" else "subtype"))
        return [Event("SYS", f"? {kind}", time=when, side=side)]

    # -- user lines: typed prompts, tool results, slash commands, notifications --

    def _user(self, obj: dict, when: datetime | None) -> list[Event]:
        message = obj.get("message") if isinstance(obj.get("message"), dict) else {}
        content = message.get("content")
        if obj.get("isCompactSummary"):
            return [Event("COMPACT", clean(content_text(content)), time=when)]
        if obj.get("isMeta"):
            return []  # context the CLI added (caveats, skill bodies), never typed by a person
        if isinstance(content, str):
            return self._user_text(content, obj, when)
        events: list[Event] = []
        for block in content if isinstance(content, list) else []:
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            if kind == "tool_result":
                body = clean(content_text(block.get("content")))
                head = tool_head(None, block.get("tool_use_id")) + (" ERROR" if block.get("is_error") else "")
                events.append(Event("TOOL<", body, head=head, time=when, cut=True))
            elif kind == "text":
                events += self._user_text(as_text(block.get("text")), obj, when)
            elif kind == "image":
                events.append(Event("USER", image_block_note(block), time=when))
            elif self.debug:
                events.append(Event("SYS", f"? user block {kind}", time=when))
        return events

    def _user_text(self, text: str, obj: dict, when: datetime | None) -> list[Event]:
        if "<command-name>" in text:
            parts = {name: value.strip() for name, value in COMMAND_TAGS.findall(text)}
            command = " ".join(part for part in (parts.get("name", ""), parts.get("args", "")) if part)
            return [Event("USER", command, time=when)] if command else []
        outputs = LOCAL_OUTPUT.findall(text)
        if outputs:
            body = "\n".join(clean(value) for _, value in outputs if clean(value))
            return [Event("SYS", body, time=when)] if body else []
        bash = BASH_INPUT.search(text)
        if bash:
            return [Event("USER", "! " + bash.group(1).strip(), time=when)]
        if text.lstrip().startswith("<task-notification>"):
            values = {name: clean(value) for name, value in TAG_VALUE.findall(text)}
            body = "\n".join(v for v in (values.get("summary"), values.get("result")) if v)
            return [Event("SYS", "task notification: " + (body or values.get("status", "")), time=when)]
        cleaned = clean(text)
        if not cleaned or INJECTED_MESSAGE.match(cleaned):
            return []
        if INTERRUPTED.match(cleaned):
            return [Event("SYS", cleaned.strip("[]"), time=when)]
        origin = obj.get("origin") if isinstance(obj.get("origin"), dict) else {}
        if origin.get("kind") not in (None, "human") or obj.get("promptSource") == "system":
            return [Event("SYS", cleaned, time=when)]  # written by the CLI, not typed by a person
        return [Event("USER", cleaned, time=when)]

    # -- assistant lines: one content block each, usage repeated per block --

    def _assistant(self, obj: dict, when: datetime | None) -> list[Event]:
        message = obj.get("message") if isinstance(obj.get("message"), dict) else {}
        synthetic = message.get("model") == "<synthetic>"
        content = message.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        events: list[Event] = []
        for block in content if isinstance(content, list) else []:
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            if kind == "text":
                text = clean(as_text(block.get("text")))
                if text:
                    role = "SYS" if synthetic and obj.get("isApiErrorMessage") else "ASSIST"
                    events.append(Event(role, text, time=when))
            elif kind in ("thinking", "redacted_thinking"):
                text = clean(as_text(block.get("thinking")))
                events.append(Event("THINK", text or "[thinking not shown]", time=when))
            elif kind in ("tool_use", "server_tool_use"):
                head = tool_head(block.get("name") or "?", block.get("id"))
                events.append(Event("TOOL>", clean(render_tool_input(block.get("input"))), head=head,
                                    time=when, cut=True))
            elif kind and kind.endswith("_tool_result"):  # web_search_tool_result and the like
                head = tool_head(None, block.get("tool_use_id"))
                events.append(Event("TOOL<", clean(content_text(block.get("content"))), head=head,
                                    time=when, cut=True))
            elif kind == "image":
                events.append(Event("ASSIST", image_block_note(block), time=when))
            elif self.debug:
                events.append(Event("SYS", f"? assistant block {kind}", time=when))
        message_id = message.get("id")
        # Claude Code 2.1.x writes requestRef (always) and requestId (when the
        # server sent one); older versions requestId only.
        request = obj.get("requestId") or obj.get("requestRef") or ""
        key = ("claude", as_text(message_id), as_text(request)) if message_id else None
        response = key or object()  # without an id, each line is a response of its own
        for event in events:
            event.response = response
        usage = message.get("usage")
        if isinstance(usage, dict) and not synthetic:
            figures = Usage(input=as_int(usage.get("input_tokens")), output=as_int(usage.get("output_tokens")),
                            cache_creation=as_int(usage.get("cache_creation_input_tokens")),
                            cache_read=as_int(usage.get("cache_read_input_tokens")))
            events.append(Event("USAGE", time=when, response=response, usage=figures, usage_key=key))
        return events

    # -- system lines --

    def _system(self, obj: dict, when: datetime | None) -> list[Event]:
        subtype = as_text(obj.get("subtype"))
        content = clean(as_text(obj.get("content")))
        if subtype == "turn_duration":
            seconds = as_int(obj.get("durationMs")) / 1000
            return [Event("SYS", f"turn took {seconds:.1f}s", time=when)]
        if subtype == "compact_boundary":
            meta = obj.get("compactMetadata") if isinstance(obj.get("compactMetadata"), dict) else {}
            detail = as_text(meta.get("trigger")) or "?"
            if meta.get("preTokens"):
                detail += f", {as_int(meta.get('preTokens'))} → {as_int(meta.get('postTokens'))} tokens"
            return [Event("SYS", f"conversation compacted ({detail})", time=when)]
        if subtype == "api_error":
            error = obj.get("error") if isinstance(obj.get("error"), dict) else {}
            reason = as_text(error.get("message")) or as_text(obj.get("error")) or "error"
            attempt = f"attempt {as_int(obj.get('retryAttempt'))}/{as_int(obj.get('maxRetries'))}"
            retry = f", retry in {as_int(obj.get('retryInMs')) / 1000:.1f}s" if obj.get("retryInMs") else ""
            return [Event("SYS", f"API error ({attempt}{retry}): {clean(reason)}", time=when)]
        if subtype == "local_command":  # a slash command and its output, as older versions wrote them
            return self._user_text(as_text(obj.get("content")), {}, when)
        if content:
            return [Event("SYS", f"{subtype}: {content}" if subtype else content, time=when)]
        return []


# ============================================================================
# Codex
#   One line of a Codex rollout → events. Lines are {timestamp, type, payload}
#   with type session_meta, response_item (the model's history: messages,
#   reasoning, tool calls and outputs), event_msg (runtime events; token_count
#   carries cumulative usage), turn_context, compacted, and in newer versions
#   world_state and token_usage_record (skipped). User and agent text is read
#   from the response items; its copies in event_msg (user_message,
#   agent_message, agent_reasoning, item_completed) are skipped, as are the
#   developer and environment-context messages Codex injects.
# ============================================================================

CODEX_ITEM_TYPES = {"message", "reasoning", "function_call", "function_call_output", "custom_tool_call",
                    "custom_tool_call_output", "local_shell_call", "web_search_call", "compaction",
                    "compaction_summary", "tool_search_call", "tool_search_output", "image_generation_call"}


def codex_usage(row: dict) -> Usage:
    """A Codex TokenUsage → Usage. Its input_tokens include the cached (and
    cache-written) part, its output_tokens include reasoning."""
    cached = as_int(row.get("cached_input_tokens"))
    written = as_int(row.get("cache_write_input_tokens"))
    return Usage(input=max(0, as_int(row.get("input_tokens")) - cached - written),
                 output=as_int(row.get("output_tokens")), cache_creation=written, cache_read=cached)


class CodexReader:
    """Turns Codex rollout lines into events, one line at a time."""

    def __init__(self, path: Path, debug: bool = False) -> None:
        self.debug = debug
        self.side = ""  # set when session_meta says this rollout is a sub-agent's
        self.model = ""  # the model of the last turn_context, to report changes
        self.totals: dict[str, int] | None = None  # last cumulative total_token_usage seen

    def read(self, obj: dict) -> list[Event]:
        when = parse_timestamp(obj.get("timestamp"))
        kind = obj.get("type")
        payload = obj.get("payload")
        if not isinstance(payload, dict):
            if kind in CODEX_ITEM_TYPES:  # early rollouts: bare response items, no wrapper
                kind, payload = "response_item", obj
            elif "instructions" in obj and "id" in obj:  # early rollouts: the first line
                kind, payload = "session_meta", obj
            else:
                return self._skipped(as_text(kind) or "(no type)", when)
        if kind == "session_meta":
            events = self._meta(payload, when)
        elif kind == "response_item":
            events = self._item(payload, when)
        elif kind == "event_msg":
            events = self._event(payload, when)
        elif kind == "turn_context":
            model = as_text(payload.get("model"))
            events = []
            if model and model != self.model:
                self.model = model
                events.append(Event("SYS", f"model {model}", time=when))
        elif kind == "compacted":
            events = [Event("COMPACT", clean(as_text(payload.get("message"))) or "(no summary text)", time=when)]
        else:
            events = self._skipped(as_text(kind) or "(no type)", when)
        for event in events:
            event.side = event.side or self.side
        return events

    def _skipped(self, what: str, when: datetime | None) -> list[Event]:
        return [Event("SYS", f"? {what}", time=when)] if self.debug else []

    def _meta(self, meta: dict, when: datetime | None) -> list[Event]:
        source = meta.get("source")
        if isinstance(source, dict):
            spawn = source.get("subagent") or source.get("sub_agent") or {}
            if spawn:  # {"thread_spawn": {…, "agent_nickname"}}, or a kind such as "review"
                detail = spawn.get("thread_spawn") if isinstance(spawn, dict) else None
                detail = detail if isinstance(detail, dict) else {}
                name = (as_text(detail.get("agent_nickname")) or as_text(meta.get("agent_nickname"))
                        or (spawn if isinstance(spawn, str) else ""))
                self.side = "sub:" + (name or as_text(meta.get("id"))[:8] or "?")
            source = "subagent"
        version = as_text(meta.get("cli_version")) or "?"
        origin = as_text(source) or as_text(meta.get("originator"))
        cwd = as_text(meta.get("cwd"))
        text = f"session {as_text(meta.get('id'))} (codex {version}{', ' + origin if origin else ''})"
        return [Event("SYS", text + (f" cwd {cwd}" if cwd else ""), time=when)]

    def _item(self, item: dict, when: datetime | None) -> list[Event]:
        kind = as_text(item.get("type"))
        if kind == "message":
            role = item.get("role")
            text = clean(content_text(item.get("content")))
            if role == "assistant" and text:
                return [Event("ASSIST", text, time=when)]
            if role == "user" and text and not INJECTED_MESSAGE.match(text):
                return [Event("USER", text, time=when)]
            return self._skipped(f"{role} message", when)  # developer and system instructions
        if kind == "reasoning":
            parts = [as_text(part.get("text")) for part in item.get("summary") or [] if isinstance(part, dict)]
            if not any(parts):
                parts = [as_text(part.get("text")) for part in item.get("content") or [] if isinstance(part, dict)]
            text = clean("\n".join(part for part in parts if part))
            return [Event("THINK", text, time=when)] if text else self._skipped("encrypted reasoning", when)
        if kind in ("function_call", "custom_tool_call", "tool_search_call"):
            name = as_text(item.get("name")) or kind
            namespace = as_text(item.get("namespace"))
            head = tool_head((namespace + "." if namespace else "") + name, item.get("call_id"))
            body = item.get("arguments") if "arguments" in item else item.get("input")
            return [Event("TOOL>", clean(render_tool_input(body)), head=head, time=when, cut=True)]
        if kind == "local_shell_call":
            action = item.get("action") if isinstance(item.get("action"), dict) else {}
            head = tool_head("local_shell", item.get("call_id"))
            return [Event("TOOL>", clean(render_tool_input(action)), head=head, time=when, cut=True)]
        if kind == "web_search_call":
            action = item.get("action") if isinstance(item.get("action"), dict) else {}
            return [Event("TOOL>", clean(as_text(action.get("query")) or render_tool_input(action)),
                          head="web_search", time=when, cut=True)]
        if kind in ("function_call_output", "custom_tool_call_output", "tool_search_output"):
            return [Event("TOOL<", clean(self._output_text(item.get("output", item.get("tools")))),
                          head=tool_head(None, item.get("call_id")), time=when, cut=True)]
        if kind in ("compaction", "compaction_summary"):
            return [Event("SYS", "conversation compacted (summary kept encrypted by the server)", time=when)]
        return self._skipped(f"response item {kind or '(no type)'}", when)

    @staticmethod
    def _output_text(output: Any) -> str:
        """Tool output: a string, a JSON string {"output": …} (older versions), a
        {content | content_items} payload or a list of content items."""
        if isinstance(output, str):
            parsed = _json_or_none(output)
            if isinstance(parsed, dict) and isinstance(parsed.get("output"), str):
                return parsed["output"]
            return output
        if isinstance(output, dict):
            for key in ("content", "content_items", "output"):
                if key in output:
                    return CodexReader._output_text(output[key])
        return content_text(output)

    def _event(self, payload: dict, when: datetime | None) -> list[Event]:
        kind = as_text(payload.get("type"))
        if kind == "token_count":
            return self._tokens(payload, when)
        if kind in ("task_complete", "turn_complete"):
            duration = payload.get("duration_ms")
            if duration is None:
                return self._skipped(kind, when)
            return [Event("SYS", f"turn took {as_int(duration) / 1000:.1f}s", time=when)]
        if kind == "turn_aborted":
            return [Event("SYS", f"turn aborted ({as_text(payload.get('reason')) or '?'})", time=when)]
        if kind == "context_compacted":
            return [Event("SYS", "conversation compacted", time=when)]
        if kind in ("error", "stream_error", "warning"):
            return [Event("SYS", f"{kind}: {clean(as_text(payload.get('message')))}", time=when)]
        if kind == "thread_rolled_back":
            return [Event("SYS", f"rolled back {as_int(payload.get('num_turns'))} turn(s)", time=when)]
        if kind in ("entered_review_mode", "exited_review_mode"):
            return [Event("SYS", kind.replace("_", " "), time=when)]
        return self._skipped(f"event {kind or '(no type)'}", when)

    def _tokens(self, payload: dict, when: datetime | None) -> list[Event]:
        """One usage event per row whose cumulative totals advanced (Codex
        re-emits unchanged totals); the figures are the advance."""
        info = payload.get("info")
        total = info.get("total_token_usage") if isinstance(info, dict) else None
        if not isinstance(total, dict):
            return []
        now = {key: as_int(value) for key, value in total.items() if not isinstance(value, (dict, list))}
        before, self.totals = self.totals, now
        if before is None:
            delta = codex_usage(now)
        elif now == before:
            return []
        elif all(now.get(key, 0) >= before.get(key, 0) for key in now):
            delta = codex_usage({key: now.get(key, 0) - before.get(key, 0) for key in now})
        else:  # the totals went back (a new session in the same file): trust the last response's own
            last = info.get("last_token_usage")
            delta = codex_usage(last if isinstance(last, dict) else now)
        # A copy of this row in a forked rollout has the same time and totals.
        key = ("codex", str(when), tuple(sorted(now.items())))
        return [Event("USAGE", time=when, response=key, usage=delta, usage_key=key)]


# ============================================================================
# Gemini CLI
#   One line of a Gemini CLI chat file (seen in 0.61) → events. A header
#   {sessionId, projectHash, startTime, kind} opens the file, and a resumed
#   session appends another; messages are {id, timestamp, type, content} with
#   type user, gemini (the model: content, thoughts, toolCalls with their
#   results, tokens), info, warning or error. A message is written again, whole,
#   when it changes (first without its tool calls, then with them), and
#   {"$set": {"messages": [...]}} lists messages again; other $set keys
#   (lastUpdated, …) are bookkeeping, skipped.
# ============================================================================

GEMINI_NOTE_TYPES = ("info", "warning", "error")  # messages the CLI wrote itself: SYS lines
# Gemini CLI wraps shell output in this tag before the model sees it: the tag goes, the output stays.
UNTRUSTED_TAG = re.compile(r"</?untrusted_context>\n?")


def gemini_usage(tokens: dict) -> Usage:
    """A Gemini message's tokens → Usage. Its input includes the cached part;
    thoughts and tool-use prompt tokens are counted beside output and input."""
    cached = as_int(tokens.get("cached"))
    return Usage(input=max(0, as_int(tokens.get("input")) - cached) + as_int(tokens.get("tool")),
                 output=as_int(tokens.get("output")) + as_int(tokens.get("thoughts")), cache_read=cached)


def gemini_parts(content: Any) -> list[dict]:
    """A message's content as a list of parts: a plain string is one text part."""
    if isinstance(content, str):
        return [{"text": content}]
    return [part for part in content if isinstance(part, dict)] if isinstance(content, list) else []


def gemini_part_text(part: dict) -> str:
    """A text, image or file part as text; "" for tool calls and results (shown on their own)."""
    if "text" in part:
        return as_text(part.get("text"))
    data = part.get("inlineData")
    if isinstance(data, dict):
        return image_note(as_text(data.get("mimeType")), as_text(data.get("data")))
    if isinstance(part.get("fileData"), dict):
        return f"[file: {as_text(part['fileData'].get('fileUri')) or '?'}]"
    return ""


def gemini_response_text(response: dict) -> tuple[str, bool]:
    """A functionResponse's output as text, and whether it is an error."""
    body = response.get("response")
    failed = isinstance(body, dict) and "error" in body and "output" not in body
    if isinstance(body, dict) and ("output" in body or "error" in body):
        body = body.get("output", body.get("error"))
    return UNTRUSTED_TAG.sub("", as_text(body)), failed


class GeminiReader:
    """Turns Gemini CLI chat lines into events, one line at a time.

    The same message id comes back whenever the CLI rewrites a message, and a
    ``$set`` lists old messages again. Rule: each part of a message is printed
    once, the first time it is seen not empty: its text, each thought, each
    tool call and each tool result. Calls and results are keyed by call id,
    because a result is repeated in the user message that follows and a
    resumed session lists the calls again as functionCall parts. Usage is keyed
    by message id, so the ledger counts a response once however often it is
    written (agents.py keys it the same way).
    """

    def __init__(self, path: Path, debug: bool = False) -> None:
        self.debug = debug
        self.session = ""  # the session id of the last header
        self.side = ""  # "sub:<id8>" when the header says this chat is a sub-agent's
        self.model = ""  # the model of the last answer, to report changes
        # Parts printed so far: by message id, "text" or a thought's number; by call id, "call" or "result".
        self.shown = Shown()

    def read(self, obj: dict) -> list[Event]:
        when = parse_timestamp(obj.get("timestamp"))
        if isinstance(obj.get("$set"), dict):
            changes = obj["$set"]
            listed = changes.get("messages")
            events = []
            for message in listed if isinstance(listed, list) else []:
                if isinstance(message, dict):
                    events += self._message(message)
            what = "$set " + ", ".join(sorted(map(str, changes)))
        elif "type" in obj:
            events = self._message(obj)
            kind = as_text(obj.get("type")) or "(no type)"
            known = kind in ("user", "gemini", *GEMINI_NOTE_TYPES)
            what = f"{kind} (nothing new to print)" if known else kind
        elif "sessionId" in obj:
            events, what = self._header(obj), "header"
        else:
            events, what = [], "(no type)"
        if not events and self.debug:
            events = [Event("SYS", f"? {what}", time=when)]
        for event in events:
            event.side = event.side or self.side
        return events

    def _header(self, obj: dict) -> list[Event]:
        session = as_text(obj.get("sessionId"))
        kind = as_text(obj.get("kind")) or "main"
        resumed = session == self.session
        self.session = session
        if kind == "subagent":
            self.side = "sub:" + (session[:8] or "?")
        text = f"session {session} (gemini-cli, {kind})" + (" resumed" if resumed else "")
        folders = obj.get("directories")
        if isinstance(folders, list) and folders:
            text += " directories " + " ".join(as_text(folder) for folder in folders)
        return [Event("SYS", text, time=parse_timestamp(obj.get("startTime")))]

    def _message(self, message: dict) -> list[Event]:
        kind = message.get("type")
        when = parse_timestamp(message.get("timestamp"))
        ident = as_text(message.get("id"))
        if kind == "user":
            return self._user(ident, message.get("content"), when)
        if kind == "gemini":
            return self._answer(ident, message, when)
        if kind in GEMINI_NOTE_TYPES:
            text = clean("\n".join(filter(None, map(gemini_part_text, gemini_parts(message.get("content"))))))
            if text and self.shown.first(ident, "text"):
                return [Event("SYS", f"{kind}: {text}", time=when)]
        return []

    def _user(self, ident: str, content: Any, when: datetime | None) -> list[Event]:
        texts, results = [], []
        for part in gemini_parts(content):
            response = part.get("functionResponse")
            if isinstance(response, dict):
                output, failed = gemini_response_text(response)
                results += self._result(as_text(response.get("id")), output, "error" if failed else "", when)
            else:
                texts.append(gemini_part_text(part))
        text = clean("\n".join(filter(None, texts)))
        if text and not INJECTED_MESSAGE.match(text) and self.shown.first(ident, "text"):
            return [Event("USER", text, time=when)] + results
        return results

    def _answer(self, ident: str, message: dict, when: datetime | None) -> list[Event]:
        events: list[Event] = []
        model = as_text(message.get("model"))
        if model and model != self.model:
            self.model = model
            events.append(Event("SYS", f"model {model}", time=when))
        thoughts = message.get("thoughts")
        for number, thought in enumerate(thoughts if isinstance(thoughts, list) else []):
            if isinstance(thought, dict):  # {subject, description}: the subject above what was thought
                thought = "\n".join(as_text(thought.get(key)) for key in ("subject", "description") if thought.get(key))
            text = clean(as_text(thought))
            if self.shown.first(ident, number):
                events.append(Event("THINK", text or "[thinking not shown]", time=when))
        parts = gemini_parts(message.get("content"))
        text = clean("\n".join(filter(None, map(gemini_part_text, parts))))
        if text and self.shown.first(ident, "text"):
            events.append(Event("ASSIST", text, time=when))
        # The calls: from toolCalls, or as functionCall parts when a $set lists the message again.
        calls = message.get("toolCalls")
        calls = [call for call in calls if isinstance(call, dict)] if isinstance(calls, list) else []
        calls += [part["functionCall"] for part in parts if isinstance(part.get("functionCall"), dict)]
        results: list[Event] = []
        for call in calls:
            call_id = as_text(call.get("id"))
            if self.shown.first(call_id, "call"):
                events.append(Event("TOOL>", clean(render_tool_input(call.get("args"))),
                                    head=tool_head(call.get("name") or "?", call_id), time=when, cut=True))
            result = call.get("result")
            outputs = [part for part in result if isinstance(part, dict)] if isinstance(result, list) else []
            if outputs:
                texts = [gemini_response_text(part["functionResponse"])[0]
                         if isinstance(part.get("functionResponse"), dict) else gemini_part_text(part)
                         for part in outputs]
                status = as_text(call.get("status"))
                results += self._result(call_id, "\n".join(texts), "" if status == "success" else status,
                                        parse_timestamp(call.get("timestamp")) or when)
        # Message ids are unique across sessions (a resumed chat keeps them); one without an id is
        # known by its time. With neither it cannot be counted once, so it is not counted.
        stamp = ident or as_text(message.get("timestamp"))
        key = ("gemini", stamp) if stamp else None
        response = key or object()
        for event in events:
            event.response = response
        tokens = message.get("tokens")
        if isinstance(tokens, dict) and key:
            events.append(Event("USAGE", time=when, response=response, usage=gemini_usage(tokens), usage_key=key))
        # Results come after the response's usage, as they do in the other formats.
        return events + results

    def _result(self, call_id: str, output: str, status: str, when: datetime | None) -> list[Event]:
        if not self.shown.first(call_id, "result"):
            return []
        head = tool_head(None, call_id) + (f" {status.upper()}" if status else "")
        return [Event("TOOL<", clean(output), head=head, time=when, cut=True)]


# ============================================================================
# opencode
#   opencode (seen in 1.18.33) keeps every session in one SQLite store,
#   opencode.db, read in the Files section: a session row (parent_id: the
#   session that started it as a sub-agent), message rows (JSON data: role;
#   an answer's tokens, model, time.completed, finish, error) and their part
#   rows (JSON data by type: text, reasoning, tool with its state, file,
#   compaction, retry; step-start, step-finish, patch and the like are
#   bookkeeping, skipped). Rows are rewritten in place as a turn goes on.
# ============================================================================

def opencode_usage(tokens: dict) -> Usage:
    """An opencode message's tokens → Usage, as agents.py reads them: its input already
    excludes the cached part, its output excludes the reasoning (added here)."""
    cache = tokens.get("cache") if isinstance(tokens.get("cache"), dict) else {}
    return Usage(input=as_int(tokens.get("input")),
                 output=as_int(tokens.get("output")) + as_int(tokens.get("reasoning")),
                 cache_creation=as_int(cache.get("write")), cache_read=as_int(cache.get("read")))


def opencode_final(message: dict) -> bool:
    """Whether a message is final: a prompt always; an answer once completed or finished."""
    times = message.get("time") if isinstance(message.get("time"), dict) else {}
    return message.get("role") != "assistant" or bool(times.get("completed") or message.get("finish"))


def opencode_error(error: Any) -> str:
    """An error as opencode records it, ``{name, data: {message}}``, as one line of text."""
    if not isinstance(error, dict):
        return clean(as_text(error))
    data = error.get("data") if isinstance(error.get("data"), dict) else {}
    return ": ".join(part for part in (as_text(error.get("name")), clean(as_text(data.get("message")))) if part)


class OpencodeReader:
    """Turns opencode's session, message and part rows into events.

    The store hands a message over again whenever its row or one of its parts'
    rows changed. Rule: each thing is printed once, when it is complete — a
    session's header when it is first seen; a text or reasoning part once it is
    done (``time.end`` set, no ``time`` at all as in a prompt, or its message
    final); a tool call once its input is complete (status running, completed
    or error), its result once it has one; an answer's model when it changes,
    its error once the answer is final. ``final`` (the last read of a run, or
    an answer that will never be finished) prints what there is, done or not.
    A final answer's USAGE is offered again whenever its figures change (the
    ledger counts what they grew by); it is keyed by message id, as agents.py
    keys it; the step-finish parts repeat the figures and are not counted.
    """

    def __init__(self, debug: bool = False) -> None:
        self.debug = debug
        self.sides: dict[str, str] = {}  # session id → "" or "sub:<its last 8 characters>", once announced
        self.models: dict[str, str] = {}  # session id → the model of its last answer, to report changes
        self.shown = Shown()  # by message or part id: what of it was printed

    def forget(self, idents: Iterable[str]) -> None:
        """Drop what was printed of messages and parts that will not be read again."""
        for ident in idents:
            self.shown.forget(ident)

    def announce(self, session: str, parent: str, version: str, directory: str, title: str,
                 created: Any) -> list[Event]:
        """A session's header line, the first time it is seen."""
        if session in self.sides:
            return []
        side = self.sides[session] = "sub:" + session[-8:] if parent else ""
        text = f"session {session} (opencode {version or '?'}{', sub-agent of ' + parent if parent else ''})"
        text += (f" cwd {directory}" if directory else "") + (f" title {title}" if title else "")
        return [Event("SYS", clean(text), time=parse_timestamp(created), side=side)]

    def message(self, session: str, ident: str, message: dict, parts: list[tuple[str, Any, dict]],
                final: bool) -> list[Event]:
        """Events of one message and of its parts (part id, time created, data), in their order."""
        role = as_text(message.get("role"))
        times = message.get("time") if isinstance(message.get("time"), dict) else {}
        when = parse_timestamp(times.get("created"))
        done = final or opencode_final(message)
        # An answer's summary: true marks a compaction's summary (a prompt's summary holds its diffs).
        summary = role == "assistant" and message.get("summary") is True
        events = self._model(session, message, when) if role == "assistant" else []
        for part_id, created, part in parts:
            events += self._part(part_id, part, role, summary, done, parse_timestamp(created) or when)
        if role == "assistant" and done:
            ended = parse_timestamp(times.get("completed")) or when
            if message.get("error") and self.shown.first(ident, "error"):
                events.append(Event("SYS", opencode_error(message["error"]), time=ended))
            tokens = message.get("tokens")
            usage = opencode_usage(tokens) if isinstance(tokens, dict) else Usage()
            if usage.total and self.shown.first(ident, "usage " + usage.text()):
                key = ("opencode", ident)
                events.append(Event("USAGE", time=ended, usage=usage, usage_key=key))
        for event in events:
            event.side = self.sides.get(session, "")
            if role == "assistant":
                event.response = ("opencode", ident)
        return events

    def _model(self, session: str, message: dict, when: datetime | None) -> list[Event]:
        model = "/".join(as_text(message.get(key)) for key in ("providerID", "modelID") if message.get(key))
        if not model or model == self.models.get(session):
            return []
        self.models[session] = model
        return [Event("SYS", f"model {model}", time=when)]

    def _part(self, ident: str, part: dict, role: str, summary: bool, done: bool,
              when: datetime | None) -> list[Event]:
        kind = as_text(part.get("type"))
        if kind in ("text", "reasoning"):
            times = part.get("time")
            if not (done or not isinstance(times, dict) or times.get("end")):
                return []  # still streaming
            if part.get("synthetic") or part.get("ignored"):  # context opencode added, never typed
                return self._skipped(ident, f"{kind} written by opencode", when)
            text = clean(as_text(part.get("text")))
            if kind == "reasoning":
                shown = Event("THINK", text or "[thinking not shown]", time=when)
            else:
                shown = Event("COMPACT" if summary else "USER" if role == "user" else "ASSIST", text, time=when)
            return [shown] if shown.text and self.shown.first(ident, "text") else []
        if kind == "tool":
            return self._tool(ident, part, done, when)
        if kind == "file":
            url = as_text(part.get("url"))
            image = DATA_URI.match(url)
            text = image_note(image.group(1), image.group(2)) if image else \
                f"[file: {as_text(part.get('filename')) or url or '?'}]"
            role_name = "USER" if role == "user" else "ASSIST"
            return [Event(role_name, text, time=when)] if self.shown.first(ident, "file") else []
        if kind == "compaction" and self.shown.first(ident, "compaction"):
            return [Event("SYS", f"conversation compacted ({'auto' if part.get('auto') else 'manual'})", time=when)]
        if kind == "retry" and self.shown.first(ident, "retry"):
            return [Event("SYS", f"API error (attempt {as_int(part.get('attempt'))}): "
                                 f"{opencode_error(part.get('error'))}", time=when)]
        return self._skipped(ident, f"part {kind or '(no type)'}", when)

    def _tool(self, ident: str, part: dict, done: bool, when: datetime | None) -> list[Event]:
        state = part.get("state") if isinstance(part.get("state"), dict) else {}
        status = as_text(state.get("status"))
        times = state.get("time") if isinstance(state.get("time"), dict) else {}
        call = part.get("callID")
        events = []
        if (done or status not in ("", "pending")) and self.shown.first(ident, "call"):
            events.append(Event("TOOL>", clean(render_tool_input(state.get("input"))),
                                head=tool_head(part.get("tool") or "?", call),
                                time=parse_timestamp(times.get("start")) or when, cut=True))
        if status in ("completed", "error") and self.shown.first(ident, "result"):
            output = state.get("output") if status == "completed" else state.get("error")
            head = tool_head(None, call) + (" ERROR" if status == "error" else "")
            events.append(Event("TOOL<", clean(content_text(output)), head=head,
                                time=parse_timestamp(times.get("end")) or when, cut=True))
        return events

    def _skipped(self, ident: str, what: str, when: datetime | None) -> list[Event]:
        return [Event("SYS", f"? {what}", time=when)] if self.debug and self.shown.first(ident, "skipped") else []


# ============================================================================
# Files
#   Reading a transcript incrementally (complete lines only, from a byte
#   offset), choosing its reader from its first line, and surviving anything:
#   malformed JSON, unknown types, a file that shrinks or disappears. Reading
#   opencode's store incrementally: the rows that changed since the last read.
# ============================================================================

class Transcript:
    """One transcript file being read: where we are in it and how it reads."""

    def __init__(self, path: Path, number: int, debug: bool = False, usage_only: bool = False) -> None:
        self.path = path
        self.number = number  # unique per run: the ledger's handle for this file
        self.debug = debug
        self.usage_only = usage_only  # --totals: a Claude line without usage is not decoded
        self.offset = 0  # bytes consumed (complete lines only)
        self.inode = 0  # the file's inode when last read: a new one is a file replaced
        self.lineno = 0  # lines consumed
        self.reader: ClaudeReader | CodexReader | GeminiReader | None = None
        self.totals = Totals()
        self.started = False  # the file header has been printed
        self.last_time: datetime | None = None  # the latest timestamp of a line read

    def read_new(self, final: bool) -> tuple[list[Event], str | None]:
        """Events of the complete lines appended since the last call (and of a
        last line without newline when ``final``); an error text if unreadable."""
        try:
            with open(self.path, "rb") as handle:
                info = os.fstat(handle.fileno())
                note: list[Event] = []
                if info.st_size < self.offset or self.inode and info.st_ino != self.inode:
                    # (Gemini CLI rewrites a chat whole, into a new file: what was printed is not again.)
                    what = "shrank" if info.st_size < self.offset else "was replaced"
                    note.append(Event("SYS", f"{self.path} {what}: reading it again from the start"))
                    self.offset, self.lineno = 0, 0
                self.inode = info.st_ino
                handle.seek(self.offset)
                data = handle.read()
        except OSError as error:
            return [], f"{self.path}: {error.strerror or error}"
        end = data.rfind(b"\n") + 1
        if final and end < len(data):
            end = len(data)
        chunk, self.offset = data[:end], self.offset + end
        events = note
        lines = chunk.split(b"\n")
        if chunk.endswith(b"\n"):
            lines.pop()  # the empty piece after the last newline
        for raw in lines:
            self.lineno += 1
            if self.usage_only and isinstance(self.reader, ClaudeReader) and b'"usage"' not in raw:
                self._note_time(raw)
            elif raw.strip():
                events += self.read_line(raw)
        return events, None

    def read_batches(self, final: bool) -> Iterator[tuple[list[Event], str | None]]:
        """What ``read_new`` returns, as the one batch the run reads (a store hands out several)."""
        yield self.read_new(final)

    def _note_time(self, raw: bytes) -> None:
        """The line's own timestamp (Claude writes it after the message, as the last top-level
        string field but a tool result's), read without decoding the line."""
        at = raw.rfind(b'"timestamp":')
        start = raw.find(b'"', at + 12) + 1 if at >= 0 else 0
        when = parse_timestamp(raw[start:raw.find(b'"', start)].decode("ascii", "replace")) if start else None
        if when and (self.last_time is None or when > self.last_time):
            self.last_time = when

    def read_line(self, raw: bytes) -> list[Event]:
        try:
            obj = json.loads(raw.decode("utf-8", errors="replace"))
        except (ValueError, RecursionError):  # RecursionError: nested past Python's limit
            return [Event("SYS", f"? malformed line {self.lineno}")] if self.debug else []
        if not isinstance(obj, dict):
            return [Event("SYS", f"? line {self.lineno} is not an object")] if self.debug else []
        when = parse_timestamp(obj.get("timestamp"))
        if when and (self.last_time is None or when > self.last_time):
            self.last_time = when
        if self.reader is None:
            self.reader = self._choose_reader(obj)
        try:
            return self.reader.read(obj)
        except SHAPE_ERRORS as error:
            return [Event("SYS", f"? line {self.lineno} not understood ({error})")] if self.debug else []

    def _choose_reader(self, obj: dict) -> ClaudeReader | CodexReader | GeminiReader:
        if "projectHash" in obj or "$set" in obj or obj.get("type") == "gemini":
            return GeminiReader(self.path, self.debug)
        is_codex = ("payload" in obj and "timestamp" in obj) or obj.get("type") in CODEX_ITEM_TYPES \
            or ("instructions" in obj and "id" in obj and "type" not in obj) or "record_type" in obj
        return CodexReader(self.path, self.debug) if is_codex else ClaudeReader(self.path, self.debug)


OPENCODE_STORE = "opencode.db"  # the name of opencode's store in its data folder
SQLITE_HEADER = b"SQLite format 3\x00"  # how every SQLite file begins
OPENCODE_WAIT = 1.0  # seconds a read waits while the CLI holds its store locked, then calls it unreadable
# A message is looked at again until this long after it or one of its parts last changed, and a read
# starts this far before what it still looks at: its parts are rows of their own, written by statements
# of their own, and rows are committed a little out of the order of their times.
OPENCODE_SLACK_MS = 10_000


def is_store(path: Path) -> bool:
    """Whether a file is read as opencode's store: named ``*.db``, or an SQLite file by its header."""
    if path.suffix == ".db":
        return True
    try:
        with open(path, "rb") as handle:
            return handle.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:
        return False


def sessions_in_scope(rows: list[sqlite3.Row], wanted: list[str] | None) -> list[sqlite3.Row]:
    """The session rows asked for (all if ``wanted`` is None) and their sub-agents', recursively."""
    if wanted is None:
        return rows
    chosen, children = set(wanted), {}
    for row in rows:
        if row["parent_id"]:
            children.setdefault(row["parent_id"], []).append(row["id"])
    todo = list(chosen)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in chosen:
                chosen.add(child)
                todo.append(child)
    return [row for row in rows if row["id"] in chosen]


@dataclass(slots=True)
class OpencodeMessage:
    """What a store's reading keeps of one message while it is in its session's read window."""

    created: int  # its time_created: its place in the window
    updated: Any  # its row's time_updated when last read
    parts: dict[str, Any] = field(default_factory=dict)  # part id → its time_updated when last read
    open: bool = True  # it may still change: looked at at every read

    def changed_at(self) -> int:
        """When it or one of its parts last changed, as far as read (ms since the epoch)."""
        return max([as_int(self.updated), *map(as_int, self.parts.values())])


@dataclass(slots=True)
class OpencodeSession:
    """What a store's reading keeps of one session it has read."""

    updated: Any = None  # its row's time_updated when last read through
    messages: dict[str, OpencodeMessage] = field(default_factory=dict)  # those in its read window, by id
    open: bool = True  # a message of it is open (or it was not read through): it is read at every read

    def window(self) -> int:
        """The time_created its next read starts from: that of its oldest open message (else of its
        newest), less OPENCODE_SLACK_MS, as a message may be committed after a newer one."""
        created = [message.created for message in self.messages.values() if message.open]
        since = min(created) if created else max((message.created for message in self.messages.values()), default=0)
        return since - OPENCODE_SLACK_MS


class OpencodeStore:
    """opencode's store being read. To the run it is one more transcript: the run loop uses its
    ``path``, ``number``, ``offset``, ``totals``, ``started``, ``last_time`` and ``read_batches``
    as a Transcript's. Its sessions are printed oldest first.

    Each read opens the file read-only and asks everything in one transaction, a snapshot (the
    CLI writes while we read), handing out the events message by message as it goes: a big store
    is never held in memory whole. A read asks for little when little changed:

    - sessions: one scan of the session rows, and of the rows added to message and part since the
      last read (a rowid above the largest one then; each row names its session). A session is
      read if it is new, its row's time_updated moved, a row was added to it, or a message of it
      is open; any other has nothing new (its messages are closed, nothing was added). Trap:
      SQLite numbers a new row one past the largest rowid, so deleting the last rows (a reverted
      turn) frees rowids for new ones: a largest rowid lower than at the last read makes every
      session read again (as many rows deleted as added between two reads go unseen this way:
      then only a moved session row or an open message has the session read).
    - messages of a session read: those created since its oldest open message (else its newest)
      less OPENCODE_SLACK_MS, by the index (session_id, time_created, id).
    - parts: all of a message whose row changed (one may have become printable by it); of an open
      message, or one a part was added to, those changed since its newest part read, less
      OPENCODE_SLACK_MS.

    A message is open until it is final and quiet (neither it nor a part changed for
    OPENCODE_SLACK_MS); one that is never finished (its turn was killed) until a newer message is
    in its session and it is quiet: it is then printed a last time, as a one-off read prints it.
    A row goes to the reader only when its time_updated moved. What is kept of a message is
    dropped once it is closed and behind its session's read window, or deleted: it is not read
    again. Any sqlite3.Error (locked, damaged, not SQLite, no such table) ends the read with an
    error text; what was handed out before is printed, and the next read asks for the rest.
    """

    def __init__(self, path: Path, number: int, debug: bool = False, usage_only: bool = False,
                 sessions: Callable[[], list[str] | None] = lambda: None,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.number = number  # unique per run: the ledger's handle for this store
        self.debug = debug
        self.usage_only = usage_only  # --totals: only the messages are read, not their parts
        self.sessions = sessions  # the session ids asked for, asked again at each read (None: all)
        self.clock = clock  # now, in seconds since the epoch, as opencode's times count (a test's is fake)
        self.reader = OpencodeReader(debug)
        self.offset = 0  # rows read that had changed: how the run sees the store grow
        self.known: dict[str, OpencodeSession] = {}  # session id → what is kept of it, once read
        self.rowids = (0, 0)  # the largest rowid of message and of part at the last read
        self.fetched = 0  # rows the last read fetched: what it cost
        self.totals = Totals()
        self.started = False  # the file header has been printed
        self.last_time: datetime | None = None  # the latest time of an event read

    def read_batches(self, final: bool) -> Iterator[tuple[list[Event], str | None]]:
        """Events of the rows that changed since the last read, in batches as they are read (a
        session's header, then one per message); last, an error text if the store cannot be read."""
        uri = self.path.resolve().as_uri() + "?mode=ro"
        try:
            with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=OPENCODE_WAIT, isolation_level=None)) as db:
                db.row_factory = sqlite3.Row
                db.execute("begin")  # one snapshot for every query of the read
                yield from self._read(db, final)
        except sqlite3.Error as error:
            yield [], f"{self.path}: not readable as opencode's store ({error})"

    def _read(self, db: sqlite3.Connection, final: bool) -> Iterator[tuple[list[Event], None]]:
        self.fetched = 0
        now = self.clock() * 1000
        rows = self._fetch(db, "select id, parent_id, directory, title, version, time_created, time_updated "
                               "from session order by time_created, id")
        rowids = tuple(self._fetch(db, f"select max(rowid) from {table}")[0][0] or 0 for table in ("message", "part"))
        added, touched, deleted = self._added(db, rowids)
        for session in sessions_in_scope(rows, self.sessions()):
            ident = session["id"]
            known = self.known.get(ident)
            if known and not (deleted or ident in added or known.updated != session["time_updated"]
                              or known.open):
                continue  # nothing of it can have changed
            header = self.reader.announce(ident, as_text(session["parent_id"]), as_text(session["version"]),
                                          as_text(session["directory"]), as_text(session["title"]),
                                          session["time_created"])
            if header:
                yield self._batch(header)
            yield from self._read_session(db, ident, touched, final, now)
            self.known[ident].updated = session["time_updated"]
        self.rowids = rowids

    def _added(self, db: sqlite3.Connection, rowids: tuple[int, ...]) -> tuple[set[str], set[str], bool]:
        """The sessions and the messages that rows were added to since the last read; and whether
        rows were deleted since (their rowids may be numbers read before: every session is read)."""
        if not self.known:
            return set(), set(), False  # every session is new
        if any(now < before for now, before in zip(rowids, self.rowids)):
            return set(), set(), True
        sessions = {row[0] for row in self._fetch(db, "select session_id from message where rowid > ?",
                                                  [self.rowids[0]])}
        messages = set()
        for session, message in self._fetch(db, "select session_id, message_id from part where rowid > ?",
                                            [self.rowids[1]]):
            sessions.add(session)
            messages.add(message)
        return sessions, messages, False

    def _read_session(self, db: sqlite3.Connection, session: str, touched: set[str], final: bool,
                      now: float) -> Iterator[tuple[list[Event], None]]:
        """A batch per message of the session's read window that changed or is open; then what is
        kept of those closed and left behind, or deleted, is dropped."""
        known = self.known.setdefault(session, OpencodeSession())
        known.open, start = True, known.window()  # (open until read through)
        rows = self._fetch(db, "select id, time_created, time_updated, data from message where session_id = ? "
                               "and time_created >= ? order by time_created, id", [session, start])
        for row in rows:
            events = self._message(db, session, known, row, row is not rows[-1], row["id"] in touched, final, now)
            if events:
                yield self._batch(events)
        present = {row["id"] for row in rows}
        gone = [ident for ident, message in known.messages.items() if ident not in present and message.created >= start]
        self._forget(known, gone)
        behind = math.inf if final else known.window()  # (after a last read, nothing is read again)
        self._forget(known, [ident for ident, message in known.messages.items()
                             if not message.open and message.created < behind])
        known.open = any(message.open for message in known.messages.values())

    def _message(self, db: sqlite3.Connection, session: str, known: OpencodeSession, row: sqlite3.Row,
                 overtaken: bool, touched: bool, final: bool, now: float) -> list[Event]:
        """Events of a message row if it or its parts changed (``overtaken``: a newer message is in
        its session; ``touched``: a part was added to it); notes whether it is still open."""
        ident, updated = row["id"], row["time_updated"]
        seen = known.messages.get(ident)
        changed = seen is None or seen.updated != updated
        if not (changed or seen.open or touched):
            return []  # closed: read again only because it is in the window
        if seen is None:
            seen = known.messages[ident] = OpencodeMessage(as_int(row["time_created"]), updated)
        seen.updated = updated
        self.offset += changed
        message = _json_or_none(row["data"])
        if not isinstance(message, dict):
            seen.open = False
            return [Event("SYS", f"? message {ident} is not a JSON object")] if self.debug and changed else []
        parts = self._parts(db, ident, None if changed else seen)
        fresh = [part for part in parts if changed or seen.parts.get(part["id"]) != part["time_updated"]]
        seen.parts.update((part["id"], part["time_updated"]) for part in fresh)
        self.offset += len(fresh)
        quiet = now - seen.changed_at() > OPENCODE_SLACK_MS
        # A turn killed mid-answer never finishes its message: once a newer one is in its session and
        # it is quiet, nothing more will come. It is printed as a one-off read prints it, done or not.
        abandoned = not final and quiet and overtaken and not opencode_final(message)
        seen.open = not final and not (quiet and (overtaken or opencode_final(message)))
        if abandoned and not changed:
            parts = self._parts(db, ident, None)
        elif not fresh and not changed:
            return []
        decoded = [(part["id"], part["time_created"], data) for part in (parts if abandoned else fresh)
                   if isinstance(data := _json_or_none(part["data"]), dict)]
        try:
            return self.reader.message(session, ident, message, decoded, final or abandoned)
        except SHAPE_ERRORS as error:
            return [Event("SYS", f"? message {ident} not understood ({error})")] if self.debug else []

    def _parts(self, db: sqlite3.Connection, message: str, seen: OpencodeMessage | None) -> list[sqlite3.Row]:
        """A message's part rows, in their order: all of them (``seen`` None), or those changed
        since the newest part of ``seen`` read, less OPENCODE_SLACK_MS."""
        if self.usage_only:
            return []
        if seen is None:
            return self._fetch(db, "select id, time_created, time_updated, data from part where message_id = ? "
                                   "order by id", [message])
        newest = max(map(as_int, seen.parts.values()), default=0)
        return self._fetch(db, "select id, time_created, time_updated, data from part where message_id = ? "
                               "and time_updated >= ? order by id", [message, newest - OPENCODE_SLACK_MS])

    def _forget(self, known: OpencodeSession, messages: list[str]) -> None:
        for ident in messages:
            self.reader.forget([ident, *known.messages.pop(ident).parts])

    def _fetch(self, db: sqlite3.Connection, query: str, parameters: list[Any] | None = None) -> list[sqlite3.Row]:
        rows = db.execute(query, parameters or []).fetchall()
        self.fetched += len(rows)
        return rows

    def _batch(self, events: list[Event]) -> tuple[list[Event], None]:
        for event in events:
            if event.time and (self.last_time is None or event.time > self.last_time):
                self.last_time = event.time
        return events, None


# ============================================================================
# Finding
#   Paths given on the command line (files, opencode stores, or folders
#   searched for *.jsonl), and an agent's transcripts found from agents.toml,
#   the backend's env and the session ids agents.py recorded in its state.json.
# ============================================================================

class UsageError(Exception):
    """A problem with the command line or the config: exit 2."""


class RuntimeProblem(Exception):
    """Nothing to read, or a file that cannot be read: exit 1."""


def expand_paths(paths: Iterable[Path], quiet_missing: bool = False) -> list[Path]:
    """Files as given; folders searched recursively for ``*.jsonl``, sorted, then
    the opencode store a folder holds (``opencode.db`` or ``opencode/opencode.db``:
    the data folder). A session file sorts before its ``<session>/subagents/`` folder."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            # Sorted as strings: "<session>.jsonl" before "<session>/subagents/…".
            found += sorted((p for p in path.rglob("*.jsonl") if p.is_file()), key=str)
            found += [store for store in (path / OPENCODE_STORE, path / "opencode" / OPENCODE_STORE) if store.is_file()]
        elif path.is_file():
            found.append(path)
        elif not quiet_missing:
            raise RuntimeProblem(f"{path}: no such file or folder")
    unique: dict[Path, None] = {}
    for path in found:
        unique.setdefault(path, None)
    return list(unique)


def project_slug(cwd: Path) -> str:
    """Claude Code's folder name for a project: the absolute cwd, every non-alphanumeric as ``-``."""
    return re.sub(r"[^A-Za-z0-9]", "-", str(cwd))


# The built-in backend presets of agents.py and the transcript format of each.
PRESET_TRANSCRIPTS = {"claude": "claude", "codex": "codex", "gemini": "gemini", "aider": "none",
                      "opencode": "opencode", "shell": "none"}


@dataclass
class AgentSource:
    """Where an agent's transcripts are, as resolved from agents.toml."""

    name: str
    format: str  # "claude", "codex", "gemini", "opencode" or "none"
    cwd: Path  # the agent's working folder (absolute)
    # The CLI's data folder: CLAUDE_CONFIG_DIR or ~/.claude; CODEX_HOME or ~/.codex;
    # $GEMINI_CLI_HOME/.gemini or ~/.gemini; $XDG_DATA_HOME/opencode or ~/.local/share/opencode.
    home: Path
    session_ids: list[str]
    # Codex or opencode agents sharing this cwd and home (in config order, this one included; none if
    # it is alone). Codex: the session ids recorded for the others tell their rollouts apart, as in
    # agents.py. opencode: agents.py records every session begun there under the first of them.
    sharers: list[str] = field(default_factory=list)
    theirs: set[str] = field(default_factory=set)

    def files(self) -> list[Path]:
        """The transcript files that exist now (call again to pick up new ones)."""
        if self.format == "claude":
            return self._claude_files()
        if self.format == "codex":
            return self._codex_files()
        if self.format == "gemini":
            return self._gemini_files()
        if self.format == "opencode":  # one store; its sessions() says which of its sessions are the agent's
            return [self.store] if self.store.is_file() else []
        return []

    @property
    def store(self) -> Path:
        """opencode's store: every session of every agent that shares the data folder."""
        return self.home / OPENCODE_STORE

    def sessions(self, store: Path) -> list[str] | None:
        """The sessions of ``store`` that are the agent's (with their sub-agents'); None: all of them."""
        return self.session_ids if self.format == "opencode" and store == self.store else None

    def _claude_files(self) -> list[Path]:
        projects = self.home / "projects"
        folder = projects / project_slug(self.cwd)
        files: list[Path] = []
        for session in self.session_ids:
            main = folder / f"{session}.jsonl"
            if not main.exists():
                # Very long cwds get a shortened folder name: session ids are unique anyway.
                main = next(iter(sorted(projects.glob(f"*/{session}.jsonl"))), main)
            if main.exists():
                files.append(main)
            sessions_dir = main.parent
            files += sorted((sessions_dir / session / "subagents").glob("agent-*.jsonl"))
            # Older versions kept sub-agent files beside the session file.
            for candidate in sorted(sessions_dir.glob("agent-*.jsonl")):
                if first_field(candidate, "sessionId") == session:
                    files.append(candidate)
        return files

    def _codex_files(self) -> list[Path]:
        sessions = self.home / "sessions"
        rollouts = sorted(sessions.rglob("rollout-*.jsonl")) if sessions.is_dir() else []
        wanted = str(self.cwd)
        if self.sharers:  # recorded ids decide; a rollout nobody was seen to own is the first sharer's
            return [path for path in rollouts if codex_cwd(path) == wanted and (
                rollout_session(path) in self.session_ids
                or rollout_session(path) not in self.theirs and self.sharers[0] == self.name)]
        # Alone in its folder: every rollout there (the ids the watchdog saw it write are among them;
        # a run it did not see, too short or while it was down, is not missed).
        return [path for path in rollouts if codex_cwd(path) == wanted or rollout_session(path) in self.session_ids]

    def _gemini_files(self) -> list[Path]:
        """Each recorded session's chat, tmp/<project>/chats/session-<time>-<id8>.jsonl (its header
        names the whole id), then its sub-agents' chats in chats/<id>/. The project folder's name
        comes from ~/.gemini/projects.json; any project is looked in, as session ids are unique."""
        wanted = set(self.session_ids)
        starts = {session[:8] for session in wanted}
        files: list[Path] = []
        for chats in sorted(self.home.glob("tmp/*/chats")):  # each listed once, however many sessions
            try:
                names = sorted(os.listdir(chats))
            except OSError:
                continue
            files += [chats / name for name in names if name.startswith("session-") and name.endswith(".jsonl")
                      and name[-14:-6] in starts and first_field(chats / name, "sessionId", lines=1) in wanted]
            files += [path for name in names if name in wanted for path in sorted((chats / name).glob("*.jsonl"))]
        return files


ROLLOUT_SESSION = re.compile(r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.jsonl$")


def rollout_session(path: Path) -> str:
    """The session id a Codex rollout's name ends with (``rollout-<time>-<id>.jsonl``); "" if none."""
    found = ROLLOUT_SESSION.search(str(path))
    return found.group(1) if found else ""


def first_field(path: Path, key: str, lines: int = 5) -> Any:
    """The value of ``key`` in the first of the file's first lines that has it."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for _ in range(lines):
                obj = _json_or_none(handle.readline())
                if isinstance(obj, dict) and key in obj:
                    return obj[key]
    except OSError:
        return None
    return None


def codex_cwd(path: Path) -> str | None:
    meta = first_field(path, "payload", lines=1)
    return meta.get("cwd") if isinstance(meta, dict) else None


def default_config() -> Path:
    return Path(os.environ.get("AGENTS_CONFIG") or "agents.toml")


def agent_source(config_path: Path, name: str) -> AgentSource:
    """Resolve an agent's transcript location the way agents.py starts it:
    cwd relative to the config's folder; env = the caller's, then the
    backend's, then the agent's (or [defaults]'); state in ``state_dir``."""
    try:
        data = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except OSError as error:
        raise UsageError(f"{config_path}: cannot read the config ({error.strerror or error})") from error
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"{config_path}: not valid TOML ({error})") from error
    folder = config_path.resolve().parent
    agents = [a for a in data.get("agent", []) if isinstance(a, dict)] if isinstance(data.get("agent"), list) else []
    agent = next((a for a in agents if a.get("name") == name), None)
    if agent is None:
        names = ", ".join(as_text(a.get("name")) for a in agents) or "none"
        raise UsageError(f"{config_path}: no [[agent]] named {name!r} (agents: {names})")
    defaults = data.get("defaults") if isinstance(data.get("defaults"), dict) else {}

    state_dir = folder / as_text(data.get("state_dir") or ".agents/state")
    units: dict = {}
    try:
        units = json.loads((state_dir / "state.json").read_text(encoding="utf-8")).get("units", {})
    except FileNotFoundError:
        pass
    except (OSError, ValueError, AttributeError) as error:
        print(f"agent-log.py: warning: {state_dir / 'state.json'}: unreadable ({error})", file=sys.stderr)

    def ids_of(who: str) -> list[str]:
        record = units.get(who, {}) if isinstance(units, dict) else {}
        return [as_text(sid) for sid in record.get("session_ids", []) if sid] if isinstance(record, dict) else []

    transcripts, cwd, home = where_transcripts_are(data, folder, agent, defaults)
    if transcripts in ("codex", "opencode"):  # the same folder and the same data folder (opencode: store)
        sharers = [as_text(other.get("name")) for other in agents
                   if where_transcripts_are(data, folder, other, defaults) == (transcripts, cwd, home)]
        sharers = sharers if len(sharers) > 1 else []
        theirs = {sid for other in sharers if other != name for sid in ids_of(other)}
        return AgentSource(name, transcripts, cwd, home, ids_of(name), sharers, theirs)
    return AgentSource(name, transcripts, cwd, home, ids_of(name))


def where_transcripts_are(data: dict, folder: Path, agent: dict, defaults: dict) -> tuple[str, Path, Path]:
    """An agent's transcript format, cwd and CLI data folder, as agents.py starts it."""

    def setting(key: str, fallback: Any) -> Any:
        return agent.get(key, defaults.get(key, fallback))

    cwd = (folder / os.path.expanduser(as_text(setting("cwd", ".")))).resolve()  # as agents.py reads it
    backend_name = as_text(setting("backend", "claude"))
    backends = data.get("backend") if isinstance(data.get("backend"), dict) else {}
    backend = backends.get(backend_name) if isinstance(backends.get(backend_name), dict) else {}
    preset = as_text(backend.get("preset")) or (backend_name if backend_name in PRESET_TRANSCRIPTS else "shell")
    transcripts = as_text(backend.get("transcripts")) or PRESET_TRANSCRIPTS.get(preset, "none")
    env = dict(os.environ)
    for extra in (backend.get("env"), setting("env", {})):
        if isinstance(extra, dict):
            env.update({as_text(k): as_text(v) for k, v in extra.items()})
    home = Path(env.get("HOME") or Path.home())

    def data_dir(variable: str, default: str) -> Path:
        configured = env.get(variable, "")
        if not configured:
            return home / default
        if configured == "~" or configured.startswith("~/"):
            configured = str(home) + configured[1:]
        return (cwd / configured).resolve()  # relative to the agent's cwd, as the CLI sees it

    if transcripts == "codex":
        return transcripts, cwd, data_dir("CODEX_HOME", ".codex")
    if transcripts == "claude":
        return transcripts, cwd, data_dir("CLAUDE_CONFIG_DIR", ".claude")
    if transcripts == "gemini":  # GEMINI_CLI_HOME stands in for the home folder, not for .gemini
        return transcripts, cwd, data_dir("GEMINI_CLI_HOME", "") / ".gemini"
    if transcripts == "opencode":
        return transcripts, cwd, data_dir("XDG_DATA_HOME", ".local/share") / "opencode"
    return transcripts, cwd, home


@dataclass
class Sources:
    """What a run reads, asked again while following (folders re-scanned, --agent re-resolved)."""

    files: Callable[[], list[Path]]  # the transcripts and stores to read now
    # The sessions of an opencode store to read (their sub-agents' come with them); None: all.
    sessions: Callable[[Path], list[str] | None] = lambda store: None


# ============================================================================
# Output
#   Events become prefixed lines; the run reads every file once, the follow
#   loop polls them for growth (and folders for new files) until stopped.
# ============================================================================

@dataclass
class Options:
    max_lines: int = 20  # tool input/output lines kept per block (0: all)
    utc: bool = False  # print times in UTC instead of local time
    debug: bool = False  # show skipped and malformed lines as "SYS ? …"
    totals_only: bool = False  # print TOTAL lines only
    max_width: int = 2000  # characters kept of one tool output line (0: all)


class Printer:
    """Writes events as lines with the fixed prefix; remembers the last date
    shown, so a ``SYS date`` line marks the start and every change of day."""

    def __init__(self, out: TextIO, options: Options) -> None:
        self.out = out
        self.options = options
        self.last_date = ""

    def clock(self, when: datetime | None) -> tuple[str, str]:
        if when is None:
            return NO_CLOCK, ""
        moment = when.astimezone(timezone.utc) if self.options.utc else when.astimezone()
        return moment.strftime("%H:%M:%S"), moment.strftime("%Y-%m-%d")

    def lines(self, event: Event) -> list[str]:
        clock, day = self.clock(event.time)
        out = []
        if day and day != self.last_date:
            self.last_date = day
            out.append(prefix(clock, "SYS", "") + "date " + day + (" (UTC)" if self.options.utc else ""))
        body = event.text.split("\n") if event.text else []
        while body and not body[-1].strip():
            body.pop()
        if event.cut:
            body = self.cut(body)
        first = " ".join(part for part in (event.head, body[0] if body else "") if part)
        start = prefix(clock, event.role, event.side)
        out.append(start + first.rstrip())
        # A blank line inside a block keeps the whole prefix (and nothing after it).
        out += [start + ("  " + line.rstrip() if line.strip() else "") for line in body[1:]]
        return out

    def cut(self, body: list[str]) -> list[str]:
        width, keep = self.options.max_width, self.options.max_lines
        if width:
            body = [line if len(line) <= width else f"{line[:width]}… (+{len(line) - width} chars)" for line in body]
        if keep and len(body) > keep:
            body = body[:keep] + [f"(+{len(body) - keep} lines)"]
        return body

    def emit(self, events: Iterable[Event]) -> None:
        for event in events:
            if self.options.totals_only and event.role != "TOTAL":
                continue
            lines = self.lines(event)
            if self.options.totals_only:
                lines = lines[-1:]  # not the date line
            for line in lines:
                self.out.write(line + "\n")

    def flush(self) -> None:
        self.out.flush()


class Run:
    """Reads transcripts and prints them: once, or following them as they grow."""

    def __init__(self, printer: Printer, options: Options, sources: Sources) -> None:
        self.printer = printer
        self.options = options
        self.sources = sources
        self.ledger = Ledger()
        self.files: dict[Path, Transcript | OpencodeStore] = {}
        self.errors: list[str] = []

    def transcript(self, path: Path) -> Transcript | OpencodeStore:
        if path not in self.files:
            usage_only = self.options.totals_only and not self.options.debug
            if is_store(path):
                self.files[path] = OpencodeStore(path, len(self.files), self.options.debug, usage_only,
                                                 sessions=lambda: self.sources.sessions(path))
            else:
                self.files[path] = Transcript(path, len(self.files), self.options.debug, usage_only)
        return self.files[path]

    def pump(self, path: Path, final: bool) -> bool:
        """Print what is new in one file; True if anything was read."""
        record = self.transcript(path)
        before = record.offset
        for events, error in record.read_batches(final):
            if error:
                if error not in self.errors:
                    self.errors.append(error)
                    print(f"agent-log.py: {error}", file=sys.stderr)
                break
            if not record.started and (events or record.offset):
                record.started = True
                self.printer.emit([Event("SYS", f"file {path}")])
            out: list[Event] = []
            for event in events:
                if event.role == "USAGE" and event.usage is not None:
                    out += self.ledger.offer(event, record.totals, record.number)
                    continue
                if not self.ledger.holds(record.number, event.response):
                    out += self.ledger.flush(record.number, record.totals)
                out.append(event)
            self.printer.emit(out)
        return record.offset != before

    def settle(self, record: Transcript | OpencodeStore) -> None:
        """A file has gone quiet or ended: print its held-back usage."""
        self.printer.emit(self.ledger.flush(record.number, record.totals))

    def totals(self) -> None:
        read = [record for record in self.files.values() if record.started]
        events = []
        for record in read:
            self.settle(record)
            events.append(Event("TOTAL", f"{record.totals.text()} ({record.path.name})", time=record.last_time))
        if len(read) > 1:
            times = [record.last_time for record in read if record.last_time]
            events.append(Event("TOTAL", f"{self.ledger.grand.text()} (all {len(read)} files)",
                                time=max(times) if times else None))
        self.printer.emit(events)
        self.printer.flush()

    def once(self) -> int:
        paths = self.sources.files()
        if not paths:
            raise RuntimeProblem("no transcripts found")
        for path in paths:
            self.pump(path, final=True)
            self.settle(self.transcript(path))
        self.totals()
        return EXIT_RUNTIME if self.errors else EXIT_OK

    def follow(self, interval: float) -> int:
        """Print everything, then poll for appended lines and new files until
        interrupted (Ctrl-C or SIGTERM), then print the totals.

        A response's USAGE line waits until its file has been quiet for a
        moment: older Claude Code versions write a response's blocks seconds
        apart (thinking, then text), each with the usage so far."""
        stop = {"now": False}
        settle_after = max(2.0, 3 * interval)
        rescan = max(1.0, 4 * interval)
        grew: dict[Path, float] = {}  # file → when it last grew

        def request_stop(signum: int, frame: Any) -> None:
            stop["now"] = True

        previous = signal.signal(signal.SIGTERM, request_stop)
        paths: list[Path] = []
        last_scan = 0.0
        try:
            while not stop["now"]:
                if time.monotonic() - last_scan >= rescan:
                    paths, last_scan = self.sources.files(), time.monotonic()
                for path in paths:
                    if stop["now"]:
                        break
                    if self.pump(path, final=False):
                        grew[path] = time.monotonic()
                    elif time.monotonic() - grew.get(path, 0.0) >= settle_after:
                        self.settle(self.transcript(path))
                self.printer.flush()
                deadline = time.monotonic() + interval
                while not stop["now"] and time.monotonic() < deadline:
                    time.sleep(min(0.05, interval))
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
        self.totals()
        return EXIT_OK


# ============================================================================
# main
#   Argument parsing, with every option documented and shown by example.
# ============================================================================

OVERVIEW = """\
Render coding-agent transcripts (Claude Code session files, Codex rollouts,
Gemini CLI chats, opencode's store opencode.db) as plain, greppable text: one
block per event, every line starting with

  HH:MM:SS ROLE    [sub:AGENT] text

  HH:MM:SS  the event's time, local (--utc: UTC); --:--:-- when it has none
  ROLE      USER     what a person typed (slash commands as "/name args")
            ASSIST   the model's answer
            THINK    the model's thinking / reasoning summary
            TOOL>    a tool call: "TOOL>   Bash (toolu_…) $ git status"
            TOOL<    a tool result: "TOOL<   (toolu_…) output…" (ERROR when it failed)
            SYS      everything else worth a line: "file PATH" before each file,
                     the session (id, CLI version, cwd), "date" when the day
                     changes, turn times, API errors the CLI gave up on,
                     compaction boundaries, task notifications, command output
            COMPACT  a compaction summary (what the model keeps of the past)
            USAGE    tokens of one API response: in= out= cache_creation= cache_read=
            TOTAL    per file, after all files: its responses' usage (a response
                     is counted in the first file it appears in), then a grand
                     total when there are several files
  [sub:X]   only on lines of a sub-agent (Claude Code sidechains, Codex and Gemini
            sub-agents, opencode sub-agent sessions: the last 8 characters of
            the session id)

The role column is padded to 7 characters, so the text always starts in the
same column (the 18th). A block's further lines repeat the prefix and indent
the text by two spaces: `grep ASSIST` finds all of every answer. Files are
printed one after the other; a Claude Code session's sub-agents are files of
their own under <session>/subagents/, printed after it. An opencode store is
one file: its sessions are printed oldest first, each after a "SYS session"
line (a sub-agent's names the session that started it).

Stripped: ANSI escapes, base64 images (shown as [image: image/png, 12.3 KB]),
<system-reminder> blocks and similar injected context (<environment_context>,
<user_instructions>, AGENTS.md instructions, local-command caveats), and the
CLIs' bookkeeping lines (attachments, api-request records, snapshots, modes).

Usage is counted once per API response: Claude Code writes one line per
content block, each repeating message.id and the request id (requestId, or
requestRef in 2.1.x) with equal or growing usage, and resumed sessions copy old
lines into new files; the largest figures are kept and a copy is never counted
twice. <synthetic> lines (errors the CLI wrote itself) are no API calls. Codex
writes cumulative totals (token_count); each advance is one USAGE line and rows
that repeat unchanged totals are skipped. For Codex, in= is input not read from
the cache (its input_tokens minus cached_input_tokens) and out= includes
reasoning. Gemini CLI writes a message again whenever it changes (first
without its tool calls, then with them) and lists old messages again on
resume: each message id is one response, each part (text, thought, tool call,
tool result) is printed once; in= is its input minus the cached part plus
tool-use prompt tokens, out= its output plus thoughts. opencode rewrites a
message row as it grows: each message id is one response, counted once it is
final (and, should its figures grow after, what they grew by); in= is its
tokens.input (which excludes the cached part), out= output plus reasoning,
cache_creation= and cache_read= its cache write and read; the step-finish
parts repeat those figures and are not counted."""

EPILOG = """\
examples:
  agent-log.py ~/.claude/projects/-home-me-repo/2f1c…e9.jsonl
                                  one session (its sub-agent files are separate files)
  agent-log.py ~/.claude/projects/-home-me-repo/
                                  every session of a project, sub-agents included
  agent-log.py ~/.codex/sessions/2026/11/23/
                                  a day of Codex rollouts
  agent-log.py ~/.local/share/opencode/opencode.db
                                  every session in opencode's store (the folder
                                  ~/.local/share or ~/.local/share/opencode does too)
  agent-log.py --agent builder    the builder's sessions, found from ./agents.toml
  agent-log.py --agent builder --config team/agents.toml -f
                                  follow the builder live, across its restarts
  agent-log.py session.jsonl | grep -E 'TOOL[<>]'
                                  every tool call and result
  agent-log.py session.jsonl | grep -v '\\[sub:'
                                  the main conversation only
  agent-log.py --totals ~/.claude/projects/-home-me-repo/
                                  token totals per session and overall
  agent-log.py --max-lines 0 session.jsonl
                                  tool output in full

finding an agent's transcripts (--agent NAME):
  The config (--config, else $AGENTS_CONFIG, else ./agents.toml) names the
  agent's cwd (relative to the config's folder) and backend. agents.py records
  every Claude Code session id it starts an agent with in
  <state_dir>/state.json (state_dir default .agents/state). The transcripts are
  $CLAUDE_CONFIG_DIR (from the backend's or agent's env; relative to the
  agent's cwd), else $HOME/.claude, then projects/<cwd with every
  non-alphanumeric character as ->/<session id>.jsonl, plus that session's
  <session id>/subagents/agent-*.jsonl. For a Codex backend: the rollouts under
  $CODEX_HOME (else $HOME/.codex)/sessions whose session_meta names the agent's
  cwd. For a Gemini CLI backend: under $GEMINI_CLI_HOME/.gemini (else
  $HOME/.gemini), tmp/*/chats/session-*-<first 8 of the id>.jsonl whose header
  names a recorded session id, plus its sub-agents' chats/<session id>/*.jsonl.
  For an opencode backend: $XDG_DATA_HOME (else $HOME/.local/share)/opencode/
  opencode.db, only the sessions recorded for the agent and their sub-agent
  sessions (parent_id), recursively; opencode agents that share a cwd and a
  store cannot be told apart, and agents.py records their sessions under the
  first of them in agents.toml: --agent of that one shows all their work.
  agents.py is not imported: this file stands alone.

following (-f):
  Prints everything there is, then polls every --interval seconds for lines
  appended to the files and, for folders and --agent, for new files (a
  restarted agent's new session is picked up). A line is printed once it is
  complete; a response's USAGE line once its file has been quiet for a moment
  (2 s), as older Claude Code versions write a response's blocks seconds
  apart. An opencode store is queried each --interval for the rows that
  changed: new messages and parts, and a part that changed prints what it
  gained once (a tool call that completed: its result); a text once it is
  complete; a message's USAGE once it is final (time.completed or finish set),
  and again if its figures grow. An answer that is never finished (its turn
  was killed) is printed as a one-off read prints it once a newer message is
  in its session and it has not changed for 10 s. Only the sessions that may
  have changed are queried. Ctrl-C or SIGTERM ends it and prints the totals.

robustness:
  Unknown line types, unknown content blocks and malformed lines are skipped;
  --debug shows each as "SYS     ? <type>". A half-written last line is read
  once it is complete. opencode's store is opened read-only; while the CLI
  holds it locked (over a second), or when it is damaged or no SQLite file,
  one line says so and the run goes on (exit 1 at the end unless following).

exit codes:
  0 ok   1 nothing found or a file unreadable   2 usage or config error"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agent-log.py", description=OVERVIEW, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", metavar="PATH", type=Path,
                        help="transcript files, opencode stores (opencode.db), or folders searched "
                             "recursively for *.jsonl (and holding opencode.db or opencode/opencode.db)")
    source = parser.add_argument_group("finding an agent's transcripts")
    source.add_argument("--agent", metavar="NAME", help="read the transcripts of this agent of agents.toml")
    source.add_argument("--config", metavar="FILE", type=Path,
                        help="the agents.toml for --agent (default: $AGENTS_CONFIG or ./agents.toml)")
    output = parser.add_argument_group("output")
    output.add_argument("--max-lines", metavar="N", type=int, default=20,
                        help="keep the first N lines of each tool call and result, then '(+K lines)', "
                             "and 2000 characters of each line, then '… (+K chars)' (default 20; 0 keeps "
                             "everything)")
    output.add_argument("--utc", action="store_true", help="times in UTC (default: local time)")
    output.add_argument("--totals", action="store_true", help="print only the TOTAL lines")
    output.add_argument("--debug", action="store_true",
                        help="also show skipped, unknown and malformed lines as 'SYS ? <type>'")
    follow = parser.add_argument_group("following")
    follow.add_argument("-f", "--follow", action="store_true",
                        help="keep printing new lines as the files grow, and new files as they appear")
    follow.add_argument("--interval", metavar="SECONDS", type=float, default=0.5,
                        help="how often --follow looks for news (default 0.5)")
    parser.add_argument("--version", action="version", version=f"agent-log.py {VERSION}")
    return parser


def sources_for(args: argparse.Namespace) -> Sources:
    """What to read: the files now (called again when following), and the sessions of a store."""
    if args.agent:
        config = args.config or default_config()
        agent = agent_source(config, args.agent)
        if agent.format == "none":
            raise UsageError(f"{config}: agent {args.agent!r} uses a backend that keeps no transcripts "
                             "(set transcripts = \"claude\", \"codex\", \"gemini\" or \"opencode\" "
                             "on its [backend.*])")
        if agent.format == "opencode" and not agent.session_ids and agent.sharers and agent.sharers[0] != agent.name:
            first, others = agent.sharers[0], [name for name in agent.sharers if name != agent.name]
            raise RuntimeProblem(f"agent {args.agent!r} shares its folder and opencode's store with "
                                 f"{', '.join(map(repr, others))}: agents.py records every session begun there "
                                 f"under {first!r}, the first of them in {config} (--agent {first} shows their work)")
        if agent.format in ("claude", "gemini", "opencode") and not agent.session_ids:
            folder = {"claude": agent.home / "projects" / project_slug(agent.cwd), "gemini": agent.home / "tmp",
                      "opencode": agent.store}[agent.format]
            raise RuntimeProblem(f"no session ids recorded for agent {args.agent!r} (has agents.py started it?); "
                                 f"its project's transcripts are in {folder}")
        extra = list(args.paths)

        def agent_files() -> list[Path]:
            # Read state.json again each time: a restarted agent has a new session id.
            nonlocal agent
            try:
                agent = agent_source(config, args.agent)
            except UsageError:
                pass  # the config is being edited: keep what we had
            return agent.files() + expand_paths(extra, quiet_missing=True)

        return Sources(agent_files, lambda store: agent.sessions(store))
    if not args.paths:
        raise UsageError("name transcript files or folders, or --agent NAME (see --help)")
    paths = list(args.paths)
    expand_paths(paths, quiet_missing=args.follow)  # a missing path is an error now, not later
    return Sources(lambda: expand_paths(paths, quiet_missing=True))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config and not args.agent:
        parser.error("--config goes with --agent NAME")
    if args.max_lines < 0 or args.interval <= 0:
        parser.error("--max-lines must be 0 or more and --interval more than 0")
    options = Options(max_lines=args.max_lines, utc=args.utc, debug=args.debug, totals_only=args.totals,
                      max_width=2000 if args.max_lines else 0)
    out = sys.stdout
    if hasattr(out, "reconfigure"):
        out.reconfigure(errors="replace")
    try:
        run = Run(Printer(out, options), options, sources_for(args))
        return run.follow(args.interval) if args.follow else run.once()
    except UsageError as error:
        print(f"agent-log.py: {error}", file=sys.stderr)
        return EXIT_USAGE
    except RuntimeProblem as error:
        print(f"agent-log.py: {error}", file=sys.stderr)
        return EXIT_RUNTIME
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python from complaining at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
