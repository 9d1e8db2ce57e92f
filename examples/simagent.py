#!/usr/bin/env python3
"""simagent: a simulated coding-agent CLI that looks like Claude Code 2.1.330 in a terminal.

It exists so that `agents.py`, its tests and the offline demo can run a whole team of "agents"
with no real agent CLI and no network. It runs inside a tmux pane, draws a screen that a screen
classifier written for Claude Code reads the same way (idle prompt between two rules, busy spinner
and ``esc to interrupt`` footer, permission dialogs, usage-limit banners), takes input the way the
real CLI does (raw keys, bracketed paste, Enter to submit, Esc to interrupt), and writes
transcripts in Claude Code's JSONL format with deterministic token usage.

Python 3.11 standard library only.

Usage::

    simagent.py [--name NAME] [--session-id UUID] [--dangerously-skip-permissions]
                [--work SECONDS] [--startup-dialog] [--startup-delay SECONDS]
                [--log PATH] [--model NAME]
                [--role builder|adversary] [--phase ID] [--subdir DIR]

Unknown arguments are ignored, so it can be started with whatever flags a Claude preset adds.

Every submitted message is appended verbatim to the event log (``--log``, else ``$SIMAGENT_LOG``,
else ``<cwd>/.simagent/<name>.log``) as one JSON line of kind ``message``; tests read that log to
check what was delivered. A normal message makes the agent busy for ``--work`` seconds, then it
answers ``● ack: <first line>`` and writes the turn to
``$CLAUDE_CONFIG_DIR/projects/<cwd slug>/<session id>.jsonl``.

Directives (a message whose stripped text starts with ``SIM:``; it is logged like any message)::

    SIM:die [CODE]            exit at once with CODE (default 1)
    SIM:exit                  exit 0
    SIM:work SECONDS          work for SECONDS instead of --work, then answer normally
    SIM:hang                  freeze for good: no input read, no redraw, idle screen left visible
    SIM:busyhang              stay busy for good (spinner keeps turning); only Esc interrupts
    SIM:limit SECONDS BANNER  show "● BANNER"; for SECONDS every message is answered by the banner
    SIM:say TEXT              print TEXT as output lines (a literal backslash-n is a line break)
    SIM:dialog                show a permission dialog ("Do you want to proceed?") until answered

Directives other than SIM:work are obeyed even while a limit is in force: they are the test's
remote control, not work for the model.

Roles (``--role``): with no role the agent only acknowledges. With ``--role builder`` or
``--role adversary`` its cwd must be its own git clone (branch main, remote origin) of a shared
remote, and every message that is not a directive is one turn of real git work, done at the end
of the busy time and reported under the ``● ack`` line (an interrupted turn does no git work).
``PLAN.md`` at the repo root lists each phase's gates, one line a phase: ``p1: g1 g2!``; a gate
written with a trailing ``!`` is FAILed by the adversary on its first claim. State is read from
the commit subjects on origin/main only::

    claim(<gate>): ...        builder: work/<gate>.txt is ready for review
    review(<gate>): PASS|FAIL adversary: reviews/<gate>.md judges the latest claim
    status(<phase>): done     builder: STATUS-<phase>.md starts with "## DONE"
    inbox: consumed TO-BUILDER.md

Builder turn: pull --rebase; if ``TO-BUILDER.md`` (in ``--subdir``) exists, read it and delete it
in a commit; then for the phase's gates in order, take the first without a PASS review after
its latest claim: claim it (again, after a FAIL), or wait if its claim is not reviewed yet. Once
every gate has passed, write the status file and commit ``status(<phase>): done``, once. The
phase is the last ``Phase <id>`` named by any message, remembered across restarts in
``<cwd>/.simagent/<name>-role.json`` (written atomically); ``--phase`` sets it at start-up.
Adversary turn: pull --rebase, then review every claim of any PLAN.md gate that has no review
after it, all in one turn and one push.
Every push is pull --rebase then push, retried up to 5 times after a short random sleep when
rejected; git never prompts. Each turn writes one event-log record of kind ``turn``:
``{"role": ..., "did": "claim g1" | "wait g1" | "review g1 PASS" | "done p1" | "nothing" |
"error", "phase": ..., "said": [...]}`` (several actions are joined by ``; ``). A git failure
is shown as output and logged (``did: "error"``), never a crash. The role logic is plain
functions (``builder_turn``, ``adversary_turn``) that tests call without a terminal.
"""

from __future__ import annotations

import argparse
import codecs
import collections
import dataclasses
import datetime
import json
import math
import os
import random
import re
import select
import signal
import subprocess
import sys
import termios
import time
import traceback
import tty
import unicodedata
import uuid


# ---------------------------------------------------------------------------------------------
# Screen vocabulary
#   Every string a classifier may look at, in one place. They copy Claude Code 2.1.330's screens
#   (see screens/claude-code-2.1.330/ in the shared fixtures) with the product name changed.
# ---------------------------------------------------------------------------------------------

VERSION = "sim-1"
DEFAULT_MODEL = "sim-1"

LOGO = (" ▐▛███▜▌", "▝▜█████▛▘", "  ▘▘ ▝▝  ")
TITLE = "Sim Agent v1 (simulated coding agent)"

RULE_CHAR = "─"
# The real CLI puts a no-break space (U+00A0) after the arrow of its input line, while echoed
# messages in the history use a plain space. Copied as is so a classifier tuned on real screens
# reads the simulation the same way.
PROMPT_MARK = "❯\u00a0"
ECHO_MARK = "❯ "
REPLY_MARK = "● "
RESULT_MARK = "  ⎿ "

SPINNER_GLYPHS = "✢✳✶✻✽"
SPINNER_WORD = "Working…"
IDLE_FOOTER = "  ⏵⏵ simulated agent {name} · ? for shortcuts"
# The only place the phrase "esc to interrupt" is ever drawn: classifiers treat it as "busy".
BUSY_FOOTER = "  ⏵⏵ simulated agent {name} · esc to interrupt"
CTRL_C_FOOTER = "  Press Ctrl-C again to exit"

PERMISSION_QUESTION = " Do you want to proceed?"
PERMISSION_CHOICES = ("1. Yes", "2. No, and tell Claude what to do differently")
PERMISSION_ANSWERS = ("Yes", "No")
DIALOG_HINT = " Enter to confirm · Esc to cancel"

BYPASS_WARNING = " WARNING: Sim Agent running in Bypass Permissions mode"
BYPASS_EXPLANATION = (
    " In Bypass Permissions mode, Sim Agent will not ask for your approval before running"
    " potentially dangerous commands."
)
BYPASS_CHOICES = ("No, exit", "Yes, I accept")

DEFAULT_LIMIT_BANNER = "You've hit your session limit · resets in {seconds}s"

HISTORY_KEPT = 2000          # lines of history remembered; older ones can never be on screen
CTRL_C_WINDOW = 2.0          # seconds within which a second Ctrl-C at idle exits


# ---------------------------------------------------------------------------------------------
# Text and terminal cells
#   Lines are measured in terminal cells, not characters, so that wrapping and clipping never
#   make the terminal wrap a line by itself (which would shift every line below it).
# ---------------------------------------------------------------------------------------------

def cell_width(char: str) -> int:
    """Cells one character takes in a terminal: 0 for combining marks, 2 for wide East Asian."""
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def text_width(text: str) -> int:
    return sum(cell_width(char) for char in text)


def clip(text: str, width: int) -> str:
    """The longest prefix of `text` that fits in `width` cells."""
    used = 0
    for index, char in enumerate(text):
        used += cell_width(char)
        if used > width:
            return text[:index]
    return text


def wrap(text: str, width: int, indent: str = "  ") -> list[str]:
    """Wrap one line to `width` cells between words, splitting only words longer than a line;
    continuation lines start with `indent`."""
    if width <= text_width(indent) + 2:
        indent = ""
    indent_cells = text_width(indent)
    lines: list[str] = []
    current, used, line_start = "", 0, ""   # line_start: what the line began with

    def break_line():
        nonlocal current, used, line_start
        lines.append(current.rstrip(" ") if current.strip() else current)
        current, used, line_start = indent, indent_cells, indent

    for word in re.split(r"( )", text):
        if not word:
            continue
        word_cells = text_width(word)
        fits_on_fresh_line = word_cells <= width - indent_cells
        if used + word_cells > width and current != line_start:
            if word == " ":
                break_line()
                continue          # the line break replaces the space
            if fits_on_fresh_line:
                break_line()
        for char in word:       # a word wider than a whole line is split where it must be
            char_cells = cell_width(char)
            if used + char_cells > width and current != line_start:
                break_line()
            current += char
            used += char_cells
    lines.append(current)
    return lines


def displayable(text: str) -> str:
    """`text` made safe to draw: control characters would move the cursor or change modes."""
    out = []
    for char in text:
        if char == "\t":
            out.append("    ")
        elif unicodedata.category(char) == "Cc":
            out.append("\ufffd")
        else:
            out.append(char)
    return "".join(out)


def first_line(text: str) -> str:
    return text.split("\n", 1)[0]


def echo_line(message: str) -> str:
    """How a submitted message is echoed into the history: its first line, plus a line count."""
    extra = message.count("\n")
    suffix = f" (+{extra} lines)" if extra else ""
    return ECHO_MARK + first_line(message) + suffix


def utc_timestamp() -> str:
    """ISO 8601 in UTC with milliseconds and a Z, the way Claude Code stamps transcript lines."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------------------------------------
# Event log
#   The tests' ground truth: one JSON object per line, appended and fsynced at once, so a test
#   polling the file never sees a message the agent has not really received, or misses one.
# ---------------------------------------------------------------------------------------------

class EventLog:
    """Append-only JSON-lines record of what the simulated agent received and did.

    Kinds: start, message, usage, turn (--role only), dialog-shown, dialog-key, dialog-answer,
    limit, limit-over, frozen, exit, crash. Every record carries `time` and `agent`.
    """

    def __init__(self, path: str, agent: str):
        self.path = path      # absolute path of the .log file
        self.agent = agent    # the --name, repeated in every record
        os.makedirs(os.path.dirname(path), exist_ok=True)

    def write(self, kind: str, **fields) -> None:
        record = {"time": utc_timestamp(), "kind": kind, "agent": self.agent, **fields}
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as log_file:
            log_file.write(line)
            log_file.flush()
            os.fsync(log_file.fileno())


# ---------------------------------------------------------------------------------------------
# Transcript
#   Claude Code's session file: $CLAUDE_CONFIG_DIR/projects/<cwd slug>/<session id>.jsonl.
#   Like the real CLI, one API response is written as one line per content block, and those
#   lines repeat the same message.id and requestId with growing usage: token counters must
#   count each response once, which is exactly what this lets them prove.
# ---------------------------------------------------------------------------------------------

def project_slug(cwd: str) -> str:
    """Claude Code's folder name for a project: the absolute cwd, every non-alphanumeric as -."""
    return re.sub(r"[^A-Za-z0-9]", "-", cwd)


def claude_config_dir(cwd: str) -> str:
    configured = os.environ.get("CLAUDE_CONFIG_DIR", "")
    if not configured:
        return os.path.expanduser("~/.claude")
    return os.path.join(cwd, os.path.expanduser(configured))


def turn_usage(message: str, reply: str, turn: int) -> dict:
    """Deterministic usage of one turn, so tests can compute the expected totals by hand."""
    return {
        "input_tokens": 100 + len(message),
        "output_tokens": 20 + len(first_line(reply)),
        "cache_creation_input_tokens": 50,
        "cache_read_input_tokens": 200 * turn,
    }


class Transcript:
    """Writes the session's turns in Claude Code's transcript format."""

    def __init__(self, config_dir: str, cwd: str, session_id: str, model: str):
        self.path = os.path.join(config_dir, "projects", project_slug(cwd), f"{session_id}.jsonl")
        self.cwd = cwd
        self.session_id = session_id
        self.model = model
        self.last_uuid = self._last_uuid_on_disk()  # parent of the next line (resumed sessions)

    def _last_uuid_on_disk(self) -> str | None:
        """The uuid of the file's last line, when resuming a session id that already has one."""
        try:
            with open(self.path, encoding="utf-8") as existing:
                lines = existing.read().splitlines()
        except FileNotFoundError:
            return None
        for line in reversed(lines):
            try:
                return json.loads(line).get("uuid")
            except (json.JSONDecodeError, AttributeError):
                continue  # a torn or foreign line: look further back
        return None

    def _append(self, entry_type: str, **fields) -> None:
        entry = {
            "type": entry_type,
            "uuid": str(uuid.uuid4()),
            "parentUuid": self.last_uuid,
            "sessionId": self.session_id,
            "timestamp": utc_timestamp(),
            "cwd": self.cwd,
            "isSidechain": False,
            "userType": "external",
            "version": VERSION,
            **fields,
        }
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as transcript_file:
            transcript_file.write(json.dumps(entry, ensure_ascii=False) + "\n")
            transcript_file.flush()
            os.fsync(transcript_file.fileno())
        self.last_uuid = entry["uuid"]

    def user_message(self, text: str) -> None:
        self._append("user", message={"role": "user", "content": text})

    def interrupted(self) -> None:
        """What the real CLI records when Esc cuts a turn short."""
        content = [{"type": "text", "text": "[Request interrupted by user]"}]
        self._append("user", message={"role": "user", "content": content})

    def assistant_reply(self, reply: str, usage: dict) -> str:
        """Write the reply as a thinking line then a text line of one response; return its id."""
        message_id = f"msg_sim_{uuid.uuid4().hex}"
        request_id = f"req_sim_{uuid.uuid4().hex}"
        blocks = (
            ([{"type": "thinking", "thinking": "Acknowledging the message.", "signature": "sim"}],
             {**usage, "output_tokens": 1}),
            ([{"type": "text", "text": reply}], usage),
        )
        for content, block_usage in blocks:
            self._append(
                "assistant",
                requestId=request_id,
                message={
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": content,
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": block_usage,
                },
            )
        return message_id


# ---------------------------------------------------------------------------------------------
# Keyboard input
#   Raw bytes in, keys out. The decoder never raises (bad UTF-8 becomes U+FFFD) and unknown
#   escape sequences become "other" keys, so no byte sequence can crash the agent. A lone ESC
#   is only an Esc key once no more bytes follow it for a moment: it is also how every arrow
#   key and the bracketed-paste markers begin.
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Key:
    """One keystroke or one paste: name is text, paste, enter, backspace, esc, up, down, left,
    right, ctrl-c, ctrl-d or other; text holds typed or pasted text (or the raw sequence)."""
    name: str
    text: str = ""

    def label(self) -> str:
        """How the key is written into the log while a dialog is shown."""
        if self.name in ("text", "paste"):
            return f"text:{self.text}"
        named = {"enter": "Enter", "esc": "Esc", "up": "Up", "down": "Down", "left": "Left",
                 "right": "Right", "backspace": "Backspace", "ctrl-c": "C-c", "ctrl-d": "C-d"}
        return named.get(self.name, f"other:{self.text!r}")


PASTE_START = "\x1b[200~"
PASTE_END = "\x1b[201~"
CSI_KEYS = {"A": "up", "B": "down", "C": "right", "D": "left"}
SS3_KEYS = {"A": "up", "B": "down", "C": "right", "D": "left"}
CONTROL_KEYS = {"\x7f": "backspace", "\x08": "backspace", "\x03": "ctrl-c", "\x04": "ctrl-d"}


class KeyReader:
    """Turns the terminal's byte stream into Keys, across reads of any size."""

    ESCAPE_WAIT = 0.05   # seconds a lone ESC waits for the rest of an escape sequence
    PASTE_WAIT = 2.0     # seconds an unterminated paste waits for its end marker

    def __init__(self):
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""               # decoded text not yet turned into keys
        self._last_input = 0.0           # monotonic time of the last read
        self._paste: list[str] | None = None  # pieces of a bracketed paste being received

    def feed(self, data: bytes, now: float) -> list[Key]:
        self._pending += self._decoder.decode(data)
        self._last_input = now
        return self._parse(stale=False)

    def deadline(self) -> float | None:
        """When the incomplete input held back must be given up on, if any is held back."""
        if self._paste is not None:
            return self._last_input + self.PASTE_WAIT
        if self._pending:
            return self._last_input + self.ESCAPE_WAIT
        return None

    def flush_stale(self, now: float) -> list[Key]:
        """Keys from input held back for longer than its deadline (a lone Esc, a broken paste)."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return []
        return self._parse(stale=True)

    def _parse(self, stale: bool) -> list[Key]:
        keys: list[Key] = []
        text, index = self._pending, 0
        while index < len(text):
            if self._paste is not None:
                index = self._read_paste(text, index, stale, keys)
                if self._paste is not None:
                    break  # the end marker has not arrived yet
                continue
            char = text[index]
            if char == "\x1b":
                consumed, key = self._escape_sequence(text, index)
                if consumed == 0:          # the sequence may still be arriving
                    if not stale:
                        break
                    consumed, key = 1, Key("esc")
                if key is not None:
                    keys.append(key)
                index += consumed
            elif char in "\r\n":
                keys.append(Key("enter"))
                index += 2 if text.startswith("\r\n", index) else 1
            elif char in CONTROL_KEYS:
                keys.append(Key(CONTROL_KEYS[char]))
                index += 1
            elif char < " " or "\x80" <= char <= "\x9f":
                keys.append(Key("other", char))   # a control character nothing here uses
                index += 1
            else:
                end = index
                while end < len(text) and text[end] >= " " and text[end] != "\x7f" \
                        and not "\x80" <= text[end] <= "\x9f":
                    end += 1
                keys.append(Key("text", text[index:end]))
                index = end
        self._pending = text[index:]
        return keys

    def _read_paste(self, text: str, index: int, stale: bool, keys: list[Key]) -> int:
        """Collect paste content from `index`; emit the paste once its end marker is seen."""
        assert self._paste is not None
        end = text.find(PASTE_END, index)
        if end >= 0:
            self._paste.append(text[index:end])
            index = end + len(PASTE_END)
        else:
            # Hold back what could be the first bytes of the end marker, unless it is too late.
            keep = 0 if stale else _partial_suffix(text, PASTE_END)
            self._paste.append(text[index:len(text) - keep])
            index = len(text) - keep
            if not stale:
                return index
        pasted = "".join(self._paste)
        self._paste = None
        # tmux's paste-buffer turns each LF into CR unless told otherwise, and terminals send
        # CR for a pasted line break: both are line breaks of the pasted text.
        keys.append(Key("paste", pasted.replace("\r\n", "\n").replace("\r", "\n")))
        return index

    def _escape_sequence(self, text: str, index: int) -> tuple[int, Key | None]:
        """(characters consumed, key) for the escape sequence at `index`; (0, None) if cut short."""
        if index + 1 >= len(text):
            return 0, None
        introducer = text[index + 1]
        if introducer == "[":
            end = index + 2
            while end < len(text) and "\x30" <= text[end] <= "\x3f":   # parameter bytes
                end += 1
            while end < len(text) and "\x20" <= text[end] <= "\x2f":   # intermediate bytes
                end += 1
            if end >= len(text):
                return 0, None
            if not "\x40" <= text[end] <= "\x7e":
                return 1, Key("esc")    # not a sequence after all: an Esc, then ordinary input
            body = text[index + 2:end + 1]
            consumed = end + 1 - index
            if body == "200~":
                self._paste = []
                return consumed, None
            if body in CSI_KEYS:
                return consumed, Key(CSI_KEYS[body])
            return consumed, Key("other", "\x1b[" + body)
        if introducer == "O":
            if index + 2 >= len(text):
                return 0, None
            final = text[index + 2]
            return 3, Key(SS3_KEYS[final]) if final in SS3_KEYS else Key("other", "\x1bO" + final)
        return 1, Key("esc")            # Esc followed by another key (or Alt+key)


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest end of `text` that is a proper beginning of `marker`."""
    for length in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:length]):
            return length
    return 0


# ---------------------------------------------------------------------------------------------
# Prompt input
#   What is typed but not yet submitted. A paste that holds line breaks stays one piece, shown
#   as Claude Code shows it ("[Pasted text #1 +3 lines]") and submitted as its full text.
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class PastedText:
    number: int   # 1 for the first multi-line paste into this input, 2 for the next, ...
    text: str     # the pasted text itself, line breaks included

    def placeholder(self) -> str:
        return f"[Pasted text #{self.number} +{self.text.count(chr(10))} lines]"


class PromptInput:
    def __init__(self):
        self.pieces: list[str | PastedText] = []   # typed runs and multi-line pastes, in order
        self.pastes = 0                            # multi-line pastes so far, for numbering

    def type(self, text: str) -> None:
        if self.pieces and isinstance(self.pieces[-1], str):
            self.pieces[-1] += text
        else:
            self.pieces.append(text)

    def paste(self, text: str) -> None:
        if "\n" not in text:
            self.type(text)
            return
        self.pastes += 1
        self.pieces.append(PastedText(self.pastes, text))

    def backspace(self) -> None:
        """Delete the last character, or the whole of a multi-line paste (as Claude Code does)."""
        if not self.pieces:
            return
        last = self.pieces[-1]
        if isinstance(last, PastedText) or len(last) <= 1:
            self.pieces.pop()
        else:
            self.pieces[-1] = last[:-1]

    def text(self) -> str:
        return "".join(p.text if isinstance(p, PastedText) else p for p in self.pieces)

    def display(self) -> str:
        return "".join(p.placeholder() if isinstance(p, PastedText) else p for p in self.pieces)

    def clear(self) -> None:
        self.pieces, self.pastes = [], 0


# ---------------------------------------------------------------------------------------------
# Terminal
#   Raw mode, bracketed paste, drawing, size, and waiting for input or a signal. Terminal
#   errors are tolerated where the terminal may already be gone (on hang-up, at exit).
# ---------------------------------------------------------------------------------------------

BRACKETED_PASTE_ON = "\x1b[?2004h"
BRACKETED_PASTE_OFF = "\x1b[?2004l"
HIDE_CURSOR = "\x1b[?25l"
SHOW_CURSOR = "\x1b[?25h"


class AgentExit(Exception):
    """Raised anywhere to end the program with an exit status and a reason for the log."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Terminal:
    """The pane the agent draws in and reads keys from.

    In raw mode every key reaches the program as bytes (Enter is CR, Ctrl-C is 0x03, not a
    signal); bracketed paste makes the terminal wrap pasted text in ESC[200~ ... ESC[201~.
    """

    def __init__(self, input_fd: int, output_fd: int):
        self.input_fd = input_fd
        self.output_fd = output_fd
        self.saved_mode: list | None = None   # termios attributes to restore at exit
        self.resized = True                    # set by SIGWINCH; the first draw is a full one
        self.restore_error = ""                # why leave() could not restore, if it could not
        # Self-pipe: a signal writes a byte here, which wakes select() at once.
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)

    def enter(self) -> None:
        if os.isatty(self.input_fd):
            self.saved_mode = termios.tcgetattr(self.input_fd)
            # TCSANOW, not tty's default TCSAFLUSH: keys typed during startup must not be lost.
            tty.setraw(self.input_fd, termios.TCSANOW)
        signal.set_wakeup_fd(self._wake_write, warn_on_full_buffer=False)
        signal.signal(signal.SIGWINCH, self._on_resize)
        self.write(BRACKETED_PASTE_ON + "\x1b[2J")

    def leave(self) -> None:
        """Undo enter(): paste mode off, cursor shown below the screen, terminal mode restored."""
        signal.signal(signal.SIGWINCH, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        try:
            _, rows = self.size()
            self.write(f"{BRACKETED_PASTE_OFF}{SHOW_CURSOR}\x1b[{rows};1H\r\n")
            if self.saved_mode is not None:
                termios.tcsetattr(self.input_fd, termios.TCSADRAIN, self.saved_mode)
        except (AgentExit, termios.error) as error:
            # The pane may be gone (hang-up): nothing is left to restore, and nowhere to say so
            # but the log.
            self.restore_error = str(error)

    def _on_resize(self, signum, frame) -> None:
        self.resized = True

    def size(self) -> tuple[int, int]:
        try:
            columns, rows = os.get_terminal_size(self.output_fd)
        except OSError:
            return 80, 24          # not a terminal (e.g. run under a test harness)
        return max(columns, 10), max(rows, 5)

    def write(self, text: str) -> None:
        data = text.encode("utf-8")
        try:
            while data:
                written = os.write(self.output_fd, data)
                data = data[written:]
        except OSError as error:
            raise AgentExit(1, f"terminal output failed: {error}") from error

    def draw(self, lines: list[str], columns: int, rows: int, cursor: tuple[int, int] | None):
        """Paint the whole screen: every row is rewritten, so nothing stale can survive."""
        out = [HIDE_CURSOR]
        for row in range(rows):
            line = clip(lines[row], columns) if row < len(lines) else ""
            out.append(f"\x1b[{row + 1};1H{line}")
            # Erasing after a full-width line would erase its last cell on some terminals.
            if text_width(line) < columns:
                out.append("\x1b[K")
        if cursor is not None:
            row, column = cursor
            out.append(f"\x1b[{row + 1};{min(column, columns - 1) + 1}H{SHOW_CURSOR}")
        self.write("".join(out))

    def wait(self, timeout: float | None) -> bool:
        """Block until input, a signal or the timeout; True if input is ready to read."""
        readable, _, _ = select.select([self.input_fd, self._wake_read], [], [], timeout)
        if self._wake_read in readable:
            try:
                while os.read(self._wake_read, 512):
                    pass
            except BlockingIOError:
                pass  # drained: the wake-up byte only had to interrupt select()
        return self.input_fd in readable

    def read(self) -> bytes:
        try:
            return os.read(self.input_fd, 65536)
        except OSError as error:
            raise AgentExit(0, f"terminal input failed: {error}") from error


# ---------------------------------------------------------------------------------------------
# Roles: a builder and an adversary that hand gates to each other through real git commits
#   The agent's cwd is its own clone of a shared remote (branch main). PLAN.md at the repo root
#   lists each phase's gates, one line a phase: "p1: g1 g2!" (a trailing "!" makes the
#   adversary FAIL that gate's first claim). Everything a role knows comes from the commit
#   subjects on origin/main: "claim(<gate>): ...", "review(<gate>): PASS|FAIL",
#   "status(<phase>): done". Every function here takes the repo folder and runs git with argv
#   lists; none of them draws or reads the terminal, so tests can call them directly.
# ---------------------------------------------------------------------------------------------

ROLES = ("builder", "adversary")
PLAN_FILE = "PLAN.md"
INBOX_FILE = "TO-BUILDER.md"
DONE_MARKER = "## DONE"
PHASE_MENTION = re.compile(r"\bPhase ([A-Za-z0-9_-]+)\b")
HANDOFF_SUBJECT = re.compile(r"^(claim|review|status)\(([^)\s]+)\):\s*(.*)$")
PUSH_ATTEMPTS = 6            # the first push and up to 5 retries after a rejection
GIT_TIMEOUT = 60             # seconds any one git command may take


class GitError(Exception):
    """A git command failed; the message holds the command and what git said."""


@dataclasses.dataclass(frozen=True)
class Gate:
    label: str               # as in commit subjects: claim(<label>)
    fail_first: bool         # written "<label>!" in PLAN.md: the first claim is failed


@dataclasses.dataclass(frozen=True)
class Event:
    """One hand-off commit on the branch, oldest first in a history."""
    sha: str
    kind: str                # claim, review or status
    target: str              # the gate (claim, review) or the phase (status)
    verdict: str             # PASS or FAIL for a review, else ""


@dataclasses.dataclass(frozen=True)
class GateState:
    status: str              # "unclaimed", "pending" (claim not reviewed), "fail" or "pass"
    claims: int              # claim commits so far
    fails: int               # FAIL reviews so far
    claim_sha: str           # the latest claim, "" if none


@dataclasses.dataclass
class TurnResult:
    did: str                 # what the event log records: "claim g1", "review g1 PASS", ...
    lines: list[str]         # what the agent says about it, one line each


def git(repo: str, name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run git in `repo` as `name`, never prompting; raise GitError if it fails and `check`."""
    identity = ["-c", f"user.name={name}", "-c", f"user.email={name}@sim"]  # env still wins
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_EDITOR": "true"}
    argv = ["git", *identity, "-c", "commit.gpgsign=false", *args]
    try:
        done = subprocess.run(argv, cwd=repo, env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=GIT_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise GitError(f"git {' '.join(args)}: {error}") from error
    if check and done.returncode != 0:
        said = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise GitError(f"git {' '.join(args)} failed ({done.returncode}): "
                       + (said[-1] if said else "no output"))
    return done


def read_plan(repo: str) -> dict[str, list[Gate]]:
    """PLAN.md's phases in order: {"p1": [Gate("g1", False), ...]}; other lines are ignored."""
    phases: dict[str, list[Gate]] = {}
    try:
        with open(os.path.join(repo, PLAN_FILE), encoding="utf-8") as plan:
            lines = plan.read().splitlines()
    except FileNotFoundError:
        return phases
    for line in lines:
        found = re.match(r"^\s*([A-Za-z0-9_-]+)\s*:\s*(.*)$", line)
        if not found:
            continue
        gates = [Gate(word.rstrip("!"), word.endswith("!"))
                 for word in found.group(2).split() if word.rstrip("!")]
        phases[found.group(1)] = gates
    return phases


def handoff_history(repo: str, name: str, ref: str = "origin/main") -> list[Event]:
    """The hand-off commits reachable from `ref`, oldest first."""
    log = git(repo, name, "log", "--reverse", "--format=%H%x00%s", ref).stdout
    events = []
    for line in log.splitlines():
        sha, _, subject = line.partition("\0")
        found = HANDOFF_SUBJECT.match(subject)
        if found:
            kind, target, rest = found.groups()
            verdict = rest.split()[0].upper() if kind == "review" and rest.split() else ""
            events.append(Event(sha, kind, target, verdict))
    return events


def gate_state(history: list[Event], gate: str) -> GateState:
    """Where one gate stands: judged by the latest review after its latest claim."""
    claims = [index for index, event in enumerate(history)
              if event.kind == "claim" and event.target == gate]
    reviews = [event for event in history if event.kind == "review" and event.target == gate]
    fails = sum(1 for event in reviews if event.verdict == "FAIL")
    if not claims:
        return GateState("unclaimed", 0, fails, "")
    latest = claims[-1]
    after = [event for event in history[latest + 1:]
             if event.kind == "review" and event.target == gate]
    if not after:
        status = "pending"
    else:
        status = "pass" if after[-1].verdict == "PASS" else "fail"
    return GateState(status, len(claims), fails, history[latest].sha)


def ahead_of_remote(repo: str, name: str) -> bool:
    """True if HEAD has commits origin/main lacks (an earlier push that never got through)."""
    count = git(repo, name, "rev-list", "--count", "origin/main..HEAD").stdout.strip()
    return count not in ("", "0")


def pull(repo: str, name: str) -> None:
    """Bring origin/main in under our local commits; a rebase that stops is undone, not left."""
    done = git(repo, name, "pull", "--rebase", "--autostash", "-q", "origin", "main", check=False)
    if done.returncode != 0:
        git(repo, name, "rebase", "--abort", check=False)
        said = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise GitError("git pull --rebase failed: " + (said[-1] if said else "no output"))


def push(repo: str, name: str, rng: random.Random | None = None) -> int:
    """Pull --rebase then push to origin main, retrying a rejected push up to 5 times after a
    short random sleep. Returns how many pushes were rejected before one got through."""
    rng = rng or random.Random()
    for attempt in range(PUSH_ATTEMPTS):
        pull(repo, name)
        done = git(repo, name, "push", "-q", "origin", "HEAD:main", check=False)
        if done.returncode == 0:
            return attempt
        if attempt + 1 < PUSH_ATTEMPTS:
            time.sleep(rng.uniform(0.05, 0.3))
    said = (done.stderr.strip() or done.stdout.strip()).splitlines()
    raise GitError(f"git push rejected {PUSH_ATTEMPTS} times: " + (said[-1] if said else ""))


def commit_file(repo: str, name: str, path: str, text: str | None, subject: str) -> None:
    """Write `text` to `path` (relative to the repo; None deletes it) and commit only that."""
    full = os.path.join(repo, path)
    if text is None:
        git(repo, name, "rm", "-q", "--", path)
    else:
        os.makedirs(os.path.dirname(full) or repo, exist_ok=True)
        with open(full, "w", encoding="utf-8") as handle:
            handle.write(text)
        git(repo, name, "add", "--", path)
    git(repo, name, "commit", "-q", "-m", subject, "--", path)


def start_of_turn(repo: str, name: str) -> None:
    """Pull, and push what an earlier turn committed but could not push."""
    pull(repo, name)
    if ahead_of_remote(repo, name):
        push(repo, name)


def builder_turn(repo: str, phase: str | None, name: str = "builder",
                 subdir: str = "") -> TurnResult:
    """One builder turn: consume the inbox, then claim, wait, or mark the phase done."""
    start_of_turn(repo, name)
    lines: list[str] = []
    inbox: list[str] = []
    inbox_path = os.path.join(subdir, INBOX_FILE) if subdir else INBOX_FILE
    if os.path.isfile(os.path.join(repo, inbox_path)):
        with open(os.path.join(repo, inbox_path), encoding="utf-8", errors="replace") as handle:
            note = handle.read().strip()
        commit_file(repo, name, inbox_path, None, f"inbox: consumed {INBOX_FILE}")
        push(repo, name)
        lines.append(f"read {inbox_path}: {first_line(note)[:80] or '(empty)'}")
        inbox.append("inbox")

    def result(did: str, line: str) -> TurnResult:
        parts = inbox + ([did] if did != "nothing" else [])
        return TurnResult("; ".join(parts) or "nothing", lines + [line])

    plan = read_plan(repo)
    if not phase:
        return result("nothing", "no phase yet: waiting for a message that says 'Phase <id>'")
    if phase not in plan:
        return result("nothing", f"phase {phase} is not in {PLAN_FILE}")
    history = handoff_history(repo, name)
    if any(event.kind == "status" and event.target == phase for event in history):
        return result("nothing", f"phase {phase} is already marked done")
    gates = plan[phase]
    for gate in gates:
        state = gate_state(history, gate.label)
        if state.status == "pass":
            continue
        if state.status == "pending":
            return result(f"wait {gate.label}", f"waiting for review of {gate.label}")
        attempt = state.claims + 1
        text = (f"{gate.label}: attempt {attempt} by {name} at {utc_timestamp()}\n"
                f"nonce {uuid.uuid4().hex}\n")
        commit_file(repo, name, f"work/{gate.label}.txt", text,
                    f"claim({gate.label}): attempt {attempt}")
        push(repo, name)
        again = " again" if state.status == "fail" else ""
        return result(f"claim {gate.label}", f"claimed {gate.label}{again} (attempt {attempt})")
    status_path = os.path.join(subdir, f"STATUS-{phase}.md") if subdir else f"STATUS-{phase}.md"
    body = DONE_MARKER + "\n" + "".join(f"- {gate.label}: PASS\n" for gate in gates)
    commit_file(repo, name, status_path, body, f"status({phase}): done")
    push(repo, name)
    return result(f"done {phase}", f"every gate of {phase} passed: wrote {status_path}")


def adversary_turn(repo: str, name: str = "adversary") -> TurnResult:
    """One adversary turn: review every claim that has no review after it yet, then push."""
    start_of_turn(repo, name)
    history = handoff_history(repo, name)
    done: list[str] = []
    for phase_gates in read_plan(repo).values():
        for gate in phase_gates:
            state = gate_state(history, gate.label)
            if state.status != "pending":
                continue
            verdict = "FAIL" if gate.fail_first and state.fails == 0 else "PASS"
            text = (f"# review of {gate.label}\n\n{verdict}: claim {state.claim_sha[:12]}"
                    f" (attempt {state.claims}), reviewed by {name} at {utc_timestamp()}\n")
            commit_file(repo, name, f"reviews/{gate.label}.md", text,
                        f"review({gate.label}): {verdict}")
            done.append(f"review {gate.label} {verdict}")
    if not done:
        return TurnResult("nothing", ["no claim waits for review"])
    push(repo, name)
    return TurnResult("; ".join(done), done)


def phase_mentioned(message: str) -> str | None:
    """The phase id of the last "Phase <id>" in a message, if it names one."""
    found = PHASE_MENTION.findall(message)
    return found[-1] if found else None


class Role:
    """A --role as the REPL uses it: remembers the builder's phase, runs one turn per message."""

    def __init__(self, role: str, name: str, cwd: str, phase: str | None, subdir: str):
        self.role = role
        self.name = name
        self.cwd = cwd
        self.subdir = subdir
        self.state_path = os.path.join(cwd, ".simagent", f"{name}-role.json")
        self.phase = phase or self._remembered_phase()

    def _remembered_phase(self) -> str | None:
        try:
            with open(self.state_path, encoding="utf-8") as state_file:
                phase = json.load(state_file).get("phase")
        except (OSError, ValueError, AttributeError):
            return None
        return phase if isinstance(phase, str) and phase else None

    def remember(self) -> None:
        """Write the role state atomically: a restart never reads half a file."""
        os.makedirs(os.path.dirname(self.state_path), exist_ok=True)
        temporary = f"{self.state_path}.{os.getpid()}.tmp"
        with open(temporary, "w", encoding="utf-8") as state_file:
            json.dump({"role": self.role, "phase": self.phase}, state_file)
            state_file.flush()
            os.fsync(state_file.fileno())
        os.replace(temporary, self.state_path)

    def turn(self, message: str) -> TurnResult:
        """Do this role's git work for one message; a git failure is reported, never raised."""
        mentioned = phase_mentioned(message)
        if mentioned and mentioned != self.phase:
            self.phase = mentioned
            self.remember()
        try:
            if self.role == "builder":
                return builder_turn(self.cwd, self.phase, self.name, self.subdir)
            return adversary_turn(self.cwd, self.name)
        except (GitError, OSError) as error:
            return TurnResult("error", [f"git work failed: {error}"])
        except Exception as error:  # a bug in the role logic: say so, keep the REPL alive
            return TurnResult("error", [f"git work failed: {type(error).__name__}: {error}"])


# ---------------------------------------------------------------------------------------------
# The simulated agent
#   A small state machine. Modes: startup-dialog (bypass warning before the prompt), idle,
#   busy (working on a turn, or stuck for good after SIM:busyhang) and dialog (a permission
#   question). A usage limit is not a mode: it only changes how messages are answered.
# ---------------------------------------------------------------------------------------------

STARTUP_DIALOG, IDLE, BUSY, DIALOG = "startup-dialog", "idle", "busy", "dialog"


@dataclasses.dataclass
class Work:
    """The turn being worked on."""
    message: str          # the message being answered
    started: float        # monotonic time the work began
    duration: float       # seconds of simulated work; math.inf for SIM:busyhang
    turn: int             # 1-based turn number (drives cache-read usage); 0 if nothing is answered
    deaf: bool = False    # SIM:busyhang: ignore every key but Esc
    role_turn: bool = False  # a message (not a directive) to a --role agent: do its git work

    def elapsed(self, now: float) -> int:
        return int(now - self.started)


@dataclasses.dataclass
class Limit:
    """A simulated usage limit in force."""
    until: float          # monotonic time it lifts
    banner: str           # shown after "● " in answer to every message meanwhile


@dataclasses.dataclass
class Options:
    name: str
    session_id: str
    work: float
    startup_dialog: bool
    startup_delay: float
    log_path: str
    model: str
    role: str = ""        # "builder", "adversary" or "" (no git work)
    phase: str = ""       # the builder's phase until a message names one
    subdir: str = ""      # folder of status and inbox files in the work repo
    resumed: bool = False  # started with --resume: carries on an existing transcript


class SimAgent:
    """The simulated agent: takes keys, runs turns and directives, draws its screen.

    Everything happens on one thread in `run`: wait for a key or the next deadline (end of the
    work, next spinner second, end of a limit), handle what came, redraw if the screen changed.
    """

    def __init__(self, options: Options, terminal: Terminal, log: EventLog,
                 transcript: Transcript, cwd: str):
        self.options = options
        self.terminal = terminal
        self.log = log
        self.transcript = transcript
        self.cwd = cwd
        self.mode = STARTUP_DIALOG if options.startup_dialog else IDLE
        self.history: collections.deque[str] = collections.deque(maxlen=HISTORY_KEPT)
        self.input = PromptInput()
        self.queue: collections.deque[str] = collections.deque()  # submitted while busy
        self.work: Work | None = None
        self.limit: Limit | None = None
        self.choice = 0                 # selected line of the dialog shown, from the top
        self.turns = 0                  # normal turns started so far
        self.ctrl_c_armed_until = 0.0   # a second Ctrl-C before this monotonic time exits
        self.reader = KeyReader()
        self.drawn: tuple | None = None  # what is on screen now, to skip identical redraws
        self.role = Role(options.role, options.name, cwd, options.phase or None,
                         options.subdir) if options.role else None
        self.directives = {
            "die": self.directive_die,
            "exit": self.directive_exit,
            "work": self.directive_work,
            "hang": self.directive_hang,
            "busyhang": self.directive_busyhang,
            "limit": self.directive_limit,
            "say": self.directive_say,
            "dialog": self.directive_dialog,
        }

    # -- main loop ----------------------------------------------------------------------------

    def run(self) -> None:
        """Read keys, advance time, redraw; until something raises AgentExit."""
        self.render()
        while True:
            now = time.monotonic()
            deadline = self.next_deadline(now)
            timeout = None if deadline is None else max(0.0, deadline - now)
            if self.terminal.wait(timeout):
                data = self.terminal.read()
                if not data:
                    raise AgentExit(0, "terminal input closed")
                for key in self.reader.feed(data, time.monotonic()):
                    self.handle_key(key)
            for key in self.reader.flush_stale(time.monotonic()):
                self.handle_key(key)
            self.advance(time.monotonic())
            self.render()

    def next_deadline(self, now: float) -> float | None:
        """The next moment something changes without input: end of work, next spinner second..."""
        deadlines = []
        if self.work is not None:
            deadlines.append(self.work.started + self.work.duration)
            deadlines.append(self.work.started + self.work.elapsed(now) + 1)
        if self.limit is not None:
            deadlines.append(self.limit.until)
        if self.ctrl_c_armed_until:
            deadlines.append(self.ctrl_c_armed_until)
        reader_deadline = self.reader.deadline()
        if reader_deadline is not None:
            deadlines.append(reader_deadline)
        return min(deadlines) if deadlines else None

    def advance(self, now: float) -> None:
        """Let time pass: finish work that is done, lift an expired limit, disarm Ctrl-C."""
        if self.work is not None and now >= self.work.started + self.work.duration:
            self.finish_work(now)
        if self.limit is not None and now >= self.limit.until:
            self.log.write("limit-over", banner=self.limit.banner)
            self.limit = None
        if self.ctrl_c_armed_until and now >= self.ctrl_c_armed_until:
            self.ctrl_c_armed_until = 0.0

    # -- keys ---------------------------------------------------------------------------------

    def handle_key(self, key: Key) -> None:
        if self.mode in (STARTUP_DIALOG, DIALOG):
            self.dialog_key(key)
            return
        if self.mode == BUSY and key.name in ("esc", "ctrl-c"):
            if key.name == "esc" or not self.work.deaf:
                self.interrupt()
            return
        if self.mode == BUSY and self.work.deaf:
            return
        if key.name == "ctrl-c":
            self.ctrl_c_at_idle()
        elif key.name == "ctrl-d":
            raise AgentExit(0, "Ctrl-D")
        elif key.name == "text":
            self.input.type(key.text)
        elif key.name == "paste":
            self.input.paste(key.text)
        elif key.name == "backspace":
            self.input.backspace()
        elif key.name == "enter":
            self.submit()
        # Arrows, Esc at idle and unknown keys change nothing here.

    def ctrl_c_at_idle(self) -> None:
        """First Ctrl-C clears the input and arms; a second one soon after exits, like Claude."""
        now = time.monotonic()
        if now < self.ctrl_c_armed_until:
            raise AgentExit(0, "Ctrl-C twice")
        self.input.clear()
        self.ctrl_c_armed_until = now + CTRL_C_WINDOW

    def submit(self) -> None:
        message = self.input.text()
        if not message.strip():
            return
        self.input.clear()
        self.ctrl_c_armed_until = 0.0
        self.log.write("message", text=message)
        if self.mode == BUSY:
            self.queue.append(message)  # answered after the current turn, as Claude Code does
        else:
            self.begin(message)

    # -- turns --------------------------------------------------------------------------------

    def begin(self, message: str) -> None:
        """Take up one message at idle: obey a directive, answer a limit, or start working."""
        self.history.append(echo_line(message))
        directive = re.match(r"SIM:([A-Za-z]+)\s?(.*)\Z", message.strip(), re.DOTALL)
        if directive:
            name, argument = directive.group(1).lower(), directive.group(2)
            handler = self.directives.get(name)
            if handler is None:
                self.history.append(f"{REPLY_MARK}unknown directive SIM:{name}")
            else:
                handler(message, argument)
            return
        if self.limit is not None:
            self.history.append(REPLY_MARK + self.limit.banner)
            return
        self.start_work(message, self.options.work, role_turn=self.role is not None)

    def start_work(self, message: str, seconds: float, role_turn: bool = False) -> None:
        self.turns += 1
        self.transcript.user_message(message)
        self.work = Work(message, time.monotonic(), seconds, self.turns, role_turn=role_turn)
        self.mode = BUSY

    def finish_work(self, now: float) -> None:
        work = self.work
        reply = "ack: " + first_line(work.message)[:60]
        done = self.role_work(work.message) if work.role_turn else []
        if done:
            reply += "\n" + "\n".join(done)
        usage = turn_usage(work.message, reply, work.turn)
        message_id = self.transcript.assistant_reply(reply, usage)
        self.log.write("usage", session_id=self.options.session_id, message_id=message_id,
                       model=self.options.model, turn=work.turn, usage=usage)
        self.history.append(REPLY_MARK + first_line(reply))
        self.history.extend(RESULT_MARK + line for line in done)
        self.history.append(f"✻ Worked for {max(1, round(now - work.started))}s")
        self.become_idle()

    def role_work(self, message: str) -> list[str]:
        """The --role's git work for one turn, logged as a `turn` record; returns what to say."""
        result = self.role.turn(message)
        fields = {"error": result.lines[-1]} if result.did == "error" else {}
        self.log.write("turn", role=self.role.role, did=result.did, phase=self.role.phase,
                       said=result.lines, **fields)
        return result.lines

    def interrupt(self) -> None:
        if self.work.turn:
            self.transcript.interrupted()
        self.history.append(RESULT_MARK + "Interrupted")
        self.become_idle()

    def become_idle(self) -> None:
        """Back to the prompt, then take up what was queued meanwhile, in order."""
        self.work = None
        self.mode = IDLE
        while self.mode == IDLE and self.queue:
            self.begin(self.queue.popleft())

    # -- directives ---------------------------------------------------------------------------

    def directive_die(self, message: str, argument: str) -> None:
        try:
            code = int(argument.split()[0]) if argument.split() else 1
        except ValueError:
            code = 1
        raise AgentExit(code & 0xFF, "SIM:die")

    def directive_exit(self, message: str, argument: str) -> None:
        raise AgentExit(0, "SIM:exit")

    def directive_work(self, message: str, argument: str) -> None:
        try:
            seconds = float(argument.split()[0])
        except (IndexError, ValueError):
            self.history.append(f"{REPLY_MARK}SIM:work needs a number of seconds")
            return
        if self.limit is not None:      # this one is work for the model: the limit applies
            self.history.append(REPLY_MARK + self.limit.banner)
            return
        self.start_work(message, max(0.0, seconds))

    def directive_hang(self, message: str, argument: str) -> None:
        """Freeze like a wedged process: the idle screen stays, nothing is read or redrawn."""
        self.mode = IDLE
        self.render()
        self.log.write("frozen", reason="SIM:hang")
        while True:
            time.sleep(3600)   # only a signal ends this

    def directive_busyhang(self, message: str, argument: str) -> None:
        self.work = Work(message, time.monotonic(), math.inf, turn=0, deaf=True)
        self.mode = BUSY

    def directive_limit(self, message: str, argument: str) -> None:
        parts = argument.strip().split(None, 1)
        try:
            seconds = float(parts[0])
        except (IndexError, ValueError):
            self.history.append(f"{REPLY_MARK}SIM:limit needs SECONDS and a banner")
            return
        banner = parts[1].strip() if len(parts) > 1 else \
            DEFAULT_LIMIT_BANNER.format(seconds=round(seconds))
        self.limit = Limit(time.monotonic() + seconds, banner)
        self.log.write("limit", seconds=seconds, banner=banner)
        self.history.append(REPLY_MARK + banner)

    def directive_say(self, message: str, argument: str) -> None:
        self.history.extend(argument.replace("\\n", "\n").split("\n"))

    def directive_dialog(self, message: str, argument: str) -> None:
        self.mode = DIALOG
        self.choice = 0
        self.log.write("dialog-shown", dialog="permission")

    # -- dialogs ------------------------------------------------------------------------------

    def dialog_key(self, key: Key) -> None:
        """Keys in a dialog move the selection or answer it; typed text goes nowhere."""
        self.log.write("dialog-key", key=key.label(), dialog=self.mode)
        choices = BYPASS_CHOICES if self.mode == STARTUP_DIALOG else PERMISSION_CHOICES
        if key.name == "down":
            self.choice = min(self.choice + 1, len(choices) - 1)
        elif key.name == "up":
            self.choice = max(self.choice - 1, 0)
        elif key.name in ("enter", "esc"):
            # Esc cancels: "No, exit" in the startup warning, "No" in a permission question.
            chosen = self.choice if key.name == "enter" else 0 if self.mode == STARTUP_DIALOG else 1
            self.answer_dialog(chosen)

    def answer_dialog(self, chosen: int) -> None:
        if self.mode == STARTUP_DIALOG:
            self.log.write("dialog-answer", dialog=STARTUP_DIALOG, answer=BYPASS_CHOICES[chosen])
            if chosen == 0:
                # The real CLI exits with status 1 here; a message typed into the warning
                # followed by Enter therefore kills it.
                raise AgentExit(1, "bypass warning declined")
            self.mode = IDLE
            return
        answer = PERMISSION_ANSWERS[chosen]
        self.log.write("dialog-answer", dialog=DIALOG, answer=answer)
        self.history.append(f"{RESULT_MARK}dialog answered: {answer}")
        self.become_idle()

    # -- drawing ------------------------------------------------------------------------------

    def render(self) -> None:
        columns, rows = self.terminal.size()
        lines, cursor = self.screen(columns, rows, time.monotonic())
        frame = (columns, rows, tuple(lines), cursor)
        if frame == self.drawn and not self.terminal.resized:
            return
        self.terminal.resized = False
        self.terminal.draw(lines, columns, rows, cursor)
        self.drawn = frame

    def screen(self, columns: int, rows: int, now: float) -> tuple[list[str], tuple | None]:
        """The lines to show, top to bottom, and where the cursor goes (None: hidden)."""
        if self.mode == STARTUP_DIALOG:
            return self.startup_dialog_lines(columns), None
        top = [f"{LOGO[0]}   {TITLE}",
               f"{LOGO[1]}  {self.options.model} · {self.options.name}",
               f"{LOGO[2]}  {self.cwd}",
               ""]
        bottom: list[str] = []
        if self.mode == BUSY:
            elapsed = self.work.elapsed(now)
            glyph = SPINNER_GLYPHS[elapsed % len(SPINNER_GLYPHS)]
            bottom += [f"{glyph} {SPINNER_WORD} ({elapsed}s)", ""]
        prompt_row = None
        if self.mode == DIALOG:
            bottom += self.permission_dialog_lines(columns)
        else:
            prompt_lines = wrap(PROMPT_MARK + displayable(self.input.display()), columns)
            bottom.append(RULE_CHAR * columns)
            prompt_row = len(bottom) + len(prompt_lines) - 1
            bottom += prompt_lines
            bottom.append(RULE_CHAR * columns)
            bottom.append(self.footer())
        room = rows - len(top) - len(bottom) - 1   # one blank line between history and prompt
        history = self.history_lines(columns, room)
        lines = top + (history + [""] if history else []) + bottom
        cursor = None
        if prompt_row is not None:
            row = len(lines) - len(bottom) + prompt_row
            column = text_width(clip(lines[row], columns)) if row < len(lines) else 0
            cursor = (row, column)
        if len(lines) > rows:                      # a tiny pane: the prompt box wins
            cut = len(lines) - rows
            lines = lines[cut:]
            cursor = None if cursor is None or cursor[0] < cut else (cursor[0] - cut, cursor[1])
        return lines, cursor

    def footer(self) -> str:
        if self.mode == BUSY:
            return BUSY_FOOTER.format(name=self.options.name)
        if self.ctrl_c_armed_until:
            return CTRL_C_FOOTER
        return IDLE_FOOTER.format(name=self.options.name)

    def history_lines(self, columns: int, room: int) -> list[str]:
        """The last `room` screen lines of history, wrapped to the width."""
        if room <= 0:
            return []
        lines: list[str] = []
        for entry in reversed(self.history):
            lines[:0] = wrap(displayable(entry), columns)
            if len(lines) >= room:
                break
        return lines[-room:]

    def choice_lines(self, choices: tuple[str, ...]) -> list[str]:
        return [(" ❯ " if index == self.choice else "   ") + choice
                for index, choice in enumerate(choices)]

    def permission_dialog_lines(self, columns: int) -> list[str]:
        return ([RULE_CHAR * columns, PERMISSION_QUESTION]
                + self.choice_lines(PERMISSION_CHOICES) + ["", DIALOG_HINT])

    def startup_dialog_lines(self, columns: int) -> list[str]:
        return ([RULE_CHAR * columns, "", BYPASS_WARNING, ""]
                + wrap(BYPASS_EXPLANATION, columns - 1, indent=" ")
                + [""] + self.choice_lines(BYPASS_CHOICES) + ["", DIALOG_HINT])


# ---------------------------------------------------------------------------------------------
# Command line and main
# ---------------------------------------------------------------------------------------------

def parse_options(argv: list[str], cwd: str) -> Options:
    parser = argparse.ArgumentParser(
        prog="simagent.py",
        description="A simulated coding-agent CLI that looks like Claude Code in a terminal.",
        allow_abbrev=False,   # an unknown preset flag must not be taken for an abbreviation
    )
    default_name = os.environ.get("SIMAGENT_NAME") or os.environ.get("AGENTS_PY_NAME") or "sim"
    parser.add_argument("--name", default=default_name,
                        help="agent name shown in the footer and written in the log (default: "
                             "$SIMAGENT_NAME, else $AGENTS_PY_NAME, else sim)")
    parser.add_argument("--session-id", help="transcript session id (default: a new uuid4)")
    parser.add_argument("--resume", metavar="ID",
                        help="carry on session ID (its transcript must exist, as with Claude Code: "
                             "otherwise 'No conversation found with session ID: ID' and exit 1)")
    parser.add_argument("--dangerously-skip-permissions", action="store_true",
                        help="accepted for compatibility with Claude presets; changes nothing")
    parser.add_argument("--work", type=float, default=1.0,
                        help="seconds of simulated work per message (default 1.0)")
    parser.add_argument("--startup-dialog", action="store_true",
                        help="show the Bypass Permissions warning before the prompt")
    parser.add_argument("--startup-delay", type=float, default=0.0,
                        help="seconds to show only 'Starting…' before the first screen")
    parser.add_argument("--log", help="event log path (default: $SIMAGENT_LOG, else "
                                      "<cwd>/.simagent/<name>.log)")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"model name written in transcripts (default {DEFAULT_MODEL})")
    parser.add_argument("--role", choices=ROLES,
                        help="do a builder's or an adversary's git hand-off work every turn "
                             "(default: none, only acknowledge)")
    parser.add_argument("--phase", default="",
                        help="the builder's phase until a message says 'Phase <id>'")
    parser.add_argument("--subdir", default="",
                        help="folder of STATUS-<phase>.md and TO-BUILDER.md in the repo "
                             "(default: its root)")
    args, _unknown = parser.parse_known_args(argv)
    log_path = args.log or os.environ.get("SIMAGENT_LOG") \
        or os.path.join(cwd, ".simagent", f"{args.name}.log")
    return Options(
        name=args.name,
        session_id=args.resume or args.session_id or str(uuid.uuid4()),
        resumed=bool(args.resume),
        work=max(0.0, args.work),
        startup_dialog=args.startup_dialog,
        startup_delay=max(0.0, args.startup_delay),
        log_path=os.path.join(cwd, os.path.expanduser(log_path)),
        model=args.model,
        role=args.role or "",
        phase=args.phase,
        subdir=args.subdir,
    )


def _exit_on_signal(signum, frame) -> None:
    raise AgentExit(128 + signum, signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    cwd = os.getcwd()
    options = parse_options(sys.argv[1:] if argv is None else argv, cwd)
    log = EventLog(options.log_path, options.name)
    log.write("start", pid=os.getpid(), session_id=options.session_id, argv=sys.argv, cwd=cwd,
              resumed=options.resumed)
    transcript = Transcript(claude_config_dir(cwd), cwd, options.session_id, options.model)
    if options.resumed and not os.path.exists(transcript.path):
        print(f"No conversation found with session ID: {options.session_id}", flush=True)
        log.write("exit", code=1, reason="no conversation to resume")
        return 1
    terminal = Terminal(sys.stdin.fileno(), sys.stdout.fileno())
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)

    code, reason, crash = 0, "", None
    try:
        if options.startup_delay:
            terminal.write("Starting…\n")
            time.sleep(options.startup_delay)
        terminal.enter()
        SimAgent(options, terminal, log, transcript, cwd).run()
    except AgentExit as exit_request:
        code, reason = exit_request.code, exit_request.reason
    except KeyboardInterrupt:
        code, reason = 130, "SIGINT"
    except Exception:  # a bug: restore the terminal, record it, then show it
        crash = traceback.format_exc()
        code, reason = 1, "crash"
    finally:
        # A second hang-up or TERM while cleaning up must not cut the cleanup short.
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        terminal.leave()
    if crash:
        log.write("crash", error=crash)
        print(crash, file=sys.stderr)
    if terminal.restore_error:
        log.write("terminal-error", error=terminal.restore_error)
    log.write("exit", code=code, reason=reason)
    return code


if __name__ == "__main__":
    sys.exit(main())
