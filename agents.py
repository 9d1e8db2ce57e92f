#!/usr/bin/env python3
"""agents.py: run a team of terminal coding agents in tmux, unattended.

One file, Python 3.11+, standard library only: copy it next to an ``agents.toml``
and run ``python3 agents.py up``. Every agent (Claude Code, Codex, Gemini CLI,
aider, opencode, or any REPL) and every service runs in its own tmux session;
a watchdog keeps them working: heals the dead, nudges the stalled, waits out
usage limits, wakes agents on schedule and drives a plan of phases through git.

The file is cut into sections, each using only the ones above it:

    Basics           errors, clocks, atomic files, the event log
    Config           the schema as dataclasses, one table of defaults, backend presets, validation
    tmux             the only code that runs tmux
    State            the atomic JSON store of everything the program remembers
    Screens          reading a pane (busy, idle, dialog, limited, dead) and limit reset times
    Sending          delivering a message safely, verified
    Lifecycle        starting, observing and stopping agents and services
    Watchdog checks  pure decisions: heal, stall, limits, wakes, dialogs
    Watchdog loop    observe → classify → decide → act, for days
    Commands         one function per command line verb
    main             argument parsing and --help

Run ``python3 agents.py --help`` for the commands, ``agents.py COMMAND --help``
for each one's options.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import dataclasses
from datetime import date, datetime, timedelta, timezone, tzinfo
import fcntl
import hashlib
import itertools
import json
import math
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

# difflib, uuid, zoneinfo, traceback and concurrent.futures are imported where they are used:
# only some paths need them, and a read-only command like `status` pays every import on each call.

VERSION = "0.1.0"

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2


# ============================================================================
# Basics
#   Errors, clocks, atomic file writes and the event log: what every other
#   section leans on.
# ============================================================================


class ConfigError(Exception):
    """Bad input: one or more one-line messages naming file, section and key.

    Raised before anything is started; ``main`` prints each line and exits 2.
    """

    def __init__(self, lines: list[str]):
        super().__init__("\n".join(lines))
        self.lines = lines


class RuntimeFailure(Exception):
    """Something went wrong while acting (tmux refused, delivery unseen): exit 1."""


def format_duration(seconds: float) -> str:
    """``75`` → ``1m15s``; ``7300`` → ``2h1m``: short, for tables and events."""
    seconds = int(max(0, seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s" if seconds else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h"


def iso(timestamp: float, timespec: str = "seconds") -> str:
    """A Unix time as local ISO 8601 with offset, to the second (or as ``timespec`` says)."""
    return datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec=timespec)


def clock_time(timestamp: float, now: float) -> str:
    """A Unix time as local ``HH:MM``, with the date when it is not on ``now``'s day."""
    moment = datetime.fromtimestamp(timestamp).astimezone()
    if moment.date() == datetime.fromtimestamp(now).astimezone().date():
        return moment.strftime("%H:%M")
    return moment.strftime("%a %d %b %H:%M")


def write_atomically(path: Path, data: str) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never half.

    Temp file in the same folder, fsync, rename over the target, fsync the folder.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        with open(temp, "w", encoding="utf-8") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


@contextlib.contextmanager
def file_lock(path: Path, timeout: float = 30.0) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the block.

    Locks die with their process, so a killed holder never leaves a stale lock.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeFailure(f"{path}: still locked by another process after {timeout:.0f}s")
                time.sleep(0.05)
        yield
    finally:
        handle.close()


class Clock:
    """Real time. The simulation passes a fake with the same three methods, so days pass in seconds."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        # Boot time counts a suspend (monotonic does not), so a sleep is not mistaken for a clock jump.
        return time.clock_gettime(time.CLOCK_BOOTTIME) if hasattr(time, "CLOCK_BOOTTIME") else time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class EventLog:
    """Every action, one line in ``events.jsonl`` and one human line in ``watchdog.log``.

    An event is ``{"time", "kind", "agent", "reason", ...details}``. Lines are
    appended with a single ``write`` on an ``O_APPEND`` descriptor, so writers in
    several processes (the watchdog, a ``send`` from the shell) never interleave.
    """

    def __init__(self, log_dir: Path, echo: Callable[[str], None] | None = None):
        self.json_path = log_dir / "events.jsonl"
        self.text_path = log_dir / "watchdog.log"
        self.echo = echo  # also print the human line (the foreground watchdog does)

    def emit(self, kind: str, agent: str, reason: str, now: float | None = None, **details: Any) -> dict:
        moment = time.time() if now is None else now
        # Milliseconds: a test (or a user) comparing two events must not lose a second to rounding.
        stamp = iso(moment, "milliseconds")
        event = {"time": stamp, "kind": kind, "agent": agent, "reason": reason, **details}
        extra = " ".join(f"{key}={value}" for key, value in details.items() if value not in (None, "", [], {}))
        human = f"{stamp} {kind:<14} {agent or '-':<14} {reason}" + (f"  [{extra}]" if extra else "")
        self._append(self.json_path, json.dumps(event, ensure_ascii=False))
        self._append(self.text_path, human)
        if self.echo:
            self.echo(human)
        return event

    ROTATE_AT = 20 * 1024 * 1024  # bytes: a log this big moves to NAME.1 (one generation kept)

    @classmethod
    def _append(cls, path: Path, line: str) -> None:
        """Append one line; never raises (a full disk must not stop the watchdog): stderr instead."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_size > cls.ROTATE_AT:
                    os.replace(path, path.with_name(path.name + ".1"))
            descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(descriptor, (line.replace("\n", "\\n") + "\n").encode("utf-8"))
            finally:
                os.close(descriptor)
        except OSError as error:
            print(f"agents.py: cannot write {path}: {error.strerror or error}: {line[:200]}", file=sys.stderr)


# ============================================================================
# Config
#   agents.toml → a tree of dataclasses. Defaults live in the dataclass fields
#   (the one table of defaults); every bad input becomes one line naming file,
#   section and key.
# ============================================================================

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
KINDS = ("loop", "persistent", "task")
WATCH_MODES = ("heal+stall", "heal", "none")
RESTART_MODES = ("resume", "fresh")
MAX_BUDGET = 10 ** 12  # tokens: a budget above this is a typo, not a budget
TRANSCRIPT_FORMATS = ("claude", "codex", "gemini", "opencode", "none")
TOKEN_GRANULARITIES = ("gate", "phase")


def setting(default: Any = None, *, doc: str, check: Callable | None = None, factory: Callable | None = None) -> Any:
    """A config field: its default, a one-line doc (shown by ``check``), its validator."""
    metadata = {"doc": doc, "check": check}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


# -- validators: (value, complain) → converted value; ``complain(msg)`` raises --

DAY = 86400.0
YEAR = 365 * DAY
MAX_NAME = 64  # characters in a name or session_prefix: a session, lock and log file name must fit
MAX_PATTERN = 1000  # characters in one regex
MAX_PROMPT_FILE = 1024 * 1024  # bytes an @file kickoff may hold
MAX_ERROR_LINE = 300  # characters of one error line: a value quoted in it is cut


def as_number(minimum: float = 0.0, maximum: float = YEAR) -> Callable:
    """A finite number in [minimum, maximum]: NaN and infinities never pass (a NaN compares
    false with everything, so ``backoff_base = nan`` would never restart; 1e300 never ticks)."""
    def check(value: Any, complain: Callable) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            complain(f"expected a number, got {type_name(value)}")
        if not math.isfinite(value):
            complain(f"must be a finite number, got {value}")
        if value < minimum:
            complain(f"must be at least {minimum:g}, got {value:g}")
        if value > maximum:
            complain(f"must be at most {maximum:g}, got {value:g}")
        return float(value)
    return check


def as_count(minimum: int = 0, maximum: int = 10_000) -> Callable:
    def check(value: Any, complain: Callable) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            complain(f"expected a whole number, got {type_name(value)}")
        if not minimum <= value <= maximum:
            complain(f"must be from {minimum} to {maximum}, got {value:g}")
        return value
    return check


def as_bool(value: Any, complain: Callable) -> bool:
    if not isinstance(value, bool):
        complain(f"expected true or false, got {type_name(value)}")
    return value


def as_text(value: Any, complain: Callable) -> str:
    """A string without NUL bytes (no path, argument or environment value can carry one)."""
    if not isinstance(value, str):
        complain(f"expected a string, got {type_name(value)}")
    if "\0" in value:
        complain("holds a NUL byte (\\u0000)")
    return value


def as_choice(*choices: str) -> Callable:
    def check(value: Any, complain: Callable) -> str:
        as_text(value, complain)
        if value not in choices:
            complain(f"must be one of {', '.join(choices)}, got {value!r}" + did_you_mean(value, choices))
        return value
    return check


def as_name(value: Any, complain: Callable) -> str:
    as_text(value, complain)
    if not NAME_PATTERN.match(value):
        complain(f"{value!r} may hold only letters, digits, '_' and '-'")
    if len(value) > MAX_NAME:
        complain(f"is {len(value)} characters long; at most {MAX_NAME}")
    return value


def as_names(value: Any, complain: Callable) -> list[str]:
    """One agent name or a list of them."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        complain(f"expected an agent name or a list of names, got {type_name(value)}")
    return list(items)


def as_text_list(value: Any, complain: Callable) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        complain(f"expected a list of strings, got {type_name(value)}")
    for item in value:
        as_text(item, complain)
    return list(value)


def as_command(value: Any, complain: Callable) -> list[str]:
    """A command: a string split like a shell would (``shlex``, nothing run) or a list."""
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as error:
            complain(f"cannot split {value!r}: {error}")
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        argv = list(value)
    else:
        complain(f"expected a string or a list of strings, got {type_name(value)}")
    if not argv:
        complain("is empty")
    for item in argv:
        as_text(item, complain)
    return argv


def as_env(value: Any, complain: Callable) -> dict[str, str]:
    """Environment variables; numbers and booleans become their TOML spelling."""
    if not isinstance(value, dict):
        complain(f"expected a table of NAME = \"value\", got {type_name(value)}")
    env = {}
    for name, item in value.items():
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
            complain(f"{name!r} is not a valid environment variable name")
        if isinstance(item, bool):
            item = "true" if item else "false"
        elif isinstance(item, (int, float)):
            item = str(item)
        elif not isinstance(item, str):
            complain(f"{name}: expected a string, got {type_name(item)}")
        if "\0" in item:
            complain(f"{name}: holds a NUL byte (\\u0000)")
        env[name] = item
    return env


def as_regex_list(value: Any, complain: Callable) -> list[str]:
    """Patterns (one string or a list), each compiled once here to catch mistakes early."""
    patterns = [value] if isinstance(value, str) else value
    if not isinstance(patterns, list) or not all(isinstance(item, str) for item in patterns):
        complain(f"expected a regex or a list of regexes, got {type_name(value)}")
    for pattern in patterns:
        as_regex(pattern, complain)
    return list(patterns)


def as_regex(value: Any, complain: Callable) -> str:
    """A regex that compiles and cannot backtrack without end (see ``runaway_repeat``)."""
    as_text(value, complain)
    if len(value) > MAX_PATTERN:
        complain(f"is a regex of {len(value)} characters; at most {MAX_PATTERN}")
    try:
        re.compile(value, re.MULTILINE)  # the flags they are used with: the compiled pattern is cached
    except (re.error, RecursionError, OverflowError) as error:
        complain(f"invalid regex {value!r}: {error}")
    runaway = runaway_repeat(value)
    if runaway:
        complain(f"regex {value!r} has {runaway}: it can take forever on one line; "
                 f"make the inner repeat bounded ({{0,50}}) or the groups exclusive")
    return value


def runaway_repeat(pattern: str) -> str:
    """``"a repeat inside a repeat"`` if ``pattern`` nests repeats so that a near-miss takes forever.

    ``(a+)+$``, ``(a{1,3})*b``, ``(\\w+\\s?)+$``, ``(a+){1,9}``: on a line that almost
    matches, Python's regex engine tries every way of splitting it between the repeats —
    exponential (or high-polynomial) time, a watchdog stuck at 100% CPU on one line of
    ``a``s. Refused: a variable-width repeat inside an unbounded one, and an unbounded
    repeat inside one of more than three rounds. Allowed: ``([\\w-]+ ){0,3}`` (the presets'
    shape), possessive and atomic repeats. Ambiguous alternations (``(a|aa)+``) are not
    caught; the classifier's lines are bounded (``MAX_SCREEN_LINE``) as a second net.
    """
    try:
        from re import _parser as parser  # the stdlib's own regex parser (sre_parse)

        tree = parser.parse(pattern)
    except (re.error, RecursionError, OverflowError, ImportError):
        return ""  # re.compile has judged the pattern; without the parser there is nothing to look at

    def walk(items: Any, rounds: int) -> bool:
        """True if a risky repeat sits within ``rounds`` repetitions of an outer repeat."""
        for op, argument in items:
            if op in (parser.MAX_REPEAT, parser.MIN_REPEAT):  # possessive repeats never backtrack
                low, high, inner = argument
                unbounded = high == parser.MAXREPEAT
                if rounds == parser.MAXREPEAT and low != high:
                    return True
                if rounds > 3 and unbounded:
                    return True
                if walk(inner, max(rounds, high if high > 1 else rounds)):
                    return True
            elif op == parser.SUBPATTERN and walk(argument[-1], rounds):
                return True
            elif op == parser.BRANCH and any(walk(branch, rounds) for branch in argument[1]):
                return True
            elif op in (parser.ASSERT, parser.ASSERT_NOT) and walk(argument[1], rounds):
                return True
        return False

    return "a repeat inside a repeat" if walk(tree, 1) else ""


def as_keys(value: Any, complain: Callable) -> list[str]:
    """tmux key names: ``"Down Enter"`` or ``["Down", "Enter"]``."""
    keys = value.split() if isinstance(value, str) else value
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) and re.fullmatch(r"[\w+-]+", k)
                                                         for k in keys):
        complain(f"expected tmux key names like \"Down Enter\" or \"C-m\", got {value!r}")
    return list(keys)


def as_key(value: Any, complain: Callable) -> str:
    """One tmux key name (``Enter``, ``C-m``)."""
    return as_keys(value, complain)[0] if isinstance(value, str) and len(value.split()) == 1 else \
        complain(f"expected one tmux key name like \"Enter\", got {value!r}")


def as_dialog_keys(value: Any, complain: Callable) -> dict[str, list[str]]:
    """Pattern → keys: how to answer a dialog whose screen matches the pattern."""
    if not isinstance(value, dict):
        complain(f"expected a table of \"pattern\" = \"keys\", got {type_name(value)}")
    rules = {}
    for pattern, keys in value.items():
        as_regex(pattern, complain)
        rules[pattern] = as_keys(keys, complain)
    return rules


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or nothing."""
    import difflib

    hint = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


def type_name(value: Any) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "a table"}.get(type(value), type(value).__name__)


# -- the schema --------------------------------------------------------------


@dataclass
class WatchdogConfig:
    """``[watchdog]``: how often the watchdog looks and how patient it is."""

    signal_interval: float = setting(15.0, doc="seconds between ticks (screens, hand-off, phases)", check=as_number(0.05, 3600))
    heavy_interval: float = setting(120.0, doc="seconds between heavy ticks (token accounting)", check=as_number(0.05, DAY))
    stall_idle: float = setting(900.0, doc="idle seconds after which an agent counts as stalled", check=as_number(1))
    stall_grace: float = setting(180.0, doc="seconds after a start in which no stall is judged", check=as_number())
    hung_busy: float = setting(2700.0, doc="seconds a busy screen may stay frozen before it counts as hung and is "
                                           "rebooted (0: never)", check=as_number())
    log_tokens: bool = setting(True, doc="account tokens per phase and gate", check=as_bool)
    token_granularity: str = setting("gate", doc="'gate' (per claim label) or 'phase'", check=as_choice(*TOKEN_GRANULARITIES))
    limit_fallback_wait: float = setting(3600.0, doc="seconds to wait when a limit's reset time cannot be read", check=as_number(1))
    limit_margin: float = setting(120.0, doc="seconds past a parsed reset before resuming", check=as_number())
    backoff_base: float = setting(30.0, doc="first restart delay in seconds; doubles per crash", check=as_number(0, DAY))
    backoff_max: float = setting(600.0, doc="longest restart delay in seconds", check=as_number(0, 7 * DAY))
    crash_loop_restarts: int = setting(5, doc="restarts within crash_loop_window that mean 'failed'",
                                       check=as_count(1, 100))
    crash_loop_window: float = setting(1800.0, doc="seconds over which restarts are counted", check=as_number(1))
    daily_budget: int = setting(0, doc="tokens a day (input + output + cache creation) before the loop agents are "
                                       "paused (0: no budget)", check=as_count(0, MAX_BUDGET))
    budget_counts_cache_reads: bool = setting(False, doc="count cache reads towards the budgets too", check=as_bool)


@dataclass
class Backend:
    """``[backend.NAME]``: how to run one agent CLI and how to read its screen.

    Patterns are Python regexes matched line by line (``re.MULTILINE``) against
    the bottom lines of the visible screen only, so an old banner in the
    scrollback never counts. Anchor them to their line (``^``): an agent that
    prints or quotes a limit message in its own output must not match.
    """

    name: str = setting("", doc="the backend's name (the table's key)")
    command: list[str] = setting(doc="program and arguments (a string is split like a shell, nothing is run)",
                                 check=as_command, factory=list)
    env: dict[str, str] = setting(doc="environment for every agent on this backend", check=as_env, factory=dict)
    submit_key: str = setting("Enter", doc="tmux key that submits typed input", check=as_key)
    submit_delay: float = setting(0.3, doc="seconds between typing and the submit key", check=as_number(0, 10))
    busy: list[str] = setting(doc="patterns that mean the agent is working", check=as_regex_list, factory=list)
    idle: list[str] = setting(doc="patterns of the input prompt line; a group named 'input' holds typed text",
                              check=as_regex_list, factory=list)
    placeholders: list[str] = setting(doc="patterns of prompt-line text that is a placeholder, not typed input",
                                      check=as_regex_list, factory=list)
    command_chars: str = setting("", doc="characters that make a message a CLI command when it starts with one "
                                         "('/exit'): such a message is held unless sent with `send --command`",
                                 check=as_text)
    space_chars: str = setting("", doc="characters that switch the input mode when typed first (Claude's '!' shell "
                                       "mode): a message starting with one is sent after a space", check=as_text)
    dialog: list[str] = setting(doc="patterns that mean a confirmation or menu waits for keys", check=as_regex_list,
                                factory=list)
    dialog_keys: dict[str, list[str]] = setting(doc="pattern → keys that answer a known dialog", check=as_dialog_keys,
                                                factory=dict)
    limit: list[str] = setting(doc="usage-limit banners (wait until the reset they name)", check=as_regex_list,
                               factory=list)
    rate_limit: list[str] = setting(doc="short API rate-limit or overload errors (retry soon)", check=as_regex_list,
                                    factory=list)
    self_resume: list[str] = setting(doc="banners of a CLI retrying or resuming by itself (stand down)",
                                     check=as_regex_list, factory=list)
    manual_limit: list[str] = setting(doc="limits never automated (spend, org, credits): reported only",
                                      check=as_regex_list, factory=list)
    resume: str = setting("continue", doc="message sent once a limit has reset", check=as_text)
    interrupt_key: str = setting("Escape", doc="tmux key that interrupts a turn (a budget pause presses it)",
                                 check=as_key)
    transcripts: str = setting("none", doc="transcript format: 'claude', 'codex', 'gemini', 'opencode' or 'none'",
                               check=as_choice(*TRANSCRIPT_FORMATS))
    session_id_flag: str = setting("", doc="flag that starts the CLI with a session id of ours (Claude: --session-id)",
                                   check=as_text)
    resume_args: list[str] = setting(doc="arguments, put after the backend's command, that resume a conversation; "
                                         "{session_id} is its id (Claude: [\"--resume\", \"{session_id}\"]); "
                                         "without one the CLI resumes its last conversation itself",
                                     check=as_text_list, factory=list)
    restart_mode: str = setting("", doc="how a healed agent comes back: 'resume' (into its conversation, with a "
                                        "one-line note) or 'fresh' (a new conversation and its kickoff); default "
                                        "resume where resume_args are known", check=as_choice(*RESTART_MODES))
    ready_timeout: float = setting(90.0, doc="seconds to wait for the prompt before giving up on a kickoff",
                                   check=as_number(1, DAY))
    ready_settle: float = setting(1.0, doc="seconds a starting agent's prompt must stay in view before its kickoff "
                                           "is typed (a CLI may draw its prompt, then a start-up dialog over it)",
                                  check=as_number(0, 60))
    screen_lines: int = setting(12, doc="bottom non-blank screen lines the classifier reads", check=as_count(1, 200))
    preset: str = setting("", doc="built-in preset this backend starts from (default: its own name, else 'shell')",
                          check=as_text)


@dataclass
class Wake:
    """``wake = { interval = 3600, message = "…" }``: ping an idle agent on a schedule."""

    interval: float = setting(3600.0, doc="seconds between wakes", check=as_number(1))
    message: str = setting("Wake up: check your inbox and carry on.", doc="what the wake says", check=as_text)


@dataclass
class Agent:
    """``[[agent]]``: one agent in its own tmux session."""

    name: str = setting("", doc="unique name, letters, digits, '_' and '-'", check=as_name)
    kind: str = setting("persistent", doc="'loop' (follows the phases), 'persistent' or 'task' (one-shot)",
                        check=as_choice(*KINDS))
    backend: str = setting("claude", doc="a [backend.NAME] or a preset: claude, codex, gemini, aider, opencode, shell",
                           check=as_text)
    cwd: str = setting(".", doc="working folder, relative to the config file's folder", check=as_text)
    prompt: str = setting("", doc="kickoff text, or @file to read it from", check=as_text)
    args: list[str] = setting(doc="extra command line arguments", check=as_text_list, factory=list)
    env: dict[str, str] = setting(doc="extra environment", check=as_env, factory=dict)
    watch: str = setting("", doc="'heal+stall', 'heal' or 'none' (default: heal+stall for a loop agent, which is "
                                 "meant to be working; heal for persistent and task agents, which may sit idle)",
                         check=as_choice(*WATCH_MODES))
    wake: Wake | None = setting(None, doc="{ interval, message }: ping when idle, every interval")
    session: str = setting("", doc="tmux session name (default: session_prefix + name)", check=as_name)
    # Resolved by the loader, not set in TOML:
    prompt_text: str = ""  # the kickoff after reading @file
    folder: Path = Path(".")  # cwd made absolute


@dataclass
class Service:
    """``[[service]]``: a non-agent process kept alive (a dev server, a queue worker)."""

    name: str = setting("", doc="unique name, letters, digits, '_' and '-'", check=as_name)
    command: list[str] = setting(doc="program and arguments", check=as_command, factory=list)
    cwd: str = setting(".", doc="working folder, relative to the config file's folder", check=as_text)
    env: dict[str, str] = setting(doc="extra environment", check=as_env, factory=dict)
    watch: str = setting("heal", doc="'heal' or 'none' (services are never judged stalled)",
                         check=as_choice(*WATCH_MODES))
    session: str = setting("", doc="tmux session name (default: session_prefix + name)", check=as_name)
    folder: Path = Path(".")


@dataclass
class Phase:
    """One entry of ``[loop] phases``."""

    id: str = setting("", doc="unique phase id", check=as_name)
    status: str = setting("", doc="status file in subdir (default STATUS-<id>.md)", check=as_text)
    kickoff: str = setting("", doc="kickoff for the loop agents, or @file", check=as_text)
    kickoff_text: str = ""


@dataclass
class Inbox:
    """One entry of ``[loop.handoff] inboxes``."""

    file: str = setting("", doc="file in subdir on the remote branch", check=as_text)
    ping: list[str] = setting(doc="agent or agents to ping when it appears or changes", check=as_names, factory=list)


@dataclass
class Handoff:
    """``[loop.handoff]``: who is pinged when a claim or a review lands."""

    claim_pattern: str = setting("^claim", doc="commit subjects that claim a gate", check=as_regex)
    review_pattern: str = setting("^review", doc="commit subjects that review a claim", check=as_regex)
    claim_pings: list[str] = setting(doc="agent(s) pinged on a claim", check=as_names, factory=lambda: ["adversary"])
    review_pings: list[str] = setting(doc="agent(s) pinged on a review", check=as_names, factory=lambda: ["builder"])
    inboxes: list[Inbox] = setting(doc="[{ file, ping }]: files that ping agents when they change", factory=list)


@dataclass
class LoopConfig:
    """``[loop]``: the phase machine, read from a clone of the work repo."""

    repo: str = setting(".", doc="clone of the work repo the watchdog reads", check=as_text)
    remote: str = setting("origin", doc="remote to fetch", check=as_text)
    branch: str = setting("main", doc="branch whose pushed state counts", check=as_text)
    subdir: str = setting("", doc="folder in the work repo for status and inbox files", check=as_text)
    done_marker: str = setting("## DONE", doc="text in a status file that marks its phase done", check=as_text)
    done_nudge: bool = setting(True, doc="nudge a stalled loop agent once per phase to finish", check=as_bool)
    token_granularity: str = setting("", doc="same as [watchdog] token_granularity", check=as_choice("", *TOKEN_GRANULARITIES))
    phase_budget: int = setting(0, doc="tokens a phase may use before its loop agents are paused (0: no budget)",
                                check=as_count(0, MAX_BUDGET))
    phases: list[Phase] = setting(doc="[{ id, status, kickoff }]", factory=list)
    handoff: Handoff = setting(doc="[loop.handoff]", factory=Handoff)
    folder: Path = Path(".")  # repo made absolute


@dataclass
class Config:
    """A whole validated ``agents.toml``."""

    path: Path  # the config file, absolute
    folder: Path  # its folder: relative paths start here
    session_prefix: str
    state_dir: Path
    log_dir: Path
    tmux_socket: str | None
    watchdog: WatchdogConfig
    backends: dict[str, Backend]
    agents: list[Agent]
    services: list[Service]
    loop: LoopConfig | None
    warnings: list[str] = field(default_factory=list)  # things `check` should mention
    pricing: dict[str, list[float]] = field(default_factory=dict)  # [pricing]: model prefix → $/Mtok per field

    def agent(self, name: str) -> Agent | None:
        return next((agent for agent in self.agents if agent.name == name), None)

    def unit(self, name: str) -> Agent | Service | None:
        """An agent or a service by name."""
        return self.agent(name) or next((service for service in self.services if service.name == name), None)

    def units(self) -> list[Agent | Service]:
        return [*self.agents, *self.services]

    @property
    def owner(self) -> str:
        """Tag stored on every tmux session we start, so `down` touches only ours."""
        return str(self.path)


TOP_LEVEL_KEYS = {"session_prefix", "state_dir", "log_dir", "tmux_socket", "watchdog", "backend", "defaults",
                  "agent", "service", "loop", "pricing"}


# -- built-in backend presets ----------------------------------------------------
# Field values as they would be written in TOML; a [backend.NAME] table overrides
# them one by one. Every pattern has a real example beside it (REAL-AGENTS.md and
# the captured screens under tests/fixtures/screens/).

BULLET = r"^[\s●⎿✻*•⏺]*"  # Claude prefixes its notices with these; allowed before an anchored banner

BACKEND_PRESETS: dict[str, dict[str, Any]] = {
    "claude": {
        "command": ["claude", "--dangerously-skip-permissions"],
        "submit_delay": 0.5,
        "busy": [
            r"esc to interrupt",  # footer while working: "⏵⏵ bypass permissions on · esc to interrupt"
            r"ctrl\+c to interrupt",
            r"^\s*[✻✳✽✶✢·*]\s+\w[^\n…]*…",  # spinner: "✢ Spinning…", "✢ Working… (2s · ↓ 20 tokens)"
        ],
        "idle": [
            r"^[❯>]\s?(?P<input>.*)$",  # "❯ " prompt line between two rules of ─
            r"^!\s(?P<input>.*)$",  # shell mode ("! touch x"): Enter would run it as a shell command
        ],
        "placeholders": [r"^Resend your message to try again$", r"^Try \".*\"$",
                         r"^Press up to edit queued messages$"],
        "command_chars": "/",  # "/exit" quits, "/clear" wipes the context — even after a leading space
        "space_chars": "!",  # "!" first opens shell mode (Enter would run it); after a space it is text
        # Structure, not prose: an agent writing "Do you want to proceed?" in its reply is no dialog.
        "dialog": [
            r"Enter to confirm · Esc to cancel",  # footer of the 2.1.x confirmation dialogs
            r"^\s*\S.*·\s*Esc to (cancel|go back|close|exit)\s*$",  # menu and panel footers: "Enter to select · ↑/↓ to navigate · Esc to cancel", "←/→ to switch · Esc to close"
            r"^\s*❯\s*\d\.\s*(Yes|No)\b",  # "❯ 1. Yes" menus
            r"^\s*\d\.\s*No, and tell Claude what to do differently",
            r"Do you trust the files in this folder\?",
            r"Quick safety check: Is this a project you created",
            r"running in Bypass Permissions mode",
            BULLET + r"(Your )?[Uu]sage limit has reset · press enter to continue",  # "Your usage limit has reset · press enter to continue"
        ],
        "dialog_keys": {
            # "❯ No, exit" is selected and Enter alone exits Claude Code: move down first.
            r"❯ No, exit\n\s*Yes, I accept": ["Down", "Enter"],
            r"❯ No, exit\n\s*Yes, I trust this folder": ["Down", "Enter"],
            r"❯ 1\. Yes, I trust this folder": ["Enter"],  # older versions; never a tool permission prompt
            # Anchored: a quote of it elsewhere on screen must not answer another dialog with Enter.
            BULLET + r"(Your )?[Uu]sage limit has reset · press enter to continue": ["Enter"],
        },
        # Order of the kinds: manual, then self_resume, then limit (usage), then rate_limit.
        "limit": [
            # "Claude usage limit reached. …", "Claude AI usage limit reached|1767225600", "Opus weekly limit reached ∙ resets Oct 31, 9am"
            BULLET + r"((?i:claude|ai|usage|\d+-hour|session|weekly|daily|opus|sonnet|haiku|fable) ){1,3}limit reached\b",
            # "You've hit your session limit · resets 8:10pm (Europe/Berlin)", "You’ve hit your limit for Claude messages. …";
            # "└" leads the 2.1.261 wait menu. Not "You've hit your fast limit": fast mode switches off, work goes on.
            BULLET + r"(└\s*)?You['’]ve (hit|reached) your (?!fast limit)([\w'’-]+ ){0,3}limit\b",
            BULLET + r"You['’]re out of (extra usage|usage credits)\s*[·∙]\s*resets",  # "You're out of extra usage · resets 9pm"
        ],
        "rate_limit": [
            BULLET + r"API Error: Request rejected \((429|529)\)",  # "● API Error: Request rejected (429) · Rate limited"
            BULLET + r"API Error:.*(rate_limit_error|overloaded_error|Overloaded)",  # "⎿  API Error: Repeated 529 Overloaded errors"
            BULLET + r"Error: (429|529) \{.*(rate_limit_error|overloaded_error)",  # 'Error: 429 {"type":"error","error":{"type":"rate_limit_error",…'
        ],
        "self_resume": [
            BULLET + r"\d{3} (Rate limited|Overloaded) · [Rr]etrying in",  # "✻ 529 Overloaded · Retrying in 4s · attempt 6/10"
            BULLET + r"API Error \(.*[·∙] Retrying in",  # '⎿  API Error (529 {…"Overloaded"}}) · Retrying in 1 seconds… (attempt 1/10)'
            # "Continuing automatically when your limit resets", "⚠ Usage limit reached · continuing shortly · esc to cancel"
            BULLET + r"(⚠\s*)?(Usage limit reached\s*[·∙]\s*)?[Cc]ontinuing (automatically|shortly)",
            BULLET + r"Claude Code will continue automatically",  # "⎿  Claude Code will continue automatically shortly. Keep this session open; …"
        ],
        "manual_limit": [
            BULLET + r"You['’]ve hit your (monthly spend|usage credit|individual usage) limit",  # "⎿  **You've hit your monthly spend limit.**"
            BULLET + r"You['’]ve hit your (org|organization|team|channel|group|workspace)['’]s ([\w-]+ ){0,2}(limit|budget)",  # "You've hit your team's shared budget. …"
            BULLET + r"You['’]re out of (extra usage|usage credits|credits)\b(?!.*\bresets\b)",  # "⎿  You're out of usage credits. /model to switch models."
            BULLET + r"([\w.-]+ ){1,3}requires usage credits",  # "⎿  Fable 5 requires usage credits."
            BULLET + r"Your (org|organization|workspace) is out of (usage|credits)",  # "⎿  Your org is out of usage · add funds to continue"
            BULLET + r"Your seat type (doesn['’]t|does not) include usage credits",  # "⎿  Your seat type doesn't include usage credits"
            BULLET + r"Your usage allocation has been disabled",  # "⎿  Your usage allocation has been disabled by your admin"
            BULLET + r"Your ([\w'’-]+ )?usage limit is set to \$0",  # "⎿  Your group's usage limit is set to $0"
            BULLET + r"Your (organization|admin) has (disabled|reached)",
            BULLET + r"(Your )?[Cc]redit balance (is )?too low",  # "⎿  Credit balance too low · Add funds: https://platform.claude.com/settings/billing"
            BULLET + r"You have reached your specified workspace API usage limit",  # "You have reached your specified workspace API usage limits. You will regain access on 2025-06-01 at 00:00 UTC."
        ],
        "resume": "continue",
        "transcripts": "claude",
        "session_id_flag": "--session-id",
        "resume_args": ["--resume", "{session_id}"],
    },
    "codex": {
        # The bypass flag: unattended, an approval prompt would stop the agent. --no-daemon: no
        # background "codex app-server --managed-daemon" that outlives the CLI and its session.
        "command": ["codex", "--dangerously-bypass-approvals-and-sandbox", "--no-daemon"],
        "command_chars": "/",
        "space_chars": "!",
        "submit_delay": 0.4,  # typing then Enter within ~120 ms reads as a paste: the Enter becomes a newline
        # 0.171 draws "› Ask Codex to do anything" under its logo for 0.3-0.5 s (longer on a loaded machine)
        # before it asks "Trust this folder?": a kickoff typed then is lost.
        "ready_settle": 3.0,
        # The status line above the input box, its spinner blinking "•"/"◦": "• Working (3s • esc to interrupt)",
        # "◦ Working (3s • esc to interrupt) · 1 background terminal running · /ps to view · /stop to close".
        # Anchored to that shape: a reply quoting "esc to interrupt" is no busy marker.
        "busy": [r"^\s*[•◦]\s+\S[^()]*\([^()]*\besc to interrupt\)(\s*·.*)?$"],
        "idle": [r"^›\s?(?P<input>.*)$"],  # "› Ask Codex to do anything" (a placeholder); echoed messages look the same
        "placeholders": [r"^Ask Codex to do anything$", r"^Find and fix a bug in @filename$", r"^(Explain|Summarize|Improve|Write) .*$"],
        "dialog": [
            r"^\s*Trust this folder\? Codex can",  # 0.171 first start in a folder not yet trusted (fixture 01)
            r"^\s*(?i:enter) (continue|to confirm|to select)\b.*·\s*(?i:esc) (back|to cancel|to go back)\s*$",  # "enter continue · esc back"
            r"(?i)^\s*press enter to confirm or esc to cancel",  # approval menu footer: "Press enter to confirm or esc to cancel"
            r"^\s*Would you like to run the following command\?",  # approval question (0.171)
            r"(?i)^\s*allow command\?", r"\[y/n\]\s*$",  # older versions
            r"^\s*Do you trust the contents of this directory",  # older versions' trust question
            r"·\s*esc dismiss & close\b",  # the F2 warnings panel: "k keep & next · esc dismiss & close · ^o copy"
        ],
        # "› 1. Trust and continue" is selected: Enter trusts the folder (the choice is saved in config.toml).
        "dialog_keys": {r"^›\s*1\. Trust and continue$": ["Enter"]},
        # Codex marks its notices "■" (errors), "⚠" (warnings), "▌" and "🖐" (older versions) after the BULLET.
        "limit": [
            # "■ You’ve hit your usage limit. Upgrade to Pro (…) or try again at Dec 3rd, 2026 12:25 AM." (0.171, fixture 09),
            # "You have reached the usage limit. … try again after September 6, 2026, 11:15."
            BULLET + r"([■▌🖐⚠]\s*)?You(['’]ve| have) (hit|reached) (your|the) usage limit",
            BULLET + r"([■▌⚠]\s*)?You['’]re out of Codex messages",  # "You’re out of Codex messages" / "Your rate limit resets on Apr 25, 2026, 12:54 AM."
            BULLET + r"([■▌⚠]\s*)?Usage limit reached",  # "▌ Usage limit reached" / "Redeem usage limit reset" (a reset credit: never redeemed automatically)
            BULLET + r'([■▌⚠]\s*)?\{"error":\s*\{"type":\s*"usage_limit_reached"',  # '{"error":{"type":"usage_limit_reached",…,"resets_at":1775317531}}'
        ],
        "rate_limit": [
            # "■ exceeded retry limit, last status: 429 Too Many Requests" (0.171 after its own retries, which
            # show only "◦ Working (…)"), "rate limited (status 429 Too Many Requests), retry after 3s"
            BULLET + r"([■▌⚠]\s*)?(stream error|exceeded retry limit|rate limited).*\b(429|Too Many Requests)\b",
            BULLET + r"([■▌⚠]\s*)?We['’]re currently experiencing high demand",  # "We're currently experiencing high demand, which may cause temporary errors."
        ],
        "self_resume": [
            r"^[\s•◦]*Re-?connecting\.\.\. \d+/\d+ \([^()]*esc to interrupt\)",  # "• Reconnecting... 4/5 (21s • esc to interrupt)": Codex retries its stream by itself
            # "◦ Reconnecting... waiting for network (7s • esc to interrupt)": no server reachable; Codex waits
            # without end and resumes by itself when it is back. Not busy (no work is done) and nothing to
            # type: the watchdog stands down and reports the banner ("the CLI resumes by itself").
            r"^[\s•◦]*Re-?connecting\.\.\. waiting for network \([^()]*esc to interrupt\)",
        ],
        "manual_limit": [
            BULLET + r"([■▌⚠]\s*)?You['’]re out of credits",  # "▌ You're out of credits. Your workspace is out of credits. Add credits to continue."
            BULLET + r"([■▌⚠]\s*)?Your workspace is out of credits",  # "Your workspace is out of credits. Add credits to continue."
            BULLET + r"([■▌⚠]\s*)?Quota exceeded\. Check your plan and billing",  # "Quota exceeded. Check your plan and billing details."
            BULLET + r"([■▌⚠]\s*)?To use Codex with your ChatGPT plan, upgrade",  # "To use Codex with your ChatGPT plan, upgrade to Plus: https://openai.com/chatgpt/pricing."
        ],
        "resume": "continue",
        "transcripts": "codex",
        # "codex [flags] resume <id>" reopens the rollout of that session and appends to it. The id is the one
        # of the rollout the CLI holds open, recorded by the watchdog (event `transcript`) and before a restart.
        "resume_args": ["resume", "{session_id}"],
    },
    "gemini": {
        # --yolo: unattended, a tool approval box would stop the agent (and the prompt turns "*").
        # Gemini CLI runs headless when CI=true (or GITHUB_ACTIONS=true): no dialogs, and without a chosen
        # auth method it exits ("Invalid auth method selected.", status 41). In a tmux pane it is interactive.
        "env": {"CI": "false", "GITHUB_ACTIONS": "false"},
        "command": ["gemini", "--yolo"],
        "command_chars": "/",
        "space_chars": "!",  # "!" first opens shell mode ("shell mode enabled (esc to disable)", prompt "!")
        # Its dialogs are boxes of 15-19 lines (the API key box, fixture 05): read enough of the screen.
        "screen_lines": 20,
        # The spinner line above the input box: " ⠴ Thinking... (esc to cancel, 43s)   ? for shortcuts" (the
        # phrase varies). Anchored to a braille spinner at the line's start: a reply ("✦ …", its lines
        # indented by two) or an echoed prompt (" > …") quoting "(esc to cancel, 3s)" is no busy marker.
        "busy": [r"^\s?[\u2800-\u28ff]\s.*\(esc to cancel, \d+[hms]\b"],
        # The input line under the rule: " *   Type your message or @path/to/file" in YOLO mode (a placeholder),
        # " ! ls" in shell mode, " > …" in the default mode. Echoed prompts look like " > hello" too, so the
        # preset counts on --yolo: with ">" an echo above a dialog would read as the input line.
        "idle": [r"^\s?[*!]\s(?P<input>.*?)\s*$"],
        "placeholders": [r"^Type your message or @path/to/file$", r"^Type your shell command$",
                         r"^Press 'i' for INSERT mode\.$", r"^Press 'Esc' for NORMAL mode\.$"],
        # Box lines (" │ … │", the border in column 0 or 1): structure, not prose; a reply quoting them is
        # indented by two. Lines of a tool's output box ("│ hi │") have the same shape: a command printing
        # these exact sentences would read as the dialog or the limit.
        "dialog": [
            r"^\s?│\s*Do you trust the files in this folder\?",  # first start in a folder not trusted (fixture 01)
            r"^\s?│\s*How would you like to authenticate for this project\?",  # "? Get started" (fixture 04)
            r"^\s?│\s*Enter Gemini API Key\s*│",  # the key box, prefilled from GEMINI_API_KEY (fixture 05)
            # Tool approvals (never shown with --yolo; never answered): "Allow execution of [Shell]?" over
            # "● 1. Allow once" (fixture 19), "Apply this change?", "Do you want to proceed?".
            r"^\s?│\s*(Allow execution of\b|Apply this change\?|Do you want to proceed\?)",
            r"^\s?│\s*●\s*1\.\s*Allow once\b",
        ],
        "dialog_keys": {
            # "● 1. Trust folder (repo)" is selected: Enter trusts it (saved in ~/.gemini/trustedFolders.json) and
            # the CLI restarts; not while "Gemini CLI is restarting to apply the trust changes..." shows (02).
            r"^│\s*● 1\. Trust folder \(.*\)\s*│$(?![\s\S]*restarting to apply the trust)": ["Enter"],
            # "● 2. Use Gemini API Key" is selected because GEMINI_API_KEY is set: Enter picks it (04).
            r"^│\s*● 2\. Use Gemini API Key\s*│$(?=[\s\S]*Existing API key detected \(GEMINI_API_KEY\))": ["Enter"],
            # The key box holds the key from the environment: Enter submits it (05).
            r"^│\s*Existing API key detected \(GEMINI_API_KEY\)[\s\S]*Press Enter to submit": ["Enter"],
        },
        # A terminal quota error opens a box with "● 1. Keep trying" / "2. Stop": "│ Usage limit reached for all
        # Pro models. │", "│ Access resets at 5:25 PM UTC. │" (fixtures 13, 14). Not a dialog to answer: the
        # resume "continue" + Enter picks "Keep trying" (the letters go nowhere).
        "limit": [r"^\s?│\s*Usage limit reached for \S"],
        # No rate_limit: with an API key, plain 429s are retried without end (its fallback resets the attempts)
        # and "exhausted your capacity" 429s silently, both under the busy line (fixture 12); no banner.
        "resume": "continue",
        # The chat ~/.gemini/tmp/<project>/chats/session-*.jsonl takes the id; "--resume <uuid>" reopens it.
        "session_id_flag": "--session-id",
        "resume_args": ["--resume", "{session_id}"],
        "transcripts": "gemini",  # each model message in the chat carries its tokens
    },
    "aider": {
        # Unattended: --yes-always answers aider's own questions (it answers "no" to the ones that need an
        # explicit yes, like running a shell command), so no (Y)es/(N)o prompt waits. It also adds .aider*
        # to the repo's .gitignore, which keeps aider's history files out of an agent's `git add -A`.
        # --no-stream: one answer at a time, no half-drawn markdown. The rest: no network calls at start
        # (update check, release notes, analytics) and no warning about a model aider does not know.
        "command": ["aider", "--yes-always", "--no-stream", "--no-check-update", "--no-show-release-notes",
                    "--no-analytics", "--no-show-model-warnings"],
        "command_chars": "/",
        # "!cmd" runs a shell command; a line that is "{" or "{tag" opens multi-line input (Enter no longer
        # submits). aider strips only the line end, so after a space both are plain text.
        "space_chars": "!{",
        # Its waiting spinner, two glyphs bouncing in a 10-wide field: "  ░█       Waiting for openai/gpt-x"
        # ("#=" without unicode). It also runs through aider's own 429 retries. Anchored to the words:
        # a reply's "## Plan" heading is no spinner. And to the screen's last line (\Z): a retry banner can
        # be printed over a spinner that is still drawn, which leaves "█░  Waiting for …litellm.RateLimitError"
        # in the history above the answer and the prompt.
        "busy": [
            r"^\s*(?:[░█]{2}|[#=]{2})\s+(Waiting for|Updating repo map|Scanning repo)\b.*\Z",
            # Between two of its own retries the spinner is gone for a moment: a screen that ENDS in a retry
            # banner (\Z: no prompt drawn below it yet) is aider still at work, not its give-up.
            r"^(?:[\s░█#=]*litellm\.RateLimitError\b.*|The API provider has rate limited you\b.*"
            r"|Retrying in [\d.]+ seconds\.\.\.)\Z",
        ],
        "idle": [
            # "> " or "architect> " (the screen's lines come right-stripped: ">"); the echoed message looks the same
            r"^(\w+ )?>(\s(?P<input>.*))?$",
            # The usage line that ends every answered turn: a rate-limit banner above it is history (aider
            # retried and got its answer), not the present.
            r"^Tokens: \S+ sent, \S+ received\.",
        ],
        "dialog": [r"\(Y\)es/\(N\)o\b.*\[(Yes|No)\]:\s*$"],  # an unanswered one; answered lines end "[Yes]: y"
        "dialog_keys": {r"^Add \.aider\* to \.gitignore \(recommended\)\? \(Y\)es/\(N\)o \[Yes\]:\s*$": ["y", "Enter"]},
        # After its last retry (about 64 s of backoff): "litellm.RateLimitError: RateLimitError: OpenAIException
        # - …" and "The API provider has rate limited you. …", then the prompt. The spinner's rest may lead it.
        "rate_limit": [r"^[\s░█#=]*litellm\.RateLimitError\b"],
        "resume": "continue",
        # A heal comes back into the conversation: aider reads its chat history (.aider.chat.history.md in the
        # repo, every earlier session of that folder) back in as the messages so far, summarised when long.
        "resume_args": ["--restore-chat-history"],
    },
    "opencode": {
        # --auto approves every permission the config does not deny: unattended, "△ Permission required"
        # would stop the agent. opencode reads its model and provider from opencode.json (no flag needed).
        "command": ["opencode", "--auto"],
        "command_chars": "/",
        "space_chars": "!",
        # The footer under the input box while working: "⬝⬝⬝■■■■■  esc interrupt", after one Esc
        # "⬝⬝⬝⬝⬝⬝⬝⬝  esc again to interrupt". Anchored to the spinner: a reply quoting it is no marker.
        "busy": [r"^\s*[⬝■]{4,}\s+esc (again to )?interrupt\b"],
        "idle": [
            # The input box's last line names the agent and model: "┃  Build auto · Mock Model Mock" (--auto),
            # "┃  Build · Mock Model Mock". Typed text sits two lines above it and echoed messages use the same
            # "┃  text" border, so no single line tells the typed text apart: none is read (input stays "").
            r"^\s*┃\s{2}\w[\w-]*( auto)? · \S.*$",
            # A finished turn's footer, "▣  Build · Mock Model · 2.7s" / "· interrupted": never the prompt (the
            # box is below it), but it marks an error block above it as history for the limit patterns.
            r"^\s*▣\s{2}\S.* · (\d[\dhms. ]*|interrupted)$",
        ],
        # Below the prompt line come the box's bottom edge and the footer: "╹▀▀▀…" "/repo  1.1K (1%)  ctrl+p commands".
        "placeholders": [r"^╹▀+"],
        # Structure, not prose. The permission dialog replaces the input box (with --auto it should not come):
        # "┃  △ Permission required" … "┃   Allow once   Allow always   Reject    ctrl+f fullscreen  ⇆ select  enter confirm".
        "dialog": [r"^\s*┃\s{2}△ Permission required$", r"⇆ select\s+enter confirm\s*$"],
        # The footer while opencode waits to retry by itself (5 retries, honouring retry-after):
        # "⬝⬝⬝■■■■■ Rate limit reached (mock) [retrying in 18s attempt #4]   esc interrupt". A usage limit that
        # names its reset is a limit, not this: opencode would wait hours before its next attempt.
        "self_resume": [r"^\s*[⬝■]{2,}(?!.*[Uu]sage limit reached\. It will reset in).*\[retrying\b"],
        # opencode's Go/Zen usage limit (a GoUsageLimitError answer), shown in the retry footer:
        # "■■■■■■5-hour usage limit reached. It will reset in 2 hours 5 minutes. To continue usin… [retrying i…";
        # the spinner is drawn over the text's first cells: "⬝5-hour■usage limit reached. …".
        "limit": [r"^\s*[⬝■].{0,40}?[Uu]sage limit reached\. It will reset in\b"],
        # After its retries opencode prints the API's message in an error block above the box:
        # "┃  Rate limit reached for … (RPM) …", "┃  Too Many Requests", "┃  Provider is overloaded".
        "rate_limit": [r"^\s*┃\s{2}(Rate limit reached\b|Too Many Requests$|Provider is overloaded$)"],
        "manual_limit": [
            r"^\s*┃\s{2}You exceeded your current quota",  # "┃  You exceeded your current quota, please check your plan and billing details."
            r"^\s*┃\s{2}Free usage exceeded, subscribe to Go",  # opencode Zen's free tier (FreeUsageLimitError)
        ],
        "resume": "continue",
        # Its sessions, messages and their tokens live in one SQLite store (XDG_DATA_HOME/opencode/opencode.db);
        # the session a life began is found there by the agent's folder and start time, and resumed by id.
        "transcripts": "opencode",
        "resume_args": ["--session", "{session_id}"],
    },
    "shell": {
        "command": [os.environ.get("SHELL") or "/bin/sh"],
        "submit_delay": 0.05,
        "idle": [r"^.*[$#%>]\s(?P<input>.*)$"],
        "resume": "",
    },
}


# -- loading -----------------------------------------------------------------------


class Loader:
    """Turns the parsed TOML into a ``Config``, collecting every error on the way.

    Each error is one line, ``FILE: SECTION KEY: message``. Validation is
    complete before anything runs: a config that loads is safe to act on.
    """

    def __init__(self, path: Path):
        self.path = path
        self.folder = path.parent
        self.label = self._label(path)
        self.errors: list[str] = []
        self.warnings: list[str] = []

    @staticmethod
    def _label(path: Path) -> str:
        with contextlib.suppress(ValueError):
            return str(path.relative_to(Path.cwd()))
        return str(path)

    # -- error plumbing --

    def complain(self, section: str, key: str, message: str) -> None:
        where = f"{section} {key}".strip()
        line = f"{self.label}: {where}: {message}".replace("\n", " ")
        # A value quoted in a message may be huge (a 1 MB string, 3000 brackets): the line stays readable.
        self.errors.append(line if len(line) <= MAX_ERROR_LINE else line[:MAX_ERROR_LINE - 1] + "…")

    def build(self, cls: type, table: Any, section: str, skip: Iterable[str] = (), prefix: str = "") -> Any:
        """A dataclass from a TOML table: unknown keys, wrong types and bad values reported.

        ``prefix`` names a nested table in error lines (``wake.interval``).
        """
        if not isinstance(table, dict):
            self.complain(section, "", f"expected a table, got {type_name(table)}")
            table = {}
        known = {f.name: f for f in dataclasses.fields(cls) if "doc" in f.metadata and f.name not in skip}
        values = {}
        for key, value in table.items():
            spec = known.get(key)
            if spec is None:
                self.complain(section, prefix + key, "unknown key" + did_you_mean(key, known))
                continue
            check = spec.metadata["check"]
            if check is None:
                values[key] = value  # nested: the caller builds it
                continue

            def complain(message: str, key: str = key) -> None:
                raise _Invalid(message)

            try:
                values[key] = check(value, complain)
            except _Invalid as invalid:
                self.complain(section, prefix + key, str(invalid))
        return cls(**values)

    # -- the file --

    MAX_CONFIG = 4 * 1024 * 1024  # bytes: a bigger agents.toml is a mistake (a log named by accident)

    def read_toml(self) -> dict:
        """The parsed file; a file that cannot be one (a FIFO, a loop of symlinks, bytes that are not
        UTF-8, nesting deeper than Python recurses) is one error line, never a hang or a traceback."""
        try:
            info = os.stat(self.path)  # before opening: opening a FIFO would wait for a writer forever
        except FileNotFoundError:
            raise ConfigError([f"{self.label}: no such file (use --config PATH or $AGENTS_CONFIG)"])
        except (OSError, ValueError) as error:
            raise ConfigError([f"{self.label}: cannot read: {getattr(error, 'strerror', None) or error}"])
        if stat.S_ISDIR(info.st_mode):
            raise ConfigError([f"{self.label}: is a folder, not a config file"])
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError([f"{self.label}: is not a regular file (a FIFO or a device?)"])
        if info.st_size > self.MAX_CONFIG:
            raise ConfigError([f"{self.label}: is {info.st_size} bytes; a config is at most {self.MAX_CONFIG}"])
        try:
            with open(self.path, "rb") as handle:
                data = handle.read(self.MAX_CONFIG + 1)
        except OSError as error:
            raise ConfigError([f"{self.label}: cannot read: {error.strerror or error}"])
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            line = data[:error.start].count(b"\n") + 1
            raise ConfigError([f"{self.label}: not UTF-8 text (byte {data[error.start]:#04x} at line {line})"])
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ConfigError([f"{self.label}: {self.where_in_text(str(error))}TOML syntax error: {error}"])
        except RecursionError:
            raise ConfigError([f"{self.label}: nested too deeply to read (tables or lists inside each other)"])

    def load(self, need_units: bool = False) -> Config:
        """The validated config; ``need_units`` (every command does): a file with nothing to run is an
        error too (an emptied or comments-only agents.toml must not start a watchdog for nobody)."""
        raw = self.read_toml()

        for key in raw:
            if key not in TOP_LEVEL_KEYS:
                self.complain("(top level)", key, "unknown key" + did_you_mean(key, sorted(TOP_LEVEL_KEYS)))

        prefix = self.top_text(raw, "session_prefix", default_session_prefix(self.folder))
        if len(prefix) > MAX_NAME:
            self.complain("(top level)", "session_prefix", f"is {len(prefix)} characters long; at most {MAX_NAME}")
        state_dir = self.writable_folder(raw, "state_dir", ".agents/state")
        log_dir = self.writable_folder(raw, "log_dir", ".agents/logs")
        socket = raw.get("tmux_socket")
        if socket is not None and (not isinstance(socket, str) or not NAME_PATTERN.match(socket)):
            self.complain("(top level)", "tmux_socket", "must be a name of letters, digits, '_' and '-'")
            socket = None
        elif socket is not None:
            self.check_socket_path(socket)

        watchdog = self.build(WatchdogConfig, raw.get("watchdog", {}), "[watchdog]")
        backends = self.load_backends(raw.get("backend", {}))
        agents = self.load_agents(raw, backends)
        services = self.load_services(raw.get("service", []))
        loop = self.load_loop(raw["loop"], agents) if "loop" in raw else None
        if loop and loop.token_granularity:
            watchdog.token_granularity = loop.token_granularity
        pricing = self.load_pricing(raw.get("pricing", {}))
        self.check_unique_sessions(prefix, agents, services)
        if need_units and not agents and not services and not self.errors:
            self.complain("(top level)", "agent", "nothing to run: no [[agent]] and no [[service]] in the file")

        if self.errors:
            raise ConfigError(self.errors)
        return Config(path=self.path, folder=self.folder, session_prefix=prefix, state_dir=state_dir,
                      log_dir=log_dir, tmux_socket=socket, watchdog=watchdog, backends=backends, agents=agents,
                      services=services, loop=loop, warnings=self.warnings, pricing=pricing)

    def load_pricing(self, table: Any) -> dict[str, list[float]]:
        """``[pricing]``: ``"claude-opus-4" = { input = 15, output = 75, cache_creation = 18.75,
        cache_read = 1.5 }`` — dollars per million tokens, for models whose name starts so."""
        if not isinstance(table, dict):
            self.complain("[pricing]", "", f"expected a table of model = {{ input, output, … }}, got {type_name(table)}")
            return {}
        prices = {}
        for model, row in table.items():
            if not isinstance(row, dict) or set(row) - set(TOKEN_FIELDS) or not row:
                self.complain("[pricing]", model, f"expected {{ {', '.join(f'{n} = $/Mtok' for n in TOKEN_FIELDS)} }}")
                continue
            values = []
            for name in TOKEN_FIELDS:
                value = row.get(name, 0)
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 10 ** 6:
                    self.complain("[pricing]", f"{model}.{name}", f"expected dollars per million tokens, got {value!r}")
                    value = 0
                values.append(float(value))
            prices[model] = values
        return prices

    def where_in_text(self, message: str) -> str:
        """``[section] key: `` of the line a TOML syntax error points at, for the one-line error."""
        found = re.search(r"at line (\d+)", message)
        if not found:
            return ""
        lines = self.path.read_text(encoding="utf-8", errors="replace").splitlines()
        number = int(found.group(1))
        section = "(top level)"
        for line in lines[:number]:
            header = re.match(r"^\s*(\[\[?[^\]]+\]\]?)", line)
            if header:
                section = header.group(1)
        key = re.match(r"^\s*([A-Za-z0-9_.\"'-]+)\s*=", lines[number - 1]) if 0 < number <= len(lines) else None
        return f"{section} {key.group(1)}: " if key else f"{section}: "

    def top_text(self, raw: dict, key: str, default: str) -> str:
        value = raw.get(key, default)
        if not isinstance(value, str):
            self.complain("(top level)", key, f"expected a string, got {type_name(value)}")
            return default
        if "\0" in value:
            self.complain("(top level)", key, "holds a NUL byte (\\u0000)")
            return default
        return value

    def writable_folder(self, raw: dict, key: str, default: str) -> Path:
        """``state_dir`` or ``log_dir``: a folder we can write (or create), checked now, not at the first save."""
        relative = self.top_text(raw, key, default)
        folder = self.folder / os.path.expanduser(relative)
        existing = folder
        while not existing.exists() and existing != existing.parent:
            if existing.is_symlink():
                break  # a dangling symlink: reported below as "not a folder"
            existing = existing.parent
        if not existing.is_dir():
            self.complain("(top level)", key, f"{relative!r} is not a folder ({existing} is a file)")
        elif not os.access(existing, os.W_OK | os.X_OK):
            what = "is" if existing == folder else f"would be made in {existing}, which is"
            self.complain("(top level)", key, f"{relative!r} {what} not writable")
        return folder

    MAX_SOCKET_PATH = 104  # bytes in a Unix socket path (sun_path is 104 on macOS, 108 on Linux)

    def check_socket_path(self, socket: str) -> None:
        """tmux makes its socket at ``$TMUX_TMPDIR/tmux-UID/NAME``; a path too long fails only at `up`."""
        folder = os.environ.get("TMUX_TMPDIR") or "/tmp"
        path = os.path.join(folder, f"tmux-{os.getuid()}", socket)
        if len(path.encode()) > self.MAX_SOCKET_PATH:
            self.complain("(top level)", "tmux_socket", f"the socket path {path!r} is {len(path.encode())} bytes; "
                                                        f"at most {self.MAX_SOCKET_PATH} (a shorter name)")

    def load_backends(self, tables: Any) -> dict[str, Backend]:
        if not isinstance(tables, dict):
            self.complain("[backend]", "", "expected tables like [backend.claude]")
            tables = {}
        backends = {}
        for name in sorted(set(BACKEND_PRESETS) | set(tables)):
            table = tables.get(name, {})
            section = f"[backend.{name}]"
            if not NAME_PATTERN.match(name):
                self.complain(section, "", f"backend name {name!r} may hold only letters, digits, '_' and '-'")
                continue
            base = table.get("preset", name if name in BACKEND_PRESETS else "shell") if isinstance(table, dict) else name
            if not isinstance(base, str):
                self.complain(section, "preset", f"expected a preset name, got {type_name(base)}")
                base = "shell"
            elif base not in BACKEND_PRESETS:
                self.complain(section, "preset", f"unknown preset {base!r}" + did_you_mean(base, BACKEND_PRESETS))
                base = "shell"
            # Presets are trusted (tests cover them): only what the user wrote is validated.
            merged = Backend(**{key: (list(value) if isinstance(value, list) else dict(value) if isinstance(value, dict)
                                      else value) for key, value in BACKEND_PRESETS[base].items()}, preset=base)
            overrides = self.build(Backend, table, section, skip=("name",))
            for key in (table if isinstance(table, dict) else {}):
                if key == "env" and isinstance(overrides.env, dict):
                    merged.env = {**merged.env, **overrides.env}  # added to the preset's, which stays
                elif hasattr(overrides, key):
                    setattr(merged, key, getattr(overrides, key))
            merged.name = name
            if merged.restart_mode == "resume" and not merged.resume_args:
                self.complain(section, "restart_mode", "'resume' needs resume_args: how this CLI resumes a "
                                                       "conversation (for example [\"--resume\", \"{session_id}\"])")
            merged.restart_mode = merged.restart_mode or ("resume" if merged.resume_args else "fresh")
            backends[name] = merged
        return backends

    def load_agents(self, raw: dict, backends: dict[str, Backend]) -> list[Agent]:
        defaults = raw.get("defaults", {})
        if not isinstance(defaults, dict):
            self.complain("[defaults]", "", f"expected a table, got {type_name(defaults)}")
            defaults = {}
        for key in ("name", "session"):
            if key in defaults:
                self.complain("[defaults]", key, "cannot be a default: it must differ per agent")
        # Checked once here, so a bad default is one error, not one per agent; only good keys are passed on.
        good = {}
        for key, value in defaults.items():
            if key in ("name", "session"):
                continue
            before = len(self.errors)
            self.build(Agent, {key: value}, "[defaults]")
            if key == "wake":
                if isinstance(value, dict):
                    self.build(Wake, value, "[defaults]", prefix="wake.")
                else:
                    self.complain("[defaults]", "wake", "expected { interval = SECONDS, message = \"…\" }")
            if key == "cwd" and isinstance(value, str):
                self.folder_of(value, "[defaults]")
            if len(self.errors) == before:
                good[key] = value
        defaults = good
        tables = raw.get("agent", [])
        if not isinstance(tables, list):
            self.complain("[[agent]]", "", "agents are an array of tables: write [[agent]]")
            tables = []
        agents, seen = [], set()
        for number, table in enumerate(tables, start=1):
            name = table.get("name") if isinstance(table, dict) else None
            section = f"[[agent]] {name!r}" if isinstance(name, str) and name else f"[[agent]] #{number}"
            if not name:
                self.complain(section, "name", "missing: every agent needs a name")
            merged = {**defaults, **(table if isinstance(table, dict) else {})}
            wake_table = merged.get("wake")
            agent = self.build(Agent, merged, section)
            agent.watch = agent.watch or default_watch(agent.kind)
            if wake_table is not None:
                agent.wake = self.build(Wake, wake_table, section, prefix="wake.") if isinstance(wake_table, dict) else None
                if not isinstance(wake_table, dict):
                    self.complain(section, "wake", "expected { interval = SECONDS, message = \"…\" }")
            if agent.name in seen:
                self.complain(section, "name", f"duplicate name {agent.name!r} (agent #{number} repeats an earlier one)")
            seen.add(agent.name)
            if agent.backend not in backends:
                hint = did_you_mean(agent.backend, backends) or f"; known: {', '.join(sorted(backends))}"
                self.complain(section, "backend", f"unknown backend {agent.backend!r}{hint}")
            agent.folder = self.folder_of(agent.cwd, section)
            agent.prompt_text = self.text_or_file(agent.prompt, section, "prompt")
            agents.append(agent)
        return agents

    def load_services(self, tables: Any) -> list[Service]:
        if not isinstance(tables, list):
            self.complain("[[service]]", "", "services are an array of tables: write [[service]]")
            return []
        services = []
        for number, table in enumerate(tables, start=1):
            name = table.get("name") if isinstance(table, dict) else None
            section = f"[[service]] {name!r}" if isinstance(name, str) and name else f"[[service]] #{number}"
            if not name:
                self.complain(section, "name", "missing: every service needs a name")
            service = self.build(Service, table, section)
            if not service.command:
                self.complain(section, "command", "missing: what should the service run?")
            service.folder = self.folder_of(service.cwd, section)
            services.append(service)
        return services

    def load_loop(self, table: Any, agents: list[Agent]) -> LoopConfig:
        loop = self.build(LoopConfig, table, "[loop]")
        if not isinstance(table, dict):
            return loop
        loop.folder = self.folder_of(loop.repo, "[loop]", key="repo")
        phases, ids = [], set()
        raw_phases = table.get("phases", [])
        if not isinstance(raw_phases, list):
            self.complain("[loop]", "phases", "expected a list of { id, status, kickoff }")
            raw_phases = []
        for number, item in enumerate(raw_phases, start=1):
            phase = self.build(Phase, item, f"[loop] phases[{number}]")
            if not phase.id:
                self.complain(f"[loop] phases[{number}]", "id", "missing: every phase needs an id")
            elif phase.id in ids:
                self.complain(f"[loop] phases[{number}]", "id", f"duplicate phase id {phase.id!r}")
            ids.add(phase.id)
            phase.status = phase.status or f"STATUS-{phase.id}.md"
            phase.kickoff_text = self.text_or_file(phase.kickoff, f"[loop] phases[{number}]", "kickoff")
            phases.append(phase)
        loop.phases = phases
        handoff_table = table.get("handoff", {})
        loop.handoff = self.build(Handoff, handoff_table, "[loop.handoff]")
        names = {agent.name for agent in agents}
        explicit = handoff_table if isinstance(handoff_table, dict) else {}
        for key in ("claim_pings", "review_pings"):
            for name in getattr(loop.handoff, key):
                if name not in names:
                    if key in explicit:
                        self.complain("[loop.handoff]", key, f"unknown agent {name!r}")
                    else:
                        self.warnings.append(f"[loop.handoff] {key} defaults to {name!r}, but no agent has that "
                                             f"name: nobody is pinged")
            setattr(loop.handoff, key, [name for name in getattr(loop.handoff, key) if name in names])
        inboxes = []
        raw_inboxes = explicit.get("inboxes", [])
        if not isinstance(raw_inboxes, list):
            self.complain("[loop.handoff]", "inboxes", "expected a list of { file = \"…\", ping = \"agent\" }")
            raw_inboxes = []
        for number, item in enumerate(raw_inboxes, 1):
            inbox = self.build(Inbox, item, f"[loop.handoff] inboxes[{number}]")
            for name in inbox.ping:
                if name not in names:
                    self.complain(f"[loop.handoff] inboxes[{number}]", "ping", f"unknown agent {name!r}")
            if not inbox.file:
                self.complain(f"[loop.handoff] inboxes[{number}]", "file", "missing")
            inboxes.append(inbox)
        loop.handoff.inboxes = inboxes
        return loop

    def folder_of(self, relative: str, section: str, key: str = "cwd") -> Path:
        """A configured folder made absolute; it must exist (tmux silently falls back to $HOME)."""
        if not isinstance(relative, str) or "\0" in relative:
            return self.folder  # as_text has reported it
        try:
            folder = (self.folder / os.path.expanduser(relative)).resolve()
        except (OSError, RuntimeError) as error:  # a symlink loop
            self.complain(section, key, f"folder {relative!r}: {getattr(error, 'strerror', None) or error}")
            return self.folder
        if not folder.is_dir():
            self.complain(section, key, f"folder {relative!r} does not exist ({folder})")
        return folder

    def text_or_file(self, value: str, section: str, key: str) -> str:
        """A kickoff: the text itself, or ``@path`` read from a file beside the config.

        The file must be a regular file of UTF-8 text, at most ``MAX_PROMPT_FILE`` bytes: a FIFO
        would hang every command, ``/dev/zero`` would fill the memory, a binary would be typed.
        """
        if not isinstance(value, str) or not value.startswith("@"):
            return value if isinstance(value, str) else ""
        path = self.folder / os.path.expanduser(value[1:])
        try:
            info = os.stat(path)
            if not stat.S_ISREG(info.st_mode):
                raise _Invalid("is not a regular file")
            if info.st_size > MAX_PROMPT_FILE:
                raise _Invalid(f"is {info.st_size} bytes; at most {MAX_PROMPT_FILE}")
            with open(path, "rb") as handle:
                data = handle.read(MAX_PROMPT_FILE + 1)
            text = data.decode("utf-8")
            if "\0" in text:
                raise _Invalid("holds NUL bytes (a binary file?)")
            return text
        except UnicodeDecodeError:
            self.complain(section, key, f"cannot read {value!r}: not UTF-8 text (a binary file?)")
        except (OSError, ValueError) as error:
            self.complain(section, key, f"cannot read {value!r}: {getattr(error, 'strerror', None) or error}")
        except _Invalid as invalid:
            self.complain(section, key, f"cannot use {value!r}: {invalid}")
        return ""

    def check_unique_sessions(self, prefix: str, agents: list[Agent], services: list[Service]) -> None:
        seen: dict[str, str] = {}
        for unit, label in [*[(a, "[[agent]]") for a in agents], *[(s, "[[service]]") for s in services]]:
            if label == "[[service]]" and unit.name in {agent.name for agent in agents}:
                self.complain(f"[[service]] {unit.name!r}", "name", f"duplicate name {unit.name!r}: an agent has it")
            unit.session = unit.session or tmux_safe(prefix + unit.name)
            if unit.session in seen and seen[unit.session] != unit.name:
                self.complain(f"{label} {unit.name!r}", "session",
                              f"session {unit.session!r} is also {seen[unit.session]!r}'s")
            seen[unit.session] = unit.name


class _Invalid(Exception):
    """A validator's complaint, turned into an error line by ``Loader.build``."""


def default_watch(kind: str) -> str:
    """Idle is not stalled: only a loop agent is meant to be working all the time."""
    return "heal+stall" if kind == "loop" else "heal"


def tmux_safe(name: str) -> str:
    """tmux turns '.' and ':' in session names into '_'; we choose the same name up front."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


def default_session_prefix(folder: Path) -> str:
    return tmux_safe(folder.resolve().name) + "-"


def find_config_path(given: str | None) -> Path:
    """``--config PATH``, else ``$AGENTS_CONFIG``, else ``./agents.toml``."""
    chosen = given or os.environ.get("AGENTS_CONFIG") or "agents.toml"
    if "\0" in chosen:
        raise ConfigError([f"{chosen[:80]!r}: a config path cannot hold a NUL byte"])
    # resolve(): "../agents.toml" and a symlinked folder must name the same config (it tags our sessions).
    try:
        return Path(chosen).expanduser().resolve()
    except (OSError, RuntimeError) as error:  # a loop of symlinks
        raise ConfigError([f"{chosen}: cannot read: {getattr(error, 'strerror', None) or error}"])


def load_config(given: str | None) -> Config:
    return Loader(find_config_path(given)).load(need_units=True)


def render_kickoff(template: str, values: dict[str, str]) -> str:
    """Fill ``{name}``, ``{phase}``, ``{status_file}``, ``{done_marker}``, ``{repo}``, ``{subdir}``.

    Only those names are replaced, so code in a prompt (``{"a": 1}``, ``${HOME}``)
    passes through untouched.
    """
    return re.sub(r"\{(name|phase|status_file|done_marker|repo|subdir)\}",
                  lambda match: values.get(match.group(1), match.group(0)), template)


# ============================================================================
# tmux
#   The only code that runs tmux: named operations, each an argv list with an
#   exact target. One call lists every pane; one call captures many panes.
# ============================================================================


@dataclass
class Pane:
    """One row of ``list-panes -a``: what tmux knows about a session's pane."""

    session: str  # session name
    pane_id: str  # "%12": the exact, unambiguous target for every later command
    pid: int  # the pane's first process (the agent, or what it exec'd)
    dead: bool  # the process exited and the pane stayed (remain-on-exit)
    dead_status: int | None  # its exit status when dead
    activity: float  # last output or input in the window (Unix time, whole seconds)
    created: float  # when the session was created
    in_mode: bool  # in copy mode (a human scrolled): keys would go to the copy mode
    owner: str  # our @agents_owner tag: which config started it ("" if not ours)
    width: int
    height: int


THEN = object()  # separates the commands of one tmux invocation (tmux spells it ";")


def tmux_literal(argument: str) -> str:
    """An argument tmux passes on as is.

    Even from an argv list, tmux reads an argument that ends in ``;`` as the end
    of a command (``find . -exec rm {} ;`` would lose its ``;`` and run the rest
    as another tmux command); a backslash before that ``;`` is tmux's escape.
    ``Tmux.run`` applies this to every argument, so only ``THEN`` separates.
    """
    return argument[:-1] + "\\;" if argument.endswith(";") else argument


def tmux_format_literal(text: str) -> str:
    """Text for an option that tmux expands as a format (``-c``): ``#`` doubled, so
    ``#(…)`` in a folder name runs nothing and ``#{…}`` stays as written."""
    return text.replace("#", "##")


class Tmux:
    """tmux, reached only through these methods.

    Every call is an argv list; text from config or messages is passed as data
    (``send-keys -l``, ``load-buffer -`` on stdin), never parsed by a shell, and
    every argument is made literal for tmux's own parser (``tmux_literal``;
    ``tmux_format_literal`` where tmux expands formats). Targets are exact:
    sessions as ``=name``, panes by their ``%id``, because a bare ``-t foo`` also
    matches a session called ``foobar``.

    ``socket`` selects a private server (``tmux -L NAME``); tests always use one.
    ``calls`` counts the tmux processes spawned (the bench reads it).
    """

    PANE_FORMAT = "\t".join([
        "#{session_name}", "#{window_index}", "#{pane_index}", "#{pane_id}", "#{pane_pid}", "#{pane_dead}",
        "#{pane_dead_status}", "#{pane_dead_signal}", "#{window_activity}", "#{session_created}", "#{pane_in_mode}",
        "#{@agents_owner}", "#{pane_width}", "#{pane_height}",
    ])
    # What tmux says when there is no server (or it is just exiting): no sessions, not an error.
    NO_SERVER = ("no server running", "No such file or directory", "Connection refused", "server exited unexpectedly",
                 "lost server")

    def __init__(self, socket: str | None = None):
        self.socket = socket
        self.base = ["tmux", "-L", socket] if socket else ["tmux"]
        self.calls = 0

    def run(self, args: list, input_text: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        """Run one tmux invocation: ``args`` are strings and ``THEN`` separators."""
        argv = [*self.base, *(";" if arg is THEN else tmux_literal(arg) for arg in args)]
        self.calls += 1
        try:
            result = subprocess.run(argv, input=input_text, capture_output=True, text=True, timeout=30)
        except FileNotFoundError:
            raise RuntimeFailure("tmux is not installed (or not on PATH)")
        except subprocess.TimeoutExpired:
            raise RuntimeFailure(f"tmux {args[0]} did not answer within 30s")
        if check and result.returncode != 0:
            raise RuntimeFailure(f"tmux {args[0]} failed: {result.stderr.strip() or result.returncode}")
        return result

    # -- looking --

    def list_panes(self) -> dict[str, Pane]:
        """Every session's first pane, keyed by session name: one tmux process for all.

        No server means no sessions. Any other failure (a tmux upgraded under a
        running server: "protocol version mismatch"; a socket we may not use)
        raises: reading it as "every agent is dead" would kill a working team.
        """
        result = self.run(["list-panes", "-a", "-F", self.PANE_FORMAT], check=False)
        if result.returncode != 0:
            error = result.stderr.strip()
            if any(sign in error for sign in self.NO_SERVER) and "version mismatch" not in error:
                return {}
            raise RuntimeFailure(f"tmux list-panes failed: {error or result.returncode}")
        panes: dict[str, tuple[tuple[int, int], Pane]] = {}
        for line in result.stdout.splitlines():
            parts = line.split("\t")
            if len(parts) != 14:
                continue
            (session, window, index, pane_id, pid, dead, status, dead_signal, activity, created, in_mode, owner,
             width, height) = parts
            if status.lstrip("-").isdigit():
                exit_status: int | None = int(status)
            elif dead_signal.isdigit():
                exit_status = 128 + int(dead_signal)  # killed by a signal: tmux has no status, only the signal
            else:
                exit_status = None
            pane = Pane(session=session, pane_id=pane_id, pid=int(pid or 0), dead=dead == "1",
                        dead_status=exit_status, activity=float(activity or 0), created=float(created or 0),
                        in_mode=in_mode == "1", owner=owner, width=int(width or 0), height=int(height or 0))
            order = (int(window or 0), int(index or 0))
            if session not in panes or order < panes[session][0]:
                panes[session] = (order, pane)
        return {session: pane for session, (_, pane) in panes.items()}

    def reap(self) -> None:
        """Make the tmux server collect exit statuses it missed.

        tmux 3.3a sometimes misses a child's SIGCHLD (seen when a client command
        arrives as the child exits): the pane is dead, its process a zombie, and
        ``pane_dead_status`` stays empty until some other child of the server
        exits. A throwaway session whose command ends at once is such a child.
        """
        name = f"agents-py-reap-{os.urandom(4).hex()}"
        # remain-on-exit off: a user's tmux.conf may turn it on, and this session must not stay.
        self.run(["new-session", "-d", "-s", name, "--", "sleep", "0", THEN,
                  "set-option", "-w", "-t", f"={name}:", "remain-on-exit", "off"], check=False)

    def capture_many(self, pane_ids: list[str]) -> dict[str, list[str]]:
        """The visible screen of many panes in one tmux process.

        The captures are chained with ``;`` and separated by a ``display-message``
        of a random marker. If a pane vanished meanwhile the chain stops at it,
        so the rest is captured one by one.
        """
        if not pane_ids:
            return {}
        marker = f"agents-py-capture-{os.urandom(8).hex()}"
        args: list = []
        for pane_id in pane_ids:
            args += ["capture-pane", "-p", "-t", pane_id, THEN, "display-message", "-p", marker, THEN]
        result = self.run(args[:-1], check=False)
        screens: dict[str, list[str]] = {}
        chunk: list[str] = []
        remaining = iter(pane_ids)
        for line in result.stdout.split("\n"):
            if line == marker:
                screens[next(remaining)] = chunk
                chunk = []
            else:
                chunk.append(line)
        if result.returncode != 0:
            for pane_id in pane_ids:
                if pane_id not in screens:
                    single = self.run(["capture-pane", "-p", "-t", pane_id], check=False)
                    if single.returncode == 0:
                        screens[pane_id] = single.stdout.split("\n")
        return screens

    def capture_history(self, pane_id: str, lines: int) -> list[str]:
        """The last ``lines`` lines of a pane, scrollback included (for ``logs``)."""
        result = self.run(["capture-pane", "-p", "-J", "-t", pane_id, "-S", f"-{max(lines, 1)}"], check=False)
        return result.stdout.rstrip("\n").split("\n") if result.returncode == 0 else []

    # -- starting and stopping --

    # The pane's first process: reads its environment from a private file, deletes
    # the file, and becomes the real program (execvpe: same pid, no shell). Passing
    # the environment as `new-session -e K=V` arguments instead would leave every
    # value — API keys included — readable in the tmux server's command line in `ps`.
    LAUNCHER = ("import json, os, sys\n"
                "path = sys.argv[1]\n"
                "with open(path) as handle: env = json.load(handle)\n"
                "os.unlink(path)\n"
                "env.update({k: os.environ[k] for k in ('TMUX', 'TMUX_PANE') if k in os.environ})\n"
                "os.execvpe(sys.argv[2], sys.argv[2:], env)\n")

    def new_session(self, name: str, argv: list[str], cwd: Path, env: dict[str, str], owner: str,
                    env_dir: Path, width: int = 200, height: int = 50, history: int = 50000,
                    died_channel: str = "") -> None:
        """Start ``argv`` (no shell) in a new detached session with a large history.

        A pane's history limit is fixed when the pane is made, so the session is
        born with a placeholder window, given its options, and then the real
        window is made and the placeholder closed — all in one tmux command
        queue, before the real process can exit. ``remain-on-exit`` keeps a dead
        pane (and its exit status) for the watchdog to see; ``window-size
        manual`` keeps the size when someone attaches from a small terminal (an
        agent's screen must not be re-wrapped under it); a ``pane-died`` hook
        signals ``died_channel`` (a tmux ``wait-for`` channel: no shell) so a
        sleeping watchdog wakes at once. On a private server (``socket``) the
        server also gets ``focus-events on``, which Claude Code asks for.
        """
        env_dir.mkdir(parents=True, exist_ok=True)
        env_file = env_dir / f"{name}-{os.urandom(6).hex()}.env.json"
        descriptor = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump(env, handle)
        target = f"={name}:"
        try:
            self.run([
                "new-session", "-d", "-s", name, "-x", str(width), "-y", str(height), "--", "sleep", "600", THEN,
                "set-option", "-t", target, "history-limit", str(history), THEN,
                "set-option", "-t", target, "@agents_owner", owner, THEN,
                "new-window", "-t", target, "-c", tmux_format_literal(str(cwd)), "--", sys.executable, "-c",
                self.LAUNCHER, str(env_file), *argv, THEN,
                "set-option", "-w", "-t", target, "remain-on-exit", "on", THEN,
                "set-option", "-w", "-t", target, "window-size", "manual", THEN,
                *(["set-hook", "-w", "-t", target, "pane-died", f"wait-for -S {died_channel}", THEN]
                  if died_channel else []),
                *(["set-option", "-s", "focus-events", "on", THEN] if self.socket else []),
                "kill-window", "-t", f"={name}:{{start}}",
            ])
        except RuntimeFailure:
            with contextlib.suppress(OSError):
                env_file.unlink()
            raise

    def wait_for(self, channel: str) -> subprocess.Popen:
        """A ``tmux wait-for CHANNEL`` in the background: it ends when the channel is signalled (tmux
        remembers a signal that came while nobody waited), or at once if there is no server."""
        self.calls += 1
        return subprocess.Popen([*self.base, "wait-for", channel], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def server_running(self) -> bool:
        """Whether a server answers on our socket (no server is not an error; anything else is)."""
        result = self.run(["list-sessions"], check=False)
        if result.returncode == 0:
            return True
        error = result.stderr.strip()
        if any(sign in error for sign in self.NO_SERVER) and "version mismatch" not in error:
            return False
        raise RuntimeFailure(f"tmux list-sessions failed: {error or result.returncode}")

    def remove_socket_if_unused(self) -> bool:
        """Remove the socket file of our private server once no server listens on it (tmux leaves
        it behind when its last session ends). Checked by connecting just before the unlink."""
        import socket as sockets

        path = self.socket_path()
        if path is None or not path.is_socket() or self.server_running():
            return False
        with sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM) as probe:
            try:
                probe.connect(str(path))
                return False  # a server came up meanwhile: it is in use
            except ConnectionRefusedError:
                pass
            except OSError:
                return False
        with contextlib.suppress(OSError):
            path.unlink()
        return True

    def socket_path(self) -> Path | None:
        """The socket file of our private server (None on the default server: never ours to remove)."""
        if not self.socket:
            return None
        folder = Path(os.environ.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}"
        return folder / self.socket

    def kill_session(self, name: str) -> bool:
        return self.run(["kill-session", "-t", f"={name}"], check=False).returncode == 0

    # -- typing --

    def send_text(self, pane_id: str, text: str, chunk: int = 512) -> None:
        """Type ``text`` literally (``send-keys -l``): no key names, no shell, nothing run.

        Chunks go through ``tmux_literal`` like every argument (a trailing ``;``
        would end the command otherwise).
        """
        for start in range(0, len(text), chunk):
            self.run(["send-keys", "-t", pane_id, "-l", "--", text[start:start + chunk]])

    def paste(self, pane_id: str, text: str) -> None:
        """Paste ``text`` as one bracketed paste: newlines stay newlines, not submits."""
        buffer = f"agents-py-{os.getpid()}-{os.urandom(4).hex()}"
        self.run(["load-buffer", "-b", buffer, "-"], input_text=text)
        self.run(["paste-buffer", "-p", "-d", "-r", "-b", buffer, "-t", pane_id])

    def send_keys(self, pane_id: str, *keys: str) -> None:
        """Press named keys (``Enter``, ``Down``, ``C-c``)."""
        self.run(["send-keys", "-t", pane_id, *keys])

    def leave_copy_mode(self, pane_id: str) -> None:
        self.run(["send-keys", "-t", pane_id, "-X", "cancel"], check=False)

    def attach(self, name: str) -> None:
        """Attach the terminal to a session (or switch to it from inside tmux): replaces this process."""
        inside_same_server = bool(os.environ.get("TMUX")) and self._client_socket_matches()
        args = ["switch-client", "-t", f"={name}"] if inside_same_server else ["attach-session", "-t", f"={name}"]
        env = dict(os.environ)
        if not inside_same_server:
            env.pop("TMUX", None)  # attaching from inside another tmux server nests on purpose
        os.execvpe(self.base[0], [*self.base, *args], env)

    def _client_socket_matches(self) -> bool:
        current = os.environ.get("TMUX", "").split(",")[0]
        return Path(current).name == (self.socket or "default")


# ============================================================================
# git
#   The only place that runs git: argv lists, a timeout on every call, never
#   a prompt. The watchdog reads the work repo's remote branch through it.
# ============================================================================


@dataclass(frozen=True)
class Commit:
    """One commit on the remote branch, as the hand-off reads it."""

    sha: str
    when: int  # author time (Unix): kept by a rebase, so a rewritten copy of a commit is recognisable
    subject: str

    @property
    def key(self) -> str:
        """What identifies the commit across a force-push: its author time and subject, not its sha."""
        return f"{self.when}:{self.subject}"


class Git:
    """A clone of the work repo, read through named operations.

    Every call has a timeout (a hung remote must not stall a tick), runs with
    ``GIT_TERMINAL_PROMPT=0`` and a batch-mode ssh (a remote asking for a
    password fails at once instead of waiting for a human), and raises
    ``RuntimeFailure`` with git's own last line on any error.
    """

    TIMEOUT = 60.0  # seconds for a fetch; local reads get a quarter of it

    def __init__(self, folder: Path):
        self.folder = folder

    def run(self, args: list[str], timeout: float | None = None, ok_codes: tuple[int, ...] = (0,)) -> str:
        """git's output; ``RuntimeFailure`` on an exit status not in ``ok_codes``."""
        return self.call(args, timeout, ok_codes)[1]

    def call(self, args: list[str], timeout: float | None = None,
             ok_codes: tuple[int, ...] = (0,)) -> tuple[int, str]:
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "LC_ALL": "C",
               "GIT_SSH_COMMAND": os.environ.get("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")}
        env.pop("GIT_DIR", None)
        env.pop("GIT_WORK_TREE", None)
        try:
            done = subprocess.run(["git", "-C", str(self.folder), *args], capture_output=True, env=env,
                                  timeout=timeout or self.TIMEOUT / 4, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise RuntimeFailure(f"git {args[0]} in {self.folder}: no answer within {timeout or self.TIMEOUT / 4:.0f}s")
        except OSError as error:
            raise RuntimeFailure(f"git {args[0]} in {self.folder}: {error.strerror or error}")
        if done.returncode not in ok_codes:
            lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise RuntimeFailure(f"git {args[0]} in {self.folder}: {lines[-1] if lines else f'exit {done.returncode}'}")
        return done.returncode, done.stdout.decode("utf-8", "replace")

    def fetch(self, remote: str, branch: str) -> None:
        self.run(["fetch", "--quiet", "--no-tags", "--prune", remote, f"+refs/heads/{branch}:refs/remotes/{remote}/{branch}"],
                 timeout=self.TIMEOUT)

    def head(self, remote: str, branch: str) -> str:
        return self.run(["rev-parse", "--verify", "--quiet", f"refs/remotes/{remote}/{branch}^{{commit}}"]).strip()

    def has_commit(self, sha: str) -> bool:
        return bool(self.run(["rev-parse", "--verify", "--quiet", f"{sha}^{{commit}}"], ok_codes=(0, 1)).strip())

    def is_ancestor(self, older: str, newer: str) -> bool:
        return self.call(["merge-base", "--is-ancestor", older, newer], ok_codes=(0, 1))[0] == 0

    def commits(self, head: str, since: str | None, limit: int = 500) -> list[Commit]:
        """Commits reachable from ``head`` but not from ``since``, oldest first (at most ``limit``)."""
        spec = [head, f"^{since}"] if since else [head]
        out = self.run(["log", "--no-show-signature", f"--max-count={limit}", "--format=%H%x1f%at%x1f%s", *spec, "--"])
        commits = []
        for line in out.splitlines():
            sha, _, rest = line.partition("\x1f")
            when, _, subject = rest.partition("\x1f")
            if sha:
                commits.append(Commit(sha, int(when or 0), subject))
        return commits[::-1]

    def show(self, commit: str, path: str) -> str | None:
        """A file's text at a commit; None when the file is not there."""
        try:
            return self.run(["show", f"{commit}:{path}"])
        except RuntimeFailure as failure:
            if "does not exist" in str(failure) or "exists on disk, but not in" in str(failure):
                return None
            raise


# ============================================================================
# State
#   Everything the program remembers between runs, in one JSON file under
#   state_dir, written atomically under a lock.
# ============================================================================

MAX_SESSION_IDS = 1000  # per unit: the newest are kept


@dataclass
class UnitRecord:
    """What we remember about one agent or service (supervisord-style lifecycle).

    ``lifecycle`` is one of: stopped (never started, or `down`), starting
    (session made, kickoff not yet delivered), running, backoff (dead, waiting
    to be restarted), failed (crash loop: waits for `agents.py restart`),
    exited (a task that finished cleanly).
    """

    lifecycle: str = "stopped"
    since: float = 0.0  # when lifecycle last changed
    reason: str = ""  # why it last changed
    started_at: float = 0.0  # when the current session was started
    restarts: int = 0  # restarts by the watchdog or `restart`
    restart_times: list[float] = field(default_factory=list)  # crash restarts, for crash-loop detection
    backoff_until: float = 0.0  # in backoff: when the next restart is due
    session_ids: list[str] = field(default_factory=list)  # every CLI session id we started it with
    kickoff: str = ""  # kickoff (or resume note) waiting to be delivered once the prompt shows
    resumed_from: str = ""  # the session id this life resumed ("": started fresh)
    life_session: str = ""  # where the CLI picks its own id (Codex): this life's, once seen held open ("": not yet)
    fresh_next: bool = False  # its last resume failed: the next heal starts it fresh
    conversing: bool = False  # its current session took a message, so there is a conversation to resume
    first_started: float = 0.0  # its first start ever (Codex rollouts from before it are not its own)
    budget_waived: str = ""  # the budget pause (paused_key) `restart` lifted for this agent
    kickoff_typed_at: float = 0.0  # when the kickoff was last typed (set before typing, so a restart knows)
    kickoff_attempts: int = 0  # kickoff deliveries that were not seen to land (retries back off)
    start_failure: str = ""  # why the last start attempt failed (heal decides the backoff from it)
    never_ready: int = 0  # reboots in a row for showing no prompt: this many means `failed`
    dialog_answered_at: float = 0.0  # last time we pressed keys at a dialog
    dialog_answers: int = 0  # answers given to the dialog now on screen (a dialog that stays is left alone)
    screen: str = ""  # the screen state the watchdog last saw (busy, idle, …)
    screen_since: float = 0.0  # since when it has been that
    limit: dict[str, Any] = field(default_factory=dict)  # the limit being waited out: kind, banner, since, until, resumes
    # A resumed life's: the usage limit its last life was waiting out. A resumed CLI draws its conversation
    # again, that banner too: its wait goes on, never a new one read from the old banner's "3pm" (tomorrow's).
    inherited_limit: dict[str, Any] = field(default_factory=dict)
    nudged: dict[str, float] = field(default_factory=dict)  # phase id → when its DONE-nudge was sent
    stall_clock_from: float = 0.0  # a nudge restarts the idle clock from here
    waiting: dict[str, Any] = field(default_factory=dict)  # the WAITING-UNTIL marker on screen: text, seen, told
    next_wake: float = 0.0  # when the next wake is due (0: not scheduled)
    reported: dict[str, str] = field(default_factory=dict)  # one-time reports made (what → when), never repeated
    pings: list[dict[str, str]] = field(default_factory=list)  # hand-off pings waiting to be delivered: {key, line}
    pings_in_flight: list[str] = field(default_factory=list)  # keys of pings typed, outcome not yet recorded

    @classmethod
    def from_dict(cls, data: dict) -> UnitRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})


MAX_SEEN_COMMITS = 2000  # commit keys the hand-off remembers (a force-push must not re-ping what it saw)


@dataclass
class LoopRecord:
    """What the phase machine and the hand-off remember (``state["loop"]``): one per team.

    ``baseline`` is the head of the remote branch the hand-off has read up to;
    ``seen`` the keys of the commits it has read (author time and subject, so
    a rebased copy of a commit after a force-push is not read as new).
    """

    current: str = ""  # the phase being worked on ("" before the first look: the first phase)
    done: list[str] = field(default_factory=list)  # phases whose status file carried the done marker
    complete: bool = False  # every phase done: SEQUENCE-COMPLETE written, loop-tied work stopped
    phase_started: float = 0.0  # when the current phase began
    completed_at: float = 0.0  # when the sequence completed
    baseline: str = ""  # remote head the hand-off has read up to ("": not yet looked)
    seen: list[str] = field(default_factory=list)  # keys of the commits read (newest last, bounded)
    inboxes: dict[str, str] = field(default_factory=dict)  # inbox file → hash of the content last pinged ("" gone)
    last_handoff: str = ""  # the last hand-off, in words, for `status`
    last_handoff_at: float = 0.0
    git_failures: int = 0  # fetches or reads that failed in a row
    git_retry_at: float = 0.0  # no git before this (backing off after failures)
    git_error: str = ""  # the last git failure reported (reported once until it changes)
    token_phase: str = ""  # the phase the token base belongs to ("": none yet)
    token_base: dict[str, list[int]] = field(default_factory=dict)  # agent → its cumulative usage at phase start
    gate: str = ""  # the gate in flight: the label of the latest claim(<label>) ("": none yet this phase)
    gate_started: float = 0.0
    gate_base: dict[str, list[int]] = field(default_factory=dict)  # agent → cumulative usage at the gate's start
    day: str = ""  # the local date the daily base belongs to
    day_base: dict[str, list[int]] = field(default_factory=dict)  # agent → cumulative usage at the day's start
    paused: str = ""  # why the loop agents are paused ("": not paused): over a budget
    paused_key: str = ""  # which budget: "phase:<id>" or "day:<date>" (a `restart` waives it for its agent)
    pending_records: list[dict] = field(default_factory=list)  # token records decided, not yet in the log

    @classmethod
    def from_dict(cls, data: dict) -> LoopRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})


MAX_STAMP = 253402300799.0  # 9999-12-31: the latest time `iso` and `datetime` can show


def _is_time(value: Any) -> bool:
    """A time or a duration as the records keep them: a finite number from 0 to ``MAX_STAMP``."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and 0 <= value <= MAX_STAMP)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 10 ** 9


def _is_strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


# A record field's annotation → what its saved value must be. Every field of UnitRecord and
# LoopRecord has one of these (``test_every_record_field_is_validated`` checks).
FIELD_SHAPES: dict[str, Callable[[Any], bool]] = {
    "str": lambda value: isinstance(value, str),
    "float": _is_time,
    "int": _is_count,
    "bool": lambda value: isinstance(value, bool),
    "list[float]": lambda value: isinstance(value, list) and all(_is_time(item) for item in value),
    "list[str]": _is_strings,
    "dict[str, str]": lambda value: isinstance(value, dict) and all(isinstance(item, str) for item in value.values()),
    "dict[str, float]": lambda value: isinstance(value, dict) and all(_is_time(item) for item in value.values()),
    "list[dict[str, str]]": lambda value: isinstance(value, list) and all(
        isinstance(item, dict) and isinstance(item.get("key"), str) and isinstance(item.get("line"), str)
        for item in value),
    "dict[str, Any]": lambda value: isinstance(value, dict),
    "dict[str, list[int]]": lambda value: isinstance(value, dict) and all(  # token figures per agent
        isinstance(item, list) and len(item) == 4 and all(_is_count(n) or isinstance(n, int) and n >= 0 for n in item)
        for item in value.values()),
    "list[dict]": lambda value: isinstance(value, list) and all(  # token records waiting for the log
        isinstance(item, dict) and isinstance(item.get("phase_id"), str) for item in value),
}
# Fields whose dict is read key by key: the keys that must hold numbers (or null, for "until").
FIELD_KEYS: dict[str, Callable[[dict], bool]] = {
    "limit": lambda value: (value.get("until") is None or _is_time(value["until"]))
    and _is_time(value.get("since", 0)) and _is_count(value.get("resumes", 0)),
    "waiting": lambda value: not value or (isinstance(value.get("text"), str) and _is_time(value.get("seen"))),
}
STATE_REBUILT = "state record lost; rebuilt from tmux"  # the reason of a record reset by a repair


def checked_record(cls: type, data: Any, where: str, problems: list[str]) -> Any:
    """A ``UnitRecord`` or ``LoopRecord`` from saved JSON, field by field: a field of the wrong shape
    is reset to its default and named in ``problems``; unknown fields (a newer version's) are dropped."""
    if not isinstance(data, dict):
        problems.append(f"{where}: {type_name(data)} instead of a record; reset")
        record = cls()
        if isinstance(record, UnitRecord):
            record.reason = STATE_REBUILT
        return record
    values = {}
    for spec in dataclasses.fields(cls):
        if spec.name not in data:
            continue
        value = data[spec.name]
        shape, keys = FIELD_SHAPES[str(spec.type)], FIELD_KEYS.get(spec.name)
        if shape(value) and (keys is None or keys(value)):
            values[spec.name] = value
        else:
            shown = json.dumps(value, allow_nan=True, default=str)
            problems.append(f"{where}.{spec.name}: {shown[:60]} is not a {spec.type}; reset")
    record = cls(**values)
    if isinstance(record, UnitRecord) and record.lifecycle not in LIFECYCLE:
        problems.append(f"{where}.lifecycle: {record.lifecycle[:40]!r} is no lifecycle state; reset")
        record.lifecycle, record.reason = "stopped", STATE_REBUILT
    return record


class StateStore:
    """``state_dir/state.json``: ``{"units": {name: UnitRecord}, ...}``.

    Readers (``status``) just load: a rename makes every save atomic. Writers
    go through ``transaction()``, which holds ``state.lock`` across
    load-modify-save so the watchdog and a command never overwrite each other.

    Damage is repaired and reported, never silently reset. A file that does not
    parse (garbage, truncated, ``\\xff``, nested too deep, not an object) is moved
    aside to ``state.broken-TIME`` and the last good copy (``state.last-good.json``,
    the file each save replaced, kept by a hard link) is used instead. Then every
    record is checked field by field (``checked_record``): a wrong one is reset to
    its default, a record that cannot be read at all starts over as ``stopped``
    with the reason ``STATE_REBUILT``, and the watchdog adopts it again from what
    tmux shows (``check_rebuilt``). Each repair is one ``state-repaired`` event
    naming the file and the field; readers only warn on stderr. NaN and infinities
    are neither read (they count as damage) nor written (strict JSON).
    """

    def __init__(self, state_dir: Path, events: EventLog | None = None):
        self.dir = state_dir
        self.path = state_dir / "state.json"
        self.good_path = state_dir / "state.last-good.json"
        self.lock_path = state_dir / "state.lock"
        self.events = events  # where a writer reports repairs (None: stderr)
        self.existed = False  # this process has seen the file: its disappearance is news
        self.clean = False  # the last load read the file without repairs (so a save may keep it as last good)
        self.repaired = False  # the last load repaired something: the transaction saves even if nothing else changed

    def read(self, path: Path) -> tuple[Any, str]:
        """The parsed JSON of ``path`` and "" — or None and why it cannot be read."""
        try:
            text = path.read_bytes().decode("utf-8")
            # NaN and Infinity are not JSON: read as null, so the field holding one is reset.
            return json.loads(text, parse_constant=lambda name: None), ""
        except FileNotFoundError:
            return None, "missing"
        except (OSError, ValueError, RecursionError) as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            return None, (getattr(error, "strerror", None) or str(error) or type(error).__name__)[:120]

    def load(self, repair: bool = False) -> dict:
        """The state, repaired where it is damaged. Only a writer (``repair``) moves a broken file aside
        and reports the repair as an event; a reader warns on stderr."""
        problems: list[str] = []
        raw, why = self.read(self.path)
        seen_before, self.existed = self.existed, self.existed or why != "missing"
        if why == "missing" and not seen_before:
            raw = {}  # never written yet: a first start, nothing to repair
        elif why == "missing":
            why = "it vanished: state_dir deleted?"
        elif raw is not None and not (isinstance(raw, dict) and isinstance(raw.get("units", {}), dict)):
            why = f"{type_name(raw)} instead of {{\"units\": {{…}}}}"
            raw = None
        if raw is None:
            problems.append(f"{self.path}: unreadable ({why})")
            if repair and self.path.exists():
                backup = self.path.with_name(f"state.broken-{int(time.time())}")
                with contextlib.suppress(OSError):
                    os.replace(self.path, backup)
                    problems[-1] += f"; moved to {backup.name}"
            raw, why = self.read(self.good_path)
            if isinstance(raw, dict) and isinstance(raw.get("units", {}), dict):
                problems[-1] += f"; using the last good copy {self.good_path.name}"
            else:
                raw = {}
                problems[-1] += "; no good copy: every unit is rebuilt from tmux"
        data = {key: value for key, value in raw.items() if key not in ("units", "loop")}
        data["units"] = {name: checked_record(UnitRecord, record, f"units.{name}", problems)
                         for name, record in raw.get("units", {}).items()}
        loop = raw.get("loop")
        data["loop"] = checked_record(LoopRecord, loop, "loop", problems) if loop is not None else LoopRecord()
        self.clean, self.repaired = not problems, bool(problems)
        for problem in problems:
            self.report(problem, repair)
        return data

    def report(self, problem: str, writer: bool) -> None:
        """One repair: an event from a writer, a stderr line from a reader (the writer will repair it)."""
        unit = problem.split(".")[1].split(":")[0] if problem.startswith("units.") else ""
        line = problem if problem.startswith(str(self.dir)) else f"{self.path}: {problem}"
        if writer and self.events is not None:
            self.events.emit("state-repaired", unit, line)
        else:
            print(f"warning: {line}", file=sys.stderr)

    @staticmethod
    def plain(data: dict) -> dict:
        """A deep, JSON-ready copy (records as dicts): what is saved, and what a change is judged by."""
        rest = {key: copy.deepcopy(value) for key, value in data.items() if key not in ("units", "loop")}
        loop = data.get("loop")
        return {**rest, "units": {name: dataclasses.asdict(record) for name, record in data["units"].items()},
                "loop": dataclasses.asdict(loop) if isinstance(loop, LoopRecord) else LoopRecord().__dict__}

    def save(self, data: dict) -> None:
        text = json.dumps(self.plain(data), indent=1, sort_keys=True, allow_nan=False)  # strict JSON: no NaN
        if self.clean:
            self.keep_last_good()
        write_atomically(self.path, text)
        self.existed = True

    def keep_last_good(self) -> None:
        """The file about to be replaced, read cleanly by this transaction, becomes the last good copy
        (a hard link: no copying; the save writes a new file, so the link keeps the old one)."""
        temp = self.good_path.with_name(f".{self.good_path.name}.{os.getpid()}.tmp")
        try:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            os.link(self.path, temp)
            os.replace(temp, self.good_path)
        except FileNotFoundError:
            pass  # no file yet: nothing to keep
        except OSError as error:  # a file system without hard links: the save goes on without a copy
            print(f"warning: {self.good_path}: cannot keep the last good state ({error.strerror or error})",
                  file=sys.stderr)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[dict]:
        """Load, let the block change the state, save — skipping the write when nothing changed
        (a repaired state is always written, so the repair is made once)."""
        with file_lock(self.lock_path):
            data = self.load(repair=True)
            before = None if self.repaired else self.plain(data)
            yield data
            if before is None or self.plain(data) != before:
                self.save(data)


def record_of(state: dict, name: str) -> UnitRecord:
    return state["units"].setdefault(name, UnitRecord())


def loop_of(state: dict) -> LoopRecord:
    """The team's phase and hand-off memory (a fresh one in a state that has none yet)."""
    loop = state.get("loop")
    if not isinstance(loop, LoopRecord):
        loop = state["loop"] = LoopRecord()
    return loop


def remember(record: UnitRecord, memory: dict[str, Any]) -> None:
    """Apply an action's record updates (each a whole new value for its field)."""
    for key, value in memory.items():
        setattr(record, key, value)


def recent_restarts(record: UnitRecord, settings: WatchdogConfig, now: float) -> list[float]:
    """The unit's restarts within ``crash_loop_window``: what a crash loop is counted from."""
    return [moment for moment in record.restart_times if now - moment < settings.crash_loop_window]


def idle_for(pane: Pane, record: UnitRecord, now: float) -> float:
    """Seconds an agent has been idle: since its pane's last activity, its start or its last nudge."""
    return now - max(pane.activity, record.started_at, record.stall_clock_from)


def generation(record: UnitRecord) -> tuple:
    """What identifies a unit's current life: an action decided for one life is void in the next."""
    return record.started_at, record.lifecycle, record.since


# The phase machine's memory: what `agents.py phase set` moves, and what a tick's phase and token
# actions are decided on. (The hand-off's memory — baseline, seen commits, inboxes — is not in it.)
PHASE_FIELDS = ("current", "done", "complete", "phase_started", "completed_at", "token_phase", "token_base",
                "gate", "gate_base", "gate_started")


def phase_memory(loop: LoopRecord) -> dict[str, Any]:
    """A copy of the loop's PHASE_FIELDS, to compare with what they are later."""
    return {name: copy.deepcopy(getattr(loop, name)) for name in PHASE_FIELDS}


def phase_bound(action: Action) -> bool:
    """An action decided on the phase machine's memory: void once a `phase set` has moved it
    (applied, it would bring the old phase back, or restart agents for a phase no longer begun)."""
    if not action.unit:
        return bool(action.records) or any(name in PHASE_FIELDS for name in action.memory)
    return action.kind == "start" and action.purpose == "phase"


def decided_on(state: dict, actions: list[Action]) -> dict[str, Any]:
    """What ``actions`` were decided on, for ``carry_out`` to check: each unit's generation, and
    the phase machine's memory (key "") when actions bound to it are among them."""
    decided: dict[str, Any] = {action.unit: generation(record_of(state, action.unit)) for action in actions if action.unit}
    if any(phase_bound(action) for action in actions):
        decided[""] = phase_memory(loop_of(state))
    return decided


LIFECYCLE = {  # state → the states it may move to (any state may be started again: `starting`/`running`)
    "stopped": {"starting", "running", "exited"},
    "starting": {"starting", "running", "backoff", "failed", "stopped", "exited"},
    "running": {"starting", "running", "backoff", "failed", "stopped", "exited"},
    "backoff": {"starting", "running", "backoff", "failed", "stopped"},
    "failed": {"starting", "running", "stopped"},
    "exited": {"starting", "running", "stopped", "exited"},
}


def transition(record: UnitRecord, lifecycle: str, reason: str, now: float, events: EventLog | None,
               name: str) -> None:
    """Move a unit to a new lifecycle state; every move is an event with its reason.

    Only the moves in ``LIFECYCLE`` are taken: any other is a bug in the caller, logged as a
    ``bug`` event and refused, so a unit is never left in a state nothing expects.
    """
    if record.lifecycle == lifecycle and record.reason == reason:
        return
    previous = record.lifecycle
    if lifecycle not in LIFECYCLE.get(previous, LIFECYCLE["stopped"]):
        if events is not None:
            events.emit("bug", name, f"illegal lifecycle move {previous}→{lifecycle} refused ({reason})", now=now)
        return
    record.lifecycle, record.since, record.reason = lifecycle, now, reason
    if events is not None:
        events.emit("lifecycle", name, reason, now=now, state=f"{previous}→{lifecycle}")


# ============================================================================
# Screens
#   Reading a pane through its backend: dead, dialog, limited, busy, idle or
#   unknown — from the bottom lines of the visible screen only.
# ============================================================================

RULE_LINE = re.compile(r"^\s*[─━═—-]{8,}\s*$")  # the rules around an input box


@dataclass
class Screen:
    """What one look at a pane says."""

    state: str  # dead, dialog, limited, busy, idle, unknown
    detail: str = ""  # the line that decided it (banner, dialog line, exit status)
    limit_kind: str = ""  # when limited: usage, rate, retrying or manual
    reset_at: float | None = None  # when limited by usage: the parsed reset time, if any
    input_text: str = ""  # typed text sitting unsent in the input box (placeholders excluded)
    lines: list[str] = field(default_factory=list)  # the bottom lines that were read

    def describe(self, now: float) -> str:
        """The state word with its detail, as ``status`` prints it."""
        if self.state == "limited":
            if self.limit_kind == "manual":
                return "limited (needs you: " + self.detail[:40] + ")"
            if self.limit_kind == "retrying":
                return "limited (CLI retrying by itself)"
            if self.limit_kind == "rate":
                return "limited (API rate limit)"
            if self.reset_at:
                return f"limited until {clock_time(self.reset_at, now)}"
            return "limited (reset time unknown)"
        if self.state == "idle" and self.input_text:
            return "idle (unsent input)"
        return self.state


class PatternSet:
    """A backend's patterns compiled once (``re.MULTILINE``), looked up by category."""

    _cache: dict[str, PatternSet] = {}

    def __init__(self, backend: Backend):
        def compile_all(patterns: list[str]) -> list[re.Pattern]:
            return [re.compile(pattern, re.MULTILINE) for pattern in patterns]

        self.busy = compile_all(backend.busy)
        self.idle = compile_all(backend.idle)
        self.placeholders = compile_all(backend.placeholders)
        self.dialog = compile_all(backend.dialog)
        self.dialog_keys = [(re.compile(pattern, re.MULTILINE), keys) for pattern, keys in backend.dialog_keys.items()]
        self.limits = [("manual", compile_all(backend.manual_limit)), ("retrying", compile_all(backend.self_resume)),
                       ("usage", compile_all(backend.limit)), ("rate", compile_all(backend.rate_limit))]

    @classmethod
    def of(cls, backend: Backend) -> PatternSet:
        """The backend's compiled patterns, kept on the backend (and shared by equal backends)."""
        cached = backend.__dict__.get("_patterns")
        if cached is None:
            key = json.dumps([backend.busy, backend.idle, backend.placeholders, backend.dialog, backend.dialog_keys,
                              backend.limit, backend.rate_limit, backend.self_resume, backend.manual_limit])
            cached = cls._cache.get(key) or cls._cache.setdefault(key, cls(backend))
            backend.__dict__["_patterns"] = cached
        return cached


def first_match(patterns: list[re.Pattern], lines: list[str]) -> int | None:
    """Index of the first line (top down) that one of ``patterns`` matches, else None."""
    for index, line in enumerate(lines):
        if any(pattern.search(line) for pattern in patterns):
            return index
    return None


def last_match(patterns: list[re.Pattern], lines: list[str]) -> tuple[int, re.Match] | None:
    for index in range(len(lines) - 1, -1, -1):
        for pattern in patterns:
            match = pattern.search(lines[index])
            if match:
                return index, match
    return None


def read_screen(backend: Backend, pane: Pane | None, screen: list[str] | None, now: float) -> Screen:
    """Classify a pane. The order matters and is deliberate:

    1. dead — no session, or the pane's process exited;
    2. dialog — keys are awaited; typing here could choose an answer (Claude
       exits on Enter at its bypass warning), so it outranks everything;
    3. a CLI retrying or resuming by itself (it also shows its busy marker);
    4. busy — working: an old limit banner still on screen does not matter;
    5. other limits (manual, usage, rate), only when no user input was echoed
       after the banner — otherwise it is history, not the present;
    6. idle — the prompt line is visible; unsent text in it is reported;
    7. unknown.
    """
    if pane is None:
        return Screen("dead", "no session")
    if pane.dead:
        # tmux marks the pane dead at end of output, and learns the status a moment later.
        return Screen("dead", "exited" if pane.dead_status is None else f"exited with status {pane.dead_status}")
    lines = bottom_lines(screen or [], backend.screen_lines)
    patterns = PatternSet.of(backend)
    text = "\n".join(lines)

    dialog_at = first_match(patterns.dialog, lines)
    if dialog_at is not None:
        return Screen("dialog", lines[dialog_at].strip(), lines=lines)

    prompt = last_match(patterns.idle, lines)
    prompt_at = prompt[0] if prompt else len(lines)
    typed = typed_input(patterns, lines, prompt) if prompt else ""

    def fresh_banner(kind_patterns: list[re.Pattern]) -> int | None:
        """A banner counts only if no echoed user prompt line sits between it and the input box."""
        found = last_match(kind_patterns, lines)
        if found is None:
            return None
        index = found[0]
        for later in range(index + 1, prompt_at):
            if any(pattern.search(lines[later]) for pattern in patterns.idle):
                return None
        return index

    limits = dict(patterns.limits)
    retrying_at = fresh_banner(limits["retrying"])
    if retrying_at is not None:
        return Screen("limited", lines[retrying_at].strip(), "retrying", input_text=typed, lines=lines)
    if any(pattern.search(text) for pattern in patterns.busy):
        return Screen("busy", input_text=typed, lines=lines)
    for kind in ("manual", "usage", "rate"):
        index = fresh_banner(limits[kind])
        if index is not None and not (kind == "rate" and typed):  # text typed after a short API error: retrying
            banner = " ".join(line.strip() for line in lines[index:index + 3])
            # Grace: a banner still on screen just after its "resets 3pm" means today's 3pm, not tomorrow's.
            reset = reset_time_from_banner(banner, datetime.fromtimestamp(now).astimezone(),
                                           grace=timedelta(hours=1)) if kind == "usage" else None
            return Screen("limited", lines[index].strip(), kind, reset.timestamp() if reset else None,
                          input_text=typed, lines=lines)
    if prompt:
        return Screen("idle", input_text=typed, lines=lines)
    return Screen("unknown", lines=lines)


MAX_SCREEN_LINE = 500  # characters of a screen line the classifier reads: a pattern's cost stays bounded


def bottom_lines(screen: list[str], count: int) -> list[str]:
    """The screen from its ``count``-th last non-blank line down (blank lines inside kept, trailing ones dropped)."""
    lines = [line[:MAX_SCREEN_LINE].rstrip() for line in screen]
    while lines and not lines[-1].strip():
        lines.pop()
    filled = [index for index, line in enumerate(lines) if line.strip()]
    return lines[filled[-count]:] if len(filled) >= count else lines[filled[0]:] if filled else []


def typed_input(patterns: PatternSet, lines: list[str], prompt: tuple[int, re.Match]) -> str:
    """The text in the input box: the prompt line's ``input`` group plus wrapped lines up to a rule or blank line."""
    index, match = prompt
    first = match.groupdict().get("input") or ""
    parts = [first.strip()]
    for line in lines[index + 1:]:
        if RULE_LINE.match(line) or not line.strip():
            break
        parts.append(line.strip())
    text = " ".join(part for part in parts if part)
    if any(pattern.search(text) for pattern in patterns.placeholders):
        return ""
    return text


def dialog_rule(backend: Backend, screen: Screen) -> tuple[re.Pattern, list[str]] | None:
    """The backend's rule (pattern, keys) that answers this dialog, or None if it is not a known one."""
    text = "\n".join(line.strip() for line in screen.lines)
    for pattern, keys in PatternSet.of(backend).dialog_keys:
        if pattern.search(text):
            return pattern, keys
    return None


def dialog_answer(backend: Backend, screen: Screen) -> list[str] | None:
    """The keys that answer this dialog by the backend's rules, or None."""
    rule = dialog_rule(backend, screen)
    return rule[1] if rule else None


# -- reset times ------------------------------------------------------------------
# From a limit banner to the moment the limit resets. Many forms: clock times with
# am/pm and an IANA zone, weekdays, dates, durations, Codex's "try again in/at",
# epochs. Each form has real examples in tests/test_limits.py.

#: An exact instant printed by the CLI or its API: Claude print mode ``…reached|<epoch>``
#: (seconds, or milliseconds when 13 digits) and Codex's JSON error ``"resets_at":<epoch>``.
_EPOCH_RESET = re.compile(
    r"(?:limit reached\||\"?resets_at\"?\s*[:=]\s*)(?P<epoch>\d{13}|\d{10})(?!\d)", re.IGNORECASE)
_SECONDS_RESET = re.compile(r"\"?resets_in_seconds\"?\s*[:=]\s*(?P<seconds>\d{1,12})(?!\d)", re.IGNORECASE)

#: The words after which a reset time is printed. Durations are tried before clock times at the
#: same spot, so "resets in 30h" is a duration and "resets 3pm" a clock time.
_RESET_TRIGGER = re.compile(
    r"(?P<duration>\b(?:resets?\s+in|try\s+again\s+in|retrying\s+in|retry\s+after|reset\s+after)\b)"
    r"|(?P<clock>\b(?:resets?(?:\s+(?:at|on))?|try\s+again\s+(?:at|after)|automatically\s+at"
    r"|wait\s+until|regain\s+access\s+on)\b)",
    re.IGNORECASE)
#: Last resort for a bare "in 20s" / "in 5 minutes" when no trigger above gave a time.
_BARE_IN = re.compile(r"\bin\b", re.IGNORECASE)

_WEEKDAY_NUMBERS = {
    "mon": 0, "monday": 0, "tue": 1, "tues": 1, "tuesday": 1, "wed": 2, "weds": 2, "wednesday": 2,
    "thu": 3, "thur": 3, "thurs": 3, "thursday": 3, "fri": 4, "friday": 4,
    "sat": 5, "saturday": 5, "sun": 6, "sunday": 6,
}
_MONTH_NUMBERS = {
    "jan": 1, "january": 1, "feb": 2, "february": 2, "mar": 3, "march": 3, "apr": 4, "april": 4,
    "may": 5, "jun": 6, "june": 6, "jul": 7, "july": 7, "aug": 8, "august": 8,
    "sep": 9, "sept": 9, "september": 9, "oct": 10, "october": 10, "nov": 11, "november": 11,
    "dec": 12, "december": 12,
}


def _alternation(names) -> str:
    # Longest first, so "tuesday" is not cut to "tue" and leave "sday" behind.
    return "|".join(sorted(names, key=len, reverse=True))


#: What follows a clock trigger: [weekday] [date] [time] [zone], at least one of the first three.
#: Shapes seen: "3am", "8:10pm", "6:44 PM", "15:00", "Mon 12:00am", "Oct 31, 9am",
#: "May 5 at 9pm", "Oct 24", "Jul 5th, 2026 8:19 PM", "Aug 10, 2026, 11:12 AM",
#: "September 6, 2026, 11:15", "2025-06-01 at 00:00 UTC", each optionally "(Europe/Berlin)".
_WHEN = re.compile(
    r"""
    :?\s*
    (?:(?P<weekday>""" + _alternation(_WEEKDAY_NUMBERS) + r""")\b\.?,?\s*)?
    (?:
        (?P<month>""" + _alternation(_MONTH_NUMBERS) + r""")\b\.?\s*
        (?P<day>\d{1,2})(?:st|nd|rd|th)?(?![\d:])
        (?:,?\s*(?P<year>\d{4})(?![\d:]))?
      | (?P<iso_year>\d{4})-(?P<iso_month>\d{1,2})-(?P<iso_day>\d{1,2})(?!\d)
    )?
    (?:(?:T|,?\s*(?:at\s+)?)
        (?:
            (?P<hour>\d{1,2}):(?P<minute>\d{2})(?::\d{2})?(?!\d)(?:\s*(?P<ampm>[ap])\.?m\b\.?)?
          | (?P<bare_hour>\d{1,2})\s*(?P<bare_ampm>[ap])\.?m\b\.?
        )
    )?
    (?:\s*\((?P<zone>[A-Za-z][\w+\-]{0,40}(?:/[\w+\-]{1,40}){0,3})\)|\s+(?P<utc>UTC|GMT)\b|(?P<zulu>Z)\b)?
    """,
    re.IGNORECASE | re.VERBOSE)

#: One "<amount><unit>" of a duration: "4h", "51m", "2 days", "1 hr", "3 seconds".
_DURATION_PART = re.compile(
    r"(?P<amount>\d{1,12}(?:\.\d{1,6})?)\s*"
    r"(?P<unit>milliseconds?|ms|days?|d|hours?|hrs?|h|minutes?|mins?|m|seconds?|secs?|s)(?![a-z])",
    re.IGNORECASE)
_DURATION_SEPARATOR = re.compile(r"[\s,]*(?:and\s+)?", re.IGNORECASE)
#: Codex's "try again in less than a minute", and the odd "in a minute" / "an hour".
_DURATION_WORDS = re.compile(r"(?:less than )?an? (?P<unit>second|minute|hour|day)\b", re.IGNORECASE)
_SECONDS_PER_UNIT = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def system_local_zone() -> tzinfo:
    """The machine's local zone, as a DST-aware ``ZoneInfo`` whenever the system allows.

    Trap: ``datetime.now().astimezone().tzinfo`` is a *fixed* offset, so "3am tomorrow"
    computed with it is an hour off across a DST change. Prefer, in order: ``$TZ`` when it
    names an IANA zone, then ``/etc/localtime``; only then the fixed offset (a ``$TZ`` in POSIX
    form like ``EST5EDT,M3.2.0,M11.1.0``, or a system without zone files).
    """
    fixed_offset = datetime.now().astimezone().tzinfo or timezone.utc
    tz_name = os.environ.get("TZ", "").lstrip(":")
    if tz_name:
        # $TZ overrides /etc/localtime; a POSIX-form $TZ is only known to the C library.
        return _zone_named(tz_name) or fixed_offset
    from zoneinfo import ZoneInfo

    try:
        with open("/etc/localtime", "rb") as zone_file:
            return ZoneInfo.from_file(zone_file, key="localtime")
    except (OSError, ValueError):
        # No zone file (Windows, minimal containers): the fixed offset is all there is.
        return fixed_offset


def reset_time_from_banner(
    text: str,
    now: datetime,
    local_tz: tzinfo | None = None,
    *,
    grace: timedelta = timedelta(0),
) -> datetime | None:
    """When the limit named in ``text`` resets, as an aware UTC datetime; ``None`` if it says not.

    ``text`` is a banner line, possibly with the line or two below it. ``now`` is an aware
    datetime (a naive one is read as ``local_tz``). ``local_tz`` is the zone for times printed
    without one; it defaults to the machine's (``system_local_zone()``) — pass it to pin tests.

    Forms, tried in this order (the first that yields a time wins):

    1. Exact instants: ``Claude AI usage limit reached|1767225600`` (13 digits = milliseconds),
       Codex JSON ``"resets_at":1775317531`` / ``"resets_in_seconds":602705``.
    2. Each reset phrase in the order it appears in the text:

       - durations after ``resets in``, ``try again in``, ``retrying in``, ``retry after``,
         ``reset after``: ``4h51m``, ``30h``, ``1d 5h``, ``1 hr 47 min``,
         ``2 days 17 hours 14 minutes``, ``4 hours and 12 minutes``, ``less than a minute``
         (= 60 s) → ``now`` + duration, added to the UTC instant;
       - clock times after ``resets``, ``reset at``, ``resets on``, ``try again at/after``,
         ``continuing automatically at``, ``wait until``, ``regain access on``: ``7pm``,
         ``8:10pm``, ``12:00am``, ``6:44 PM``, ``15:00`` (24 h), optionally followed by an IANA
         zone in parentheses ``(America/Chicago)``, ``(Etc/GMT+5)``, ``(UTC)`` or a bare ``UTC``.
         → the next time that wall clock reads so, at or after ``now`` (tomorrow if already
         past today in that zone);
       - a weekday before the time, ``Mon 12:00am``, ``Tuesday 9am`` → the next such day and
         time (this week if still ahead, else next week);
       - a date, ``Jan 5, 3pm``, ``Nov 30 at 5:00 PM``, ``Oct 24`` (midnight),
         Codex ``Jul 5th, 2026 8:19 PM``, ``2025-06-01 at 00:00 UTC`` → that date; without a
         year, this year unless that is more than a day past, then next year.
    3. A bare ``in 20s`` / ``in 5 minutes`` anywhere in the text.

    A bare number (``resets 3``) is refused: without am/pm or minutes it is not a time.

    ``grace``: a clock or weekday time that passed less than ``grace`` ago is returned as is
    (in the past) instead of a day or a week later. Use it when the banner may still be on
    screen after its reset, so the caller resumes now instead of waiting a day.

    Zones: named zones keep their case; an unknown one counts as no zone. The result is always
    in UTC (convert with ``.astimezone()`` to show it). Why: a datetime inside the repeated
    fall-back hour carries ``fold=1``, and Python's ``==`` between it and a datetime in any other
    zone is always False (PEP 495) — a UTC result cannot fall into that trap.

    Never raises on any text: numbers too large for a datetime, impossible dates
    (``Feb 30``) and non-strings all give ``None``.
    """
    if not isinstance(text, str) or not isinstance(now, datetime):
        return None
    if local_tz is None:
        local_tz = system_local_zone()
    if now.tzinfo is None or now.utcoffset() is None:
        now = now.replace(tzinfo=local_tz)
    flat = _flatten_screen_text(text)
    try:
        instant = _exact_reset_instant(flat, now)
        if instant is not None:
            return instant
        for trigger in _RESET_TRIGGER.finditer(flat):
            # Enough text for the longest form ("September 30th, 2026, 11:59 PM (America/…)").
            following = flat[trigger.end():trigger.end() + 100]
            if trigger.group("duration"):
                reset = _reset_after_duration(following, now)
            else:
                reset = _reset_at_wall_clock(following, now, local_tz, grace)
            if reset is not None:
                return reset
        for bare_in in _BARE_IN.finditer(flat):
            reset = _reset_after_duration(flat[bare_in.end():bare_in.end() + 60], now)
            if reset is not None:
                return reset
    except (ValueError, OverflowError, OSError):
        # A garbled or fuzzed banner ("in 99999999999 days", "Feb 30", a 13-digit epoch past
        # year 9999) names no usable time. None sends the caller to its fallback wait.
        return None
    return None


def _flatten_screen_text(text: str) -> str:
    """One line: escape sequences gone, box edges and all whitespace folded, apostrophes straight."""
    # Why: tmux captures may keep colour codes; wrapped banners continue on the next row,
    # sometimes inside a box ("│"); Claude and Codex print typographic apostrophes; ICU puts
    # U+202F before "PM". str.split() folds every Unicode space, NBSP and U+202F included.
    text = re.sub(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]", "", text)
    text = text.translate({0x2019: "'", 0x2018: "'", 0x02BC: "'", 0x2502: " ", 0x2503: " "})
    return " ".join(text.split())


def _exact_reset_instant(flat: str, now: datetime) -> datetime | None:
    epoch = _EPOCH_RESET.search(flat)
    if epoch:
        digits = epoch.group("epoch")
        seconds = int(digits) / 1000 if len(digits) == 13 else int(digits)
        return datetime.fromtimestamp(seconds, timezone.utc)
    remaining = _SECONDS_RESET.search(flat)
    if remaining:
        return _add_real_time(now, timedelta(seconds=int(remaining.group("seconds"))))
    return None


def _reset_after_duration(following: str, now: datetime) -> datetime | None:
    """``now`` + the duration that ``following`` starts with, or None if it starts with none."""
    following = following.lstrip(" :")
    words = _DURATION_WORDS.match(following)
    if words:
        unit_seconds = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}[words.group("unit").lower()]
        return _add_real_time(now, timedelta(seconds=unit_seconds))
    total_seconds = 0.0
    position = 0
    found_part = False
    while True:
        part = _DURATION_PART.match(following, position)
        if not part:
            break
        found_part = True
        unit = part.group("unit").lower()
        # Milliseconds first: "ms" and "milli…" start with the "m" of minutes.
        seconds_per_unit = 0.001 if unit == "ms" or unit.startswith("milli") else _SECONDS_PER_UNIT[unit[0]]
        total_seconds += float(part.group("amount")) * seconds_per_unit
        position = _DURATION_SEPARATOR.match(following, part.end()).end()
    if not found_part:
        return None
    return _add_real_time(now, timedelta(seconds=total_seconds))


def _add_real_time(now: datetime, duration: timedelta) -> datetime:
    # Why UTC: aware + timedelta keeps the wall clock in a ZoneInfo zone, which is an hour off
    # across a DST change; a duration is real elapsed time.
    return now.astimezone(timezone.utc) + duration


def _reset_at_wall_clock(following: str, now: datetime, local_tz: tzinfo, grace: timedelta) -> datetime | None:
    """The instant named by a clock/weekday/date expression at the start of ``following``."""
    when = _WHEN.match(following)
    if not when:
        return None
    clock = _hour_and_minute(when)
    if clock is None:
        return None
    hour, minute = clock
    weekday = when.group("weekday")
    explicit_year, month, day = _year_month_day(when)
    has_time = when.group("hour") is not None or when.group("bare_hour") is not None
    if not (has_time or weekday or month):
        return None

    zone = None
    if when.group("utc") or when.group("zulu"):
        zone = timezone.utc
    elif when.group("zone"):
        zone = _zone_named(when.group("zone"))
    if zone is None:
        zone = local_tz
    today_there = now.astimezone(zone).date()

    if month is not None:
        year = explicit_year if explicit_year is not None else today_there.year
        reset = _wall_clock_instant(date(year, month, day), hour, minute, zone)
        if explicit_year is None and reset < now - timedelta(days=1):
            reset = _wall_clock_instant(date(year + 1, month, day), hour, minute, zone)
        return reset

    if weekday is not None:
        days_ahead = (_WEEKDAY_NUMBERS[weekday.lower()] - today_there.weekday()) % 7
        reset_day = today_there + timedelta(days=days_ahead)
        reset = _wall_clock_instant(reset_day, hour, minute, zone)
        if reset < now - grace:
            reset = _wall_clock_instant(reset_day + timedelta(days=7), hour, minute, zone)
        return reset

    reset = _wall_clock_instant(today_there, hour, minute, zone)
    if reset < now - grace:
        reset = _wall_clock_instant(today_there + timedelta(days=1), hour, minute, zone)
    return reset


def _hour_and_minute(when: re.Match) -> tuple[int, int] | None:
    """24-hour (hour, minute); (0, 0) when no time was printed; None when the time is impossible."""
    if when.group("hour") is not None:
        hour, minute, ampm = int(when.group("hour")), int(when.group("minute")), when.group("ampm")
    elif when.group("bare_hour") is not None:
        hour, minute, ampm = int(when.group("bare_hour")), 0, when.group("bare_ampm")
    else:
        return 0, 0  # a date or weekday alone: the start of that day
    if minute > 59:
        return None
    if ampm is None:
        return (hour, minute) if hour <= 23 else None
    if not 1 <= hour <= 12:
        return None
    # 12am is midnight and 12pm is noon: hour % 12 gives 0 for both, pm adds 12.
    return hour % 12 + (12 if ampm.lower() == "p" else 0), minute


def _year_month_day(when: re.Match) -> tuple[int | None, int | None, int | None]:
    if when.group("month"):
        year = int(when.group("year")) if when.group("year") else None
        return year, _MONTH_NUMBERS[when.group("month").lower()], int(when.group("day"))
    if when.group("iso_year"):
        return int(when.group("iso_year")), int(when.group("iso_month")), int(when.group("iso_day"))
    return None, None, None


def _wall_clock_instant(day: date, hour: int, minute: int, zone: tzinfo) -> datetime:
    """The instant (in UTC) when ``zone``'s wall clock reads ``day hour:minute``; the later if two."""
    # Why both folds: in the spring-forward gap (2:30am) and in the repeated fall-back hour
    # (1:30am) the two folds give two instants. The later is never before the real reset, so
    # a resumed agent does not hit the same limit again and roll its wait to tomorrow.
    first = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
    second = first.replace(fold=1)
    return max(first.astimezone(timezone.utc), second.astimezone(timezone.utc))


def _zone_named(name: str) -> tzinfo | None:
    """The zone a banner names, or None if this machine does not know it."""
    # Why not lower-case it: zoneinfo keys are case-sensitive file names on Linux.
    if name.upper() in ("UTC", "GMT", "UCT", "Z"):
        return timezone.utc  # also works without the tzdata files
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


# ============================================================================
# Sending
#   A message is data: control characters stripped, typed literally, submitted
#   with the backend's key, and verified on screen. Never typed into a dialog.
# ============================================================================

ANSI_SEQUENCE = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]")


def clean_message(text: str) -> str:
    """What may be typed into an agent: no escape sequences, no control characters.

    Newlines survive (a multi-line message goes as one bracketed paste); a tab
    becomes four spaces because Tab means 'complete' to many CLIs.
    """
    text = ANSI_SEQUENCE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = CONTROL_CHARS.sub("", text.replace("\t", "    "))
    return text.strip()


@dataclass
class Delivery:
    """The outcome of one ``deliver``: only ``delivered`` means it was seen to land."""

    outcome: str  # delivered, held, failed
    detail: str  # why, in words
    presses: int = 0  # how many times the submit key was pressed

    @property
    def ok(self) -> bool:
        return self.outcome == "delivered"


def squeeze(text: str) -> str:
    """Text without whitespace, for comparing what a screen shows with what was typed (wrapping differs)."""
    return re.sub(r"\s+", "", text)


def output_below(lines: list[str], tail: str) -> int:
    """Non-blank lines below the last line that holds ``tail`` (the end of the typed text); -1 if none does."""
    for index in range(len(lines) - 1, -1, -1):
        if tail in squeeze(lines[index]):
            return sum(1 for line in lines[index + 1:] if line.strip())
    return -1


class _PaneDied(Exception):
    """The pane died while a delivery was being verified."""


class Sender:
    """Delivers messages to panes, one sender per session at a time.

    Protocol (SPEC §6): lock the session; look; dead → fail; in copy mode →
    leave it; dialog → hold (never type into it); foreign text in the input
    box → hold (a human may be typing); type the text literally, or paste it
    bracketed if it has several lines; wait the backend's submit delay; press
    the submit key; verify that it landed — the agent turned busy or our text
    left the input box — and press again up to three times if not.
    """

    VERIFY_WINDOW = 2.5  # seconds to watch for a landing after each press
    EXTRA_PRESSES = 3

    def __init__(self, tmux: Tmux, lock_dir: Path, clock: Clock | None = None):
        self.tmux = tmux
        self.lock_dir = lock_dir
        self.clock = clock or Clock()

    def look(self, session: str, backend: Backend) -> tuple[Pane | None, Screen]:
        pane = self.tmux.list_panes().get(session)
        if pane is None or pane.dead:
            return pane, read_screen(backend, pane, None, self.clock.now())
        screen = self.tmux.capture_many([pane.pane_id]).get(pane.pane_id, [])
        return pane, read_screen(backend, pane, screen, self.clock.now())

    PASTE_OVER = 400  # characters: a longer line goes as one paste (typed fast, a CLI splits it into a paste)

    def deliver(self, session: str, backend: Backend, text: str, allow_unknown: bool = False,
                command: bool = False) -> Delivery:
        """Deliver ``text``. ``allow_unknown`` lets a human's ``send`` type at a screen no pattern
        explains (the watchdog never does: an unknown screen may be a menu that Enter would answer);
        ``command`` lets it send a CLI command (``/compact``) on purpose."""
        message = clean_message(text)
        if not message:
            return Delivery("failed", "empty message")
        if message[0] in backend.command_chars and not command:
            return Delivery("held", f"it starts with {message[0]!r}, which makes it a command to this CLI "
                                    f"(`send --command` runs it as one)")
        if message[0] in backend.space_chars:
            message = " " + message  # "!rm x" typed first would run in shell mode; after a space it is text
        with file_lock(self.lock_dir / f"{session}.send.lock", timeout=60):
            pane, screen = self.look(session, backend)
            if pane is None or screen.state == "dead":
                return Delivery("failed", f"session {session} is {screen.detail or 'gone'}")
            if pane.in_mode:
                self.tmux.leave_copy_mode(pane.pane_id)
                pane, screen = self.look(session, backend)
            if screen.state == "dialog":
                return Delivery("held", f"a dialog is open ({screen.detail[:60]}); not typed into it")
            if screen.state == "unknown" and not allow_unknown:
                return Delivery("held", "the screen shows no prompt this backend knows; not typed into it")
            ours = bool(screen.input_text) and squeeze(screen.input_text) == squeeze(message)
            if screen.input_text and not ours:
                return Delivery("held", f"the input box already holds text ({screen.input_text[:40]!r})")
            if ours:
                pass  # our own earlier try still sits in the box: submit it rather than type it twice
            elif "\n" in message or len(message) > self.PASTE_OVER:
                self.tmux.paste(pane.pane_id, message)
            else:
                self.tmux.send_text(pane.pane_id, message)
            self.clock.sleep(backend.submit_delay)
            _, typed = self.look(session, backend)
            if typed.state == "dialog":  # our typing opened a menu (a "/" or "@" completion): do not submit
                return Delivery("held", f"typing opened a dialog ({typed.detail[:60]}); not submitted")
            for press in range(1, self.EXTRA_PRESSES + 2):
                self.tmux.send_keys(pane.pane_id, backend.submit_key)
                try:
                    verdict = self._watch_landing(session, backend, typed, screen.state, message)
                except _PaneDied as died:
                    return Delivery("failed", f"the agent exited after the submit key ({died})", presses=press)
                if verdict:
                    return Delivery("delivered", verdict, presses=press)
            return Delivery("failed", f"pressed {backend.submit_key} {self.EXTRA_PRESSES + 1} times; the text "
                                      f"still sits in the input box", presses=self.EXTRA_PRESSES + 1)

    KEY_GAP = 0.3  # seconds between the keys of a dialog answer

    def answer_dialog(self, session: str, backend: Backend) -> str:
        """Answer a known dialog by the backend's rules, checking each step; returns what happened.

        All keys but the last move a selection; if the screen still matches the
        rule afterwards the move was lost (Claude Code redraws its trust dialog
        half a second after showing it, undoing an early Down), and the final key
        — Enter, which on "No, exit" quits the CLI — is not pressed.
        """
        with file_lock(self.lock_dir / f"{session}.send.lock", timeout=60):
            pane, screen = self.look(session, backend)
            rule = dialog_rule(backend, screen) if screen.state == "dialog" else None
            if pane is None or rule is None:
                return "no known dialog on screen any more"
            pattern, keys = rule
            for key in keys[:-1]:
                self.tmux.send_keys(pane.pane_id, key)
                self.clock.sleep(self.KEY_GAP)
            if len(keys) > 1:
                _, moved = self.look(session, backend)
                again = dialog_rule(backend, moved) if moved.state == "dialog" else None
                if again is not None and again[0].pattern == pattern.pattern:
                    return f"pressed {' '.join(keys[:-1])} but the selection did not move; {keys[-1]} held back"
            self.tmux.send_keys(pane.pane_id, keys[-1])
            return f"pressed {' '.join(keys)}"

    def press(self, session: str, backend: Backend, keys: list[str], settle: float = 1.0) -> tuple[Screen, Screen]:
        """Press ``keys`` (tmux key names) one by one, under the session's send lock; returns the
        screen before and ``settle`` seconds after (a person wants to see the result)."""
        with file_lock(self.lock_dir / f"{session}.send.lock", timeout=60):
            pane, before = self.look(session, backend)
            if pane is None or pane.dead:
                raise RuntimeFailure(f"session {session} is not running ({before.detail})")
            if pane.in_mode:
                self.tmux.leave_copy_mode(pane.pane_id)
            for key in keys:
                self.tmux.send_keys(pane.pane_id, key)
                self.clock.sleep(self.KEY_GAP)
            if not settle:
                return before, before
            self.clock.sleep(settle)  # let the CLI redraw
            return before, self.look(session, backend)[1]

    def _watch_landing(self, session: str, backend: Backend, typed: Screen, was: str, message: str = "") -> str:
        """Why we believe the message landed, or '' if it did not within the window.

        Landed: the agent turned busy, limited or showed a dialog (it reacted), the
        input box emptied, or new output appeared below the submitted line (a REPL
        that prints its answer under the line it took without drawing a new prompt).
        A state the agent was already in before the submit key proves nothing.
        Where the backend's prompt pattern shows no typed text (opencode's box), the
        message itself marks the submitted line.
        """
        tail = squeeze(typed.input_text)[-16:]
        mark = tail or squeeze(message)[-16:]  # what marks the submitted line on screen
        below = output_below(typed.lines, mark)
        deadline = self.clock.monotonic() + self.VERIFY_WINDOW
        while True:
            self.clock.sleep(0.15)
            _, screen = self.look(session, backend)
            if screen.state == "dead":
                raise _PaneDied(screen.detail)
            if screen.state == "dialog":  # the agent reacted with a question: never press again into it
                return f"the agent answered with a dialog ({screen.detail[:50]})"
            if screen.state in ("busy", "limited") and was != screen.state:
                return f"the agent turned {screen.state}"
            box = squeeze(screen.input_text)
            if mark and below >= 0 and mark not in box and output_below(screen.lines, mark) > below:
                return "new output below the submitted line"
            if screen.state in ("idle", "busy", "limited") and tail and tail not in box:
                return "the input box emptied"
            if self.clock.monotonic() > deadline:
                return ""


# ============================================================================
# Lifecycle
#   Starting, observing and stopping agents and services. Checks decide
#   (pure: config, state, observations, now → actions); a Team acts.
# ============================================================================

SERVICE_BACKEND = Backend(name="(service)")  # services are only alive or dead: no patterns


@dataclass
class Seen:
    """One unit as observed this tick."""

    unit: Agent | Service
    pane: Pane | None  # None: no session (or a session someone else owns)
    screen: Screen
    foreign: bool = False  # a session with our name exists but another config started it


@dataclass
class Action:
    """One thing the act step should do, and why (the reason lands in the event log)."""

    kind: str  # start (a fresh session, ending the old one), send, keys, mark (a lifecycle move), event
    unit: str  # the agent or service it concerns
    reason: str  # why, in words
    text: str = ""  # send: the message; mark: the new lifecycle state
    keys: list[str] = field(default_factory=list)  # keys: what to press
    purpose: str = ""  # send: kickoff, wake, nudge, ping, resume; event: its kind
    memory: dict[str, Any] = field(default_factory=dict)  # record updates once carried out (not if held)
    records: list[dict] = field(default_factory=list)  # loop: token-log lines to append


def backend_of(cfg: Config, unit: Agent | Service) -> Backend:
    return cfg.backends[unit.backend] if isinstance(unit, Agent) else SERVICE_BACKEND


def observe(cfg: Config, tmux: Tmux, now: float) -> dict[str, Seen]:
    """Every unit's pane and screen: one ``list-panes`` and one batched capture, whatever the team size."""
    panes = tmux.list_panes()
    mine: dict[str, Pane] = {}
    foreign: set[str] = set()
    for unit in cfg.units():
        pane = panes.get(unit.session)
        if pane is not None and pane.owner != cfg.owner:
            foreign.add(unit.name)
        elif pane is not None:
            mine[unit.name] = pane
    if any(pane.dead and pane.dead_status is None for pane in mine.values()):
        tmux.reap()
        panes = tmux.list_panes()
        mine = {name: panes.get(pane.session, pane) for name, pane in mine.items()}
    wanted = [pane.pane_id for name, pane in mine.items() if not pane.dead and isinstance(cfg.unit(name), Agent)]
    screens = tmux.capture_many(wanted)
    seen = {}
    for unit in cfg.units():
        pane = mine.get(unit.name)
        screen_lines = screens.get(pane.pane_id) if pane else None
        if isinstance(unit, Service) and pane is not None and not pane.dead:
            screen = Screen("running")
        else:
            screen = read_screen(backend_of(cfg, unit), pane, screen_lines, now)
        seen[unit.name] = Seen(unit, pane, screen, foreign=unit.name in foreign)
    return seen


@dataclass
class RepoView:
    """The work repo's remote branch as observed this tick (one fetch, a few reads)."""

    head: str = ""  # the remote branch's head commit
    commits: list[Commit] = field(default_factory=list)  # new since the hand-off's baseline, oldest first
    rewritten: bool = False  # the baseline is no longer in the branch's history (a force-push)
    status: str | None = None  # the current phase's status file at head (None: not there)
    status_phase: str = ""  # the phase whose status file that is (the current one when it was read)
    inboxes: dict[str, str | None] = field(default_factory=dict)  # inbox file → its text at head (None: not there)
    error: str = ""  # why the remote could not be read this tick
    resting: bool = False  # not read: backing off after failures


class World(dict):
    """Everything one tick observed: each unit's pane and screen (name → ``Seen``), the repo, and
    each agent's cumulative token usage from its transcripts."""

    repo: RepoView | None = None  # None: no [loop], nothing to read
    tokens: dict[str, list[int]] | None = None  # None: not read this tick
    held: dict[str, Sighting] | None = None  # agent → the sessions its CLI was seen in (Codex: holding; opencode: begun)


def observe_repo(cfg: Config, git: Git, state: dict, now: float) -> RepoView | None:
    """Fetch the remote branch once and read what the hand-off and the phase machine need."""
    if cfg.loop is None or (not cfg.loop.phases and not has_handoff(cfg)):
        return None
    loop_cfg, loop = cfg.loop, loop_of(state)
    if now < loop.git_retry_at:
        return RepoView(resting=True)
    try:
        git.fetch(loop_cfg.remote, loop_cfg.branch)
        head = git.head(loop_cfg.remote, loop_cfg.branch)
        if not head:
            raise RuntimeFailure(f"{loop_cfg.remote}/{loop_cfg.branch}: no such branch in {loop_cfg.folder}")
        view = RepoView(head=head)
        if loop.baseline and loop.baseline != head:
            known = git.has_commit(loop.baseline)
            view.rewritten = not known or not git.is_ancestor(loop.baseline, head)
            # A baseline git no longer knows (gc'd after a force-push, a new clone): nothing can be told
            # apart from old history, so the head becomes the new baseline and nothing is pinged.
            view.commits = git.commits(head, loop.baseline, limit=500) if known else []
        phase = current_phase(cfg, state)
        if phase is not None:
            view.status, view.status_phase = git.show(head, in_subdir(loop_cfg, phase.status)), phase.id
        for inbox in loop_cfg.handoff.inboxes:
            view.inboxes[inbox.file] = git.show(head, in_subdir(loop_cfg, inbox.file))
        return view
    except RuntimeFailure as failure:
        return RepoView(error=str(failure))
    except Exception as error:  # odd git output must not stop the tick: reported and retried like a failure
        return RepoView(error=f"reading {loop_cfg.folder}: {error!r}")


def in_subdir(loop: LoopConfig, name: str) -> str:
    """A status or inbox file's path in the work repo."""
    return f"{loop.subdir.strip('/')}/{name}".lstrip("/")


def has_handoff(cfg: Config) -> bool:
    return cfg.loop is not None and bool(cfg.loop.handoff.claim_pings or cfg.loop.handoff.review_pings
                                         or cfg.loop.handoff.inboxes)


def current_phase(cfg: Config, state: dict) -> Phase | None:
    """The phase being worked on: the one the machine records, else the first not done."""
    if not cfg.loop or not cfg.loop.phases:
        return None
    loop = loop_of(state)
    found = next((phase for phase in cfg.loop.phases if phase.id == loop.current), None)
    if found is None:
        found = next((phase for phase in cfg.loop.phases if phase.id not in loop.done), cfg.loop.phases[-1])
    return found


def kickoff_for(cfg: Config, agent: Agent, state: dict) -> str:
    """The text an agent starts with: its prompt (who it is), then — for a loop agent — its
    current phase's kickoff (what to do now)."""
    phase = current_phase(cfg, state)
    loop = cfg.loop
    template = agent.prompt_text
    if agent.kind == "loop" and phase is not None and phase.kickoff_text:
        template = "\n\n".join(part.strip() for part in (agent.prompt_text, phase.kickoff_text) if part.strip())
    values = {"name": agent.name, "phase": phase.id if phase else "",
              "status_file": in_subdir(loop, phase.status) if phase and loop else "",
              "done_marker": loop.done_marker if loop else "", "repo": str(loop.folder) if loop else "",
              "subdir": loop.subdir if loop else ""}
    return render_kickoff(template, values)


def config_marker(cfg: Config) -> str:
    """The part of every unit marker that names the config."""
    return hashlib.sha1(str(cfg.path).encode()).hexdigest()[:12] + ":"


def died_channel(cfg: Config) -> str:
    """The tmux ``wait-for`` channel our sessions' ``pane-died`` hook signals."""
    return "agents-py-died-" + config_marker(cfg).rstrip(":")


def unit_marker(cfg: Config, unit: Agent | Service) -> str:
    """An environment value every process of a unit inherits, so leftovers can be found by pid."""
    return config_marker(cfg) + unit.session


RESUME_GRACE = 30.0  # seconds: a resumed CLI that dies sooner, before taking its note, could not resume
RESUME_NOTE = ("You were restarted after {why} (at {when}); your conversation is as you left it. "
               "Carry on where you left off.")


LAST_CONVERSATION = "last"  # what a CLI resumes by itself, without an id (aider: the folder's chat history)


def resumable_session(cfg: Config, unit: Agent | Service, record: UnitRecord) -> str:
    """The session id an agent can be resumed into, LAST_CONVERSATION where its resume_args name
    no id ("": it starts fresh)."""
    if not isinstance(unit, Agent) or not record.conversing:
        return ""  # a session killed before it took its kickoff has no conversation yet
    backend = cfg.backends[unit.backend]
    if backend.restart_mode != "resume" or not backend.resume_args:
        return ""
    if not any("{session_id}" in argument for argument in backend.resume_args):
        # The CLI finds it by where it runs (aider: the chat history at the git repo's root): with a
        # sibling running the same CLI there it could be the sibling's, so a fresh start instead.
        shared = any(other.name != unit.name and repo_root(other.folder) == repo_root(unit.folder)
                     and cfg.backends[other.backend].command[:1] == backend.command[:1] for other in cfg.agents)
        return "" if shared else LAST_CONVERSATION
    if not record.session_ids:
        return ""
    # An id we gave it at start, or (Codex) the one its CLI was seen writing in this life: never an
    # older life's conversation because this one's was not seen yet.
    return record.session_ids[-1] if backend.session_id_flag else record.life_session


def repo_root(folder: Path) -> Path:
    """The git work tree ``folder`` is in (the nearest folder holding ``.git``), else ``folder``."""
    for candidate in (folder, *folder.parents):
        if (candidate / ".git").exists():
            return candidate
    return folder


def conversation_named(resumed: str) -> str:
    """How events name the conversation a life resumed."""
    return "its last conversation" if resumed == LAST_CONVERSATION else f"session {resumed}"


@dataclass
class Sighting:
    """The sessions an agent's CLI was seen in, each kind oldest first: its own (a life's
    conversation: the rollout Codex holds open, a session opencode began in its folder) and its
    sub-agents' (counted, never resumed). ``via`` says how they were seen; ``shared_with`` names
    the other agents whose sessions cannot be told apart from its own (opencode in one folder)."""

    own: list[str]
    subs: list[str] = field(default_factory=list)
    cli: str = "Codex"
    via: str = "its CLI holds the rollout open"
    shared_with: list[str] = field(default_factory=list)


def session_news(state: dict, name: str, seen: Sighting) -> tuple[str, dict] | None:
    """Of the sessions agent ``name``'s CLI was seen in, those not yet recorded for any agent: the
    event's reason and the record's memory that records them (None: nothing new). The oldest new
    own one is a new life's session; a later one is a `codex exec` its tools ran, never the
    conversation to resume. Sessions shared with other agents are billed here and resumed by none."""
    known = {session for record in state.get("units", {}).values() for session in record.session_ids}
    own = [session for session in seen.own if session not in known]
    subs = [session for session in seen.subs if session not in known]
    if not own and not subs:
        return None
    record = record_of(state, name)
    found = [f"{seen.cli} session {', '.join(own)} is {name}'s: {seen.via}"] if own else []
    if subs:
        found.append(f"{seen.cli} sub-agent session {', '.join(subs)} is {name}'s: one of its sessions started it")
    reason = "; ".join(found)
    if seen.shared_with:
        reason += f" (shared with {', '.join(seen.shared_with)}: billed here, never resumed)"
    life = record.life_session or ("" if seen.shared_with or not own else own[0])
    return reason, {"session_ids": [*record.session_ids, *own, *subs][-MAX_SESSION_IDS:], "life_session": life}


def launch_plan(cfg: Config, unit: Agent | Service, session_id: str | None,
                resume_id: str = "") -> tuple[list[str], dict[str, str]]:
    """The argv and environment a unit starts with: a new session id, or the resume of an old one."""
    backend = backend_of(cfg, unit)
    if isinstance(unit, Agent) and resume_id:
        resume = [argument.replace("{session_id}", resume_id) for argument in backend.resume_args]
        argv = [*backend.command, *resume, *unit.args]
    elif isinstance(unit, Agent):
        argv = [*backend.command, *([backend.session_id_flag, session_id] if session_id else []), *unit.args]
    else:
        argv = list(unit.command)
    env = {key: value for key, value in os.environ.items()
           if key not in ("TMUX", "TMUX_PANE", "COLUMNS", "LINES") and not key.startswith("AGENTS_PY_")}
    env.update(backend.env)
    env.update(unit.env)
    env["AGENTS_PY_UNIT"] = unit_marker(cfg, unit)
    env["AGENTS_PY_NAME"] = unit.name  # lets an agent's tools (and the simulated agent) know who they are
    env["AGENTS_PY_CONFIG"] = str(cfg.path)
    return argv, env


def missing_program(cfg: Config, unit: Agent | Service) -> str | None:
    """Why the unit's program cannot start (not on PATH, not executable), or None."""
    argv, env = launch_plan(cfg, unit, None)
    program = argv[0]
    if "/" in program:
        path = (unit.folder / program) if not os.path.isabs(program) else Path(program)
        return None if os.access(path, os.X_OK) and path.is_file() else f"{program} is not an executable file"
    return None if shutil.which(program, path=env.get("PATH")) else f"{program!r} is not on PATH"


def note(unit: str, reason: str, **changes: Any) -> Action:
    """A change to a unit's record that a check wants: the tick applies every note once all checks
    have decided, so no check sees another's changes and their order does not matter."""
    return Action("note", unit, reason, memory=changes)


def screen_since(record: UnitRecord, screen: Screen, now: float) -> float:
    """Since when the screen has shown its state (this tick, if it has just changed)."""
    return record.screen_since if record.screen == screen.state else now


def check_screens(cfg: Config, state: dict, seen: dict[str, Seen], now: float) -> list[Action]:
    """Bookkeeping: what each screen shows and since when (``status`` reads it)."""
    actions = []
    for name, look in seen.items():
        record = record_of(state, name)
        word = look.screen.state
        changes: dict[str, Any] = {}
        if record.screen != word:
            changes.update(screen=word, screen_since=now)
        if word != "dialog" and record.dialog_answers:
            changes.update(dialog_answers=0)
        # A report is made once per spell: readable again (or the dialog gone), the next one is news again.
        gone = {"needs-you"} if word != "unknown" else set()
        gone |= {"dialog"} if word != "dialog" else set()
        if gone & set(record.reported):
            changes.update(reported={key: value for key, value in record.reported.items() if key not in gone})
        if changes:
            actions.append(note(name, "screen", **changes))
    return actions


DIALOG_SETTLE = 1.0  # seconds a dialog must stay on screen before keys are pressed at it
DIALOG_MAX_ANSWERS = 3  # a known dialog still there after this many answers is left to a human
KICKOFF_RETRY = 15.0  # seconds before retrying a kickoff that did not land; doubles per try
# Seconds after an answer before a dialog with no known answer is reported: the CLI may still be moving on
# (Gemini CLI relaunches itself after the trust answer, its box on screen until the new process draws).
DIALOG_AFTER_ANSWER = 10.0


def dialog_actions(cfg: Config, agent: Agent, record: UnitRecord, screen: Screen, now: float,
                   what: str) -> list[Action]:
    """Answer a known dialog once it has settled (never twice in a row too fast, at most a few
    times); report an unknown one, or one that will not go away, once."""
    keys = dialog_answer(cfg.backends[agent.backend], screen)
    waited = now - screen_since(record, screen, now)
    if keys and record.dialog_answers < DIALOG_MAX_ANSWERS:
        if waited >= DIALOG_SETTLE and now - record.dialog_answered_at >= 2.0:
            return [Action("keys", agent.name, f"answering {what} {screen.detail[:60]!r}", keys=keys,
                           memory={"dialog_answers": record.dialog_answers + 1})]
        return []
    settled = waited >= DIALOG_SETTLE and now - record.dialog_answered_at >= DIALOG_AFTER_ANSWER
    if settled and "dialog" not in record.reported:
        why = "it did not go away after {} answers".format(DIALOG_MAX_ANSWERS) if keys else "not one it knows"
        return [Action("event", agent.name, f"needs you: a dialog waits ({why}): {screen.detail[:80]!r}; answer it "
                                            f"with `agents.py keys {agent.name} KEY…`", purpose="dialog")]
    return []


def kickoff_next_try(record: UnitRecord) -> float:
    """No kickoff is typed before this: one is in flight (typed, not yet seen to land), or the
    last ones did not land and the retries back off (``KICKOFF_RETRY`` doubling per attempt)."""
    if not record.kickoff_typed_at:
        return 0.0
    return record.kickoff_typed_at + KICKOFF_RETRY * 2 ** record.kickoff_attempts


def check_startup(cfg: Config, state: dict, seen: dict[str, Seen], now: float) -> list[Action]:
    """Bring starting agents to work: answer known start-up dialogs, then deliver the kickoff.

    The kickoff is typed once the prompt shows. Its typing time is noted before
    it is typed, so a watchdog killed meanwhile knows: if the agent is busy now,
    the kickoff was taken. A kickoff that did not land is retried with backoff.
    An agent started into a usage limit keeps its kickoff pending: it becomes
    the resume once the limit has reset. One that shows no prompt (or takes no
    kickoff) for ``max(ready_timeout, stall_idle)`` is rebooted, and counts
    towards a crash loop.
    """
    actions = []
    settings = cfg.watchdog
    for agent in cfg.agents:
        record, look = record_of(state, agent.name), seen.get(agent.name)
        if record.lifecycle != "starting" or look is None or look.foreign or paused_by_budget(cfg, state, agent):
            continue
        screen, backend = look.screen, cfg.backends[agent.backend]
        waited = now - record.started_at
        if screen.state == "dead":
            continue  # heal's business (and `up` reports it)
        if screen.state == "limited":
            continue  # check_limits waits it out and delivers the kickoff as its resume
        overdue = waited > max(backend.ready_timeout, settings.stall_idle) and agent.watch != "none"
        if overdue and screen.state == "unknown":
            if "needs-you" not in record.reported:  # never rebooted blind: it may be a question for a person
                actions.append(Action("event", agent.name, f"needs you: no prompt in {format_duration(waited)}, its "
                                                           f"screen reads unknown; not rebooted: `agents.py attach "
                                                           f"{agent.name}`", purpose="needs-you"))
            continue
        if overdue and screen.state != "dialog":
            recent = recent_restarts(record, settings, now)
            if record.never_ready >= settings.crash_loop_restarts:
                actions.append(Action("mark", agent.name, f"never ready, {record.never_ready} starts in a row; "
                                                          f"waiting for `agents.py restart {agent.name}`",
                                      text="failed"))
            else:
                actions.append(Action("start", agent.name, f"never ready: no kickoff taken in {format_duration(waited)}"
                                                           f" (screen reads {screen.state}); rebooted (restart "
                                                           f"#{record.restarts + 1})",
                                      memory={"restart_times": [*recent, now], "restarts": record.restarts + 1,
                                              "never_ready": record.never_ready + 1}))
            continue
        if screen.state == "dialog":
            actions += dialog_actions(cfg, agent, record, screen, now, "start-up dialog")
        elif screen.state == "busy" and record.kickoff and record.kickoff_typed_at:
            actions.append(Action("mark", agent.name, "kickoff taken (the agent is busy)", text="running",
                                  memory={"kickoff": "", "kickoff_attempts": 0, "never_ready": 0,
                                          "conversing": True}))
        elif screen.state == "idle" and not record.kickoff:
            actions.append(Action("mark", agent.name, "prompt ready (no kickoff)", text="running"))
        elif screen.state == "idle" and now >= kickoff_next_try(record):
            if now - screen_since(record, screen, now) < backend.ready_settle:
                continue  # the prompt has only just appeared: a CLI may still draw a start-up dialog over it
            # Noted before typing: a `restart` or a second watchdog sees the kickoff in flight, and a
            # watchdog killed meanwhile knows it may have landed (then "busy" means it was taken).
            actions.append(note(agent.name, "kickoff in flight", kickoff_typed_at=now))
            what = "resume-note" if record.resumed_from else "kickoff"
            actions.append(Action("send", agent.name, what, text=record.kickoff, purpose=what))
        elif waited > backend.ready_timeout and "slow-start" not in record.reported:
            actions.append(Action("event", agent.name, f"no prompt after {waited:.0f}s (screen reads {screen.state}); "
                                                       f"the kickoff waits", purpose="slow-start"))
    return actions


class Team:
    """The act side: carries actions out through tmux, records results and events.

    Also the place that starts and stops units, so every start gets the same
    argv, environment, session id and bookkeeping.
    """

    def __init__(self, cfg: Config, tmux: Tmux | None = None, events: EventLog | None = None,
                 clock: Clock | None = None, reaper: Reaper | None = None, store: StateStore | None = None):
        self.cfg = cfg
        self.tmux = tmux or Tmux(cfg.tmux_socket)
        self.clock = clock or Clock()
        self.reaper = reaper or Reaper()
        self.events = events or EventLog(cfg.log_dir)
        self.store = store or StateStore(cfg.state_dir, self.events)
        if getattr(self.store, "events", None) is None:
            self.store.events = self.events  # a store passed in reports its repairs here too
        self.sender = Sender(self.tmux, cfg.state_dir / "locks", self.clock)
        self.parallel = True  # deliver to several agents at once (the simulation turns it off)

    def observe(self, now: float | None = None) -> dict[str, Seen]:
        return observe(self.cfg, self.tmux, self.clock.now() if now is None else now)

    # -- starting and stopping --

    def launch(self, unit: Agent | Service, state: dict, reason: str, now: float, resume: bool = False,
               panes: dict[str, Pane] | None = None, processes: ProcessTable | None = None) -> None:
        """Start a unit's session (ending what is left of an old one) and note that it is starting."""
        make_session = self.prepare_launch(unit, state, reason, now, resume, panes, processes)
        self.store.save(state)  # the intent, before the session exists (the caller's transaction holds the lock)
        make_session()

    def prepare_launch(self, unit: Agent | Service, state: dict, reason: str, now: float, resume: bool = False,
                       panes: dict[str, Pane] | None = None,
                       processes: ProcessTable | None = None) -> Callable[[], None]:
        """End what is left of a unit's old session and write its new life into ``state``; returns
        what makes the new session, to be called once that state is saved.

        With ``resume``, an agent whose backend can resume comes back into its last conversation and
        gets a one-line note instead of its kickoff; otherwise it starts fresh with its kickoff.
        ``panes`` and ``processes`` are a look already taken (``up`` of many units looks once).

        A transaction: the new life (its kickoff, its lifecycle) is saved before the session is
        made, so a process killed in between leaves a record that says what is still to do — the
        next tick delivers the kickoff (or heals a session that never came) — not a live session
        the state knows nothing about, whose kickoff nobody would ever send. (`up` of many units
        saves once for all of them, then makes their sessions.)
        """
        record = record_of(state, unit.name)
        backend = backend_of(self.cfg, unit)
        if isinstance(unit, Agent) and backend.transcripts in ("codex", "opencode"):
            self.note_own_session(unit, record, state, now, processes)  # before its CLI ends: to resume, and to bill
        self.stop(unit, panes, processes)
        import uuid

        resumed = resumable_session(self.cfg, unit, record) if resume and not record.fresh_next else ""
        fresh_id = isinstance(unit, Agent) and backend.session_id_flag and not resumed
        session_id = str(uuid.uuid4()) if fresh_id else None
        argv, env = launch_plan(self.cfg, unit, session_id, resumed)
        record.started_at = now
        record.first_started = record.first_started or now
        record.dialog_answered_at, record.dialog_answers = 0.0, 0
        record.kickoff_typed_at, record.kickoff_attempts, record.start_failure = 0.0, 0, ""
        record.pings_in_flight = []  # a new life: its busy screen is not a ping being taken
        record.stall_clock_from = now
        record.waiting = {}
        record.reported.pop("slow-start", None)
        record.reported.pop("dialog", None)
        record.reported.pop("needs-you", None)
        record.inherited_limit = record.limit if resumed and record.limit.get("kind") == "usage" else {}
        record.limit = {}
        if isinstance(unit, Agent) and unit.wake:
            record.next_wake = now + unit.wake.interval
        if session_id:
            # Every id is kept for token accounting, up to a bound: a task re-run every few minutes
            # for months must not grow the state file without end.
            record.session_ids = [*record.session_ids, session_id][-MAX_SESSION_IDS:]
        if resumed:
            # After a death, the death and its time; otherwise what restarted it, now.
            why, when = (record.reason.split(";")[0], record.since) if record.lifecycle == "backoff" else \
                (reason.split(" (")[0] if reason.startswith("restart") else reason, now)
            record.kickoff = RESUME_NOTE.format(why=why or "a restart", when=clock_time(when or now, now))
        else:
            record.kickoff = kickoff_for(self.cfg, unit, state) if isinstance(unit, Agent) else ""
        record.resumed_from = resumed
        record.life_session = resumed if resumed != LAST_CONVERSATION else ""  # (Codex: known once seen held)
        record.conversing = bool(resumed)
        # Only a kickoff needs the prompt: without one (a service, a script-like task) it runs from here.
        transition(record, "starting" if record.kickoff else "running", reason, now, self.events, unit.name)

        def make_session() -> None:
            self.tmux.new_session(unit.session, argv, unit.folder, env, self.cfg.owner,
                                  self.cfg.state_dir / "launch", died_channel=died_channel(self.cfg))
            record.fresh_next = False  # the session is made: a failed resume has had its fresh start
            self.events.emit("start", unit.name, reason + (f"; resumed into {conversation_named(resumed)}"
                                                           if resumed else ""),
                             now=now, session=unit.session, argv=shlex.join(argv),
                             session_id=session_id or (resumed if resumed != LAST_CONVERSATION else None),
                             resumed=resumed or None)
        return make_session

    def note_own_session(self, unit: Agent, record: UnitRecord, state: dict, now: float,
                         processes: ProcessTable | None = None) -> None:
        """Record the session an agent's CLI chose itself (the rollout Codex holds open, the one
        opencode began) before a restart ends it: check_transcripts does the same every few
        seconds, and a `restart` may come sooner than its first look."""
        transcripts = self.cfg.backends[unit.backend].transcripts
        try:
            if transcripts == "codex":
                seen = codex_sightings(self.cfg, [unit.name], processes).get(unit.name)
            else:
                seen = opencode_sessions(self.cfg, state, [unit.name]).get(unit.name)
        except OSError as error:
            self.events.emit("tokens-failed", unit.name, f"looking for its session before the restart: {error}",
                             now=now)
            return
        news = session_news(state, unit.name, seen) if seen is not None else None
        if news is not None:
            remember(record, news[1])
            self.events.emit("transcript", unit.name, news[0], now=now)

    def stop(self, unit: Agent | Service, panes: dict[str, Pane] | None = None,
             processes: ProcessTable | None = None) -> list[int]:
        """Kill the unit's session and every process it left behind; returns the pids ended."""
        pane = (self.tmux.list_panes() if panes is None else panes).get(unit.session)
        if pane is not None and pane.owner != self.cfg.owner:
            raise RuntimeFailure(f"session {unit.session} exists but was not started by {self.cfg.path.name}; "
                                 f"not touching it")
        survivors = self.reaper.leftovers(self.cfg, unit, pane, processes)
        if pane is not None:
            self.tmux.kill_session(unit.session)
        return self.reaper.end(survivors)

    # -- acting --

    def carry_out(self, actions: list[Action], decided: dict[str, Any], now: float) -> None:
        """Carry out decided actions, recording each result as soon as it is known.

        Each start, mark or key press runs in a state transaction of its own, so
        a watchdog killed midway loses at most the action under way. Messages are
        delivered outside the state lock (they take seconds; a `send` or `restart`
        from the shell must not wait for them), several units in parallel, and
        their outcomes recorded together afterwards. An action whose unit changed
        since the decision (a `restart` or `down` from the shell got in between:
        its generation moved) is dropped, not carried out on stale grounds; so
        is one decided on the phase machine's memory once that moved (a `phase set`).
        """
        team = [action for action in actions if not action.unit]
        moved: list[str] = []  # the phase fields changed since the decision
        if team or "" in decided:  # the team's own memory (phase, tokens, hand-off): all of it in one transaction
            with self.store.transaction() as state:
                if "" in decided:
                    now_memory = phase_memory(loop_of(state))
                    moved = [name for name in PHASE_FIELDS if now_memory[name] != decided[""][name]]
                for action in team:
                    if moved and phase_bound(action):
                        self._skip_moved(action, moved, now)
                        continue
                    try:
                        self._act_team(action, state, now)
                    except Exception as error:
                        self.events.emit("act-failed", "", f"{action.kind} ({action.reason}): {error}", now=now,
                                         traceback=traceback_text())
            self.flush_token_records()
        for action in [a for a in actions if a.kind != "send" and a.unit]:
            if moved and phase_bound(action):
                self._skip_moved(action, moved, now)
                continue
            with self.store.transaction() as state:
                record = record_of(state, action.unit)
                if generation(record) != decided.get(action.unit):
                    self.events.emit("skipped", action.unit, f"{action.kind} ({action.reason}): the unit changed "
                                                             f"meanwhile", now=now)
                    continue
                try:
                    self._act_one(action, state, now)
                except Exception as error:  # one failing action must not stop the others
                    self._act_failed(action, record, error, now)
                decided[action.unit] = generation(record)  # our own change is expected by what follows
        sends = [action for action in actions if action.kind == "send"]
        if not sends:
            return
        current = self.store.load()
        sends = [a for a in sends if generation(record_of(current, a.unit)) == decided.get(a.unit)]
        if any(action.purpose == "ping" for action in sends):
            # Noted just before typing (as a kickoff is): a watchdog killed mid-delivery knows what may
            # have landed, and check_handoff counts them as taken if the agent is busy next tick.
            with self.store.transaction() as state:
                for action in sends:
                    if action.purpose == "ping":
                        record = record_of(state, action.unit)
                        record.pings_in_flight = [ping["key"] for ping in record.pings]
        if self.parallel and len(sends) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(8, len(sends))) as pool:
                deliveries = list(pool.map(self._deliver, sends))
        else:
            deliveries = [self._deliver(action) for action in sends]
        with self.store.transaction() as state:
            for action, delivery in zip(sends, deliveries):
                if generation(record_of(state, action.unit)) != decided.get(action.unit):
                    # A `restart` or `down` got in while it was being typed: the outcome belongs to a
                    # life that is over; applying it would clear the new life's kickoff, or revive it.
                    self.events.emit(f"{action.purpose or 'send'}-late", action.unit, f"{action.reason}: "
                                     f"{delivery.detail} (the unit changed meanwhile; nothing recorded)")
                    continue
                self._record_delivery(action, delivery, state, self.clock.now())

    def _skip_moved(self, action: Action, moved: list[str], now: float) -> None:
        """An action dropped: the phase machine moved (by hand) between its decision and now; the next
        tick decides again from what the loop says."""
        self.events.emit("skipped", action.unit, f"{action.kind} ({action.reason}): the phase machine changed "
                                                 f"meanwhile ({', '.join(moved)}: `agents.py phase set`?)", now=now)

    def _act_failed(self, action: Action, record: UnitRecord, error: Exception, now: float) -> None:
        """Report a failed action; a failed start is noted so that heal decides its backoff next tick."""
        self.events.emit("act-failed", action.unit, f"{action.kind} ({action.reason}): {error}", now=now,
                         traceback=traceback_text() if not isinstance(error, RuntimeFailure) else None)
        if action.kind == "start":
            record.start_failure = str(error)[:300] or type(error).__name__

    def flush_token_records(self) -> None:
        """Append the token records waiting in the state to the log (each once), then forget them."""
        with self.store.transaction() as state:
            loop = loop_of(state)
            for record in loop.pending_records:
                append_token_record(self.cfg.log_dir / "token-log.jsonl", record)
            loop.pending_records = []

    def _act_team(self, action: Action, state: dict, now: float) -> None:
        """A team-wide action: the loop's memory, token records, SEQUENCE-COMPLETE, and its event."""
        loop = loop_of(state)
        # Saved with the new bases first, appended by flush_token_records: a kill in between loses
        # nothing (the records wait in the state) and repeats nothing (the log is checked).
        loop.pending_records = [*loop.pending_records, *action.records]
        for key, value in action.memory.items():
            setattr(loop, key, value)
        marker = self.cfg.log_dir / "SEQUENCE-COMPLETE"
        if action.text == "complete":
            write_atomically(marker, json.dumps({"completed": iso(now), "phases": loop.done}) + "\n")
        elif action.text == "resume":
            with contextlib.suppress(FileNotFoundError):
                marker.unlink()
        if action.purpose:
            self.events.emit(action.purpose, "", action.reason, now=now)

    def _act_one(self, action: Action, state: dict, now: float) -> None:
        unit = self.cfg.unit(action.unit)
        record = record_of(state, action.unit)
        remember(record, action.memory)
        if action.kind == "keys" and unit is not None and action.purpose == "interrupt":
            self.sender.press(unit.session, backend_of(self.cfg, unit), action.keys, settle=0.0)
            self.events.emit("interrupt", action.unit, action.reason, now=now, keys=" ".join(action.keys))
        elif action.kind == "keys" and unit is not None:
            outcome = self.sender.answer_dialog(unit.session, backend_of(self.cfg, unit))
            record.dialog_answered_at = now
            self.events.emit("dialog", action.unit, f"{action.reason}: {outcome}", now=now,
                             keys=" ".join(action.keys))
        elif action.kind == "mark":
            transition(record, action.text, action.reason, now, self.events, action.unit)
        elif action.kind == "event":
            if action.purpose in ("slow-start", "dialog", "needs-you"):
                record.reported[action.purpose] = iso(now)
            self.events.emit(action.purpose or "note", action.unit, action.reason, now=now)
        elif action.kind == "start" and unit is not None:
            self.launch(unit, state, action.reason, now, resume=action.purpose == "heal")

    def _deliver(self, action: Action, allow_unknown: bool = False, command: bool = False) -> Delivery:
        """Deliver a send action. Kickoffs, wakes and resumes are texts the user wrote in the config:
        one starting with '/' is a command they meant (``/compact`` as a wake)."""
        unit = self.cfg.unit(action.unit)
        if unit is None:
            return Delivery("failed", "no such unit in the config")
        command = command or action.purpose in ("kickoff", "wake", "resume")
        try:
            return self.sender.deliver(unit.session, backend_of(self.cfg, unit), action.text, allow_unknown, command)
        except RuntimeFailure as failure:
            return Delivery("failed", str(failure))

    def _record_delivery(self, action: Action, delivery: Delivery, state: dict, now: float) -> None:
        """Log the outcome; a send's memory counts only if something was typed (held: nothing was)."""
        record = record_of(state, action.unit)
        kind = action.purpose or "send"
        if delivery.ok:
            record.conversing = True  # the CLI has written a conversation it can be resumed into
        self.events.emit(kind if delivery.ok else f"{kind}-{delivery.outcome}", action.unit,
                         f"{action.reason}: {delivery.detail}", now=now, chars=len(action.text),
                         presses=delivery.presses, preview=clean_message(action.text)[:80])
        if action.purpose == "ping":
            # A ping counts only once seen to land; one typed but not seen stays pending (and in flight:
            # if the agent is busy next tick, it took it).
            if delivery.ok:
                remember(record, action.memory)
            elif delivery.outcome == "held":
                record.pings_in_flight = []  # nothing was typed: "busy" later is not our ping
        elif delivery.outcome != "held":
            remember(record, action.memory)
        if action.purpose in ("kickoff", "resume-note"):
            if delivery.ok:
                record.kickoff, record.kickoff_attempts, record.never_ready = "", 0, 0
                transition(record, "running", f"{action.purpose} delivered", now, self.events, action.unit)
            elif delivery.outcome == "held":
                record.kickoff_typed_at = 0.0  # nothing was typed: "busy" later is not our kickoff
            else:
                record.kickoff_attempts += 1  # check_startup retries after KICKOFF_RETRY × 2^attempts

    # -- the start-up loop shared by `up` and `restart` --

    def bring_up(self, units: list[Agent | Service], reason: str, timeout: float | None = None,
                 report: Callable[[str], None] = print, keep_running: bool = False, resume: bool = False) -> bool:
        """Start the units (``keep_running``: leave any found alive by now; ``resume``: into their
        conversations where the backend can), then watch them until each has its kickoff or note,
        or the time is up. True if all came up."""
        with self.store.transaction() as state:
            now = time.time()
            panes = self.tmux.list_panes()  # one look and one /proc scan for the whole start-up
            if keep_running:  # `up`: the watchdog may have healed one since `up` looked
                units = [unit for unit in units if unit.session not in panes or panes[unit.session].dead]
            processes = ProcessTable.scan(config_marker(self.cfg))
            sessions = []
            for unit in units:
                # `up` brings back a unit that died meanwhile as a heal would: into its conversation.
                died = keep_running and record_of(state, unit.name).lifecycle in ("running", "starting", "backoff")
                sessions.append(self.prepare_launch(unit, state, reason, now, resume=resume or died, panes=panes,
                                                    processes=processes))
            self.store.save(state)  # every new life, before any session exists
            for make_session in sessions:
                make_session()
        agents = [unit for unit in units if isinstance(unit, Agent)]
        limit = timeout or max([self.cfg.backends[a.backend].ready_timeout for a in agents] or [0])
        began = time.monotonic()
        deadline = began + max(limit, self.START_WATCH + 0.5)
        names = {unit.name for unit in units}
        limited_since: dict[str, float] = {}  # agent → when its screen began to read limited
        while units:
            with self.store.transaction() as state:
                now = time.time()
                seen = self.observe(now)
                actions = [*check_screens(self.cfg, state, seen, now),
                           *(a for a in check_startup(self.cfg, state, seen, now)
                             if a.unit in names and a.purpose != "slow-start" and a.kind != "start")]
                actions = apply_notes(state, actions)
                decided = decided_on(state, actions)
            self.carry_out(actions, decided, now)
            state = self.store.load()
            for agent in agents:
                if seen[agent.name].screen.state == "limited":
                    limited_since.setdefault(agent.name, time.monotonic())
                else:
                    limited_since.pop(agent.name, None)
            # A screen that stays limited (a resumed CLI drawing its last banner again, or an account
            # limited now) shows no prompt before the limit resets: the watchdog delivers then.
            pending = [a for a in agents if record_of(state, a.name).lifecycle == "starting"
                       and seen[a.name].screen.state != "dead"
                       and time.monotonic() - limited_since.get(a.name, math.inf) < self.LIMITED_SETTLE]
            # Watch everything for a moment at least: a program that cannot start dies within it.
            if (not pending and time.monotonic() - began >= self.START_WATCH) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        return self._report_start(units, report)

    START_WATCH = 1.0  # seconds `up` watches even units with no kickoff, to report one that dies at once
    LIMITED_SETTLE = 2.0  # seconds a starting agent's screen reads limited before `up` stops waiting for its prompt

    def _report_start(self, units: list[Agent | Service], report: Callable[[str], None]) -> bool:
        seen = self.observe()
        for _ in range(15):  # a dead pane's exit status reaches tmux a moment after its death
            if not any(look.pane and look.pane.dead and look.pane.dead_status is None for look in seen.values()):
                break
            time.sleep(0.1)
            seen = self.observe()
        state = self.store.load()
        ok = True
        for unit in units:
            record = record_of(state, unit.name)
            look = seen[unit.name]
            finished = (isinstance(unit, Agent) and unit.kind == "task" and look.pane is not None
                        and look.pane.dead and look.pane.dead_status == 0)
            if finished:
                with self.store.transaction() as state:
                    transition(record_of(state, unit.name), "exited", "task finished cleanly (exit 0)",
                               self.clock.now(), self.events, unit.name)
                report(f"{unit.name}: ran and finished cleanly (exit 0)")
            elif look.screen.state == "dead":
                ok = False
                pane = look.pane
                tail = ""
                if pane is not None:
                    output = [line for line in self.tmux.capture_history(pane.pane_id, 30) if line.strip()]
                    output = [line for line in output if not line.startswith("Pane is dead")]
                    tail = " | ".join(output[-3:])
                report(f"{unit.name}: died at start ({look.screen.detail})" + (f": {tail}" if tail else ""))
                self.events.emit("start-failed", unit.name, f"died at start ({look.screen.detail})", output=tail)
            elif record.lifecycle == "starting" and look.screen.state == "limited":
                what = "its note" if record.resumed_from else "its kickoff"
                report(f"{unit.name}: started in session {unit.session}, {look.screen.describe(time.time())}: "
                       f"the watchdog delivers {what} once the limit is over")
            elif record.lifecycle == "starting":
                ok = False
                report(f"{unit.name}: started in {unit.session}, but no prompt yet (screen reads "
                       f"{look.screen.state}); the kickoff waits")
            else:
                delivered = isinstance(unit, Agent) and bool(kickoff_for(self.cfg, unit, state))
                report(f"{unit.name}: started in session {unit.session} ({look.screen.describe(time.time())})"
                       + ("; kickoff delivered" if delivered else ""))
        return ok


class Reaper:
    """Finds and ends what a unit leaves behind, by pid only (never by name).

    Two nets: the live pane's process tree, and every process whose environment
    carries the unit's ``AGENTS_PY_UNIT`` marker — which also catches daemons that
    left the tree (Codex's app-server outlives its CLI and its session).
    """

    def leftovers(self, cfg: Config, unit: Agent | Service, pane: Pane | None,
                  processes: ProcessTable | None = None) -> set[int]:
        # A dead pane's pid may already belong to someone else: only a live pane's tree is ours.
        roots = [pane.pid] if pane is not None and pane.pid and not pane.dead else []
        if processes is not None:
            return set(processes.tree(roots)) | set(processes.marked.get(unit_marker(cfg, unit), []))
        return set(process_tree(roots)) | set(processes_marked(unit_marker(cfg, unit)))

    def end(self, pids: Iterable[int]) -> list[int]:
        """End ``pids``, never this process, its ancestors (a shell in the agent's pane that ran
        `agents.py restart` on its own agent must see it through) or the watchdog."""
        return end_processes(set(pids) - protected_pids())


def protected_pids() -> set[int]:
    """This process and its ancestors."""
    protected, pid = set(), os.getpid()
    while pid > 1 and pid not in protected:
        protected.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return protected


@dataclass
class ProcessTable:
    """One read of /proc: who is whose child, and which processes carry a unit marker of a config."""

    children: dict[int, list[int]]
    marked: dict[str, list[int]]  # unit marker → pids

    @classmethod
    def scan(cls, config: str = "") -> ProcessTable:
        children: dict[int, list[int]] = {}
        marked: dict[str, list[int]] = {}
        needle = f"AGENTS_PY_UNIT={config}".encode()
        for entry in Path("/proc").glob("[0-9]*"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                parent = int(stat[stat.rindex(")") + 2:].split()[1])
                children.setdefault(parent, []).append(int(entry.name))
                if config:
                    for item in (entry / "environ").read_bytes().split(b"\0"):
                        if item.startswith(needle) and int(entry.name) != os.getpid():
                            marked.setdefault(item.split(b"=", 1)[1].decode(errors="replace"), []).append(
                                int(entry.name))
        return cls(children, marked)

    def tree(self, roots: list[int]) -> list[int]:
        """``roots`` and all their descendants."""
        found, queue = [], list(roots)
        while queue:
            pid = queue.pop()
            if pid not in found:
                found.append(pid)
                queue.extend(self.children.get(pid, []))
        return found


def process_tree(roots: list[int]) -> list[int]:
    """``roots`` and all their descendants, from /proc (empty where /proc is missing)."""
    return ProcessTable.scan().tree(roots) if roots else []


def processes_marked(marker: str, whole_config: bool = False) -> list[int]:
    """Pids whose environment carries ``AGENTS_PY_UNIT=marker`` — or, with ``whole_config``, any
    marker of that config (``marker`` is then ``config_marker``): what units left behind, daemons
    included."""
    marked = ProcessTable.scan(marker).marked
    return sorted(pid for key, pids in marked.items() if whole_config or key == marker for pid in pids)


def end_processes(pids: Iterable[int], grace: float = 3.0) -> list[int]:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL what is left. By pid only."""
    alive = [pid for pid in set(pids) if pid > 1 and pid != os.getpid() and pid_alive(pid)]
    for pid in alive:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(pid_alive(pid) for pid in alive):
        time.sleep(0.05)
    for pid in alive:
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    return sorted(alive)


def tmux_server_of(pid: int) -> int | None:
    """The tmux server a process runs under (its nearest ancestor named ``tmux: server``), or None."""
    seen: set[int] = set()
    while pid > 1 and pid not in seen:
        seen.add(pid)
        try:
            if Path(f"/proc/{pid}/comm").read_text().startswith("tmux"):
                return pid
            stat_line = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat_line[stat_line.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            return None
    return None


def server_out_of_reach(cfg: Config, seen: dict[str, Seen]) -> str:
    """Why tmux cannot show this team, or "": no session of ours is visible, yet processes of the
    team still run under a live tmux server — its socket was deleted (a /tmp cleaner does that).

    Everything that acts on "no session" must ask first: `up` would start a second team on a new
    server (and reap the first), `down` would report nothing running, heal would kill working agents.
    """
    if any(look.pane is not None for look in seen.values()):
        return ""
    alive = processes_marked(config_marker(cfg), whole_config=True)
    servers = sorted({server for server in map(tmux_server_of, alive) if server})
    if not servers:
        return ""  # leftovers outside tmux (or nothing at all): tmux shows the truth
    return (f"tmux server unreachable: no session of this team is visible, but {len(alive)} of its processes run "
            f"under tmux server pid {', '.join(map(str, servers))}; its socket was probably deleted: "
            f"`kill -USR1 {servers[0]}` makes it recreate the socket")


def pid_alive(pid: int) -> bool:
    """True if the process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] != "Z"
    return True


# ============================================================================
# Watchdog checks
#   Decisions, one function each: (config, state, observations, now) →
#   actions. No I/O: a check may only note what it decided in the unit's
#   record (its memory), so a restarted watchdog neither repeats nor misses.
# ============================================================================

DONE_NUDGE = (
    "You have been idle for {idle}. Phase {phase} is not marked done yet. Resume where you left off. "
    "Write {done_marker} into {status_file} only if every gate of this phase has a fresh PASS from every "
    "reviewer and no veto stands; otherwise carry on with the next step."
)

WAITING_UNTIL = re.compile(r"WAITING-UNTIL[:\s]+(\S+(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?(?:\s*(?:[AaPp][Mm]))?)")

RATE_LIMIT_RETRY = 60.0  # first retry after a short API rate limit; doubles, up to RATE_LIMIT_RETRY_MAX
RATE_LIMIT_RETRY_MAX = 900.0
RESUME_RETRY = 300.0  # a resume that left the same usage banner up is retried after this; doubles


def sequence_complete(state: dict) -> bool:
    return loop_of(state).complete


def phase_done(state: dict, phase_id: str) -> bool:
    """Whether a phase counts as done: its status file carried the done marker on the remote branch."""
    return phase_id in loop_of(state).done


def waiting_marker(lines: list[str]) -> str | None:
    """The time text of the last ``WAITING-UNTIL <time>`` marker in the agent's last lines, if any."""
    for line in reversed(lines):
        found = WAITING_UNTIL.search(line)
        if found:
            return found.group(1).strip().rstrip(".,;)")
    return None


def waiting_until(text: str, first_seen: float) -> float | None:
    """When a ``WAITING-UNTIL`` marker's time comes.

    Accepted: ISO 8601 (``2026-11-24T03:00Z``), a Unix epoch, or a clock time
    (``15:30``, ``3pm``), which means its next occurrence after the marker was
    first seen — so ``09:00`` written at 20:00 is tomorrow morning, and a
    ``05:00`` first seen a tick late, at 05:00:30, is today's.
    """
    if re.fullmatch(r"\d{9,11}(\.\d+)?", text):
        return float(text)
    with contextlib.suppress(ValueError):
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return (moment if moment.tzinfo else moment.astimezone()).timestamp()
    reset = reset_time_from_banner(f"resets {text}", datetime.fromtimestamp(first_seen).astimezone(),
                                   grace=timedelta(minutes=5))
    return reset.timestamp() if reset else None


def looked_after(cfg: Config, record: UnitRecord, look: Seen) -> bool:
    """Whether the watchdog looks after this unit at all right now."""
    unit = look.unit
    return not look.foreign and unit.watch != "none" and record.lifecycle not in ("stopped", "failed")


def check_rebuilt(cfg: Config, state: dict, seen: dict[str, Seen], now: float) -> list[Action]:
    """Adopt again a unit whose record was lost (a damaged or deleted state file) while its session,
    one of ours, is still there: watched as ``running``, so heal restarts it if it is dead.

    A lost record reads as ``stopped``, and a stopped unit is left alone: without this a dead
    agent would stay dead after a repair. A unit with no session is left stopped (`down` ends
    sessions, so none may mean it was stopped on purpose).
    """
    actions = []
    for name, look in seen.items():
        record = state["units"].get(name)
        # No record, or one that never moved (since 0: every start is a transition), or one a repair reset.
        lost = record is None or (record.lifecycle == "stopped" and (not record.since or record.reason == STATE_REBUILT))
        if lost and look.pane is not None and not look.foreign:
            actions.append(Action("mark", name, f"{STATE_REBUILT}: its session {look.unit.session} is there, "
                                                f"so it is watched again", text="running"))
    return actions


def check_dialogs(cfg: Config, state: dict, seen: dict[str, Seen], now: float) -> list[Action]:
    """Answer known dialogs of running agents by the backend's rules; report others once."""
    actions = []
    for agent in cfg.agents:
        record, look = record_of(state, agent.name), seen.get(agent.name)
        if look is None or look.foreign or record.lifecycle != "running" or look.screen.state != "dialog":
            continue
        actions += dialog_actions(cfg, agent, record, look.screen, now, "dialog")
    return actions


def check_limits(cfg: Config, state: dict, seen: dict[str, Seen], now: float) -> list[Action]:
    """Wait out usage limits, then resume; never type at a limited agent before its time.

    One limit *episode* per agent lives in ``record.limit`` from the first sight of
    a banner until the screen shows work or a prompt again. Its wait:

    - usage: the parsed reset plus ``limit_margin``; unparseable →
      ``limit_fallback_wait``, doubling per fruitless resume (capped at 8×);
    - rate (429, overloaded): 60 s, doubling per resume, at most 15 min;
    - retrying (the CLI retries or resumes by itself) and manual (spend, org,
      credits): no wait of ours — stand down; manual is reported once.

    When the wait is over and the banner still shows, the backend's ``resume``
    is sent and the next wait begins, so a limited agent is never hammered.
    """
    actions = []
    for agent in cfg.agents:
        record, look = record_of(state, agent.name), seen.get(agent.name)
        if look is None or not looked_after(cfg, record, look) or record.lifecycle == "exited":
            continue
        if paused_by_budget(cfg, state, agent):
            continue
        screen, episode = look.screen, record.limit
        if screen.state in ("busy", "idle") and episode:
            actions.append(Action("event", agent.name, f"{episode['kind']} limit over after "
                                                       f"{format_duration(now - episode['since'])}: screen reads {screen.state}",
                                  purpose="limit-over"))
            actions.append(note(agent.name, "limit over", limit={}))
            continue
        if screen.state != "limited":
            continue
        fresh_banner = screen.limit_kind == "usage" and episode and episode.get("banner") != screen.detail[:200]
        inherited = record.inherited_limit
        if not episode and screen.limit_kind == "usage" and inherited.get("banner") == screen.detail[:200] \
                and isinstance(inherited.get("until"), (int, float)):
            actions.append(note(agent.name, "limit episode", limit=inherited, inherited_limit={}))
            actions.append(Action("event", agent.name, f"usage limit of its last life, drawn again with its "
                                                       f"conversation; still waiting until "
                                                       f"{clock_time(inherited['until'], now)}", purpose="limit-wait"))
            continue
        if not episode or episode.get("kind") != screen.limit_kind or fresh_banner:
            resumes = episode.get("resumes", 0) if episode else 0
            until = limit_wait_until(cfg, screen, resumes, now)
            actions.append(note(agent.name, "limit episode", limit={
                "kind": screen.limit_kind, "banner": screen.detail[:200], "since": now, "until": until,
                "resumes": resumes}))
            if screen.limit_kind == "manual":
                reason = f"needs you, never automated: {screen.detail[:100]}"
            elif until is None:
                reason = f"the CLI resumes by itself; standing down: {screen.detail[:100]}"
            else:
                reason = f"{screen.limit_kind} limit; waiting until {clock_time(until, now)}: {screen.detail[:100]}"
            actions.append(Action("event", agent.name, reason, purpose="limit-wait"))
            continue
        until = episode.get("until")
        if until is None or now < until:
            continue
        resumes = episode.get("resumes", 0) + 1
        next_wait = {**episode, "resumes": resumes,
                     "until": limit_wait_until(cfg, screen, resumes, now, after_resume=True)}
        # An agent started into the limit still owes its kickoff: that is its resume.
        owed = "resume-note" if record.resumed_from else "kickoff"
        text, purpose = (record.kickoff, owed) if record.kickoff else (cfg.backends[agent.backend].resume, "resume")
        if not text:
            actions.append(note(agent.name, "limit wait goes on", limit=next_wait))
            continue
        if purpose == owed:
            actions.append(note(agent.name, "kickoff in flight", kickoff_typed_at=now))
        actions.append(Action("send", agent.name, f"limit should have reset ({episode['banner'][:60]}); resume #{resumes}",
                              text=text, purpose=purpose, memory={"limit": next_wait}))
    return actions


def limit_wait_until(cfg: Config, screen: Screen, resumes: int, now: float, after_resume: bool = False) -> float | None:
    """When to try resuming an agent limited as ``screen`` says, after ``resumes`` fruitless tries.

    After a resume that did not clear the banner (the same banner still shows),
    its time is not read again — "resets 3pm" read at 15:02 would mean tomorrow
    — but retried after 5 minutes, doubling, at most ``limit_fallback_wait``.
    """
    settings = cfg.watchdog
    if screen.limit_kind in ("retrying", "manual"):
        return None
    if screen.limit_kind == "rate":
        return now + min(RATE_LIMIT_RETRY * 2 ** resumes, RATE_LIMIT_RETRY_MAX)
    if after_resume:
        return now + min(RESUME_RETRY * 2 ** (resumes - 1), settings.limit_fallback_wait)
    if screen.reset_at is not None:
        return max(screen.reset_at + settings.limit_margin, now)
    return now + settings.limit_fallback_wait * min(2 ** resumes, 8)


def check_heal(cfg: Config, state: dict, seen: dict[str, Seen], now: float) -> list[Action]:
    """Restart dead units with exponential backoff; a crash loop ends in ``failed``.

    A death moves the unit to ``backoff`` for ``backoff_base × 2^n`` seconds
    (n = restarts within ``crash_loop_window``, capped at ``backoff_max``);
    when that has passed it is started again with its kickoff. The death that
    would make ``crash_loop_restarts`` restarts within the window puts it in
    ``failed`` until ``agents.py restart``. A task's clean exit (status 0) is
    not a crash: it is ``exited`` and waits for its next wake.
    """
    actions = []
    settings = cfg.watchdog
    complete = sequence_complete(state)
    for unit in cfg.units():
        record, look = record_of(state, unit.name), seen.get(unit.name)
        if look is None or not looked_after(cfg, record, look) or record.lifecycle == "exited":
            continue
        if unit.watch not in ("heal", "heal+stall"):
            continue
        if isinstance(unit, Agent) and (unit.kind == "loop" and complete or paused_by_budget(cfg, state, unit)):
            continue
        if record.start_failure:  # the act step could not start it: back off as after a death
            recent = recent_restarts(record, settings, now)
            delay = min(settings.backoff_base * 2 ** len(recent), settings.backoff_max)
            actions.append(Action("mark", unit.name, f"start failed: {record.start_failure}; retry in "
                                                     f"{format_duration(delay)}", text="backoff",
                                  memory={"start_failure": "", "backoff_until": now + delay}))
            continue
        if look.screen.state != "dead":
            if record.lifecycle == "backoff":  # someone started it meanwhile
                actions.append(Action("mark", unit.name, "found running again",
                                      text="starting" if record.kickoff else "running"))
            continue
        if record.limit.get("until") and now < record.limit["until"]:
            continue  # died while limited: a restart now would meet the same limit
        pane = look.pane
        if record.lifecycle == "starting" and pane is None and not look.foreign:
            # Team.launch saves the new life before it makes the session: no session at all means the
            # launch was cut short (a kill in between), not a crash. Finish it now, no backoff.
            actions.append(Action("start", unit.name, "a launch was cut short before its session was made; "
                                                      "starting it"))
            continue
        if pane is not None and pane.dead_status is None and now - screen_since(record, look.screen, now) < dead_settle(unit):
            continue  # tmux may learn the exit status a moment after the pane dies: judge it a moment later
        if record.lifecycle in ("running", "starting"):
            if isinstance(unit, Agent) and unit.kind == "task" and pane is not None and pane.dead_status == 0:
                actions.append(Action("mark", unit.name, "task finished cleanly (exit 0)", text="exited"))
                continue
            # Died soon after a resume, before taking its note: its old conversation is gone or will not load.
            resume_failed = record.lifecycle == "starting" and bool(record.resumed_from) and \
                now - record.started_at < RESUME_GRACE
            if resume_failed:
                actions.append(Action("event", unit.name, f"could not resume {conversation_named(record.resumed_from)} "
                                                          f"({look.screen.detail}); its next start is fresh, with "
                                                          f"its kickoff", purpose="resume-failed"))
            recent = recent_restarts(record, settings, now)
            if len(recent) >= settings.crash_loop_restarts:
                actions.append(Action("mark", unit.name, f"crash loop: {look.screen.detail} after {len(recent)} "
                                                         f"restarts within {format_duration(settings.crash_loop_window)};"
                                                         f" waiting for `agents.py restart {unit.name}`", text="failed",
                                      memory={"restart_times": recent, "fresh_next": resume_failed}))
                continue
            delay = min(settings.backoff_base * 2 ** len(recent), settings.backoff_max)
            actions.append(Action("mark", unit.name, f"{look.screen.detail}; restart in {format_duration(delay)}",
                                  text="backoff", memory={"restart_times": recent, "backoff_until": now + delay,
                                                          "fresh_next": resume_failed}))
        elif record.lifecycle == "backoff" and now >= record.backoff_until:
            recent = recent_restarts(record, settings, now)
            if len(recent) >= settings.crash_loop_restarts:  # restarts that keep failing to start count too
                actions.append(Action("mark", unit.name, f"crash loop: {len(recent)} restarts within "
                                                         f"{format_duration(settings.crash_loop_window)}; waiting "
                                                         f"for `agents.py restart {unit.name}`", text="failed"))
                continue
            actions.append(Action("start", unit.name, f"heal: restart #{record.restarts + 1} after "
                                                      f"{record.reason.split(';')[0]}", purpose="heal",
                                  memory={"restart_times": [*recent, now], "restarts": record.restarts + 1}))
    return actions


def check_stall(cfg: Config, state: dict, seen: dict[str, Seen], now: float) -> list[Action]:
    """Nudge, then reboot, agents that sit idle too long.

    Idle time runs from the pane's real last activity (``#{window_activity}``),
    the agent's start, or its last nudge, whichever is latest. Nothing happens
    while the agent is busy (unless its busy screen has been frozen for
    ``hung_busy`` seconds: a hung process), in a dialog, limited, or within
    ``stall_grace`` of its start. ``WAITING-UNTIL <time>`` in its last lines
    defers everything until that time; then the agent is told its time has
    come (once per marker) and gets a fresh idle window. A stalled loop agent
    whose phase is not done gets one DONE-nudge per phase; after that (or for
    other kinds) a stall reboots it with its kickoff.
    """
    actions = []
    settings = cfg.watchdog
    complete = sequence_complete(state)
    phase = current_phase(cfg, state)
    for agent in cfg.agents:
        record, look = record_of(state, agent.name), seen.get(agent.name)
        if look is None or agent.watch != "heal+stall" or record.lifecycle != "running" or look.foreign:
            continue
        if record.limit or (agent.kind == "loop" and complete) or look.pane is None or paused_by_budget(cfg, state, agent):
            continue
        screen = look.screen
        if now - record.started_at < settings.stall_grace:
            continue
        idle = idle_for(look.pane, record, now)
        if screen.state == "busy":
            if settings.hung_busy and idle >= settings.hung_busy:
                actions.append(Action("start", agent.name, f"hung: busy screen frozen for {format_duration(idle)};"
                                                           f" rebooted with its kickoff (restart #{record.restarts + 1})",
                                      memory={"restarts": record.restarts + 1, "stall_clock_from": now}))
            continue
        if screen.state not in ("idle", "unknown"):
            continue
        text = waiting_marker(screen.lines)
        waiting = record.waiting
        if text is None and waiting:
            waiting = {}
            actions.append(note(agent.name, "WAITING-UNTIL gone", waiting=waiting))
        elif text is not None and waiting.get("text") != text:
            waiting = {"text": text, "seen": now}
            actions.append(note(agent.name, "WAITING-UNTIL seen", waiting=waiting))
        marker = waiting_until(text, waiting["seen"]) if text else None
        if marker is not None and marker > now:
            continue
        if marker is not None and not waiting.get("told") and screen.state == "idle":
            actions.append(Action("send", agent.name, f"its WAITING-UNTIL {clock_time(marker, now)} has passed",
                                  text=f"It is past {clock_time(marker, now)}, the time you were waiting for. Carry on.",
                                  purpose="waiting-over",
                                  memory={"waiting": {**waiting, "told": True}, "stall_clock_from": now}))
            continue
        if idle < settings.stall_idle:
            continue
        if screen.state == "unknown":
            # A screen we cannot read is no proof of a stall: a reboot could throw away work or a question.
            if "needs-you" not in record.reported:
                actions.append(Action("event", agent.name, f"needs you: its screen has read unknown for "
                                                           f"{format_duration(idle)} (neither busy, idle nor a known "
                                                           f"dialog); not rebooted: `agents.py attach {agent.name}`",
                                      purpose="needs-you"))
            continue
        # A wake that has just come due goes out instead (one overdue for long cannot be sent: no excuse).
        wake_due = agent.wake is not None and bool(record.next_wake) and \
            0 <= now - record.next_wake <= 2 * settings.signal_interval
        if (agent.kind == "loop" and cfg.loop is not None and cfg.loop.done_nudge and phase is not None
                and not phase_done(state, phase.id) and phase.id not in record.nudged and screen.state == "idle"):
            text = DONE_NUDGE.format(idle=format_duration(idle), phase=phase.id, done_marker=cfg.loop.done_marker,
                                     status_file=f"{cfg.loop.subdir}/{phase.status}".lstrip("/"))
            actions.append(Action("send", agent.name, f"stalled {format_duration(idle)}; DONE-nudge for phase "
                                                      f"{phase.id}", text=text, purpose="nudge",
                                  memory={"nudged": {**record.nudged, phase.id: now}, "stall_clock_from": now}))
        elif wake_due:
            continue  # its wake is due: it goes out instead of a reboot (and restarts the clock)
        else:
            after = " after its DONE-nudge" if phase is not None and phase.id in record.nudged else ""
            actions.append(Action("start", agent.name, f"stalled {format_duration(idle)} idle{after}; rebooted "
                                                       f"with its kickoff (restart #{record.restarts + 1})",
                                  memory={"restarts": record.restarts + 1, "stall_clock_from": now}))
    return actions


def check_wakes(cfg: Config, state: dict, seen: dict[str, Seen], now: float) -> list[Action]:
    """Ping agents on their ``wake`` interval when idle; re-run a finished task instead.

    A busy (or limited, or dialog) agent's wake waits until it is idle. A task
    is re-run fresh unless its previous run is still active. After the phase
    sequence completes only persistent agents wake.
    """
    actions = []
    complete = sequence_complete(state)
    for agent in cfg.agents:
        record, look = record_of(state, agent.name), seen.get(agent.name)
        if agent.wake is None or look is None or look.foreign or record.lifecycle in ("stopped", "failed"):
            continue
        if complete and agent.kind != "persistent" or paused_by_budget(cfg, state, agent):
            continue
        if not record.next_wake:
            actions.append(note(agent.name, "wake scheduled", next_wake=now + agent.wake.interval))
            continue
        if now < record.next_wake or record.limit:
            continue
        every = format_duration(agent.wake.interval)
        next_wake = {"next_wake": now + agent.wake.interval}
        if agent.kind == "task":
            pane = look.pane
            finished = record.lifecycle == "exited" or (pane is not None and pane.dead and pane.dead_status == 0)
            if finished:
                actions.append(Action("start", agent.name, f"wake: re-run the task (every {every})", memory=next_wake))
            else:
                actions.append(Action("event", agent.name, "wake skipped: the previous run is still active",
                                      purpose="wake-skipped", memory=next_wake))
        elif record.lifecycle == "running" and look.screen.state == "idle" and not look.screen.input_text:
            actions.append(Action("send", agent.name, f"wake (every {every})", text=agent.wake.message,
                                  purpose="wake", memory={**next_wake, "stall_clock_from": now}))
    return actions


GIT_RETRY = 15.0  # seconds before retrying a remote that failed; doubles per failure in a row
GIT_RETRY_MAX = 300.0


def check_repo(cfg: Config, state: dict, world: World, now: float) -> list[Action]:
    """Report a remote that cannot be read (once per distinct reason) and back off; say when it is back."""
    repo, loop = world.repo, loop_of(state)
    if repo is None or repo.resting:
        return []
    if repo.error:
        failures = loop.git_failures + 1
        delay = min(GIT_RETRY * 2 ** (failures - 1), GIT_RETRY_MAX)
        memory = {"git_failures": failures, "git_retry_at": now + delay, "git_error": repo.error}
        if repo.error == loop.git_error:
            return [Action("loop", "", "git still failing", memory=memory)]
        return [Action("loop", "", f"{repo.error}; hand-off and phases wait, retry in {format_duration(delay)}",
                       purpose="git-failed", memory=memory)]
    if loop.git_failures:
        return [Action("loop", "", f"the remote reads again after {loop.git_failures} failure(s); catching up",
                       purpose="git-ok", memory={"git_failures": 0, "git_retry_at": 0.0, "git_error": ""})]
    return []


def check_handoff(cfg: Config, state: dict, world: World, now: float) -> list[Action]:
    """Ping reviewers when a claim lands, the Builder when a review lands, an agent when its inbox changes.

    New commits are those on the remote branch since the baseline, less any
    whose key was already read (a force-push rewrites shas, not author times).
    A first look takes the head as the baseline and pings nobody for old
    history. Each agent's pings wait in its record until it can take a
    message (idle, nothing typed, no dialog, no limit), then go out as one
    message that names them all: ten claims in one push are one ping.
    After the sequence completes, commits are still read but ping nobody.
    """
    repo, loop_cfg, loop = world.repo, cfg.loop, loop_of(state)
    if repo is None or loop_cfg is None or repo.error or repo.resting:
        return []
    actions: list[Action] = []
    queued: dict[str, list[dict[str, str]]] = {}  # agent → pings added this tick

    def queue(agents: list[str], key: str, line: str) -> None:
        for name in agents:
            known = state["units"].get(name)
            if cfg.agent(name) is not None and known is not None and known.lifecycle in ("running", "starting", "backoff"):
                queued.setdefault(name, []).append({"key": key, "line": line})

    handoff, where = loop_cfg.handoff, f"{loop_cfg.remote}/{loop_cfg.branch}"
    complete = loop.complete
    if not loop.baseline:
        actions.append(Action("loop", "", f"hand-off baseline: {where} at {repo.head[:7]} (older history pings "
                                          f"nobody)", purpose="handoff-baseline", memory={"baseline": repo.head}))
    elif repo.head != loop.baseline:
        seen = set(loop.seen)
        new = [commit for commit in repo.commits if commit.key not in seen]
        claim = re.compile(handoff.claim_pattern, re.I | re.M)
        review = re.compile(handoff.review_pattern, re.I | re.M)
        last, last_at = loop.last_handoff, loop.last_handoff_at
        for commit in new:
            line = f"{commit.sha[:7]} {commit.subject}"
            for matcher, targets, what in ((claim, handoff.claim_pings, "claim"),
                                           (review, handoff.review_pings, "review")):
                if matcher.search(commit.subject):
                    if not complete:
                        queue(targets, f"{what}:{commit.key}", line)
                    last, last_at = f"{what} {line} → {', '.join(targets)}", now
                    actions.append(Action("event", "", f"{what} pushed: {line}; "
                                          + ("pings " + ", ".join(targets) if not complete else
                                             "the sequence is complete: pings nobody"), purpose="handoff"))
        memory = {"baseline": repo.head, "seen": [*loop.seen, *(c.key for c in new)][-MAX_SEEN_COMMITS:],
                  "last_handoff": last, "last_handoff_at": last_at}
        reason = f"{where} moved to {repo.head[:7]}: {len(new)} new commit(s)"
        if repo.rewritten:
            reason += " (history rewritten: a force-push; commits already read are not pinged again)"
        actions.append(Action("loop", "", reason, purpose="branch-rewritten" if repo.rewritten else "",
                              memory=memory))
    inbox_memory = dict(loop.inboxes)
    for inbox in handoff.inboxes:
        text = repo.inboxes.get(inbox.file)
        digest = hashlib.sha1(text.encode()).hexdigest()[:16] if text is not None else ""
        if digest == loop.inboxes.get(inbox.file, ""):
            continue
        inbox_memory[inbox.file] = digest
        if text is not None and not complete:
            path = in_subdir(loop_cfg, inbox.file)
            queue(inbox.ping, f"inbox:{inbox.file}:{digest}",
                  f"{path} is new or changed: read it, act on it, then delete it in a commit and push")
    if inbox_memory != loop.inboxes:
        actions.append(Action("loop", "", "inbox files changed", memory={"inboxes": inbox_memory}))
    for agent in cfg.agents:
        record, look = record_of(state, agent.name), world.get(agent.name)
        known = {ping["key"] for ping in record.pings}
        fresh = [ping for ping in queued.get(agent.name, []) if ping["key"] not in known]
        pending = [*record.pings, *fresh][-MAX_PENDING_PINGS:]
        if record.pings_in_flight and look is not None and look.screen.state == "busy":
            # Typed by a watchdog that died before it saw the outcome; the agent is at work: it took them.
            taken = set(record.pings_in_flight)
            pending = [ping for ping in pending if ping["key"] not in taken]
            actions.append(note(agent.name, "pings typed before a restart were taken (the agent is busy)",
                                pings=pending, pings_in_flight=[]))
        elif fresh:
            actions.append(note(agent.name, f"{len(fresh)} hand-off ping(s) queued", pings=pending))
        if not pending or look is None or look.foreign or record.lifecycle != "running" or record.limit:
            continue
        if paused_by_budget(cfg, state, agent):
            continue  # queued, not typed: they go out once the budget allows
        if look.screen.state != "idle" or look.screen.input_text:
            continue  # busy, in a dialog or limited: the pings wait for the first moment it can take them
        actions.append(Action("send", agent.name, f"hand-off: {len(pending)} new on {where}",
                              text=handoff_message(where, pending), purpose="ping",
                              memory={"pings": [], "pings_in_flight": []}))
    return actions


MAX_PENDING_PINGS = 50  # per agent: an agent that cannot take messages for days keeps the newest


def handoff_message(where: str, pings: list[dict[str, str]]) -> str:
    """One ping naming everything new: ``git pull`` first, then each claim, review or inbox."""
    return f"New on {where} — pull, then act on each: " + "; ".join(ping["line"] for ping in pings) + "."


def check_phases(cfg: Config, state: dict, world: World, now: float) -> list[Action]:
    """Advance the phase plan when the current phase's status file, as pushed, carries the done marker.

    On done: the phase is closed out, the next one begins and every loop agent
    is restarted fresh with its kickoff (its pending pings dropped: they were
    about the phase that ended). After the last phase the sequence is complete
    (``SEQUENCE-COMPLETE`` in log_dir) and loop-tied work stops. Phases added
    to the config later resume the machine.
    """
    repo, loop_cfg, loop = world.repo, cfg.loop, loop_of(state)
    if repo is None or loop_cfg is None or not loop_cfg.phases or repo.error or repo.resting:
        return []
    phase = current_phase(cfg, state)
    loop_agents = [agent for agent in cfg.agents if agent.kind == "loop"]
    if loop.complete:
        remaining = [p for p in loop_cfg.phases if p.id not in loop.done]
        if not remaining:
            return []
        begin = remaining[0]
        reason = f"phase {begin.id} added to the plan: the sequence resumes"
        return [Action("loop", "", reason, text="resume", purpose="phase-resume",
                       memory={"complete": False, "completed_at": 0.0, "current": begin.id, "phase_started": now}),
                *restarts_for(cfg, state, loop_agents, f"phase {begin.id} begins (added to the plan)")]
    if not loop.current or not loop.phase_started:
        return [Action("loop", "", f"phase {phase.id} is current", purpose="phase-begin",
                       memory={"current": phase.id, "phase_started": now})]
    if phase.id in loop.done or repo.status_phase != phase.id or repo.status is None \
            or loop_cfg.done_marker not in repo.status:
        return []  # (a status file read for another phase — one set by hand meanwhile — says nothing)
    done = [*loop.done, phase.id]
    following = [p for p in loop_cfg.phases if p.id not in done]
    where = f"{in_subdir(loop_cfg, phase.status)} on {loop_cfg.remote}/{loop_cfg.branch}"
    took = format_duration(now - loop.phase_started)
    if not following:
        return [Action("loop", "", f"phase {phase.id} done ({where} says {loop_cfg.done_marker!r}, after {took}); "
                                   f"every phase is done: the sequence is complete", text="complete",
                       purpose="sequence-complete", memory={"done": done, "complete": True, "completed_at": now})]
    begin = following[0]
    return [Action("loop", "", f"phase {phase.id} done ({where} says {loop_cfg.done_marker!r}, after {took}); "
                               f"phase {begin.id} begins", purpose="advance",
                   memory={"done": done, "current": begin.id, "phase_started": now}),
            *restarts_for(cfg, state, loop_agents, f"phase {begin.id} begins: restarted fresh with its kickoff")]


def phase_finished(cfg: Config, state: dict, world: World) -> Phase | None:
    """The current phase, if the repo as read this tick says it is done (check_phases acts on it)."""
    repo, loop_cfg, loop = world.repo, cfg.loop, loop_of(state)
    if repo is None or loop_cfg is None or not loop_cfg.phases or repo.error or repo.resting or loop.complete:
        return None
    phase = current_phase(cfg, state)
    if not loop.current or not loop.phase_started or phase is None or phase.id in loop.done:
        return None
    if repo.status_phase != phase.id or repo.status is None or loop_cfg.done_marker not in repo.status:
        return None
    return phase


GATE_LABEL = re.compile(r"claim\(([^)]+)\)", re.I)


def latest_gate(cfg: Config, state: dict, world: World) -> str:
    """The label of the newest claim(<label>) among the commits new this tick ("": none)."""
    repo, loop = world.repo, loop_of(state)
    if repo is None or repo.error or repo.resting or not loop.baseline or cfg.loop is None:
        return ""
    seen, claim = set(loop.seen), re.compile(cfg.loop.handoff.claim_pattern, re.I | re.M)
    labels = [GATE_LABEL.search(commit.subject) for commit in repo.commits
              if commit.key not in seen and claim.search(commit.subject)]
    labels = [match.group(1).strip() for match in labels if match]
    return re.sub(r"^feat:\s*", "", labels[-1]) if labels else ""


def check_transcripts(cfg: Config, state: dict, world: World, now: float) -> list[Action]:
    """A session an agent's CLI chose itself (a rollout a Codex CLI holds open, a session opencode
    began in the agent's folder) is recorded as that agent's: a heal resumes into it, token reads
    count it, and where agents share a folder, token reads and agent-log.py --agent attribute it
    by this."""
    actions = []
    for name, sessions in sorted((world.held or {}).items()):
        news = session_news(state, name, sessions) if cfg.unit(name) is not None else None
        if news is not None:
            actions.append(Action("event", name, news[0], purpose="transcript", memory=news[1]))
    return actions


def check_tokens(cfg: Config, state: dict, world: World, now: float) -> list[Action]:
    """Close out token records: a phase's usage when it ends, and a gate's when the next claim's
    label replaces it (``token_granularity = "gate"``), each agent's delta since the start.

    The bases are cumulative figures kept in the state, and a record is appended only if the log
    does not already hold it, so a watchdog restarted any number of times writes the same log.
    """
    tokens, loop_cfg, loop = world.tokens, cfg.loop, loop_of(state)
    if tokens is None or loop_cfg is None or not loop_cfg.phases or loop.complete:
        return []  # (the bases are kept without log_tokens too: a phase_budget counts from them)
    phase = current_phase(cfg, state)
    if phase is None or not loop.current or not loop.phase_started:
        return []
    fresh = {"gate": "", "gate_base": tokens, "gate_started": now}
    by_gate = (loop_cfg.token_granularity or cfg.watchdog.token_granularity) == "gate"
    if loop.token_phase != phase.id:
        # A phase set by hand counts from here. The team's first phase counts everything its
        # agents' sessions used (the kickoffs `up` delivered before the first look included).
        never_based = not loop.done and not loop.gate_base  # (every begin sets gate_base to the figures then)
        base = {} if never_based else tokens
        label = latest_gate(cfg, state, world) if by_gate else ""
        return [Action("loop", "", f"token accounting for phase {phase.id} begins", memory={
            "token_phase": phase.id, "token_base": base, **fresh, "gate": label})]
    gate_record = [token_record(f"{phase.id}:{loop.gate}", loop.gate_started, now, usage_since(tokens, loop.gate_base))
                   ] if by_gate and loop.gate else []
    finished = phase_finished(cfg, state, world)
    if finished is not None:
        used = usage_since(tokens, loop.token_base)
        following = [p for p in loop_cfg.phases if p.id not in (*loop.done, finished.id)]
        record = token_record(finished.id, loop.phase_started, now, used)
        return [Action("loop", "", f"phase {finished.id} used {record['total']['total']:,} tokens", purpose="tokens",
                       records=[*gate_record, record] if cfg.watchdog.log_tokens else [],
                       memory={"token_phase": following[0].id if following else "", "token_base": tokens, **fresh})]
    label = latest_gate(cfg, state, world) if by_gate else ""
    if label and label != loop.gate:
        closed = f"; gate {loop.gate} used {gate_record[0]['total']['total']:,} tokens" if gate_record else ""
        return [Action("loop", "", f"gate {label} begins{closed}", purpose="tokens",
                       records=gate_record if cfg.watchdog.log_tokens else [],
                       memory={"gate": label, "gate_base": tokens, "gate_started": now})]
    return []


def budget_tokens(cfg: Config, figures: list[int]) -> int:
    """What a budget counts: input + output + cache creation (+ cache reads if configured)."""
    return sum(figures[:3]) + (figures[3] if cfg.watchdog.budget_counts_cache_reads else 0)


def paused_by_budget(cfg: Config, state: dict, agent: Agent) -> bool:
    """A loop agent paused over a budget (unless `restart` lifted the pause for it)."""
    loop = loop_of(state)
    return agent.kind == "loop" and bool(loop.paused) and record_of(state, agent.name).budget_waived != loop.paused_key


def check_budget(cfg: Config, state: dict, world: World, now: float) -> list[Action]:
    """Pause the loop agents when a phase or a day has used its budget: one interrupt key each,
    then nothing is typed at them and they are neither nudged, woken nor healed. Raising the
    budget (or a new phase, or a new day) resumes them; `restart NAME` resumes one."""
    tokens, settings, loop = world.tokens, cfg.watchdog, loop_of(state)
    budget = cfg.loop.phase_budget if cfg.loop is not None else 0
    if loop.paused and not settings.daily_budget and not budget:
        return budget_ok(cfg, state, "no budget is set any more")
    if tokens is None:
        return []
    actions: list[Action] = []
    today = datetime.fromtimestamp(now).strftime("%Y-%m-%d")
    day_base = loop.day_base if loop.day == today else tokens
    if loop.day != today:
        actions.append(Action("loop", "", f"the token day {today} begins", memory={"day": today, "day_base": tokens}))
    over = []
    if settings.daily_budget:
        used = sum(budget_tokens(cfg, figures) for figures in split_models(usage_since(tokens, day_base))[0].values())
        if used > settings.daily_budget:
            over.append((f"day:{today}", f"{used:,} tokens today, over the daily_budget of {settings.daily_budget:,}"))
    if budget and loop.token_phase and loop.token_phase == loop.current:
        used = sum(budget_tokens(cfg, figures)
                   for figures in split_models(usage_since(tokens, loop.token_base))[0].values())
        if used > budget:
            over.append((f"phase:{loop.current}", f"phase {loop.current} has used {used:,} tokens, over its "
                                                  f"phase_budget of {budget:,}"))
    if over and loop.paused_key != over[0][0]:
        key, why = over[0]
        actions.append(Action("loop", "", f"paused: over budget: {why}; the loop agents are interrupted and left "
                                          f"alone until the budget is raised (or `agents.py restart NAME`)",
                              purpose="budget-pause", memory={"paused": why, "paused_key": key}))
        for agent in cfg.agents:
            look = world.get(agent.name)
            if agent.kind == "loop" and look is not None and look.pane is not None and not look.pane.dead \
                    and record_of(state, agent.name).budget_waived != key:
                backend = cfg.backends[agent.backend]
                actions.append(Action("keys", agent.name, f"interrupted: over budget ({why})",
                                      keys=[backend.interrupt_key], purpose="interrupt"))
    elif not over and loop.paused:
        actions += budget_ok(cfg, state, f"under budget again ({loop.paused_key} no longer over)")
    return actions


def budget_ok(cfg: Config, state: dict, reason: str) -> list[Action]:
    """Lift a budget pause (and the waivers `restart` gave for it: the next pause is a new one)."""
    return [Action("loop", "", f"{reason}: the loop agents are looked after again", purpose="budget-ok",
                   memory={"paused": "", "paused_key": ""}),
            *(note(agent.name, "budget waiver over", budget_waived="") for agent in cfg.agents
              if record_of(state, agent.name).budget_waived)]


def restarts_for(cfg: Config, state: dict, agents: list[Agent], reason: str) -> list[Action]:
    """Fresh starts of the loop agents for a new phase (those stopped or failed are left as they are)."""
    return [Action("start", agent.name, reason, purpose="phase", memory={"pings": []})
            for agent in agents if record_of(state, agent.name).lifecycle not in ("stopped",)]


WATCHDOG_CHECKS = (check_repo, check_transcripts, check_tokens, check_budget, check_phases, check_screens,
                   check_rebuilt, check_startup, check_dialogs, check_limits, check_heal, check_stall, check_wakes,
                   check_handoff)


SEND_PRIORITY = ("kickoff", "resume-note", "resume", "ping", "nudge", "waiting-over", "wake")  # which message goes first


def apply_notes(state: dict, actions: list[Action]) -> list[Action]:
    """Apply the checks' notes (record changes that need no acting) to the state; return the rest."""
    for action in actions:
        if action.kind == "note":
            remember(record_of(state, action.unit), action.memory)
    return [action for action in actions if action.kind != "note"]


def resolve(actions: list[Action]) -> list[Action]:
    """At most one restart and one message per unit per tick; nothing typed at a unit being restarted.

    A message that loses (a wake due in the tick a nudge goes out) stays due:
    its memory was never applied, so the next tick decides it again — and by
    then the agent is busy, and the wake waits.
    """
    restarting: set[str] = set()
    kept = []
    # A fresh start (a phase begins) outranks a heal's resume in the same tick, whatever the check order.
    actions = sorted(actions, key=lambda action: action.kind == "start" and action.purpose == "heal")
    for action in actions:
        if action.kind == "start":
            if action.unit in restarting:
                continue
            restarting.add(action.unit)
        kept.append(action)
    kept = [a for a in kept if not (a.kind in ("send", "keys") and a.unit in restarting)]
    interrupted = {a.unit for a in kept if a.kind == "keys" and a.purpose == "interrupt"}
    kept = [a for a in kept if not (a.unit in interrupted and (a.kind == "send" or a.kind == "keys"
                                                              and a.purpose != "interrupt"))]

    def rank(action: Action) -> int:
        return SEND_PRIORITY.index(action.purpose) if action.purpose in SEND_PRIORITY else len(SEND_PRIORITY)

    first_send: dict[str, Action] = {}
    for action in kept:
        if action.kind == "send" and (action.unit not in first_send or rank(action) < rank(first_send[action.unit])):
            first_send[action.unit] = action
    return [a for a in kept if a.kind != "send" or first_send[a.unit] is a]


# ============================================================================
# The watchdog loop
#   observe → classify → decide → act, every signal_interval or sooner when
#   something falls due (a deadline, a pane death), for days. One
#   per config (a lock in state_dir); SIGTERM ends it cleanly.
# ============================================================================

STARTING_POLL = 0.5  # seconds between looks while an agent waits for its prompt (its kickoff follows at once)
DEAD_SETTLE = 1.0  # seconds a dead pane is left for tmux to learn its exit status (a clean exit is no crash)


def dead_settle(unit: Agent | Service) -> float:
    """A task's exit status decides between "finished" and "crashed": give tmux longer to learn it."""
    return 5.0 if isinstance(unit, Agent) and unit.kind == "task" else DEAD_SETTLE


def deadlines(cfg: Config, state: dict, now: float) -> list[float]:
    """The moments at which some check will want to act, read from the state: a backoff's end, a
    limit's reset plus margin, a dialog's settle time, a wake, a stall, a WAITING-UNTIL time. The
    loop sleeps until the soonest of them rather than a whole interval."""
    settings, moments = cfg.watchdog, []
    for unit in cfg.units():
        record = record_of(state, unit.name)
        if record.lifecycle in ("stopped", "failed"):
            continue
        if record.lifecycle == "backoff":
            moments.append(record.backoff_until)
        if record.screen == "dead":
            moments.append(record.screen_since + dead_settle(unit))
        if record.limit.get("until"):
            moments.append(record.limit["until"])
        if record.screen == "dialog":
            moments += [record.screen_since + DIALOG_SETTLE, record.dialog_answered_at + 2.0]
        if record.lifecycle == "starting" and prompt_expected(cfg, unit, record, now):
            moments += [now + STARTING_POLL, kickoff_next_try(record)]
            if record.screen == "idle":
                moments.append(record.screen_since + backend_of(cfg, unit).ready_settle)
        if not isinstance(unit, Agent):
            continue
        if unit.wake and record.next_wake:
            moments.append(record.next_wake)
        if unit.watch == "heal+stall" and record.lifecycle == "running":
            moments += [record.started_at + settings.stall_grace,
                        max(record.started_at, record.stall_clock_from) + settings.stall_idle]
        if record.waiting.get("text"):
            until = waiting_until(record.waiting["text"], record.waiting.get("seen", now))
            moments.append(until or 0.0)
    return [moment for moment in moments if moment > now]


def prompt_expected(cfg: Config, unit: Agent | Service, record: UnitRecord, now: float) -> bool:
    """Whether a starting unit may show its prompt any moment (then the loop looks often, so its
    kickoff follows at once) — not one waiting out a limit or a person, nor one long overdue."""
    if record.screen == "limited" or record.limit or "needs-you" in record.reported or "dialog" in record.reported:
        return False
    backend = backend_of(cfg, unit)
    return now < record.started_at + max(backend.ready_timeout, cfg.watchdog.stall_idle)


def next_tick_at(cfg: Config, state: dict, began: float, now: float) -> float:
    """When the next tick should run: a whole interval after this one began, or sooner if a
    deadline falls before (just past it, so the check finds it due)."""
    regular = began + cfg.watchdog.signal_interval
    due = [moment + 0.05 for moment in deadlines(cfg, state, now)]
    return min([regular, *due])


class Watchdog:
    """Keeps a team working unattended.

    Each tick: re-read the config if it changed (an edit that does not validate
    is logged once and the last good config stays in force); observe every pane
    with one ``list-panes`` and one batched capture; run every check, each on
    its own (one that raises is logged with its traceback and the others go
    on); save the decisions; act; save the results. All memory is in the state
    file, so a watchdog killed with -9 and started again carries on.
    """

    CONFIG_RECHECK = 60.0  # re-read the config at least this often even if its file did not change

    def __init__(self, config_path: Path, clock: Clock | None = None, tmux: Tmux | None = None,
                 reaper: Reaper | None = None, store: StateStore | None = None,
                 echo: Callable[[str], None] | None = None, make_git: Callable[[Path], Git] = Git):
        self.config_path = config_path
        self.make_git = make_git  # the simulation passes a fake git
        self.git: Git | None = None
        self.cfg = Loader(config_path).load(need_units=True)
        self.clock = clock or Clock()
        events = EventLog(self.cfg.log_dir, echo=echo)
        self.team = Team(self.cfg, tmux, events, self.clock, reaper, store)
        self.events = events
        self.config_stamp = self._stamp()
        self.config_read_at = self.clock.now()
        self.config_error = ""
        self.failures: dict[tuple[str, str], tuple[float, int]] = {}  # repeated failures, logged once an hour
        self.last_clocks: tuple[float, float] | None = None  # (wall, monotonic) at the last tick
        self.stopping = False
        self.died_waiter: subprocess.Popen | None = None  # `tmux wait-for` on our pane-died channel
        self.repo_read_at = float("-inf")  # when the work repo was last fetched
        self.sessions: set[str] = set()  # our units' sessions, and those the last tick saw dead
        self.dead_seen: set[str] = set()
        self.book: TokenBook | None = None  # the agents' transcripts as read so far
        self.tokens_read_at = float("-inf")
        # (config, its Codex agents, its opencode agents): whose CLIs' sessions observe_holders looks for
        self.self_naming: tuple[Config | None, list[str], list[str]] = (None, [], [])
        self.holders_read_at = float("-inf")

    def _stamp(self) -> tuple:
        with contextlib.suppress(OSError):
            info = self.config_path.stat()
            return info.st_mtime_ns, info.st_size
        return ()

    def reload_config(self, now: float) -> None:
        stamp = self._stamp()
        if stamp == self.config_stamp and now - self.config_read_at < self.CONFIG_RECHECK:
            return
        self.config_stamp, self.config_read_at = stamp, now
        try:
            cfg = Loader(self.config_path).load(need_units=True)
            self.check_live_edit(cfg)
        except ConfigError as error:
            text = " | ".join(error.lines)
            if text != self.config_error:
                self.config_error = text
                self.events.emit("config-error", "", f"{text}; keeping the last good config", now=now)
            return
        if self.config_error:
            self.config_error = ""
            self.events.emit("config-ok", "", "the config validates again; using it", now=now)
        old_names, new_names = {u.name for u in self.cfg.units()}, {u.name for u in cfg.units()}
        for name in sorted(new_names - old_names):
            self.events.emit("config-added", name, f"new in the config; `agents.py up {name}` starts it", now=now)
        for name in sorted(old_names - new_names):
            self.events.emit("config-removed", name, "gone from the config: no longer watched (its session, if any, "
                                                     "runs on; `agents.py down` ends it)", now=now)
        self.cfg = self.team.cfg = cfg

    def check_live_edit(self, cfg: Config) -> None:
        """Refuse an edit that would orphan a running session: a new session name means a second copy."""
        state = self.team.store.load()
        problems = []
        running = any(record.lifecycle not in ("stopped", "exited") for record in state["units"].values())
        for key in ("tmux_socket", "state_dir", "log_dir"):
            if running and getattr(cfg, key) != getattr(self.cfg, key):
                problems.append(f"{Loader._label(cfg.path)}: (top level) {key}: changed while the team runs; "
                                f"`agents.py down` with the old value first")
        for unit in cfg.units():
            before = self.cfg.unit(unit.name)
            running = record_of(state, unit.name).lifecycle not in ("stopped", "exited")
            if before is not None and before.session != unit.session and running:
                problems.append(f"{Loader._label(cfg.path)}: {unit_section(unit)} session: changed from "
                                f"{before.session!r} to {unit.session!r} while it runs; `agents.py down "
                                f"{unit.name}` first")
        if problems:
            raise ConfigError(problems)

    def notice_clock_jump(self, state: dict, now: float) -> None:
        """A wall clock that jumped (NTP at boot, a restored VM) must not make every agent "stalled".

        Between ticks the wall clock and the monotonic clock advance alike; when
        they differ by minutes, the idle clocks, backoffs and wakes are moved.
        """
        wall, steady = now, self.clock.monotonic()
        last = self.last_clocks
        self.last_clocks = (wall, steady)
        if last is None:
            return
        jump = (wall - last[0]) - (steady - last[1])
        if abs(jump) < 300:
            return
        self.events.emit("clock-jump", "", f"the wall clock jumped {'forward' if jump > 0 else 'back'} "
                                           f"{format_duration(abs(jump))}; timers moved with it", now=now)
        for record in state["units"].values():
            record.stall_clock_from = max(record.stall_clock_from, now)  # a fresh idle window for everyone
            if record.backoff_until:
                record.backoff_until += jump
            if record.next_wake:
                record.next_wake += jump
            # record.limit["until"] stays: a reset time is a time of day, not a duration.

    def tick(self) -> list[Action]:
        """One pass of observe → classify → decide → act. Returns the actions decided."""
        now = self.clock.now()
        self.reload_config(now)
        cfg = self.cfg
        # git first, outside the state lock: a slow remote must not hold `status`, `send` or `restart`,
        # nor age the screens the checks decide on. It reads a snapshot of the state; check_phases
        # ignores a status file read for a phase that is no longer current.
        snapshot, repo = self.team.store.load(), None
        if now - self.repo_read_at >= cfg.watchdog.signal_interval or now < self.repo_read_at:
            # Once per interval, even when deadlines bring ticks sooner: a fetch is the costly part.
            self.repo_read_at = now
            repo = self.observe_repo(cfg, snapshot, now)
        tokens = self.observe_tokens(cfg, snapshot, now, repo)
        with self.team.store.transaction() as state:
            self.notice_clock_jump(state, now)
            try:
                seen = World(self.team.observe(now))  # under the state lock: decisions see what the state says
            except RuntimeFailure as failure:
                self.report_failure("observe-failed", str(failure), now)
                return []
            if self.server_unreachable(cfg, state, seen):
                return []
            seen.repo, seen.tokens = repo, tokens
            # Under the lock: what the CLIs hold now belongs to the lives the state describes (a `restart`
            # cannot start a new life between this look and the decisions made on it).
            seen.held = self.observe_holders(cfg, state, now)
            self.sessions = {look.unit.session for look in seen.values()}
            self.dead_seen = {look.unit.session for look in seen.values() if look.pane is not None and look.pane.dead}
            actions: list[Action] = []
            for check in WATCHDOG_CHECKS:
                try:
                    actions += check(cfg, state, seen, now)
                except Exception as error:  # one failing check must not stop the others
                    self.report_failure("check-failed", f"{check.__name__}: {error!r}", now, traceback_text())
            actions = apply_notes(state, actions)
            actions = resolve(actions)
            decided = decided_on(state, actions)
        if actions:
            self.team.carry_out(actions, decided, now)
        if self.book is not None:
            with contextlib.suppress(OSError):
                self.book.save(now, force=any(action.records for action in actions))
        return actions

    def observe_tokens(self, cfg: Config, state: dict, now: float, repo: RepoView | None) -> dict[str, list[int]] | None:
        """Each agent's cumulative usage, read from what its transcripts gained since the last look:
        every ``heavy_interval``, and in any tick whose repo read may close a phase or a gate (new
        commits, a status file with the done marker), so records are exact to the tick; every tick
        while a budget is set. Not read without token logging or a budget."""
        wanted = cfg.watchdog.log_tokens and cfg.loop is not None and cfg.loop.phases or cfg.watchdog.daily_budget \
            or cfg.loop is not None and cfg.loop.phase_budget
        closing = repo is not None and (bool(repo.commits) or cfg.loop is not None and repo.status is not None
                                        and cfg.loop.done_marker in repo.status)
        loop = loop_of(state)
        unbased = cfg.loop is not None and cfg.loop.phases and not loop.token_phase and not loop.complete
        budget = cfg.watchdog.daily_budget or cfg.loop is not None and cfg.loop.phase_budget  # checked every tick
        if not wanted or not (closing or unbased or budget) and now - self.tokens_read_at < cfg.watchdog.heavy_interval:
            return None
        self.tokens_read_at = now
        if self.book is None or self.book.path.parent != cfg.state_dir:
            self.book = TokenBook(cfg.state_dir / "tokens.json")
        try:
            figures = self.book.read(cfg, state)
        except Exception as error:  # a transcript we cannot read must not stop the tick
            self.report_failure("tokens-failed", f"reading transcripts: {error!r}", now, traceback_text())
            return None
        for problem in self.book.problems:  # the others were read
            self.report_failure("tokens-failed", problem, now)
        return figures

    HOLDERS_EVERY = 10.0  # seconds between looks for the sessions CLIs chose themselves

    def observe_holders(self, cfg: Config, state: dict, now: float) -> dict[str, Sighting]:
        """The sessions CLIs chose themselves: the rollouts each Codex agent's CLI holds open now, and
        the sessions opencode began in each opencode agent's folder in this life. Each is the agent's
        session (a heal resumes into it), and where agents share a folder, tells whose is whose.
        Looked for every few seconds (a /proc scan, an SQLite query: a few ms), not only at token
        reads: a run shorter than ``heavy_interval`` is known too (check_transcripts records it)."""
        if self.self_naming[0] is not cfg:
            named = {agent.name: cfg.backends[agent.backend].transcripts for agent in cfg.agents}
            self.self_naming = cfg, [name for name, kind in named.items() if kind == "codex"], \
                [name for name, kind in named.items() if kind == "opencode"]
        _, codex, opencode = self.self_naming
        if not (codex or opencode) or 0 <= now - self.holders_read_at < self.HOLDERS_EVERY:
            return {}
        self.holders_read_at = now
        seen: dict[str, Sighting] = {}
        try:
            seen.update(codex_sightings(cfg, codex) if codex else {})
        except Exception as error:
            self.report_failure("tokens-failed", f"looking for the CLIs holding Codex rollouts: {error!r}", now)
        try:
            seen.update(opencode_sessions(cfg, state, opencode) if opencode else {})
        except Exception as error:
            self.report_failure("tokens-failed", f"looking for the sessions opencode began: {error!r}", now)
        return seen

    def observe_repo(self, cfg: Config, state: dict, now: float) -> RepoView | None:
        """The work repo's remote branch, through a ``Git`` kept per repo folder."""
        if cfg.loop is None:
            return None
        if self.git is None or self.git.folder != cfg.loop.folder:
            self.git = self.make_git(cfg.loop.folder)
        return observe_repo(cfg, self.git, state, now)

    def server_unreachable(self, cfg: Config, state: dict, seen: dict[str, Seen]) -> bool:
        """No session at all, yet processes of this team still run: the tmux server is alive but out
        of reach (its socket deleted by a /tmp cleaner). Healing would kill working agents."""
        if any(look.pane is not None for look in seen.values()):
            return False
        if not any(record.lifecycle in ("running", "starting") for record in state["units"].values()):
            return False
        alive = processes_marked(config_marker(cfg), whole_config=True)
        if not alive:
            return False
        self.report_failure("server-unreachable", f"no tmux session found, but {len(alive)} process(es) of this "
                                                  f"team still run: the tmux socket may have been deleted (SIGUSR1 "
                                                  f"to the tmux server recreates it); not healing", self.clock.now())
        return True

    def report_failure(self, kind: str, reason: str, now: float, trace: str | None = None) -> None:
        """Log a failure once, then again only if it changes or an hour has passed (with a count)."""
        key = (kind, reason)
        first, count = self.failures.get(key, (None, 0))
        if first is not None and now - first < 3600:
            self.failures[key] = (first, count + 1)
            return
        repeated = f" (and {count} more times since {clock_time(first, now)})" if count else ""
        self.failures[key] = (now, 0)
        self.events.emit(kind, "", reason + repeated, now=now, traceback=trace)

    def run(self, once: bool = False) -> int:
        """The foreground loop (``agents.py watchdog``; one tick with ``once``); returns the exit code."""
        lock_path = self.cfg.state_dir / "watchdog.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(lock_path, "a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = watchdog_status(self.cfg)
            print(f"a watchdog already runs for {self.cfg.path.name} (pid {other['pid']})", file=sys.stderr)
            return EXIT_RUNTIME
        others = watchdog_processes(self.cfg)  # the lock file may have gone with a deleted state_dir
        if others:
            lock.close()
            print(f"a watchdog already runs for {self.cfg.path.name} (pid {others[0]})", file=sys.stderr)
            return EXIT_RUNTIME
        if once:
            try:
                self.tick()
            finally:
                lock.close()
            return EXIT_OK
        started = self.clock.now()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        with contextlib.suppress(Exception):  # records decided before a kill -9, not yet in the log
            self.team.flush_token_records()
        # A watchdog killed with -9 left its `tmux wait-for` behind: signal the channel once to free it.
        with contextlib.suppress(RuntimeFailure):
            self.team.tmux.run(["wait-for", "-S", died_channel(self.cfg)], check=False)
        self.events.emit("watchdog-start", "", f"watching {len(self.cfg.agents)} agent(s) and "
                                               f"{len(self.cfg.services)} service(s)", now=started, pid=os.getpid())
        try:
            while not self.stopping:
                began = self.clock.now()
                try:
                    lock = self.keep_lock(lock, lock_path)
                    self._heartbeat(started, began)
                    self.tick()
                    next_tick = next_tick_at(self.cfg, self.team.store.load(), began, self.clock.now())
                except Exception as error:  # the loop outlives any one bad tick (a full disk included)
                    self.report_failure("tick-failed", repr(error), self.clock.now(), traceback_text())
                    next_tick = began + self.cfg.watchdog.signal_interval
                self.sleep_until(next_tick)
        finally:
            if self.died_waiter is not None and self.died_waiter.poll() is None:
                self.died_waiter.kill()  # our own child, by its pid
                self.died_waiter.wait()
            self.events.emit("watchdog-stop", "", "stopped by signal" if self.stopping else "stopped",
                             pid=os.getpid())
            with contextlib.suppress(OSError):
                (self.cfg.state_dir / "watchdog.pid").unlink()
            lock.close()
        return EXIT_OK

    DEATH_POLL = 1.0  # seconds between looks at pane liveness while sleeping

    def sleep_until(self, moment: float) -> None:
        """Sleep until ``moment`` (wall clock, kept on the monotonic clock so a clock stepped back
        does not stretch the sleep), or until a pane dies: the ``pane-died`` hook signals a channel
        we wait on, and since tmux 3.3 does not always run that hook (about one death in five was
        missed here), while units run one ``list-panes`` also looks for a new death each second."""
        steady = self.clock.monotonic()
        deadline = steady + min(max(moment - self.clock.now(), 0.0), self.cfg.watchdog.signal_interval)
        state = self.team.store.load()
        watching = any(record.lifecycle in ("running", "starting", "backoff") for record in state["units"].values())
        last_look, listening = steady, watching
        while not self.stopping and self.clock.monotonic() < deadline:
            if listening and self.died_waiter is None:
                self.died_waiter = self.team.tmux.wait_for(died_channel(self.cfg))
            self.clock.sleep(min(0.25, max(deadline - self.clock.monotonic(), 0.01)))
            waiter = self.died_waiter
            if waiter is not None and waiter.poll() is not None:
                self.died_waiter = None
                if waiter.returncode == 0:
                    return  # signalled: a pane died
                listening = False  # no server yet: the poll below looks instead, until the next tick
            if watching and self.clock.monotonic() - last_look >= self.DEATH_POLL:
                last_look = self.clock.monotonic()
                if self.new_death():
                    return

    def new_death(self) -> bool:
        """Whether a pane of ours has died since the last tick looked (one ``list-panes``)."""
        try:
            panes = self.team.tmux.list_panes()
        except RuntimeFailure:
            return False  # the tick reports it
        return any(pane.dead and session not in self.dead_seen for session, pane in panes.items()
                   if session in self.sessions)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stopping = True

    def keep_lock(self, lock: Any, lock_path: Path) -> Any:
        """The lock file, held again if it vanished (a deleted state_dir): a flock on a deleted file
        keeps no second watchdog out. Noticed on the next tick, recreated, reported."""
        with contextlib.suppress(OSError):
            if os.stat(lock_path).st_ino == os.fstat(lock.fileno()).st_ino:
                return lock
        fresh = file_handle_locked(lock_path)
        if fresh is None:  # someone else holds the new lock: two watchdogs must never run, so this one yields
            self.events.emit("watchdog-stop", "", f"{lock_path} is held by another watchdog; this one stops",
                             pid=os.getpid())
            self.stopping = True
            return lock
        lock.close()
        self.events.emit("state-repaired", "", f"{lock_path}: vanished (state_dir deleted?); recreated and held "
                                               f"again", pid=os.getpid())
        return fresh

    def _heartbeat(self, started: float, last_tick: float | None) -> None:
        info = {"pid": os.getpid(), "started": iso(started), "last_tick": iso(last_tick) if last_tick else None,
                "config": str(self.cfg.path)}
        write_atomically(self.cfg.state_dir / "watchdog.pid", json.dumps(info))


def traceback_text() -> str:
    import traceback

    return traceback.format_exc(limit=8)


# -- the watchdog in the background: started by `up`, stopped by `down`, seen by `status` --

def watchdog_status(cfg: Config) -> dict:
    """``{"pid", "alive", "last_tick"}`` from the watchdog's pid file and heartbeat."""
    pid_file = cfg.state_dir / "watchdog.pid"
    try:
        info = json.loads(pid_file.read_text())
    except (OSError, json.JSONDecodeError):
        return {"pid": None, "alive": False, "last_tick": None}
    pid = info.get("pid")
    alive = bool(pid) and pid_alive(pid) and watchdog_lock_held(cfg)
    return {"pid": pid, "alive": alive, "last_tick": info.get("last_tick")}


WATCHDOG_MARKER = "AGENTS_PY_WATCHDOG"  # in the environment of a watchdog `up` started: found by pid, lock or not


def watchdog_processes(cfg: Config) -> list[int]:
    """Live watchdogs of this config other than this process, by the marker in their environment."""
    needle = f"{WATCHDOG_MARKER}={config_marker(cfg)}".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError):
            if needle in (entry / "environ").read_bytes().split(b"\0") and int(entry.name) != os.getpid():
                found.append(int(entry.name))
    return sorted(pid for pid in found if pid_alive(pid))


def file_handle_locked(path: Path) -> Any:
    """``path`` opened and exclusively flock'ed (created, with its folder, if missing), or None if
    another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def watchdog_lock_held(cfg: Config) -> bool:
    """True if some process holds the watchdog lock (so the pid file is not stale)."""
    path = cfg.state_dir / "watchdog.lock"
    if not path.exists():
        return False
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def start_watchdog_process(cfg: Config) -> bool:
    """Start ``agents.py watchdog`` in the background (its own session), unless one runs."""
    current = watchdog_status(cfg)
    if current["alive"]:
        print(f"watchdog: already running (pid {current['pid']})")
        return True
    others = watchdog_processes(cfg)
    if others:  # its pid file or lock went with a deleted state_dir: it recreates them on its next tick
        print(f"watchdog: already running (pid {others[0]})")
        return True
    cfg.log_dir.mkdir(parents=True, exist_ok=True)
    out_path = cfg.log_dir / "watchdog.out"
    with contextlib.suppress(FileNotFoundError):
        if out_path.stat().st_size > EventLog.ROTATE_AT:  # rotated like the other logs: one generation kept
            os.replace(out_path, out_path.with_name(out_path.name + ".1"))
    output = open(out_path, "ab")
    env = {**os.environ, WATCHDOG_MARKER: config_marker(cfg)}
    process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--config", str(cfg.path), "watchdog"],
                               stdin=subprocess.DEVNULL, stdout=output, stderr=output, cwd=cfg.folder,
                               start_new_session=True, env=env)
    output.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        current = watchdog_status(cfg)
        if current["alive"] and current["pid"] == process.pid:
            print(f"watchdog: started (pid {process.pid}, every {cfg.watchdog.signal_interval:g}s; "
                  f"log: {cfg.log_dir / 'watchdog.log'})")
            return True
        if process.poll() is not None:
            break
        time.sleep(0.05)
    tail = (cfg.log_dir / "watchdog.out").read_text(errors="replace").strip().splitlines()[-3:]
    print(f"watchdog: did not start (exit {process.poll()}): {' | '.join(tail)}", file=sys.stderr)
    return False


def stop_watchdog_process(cfg: Config) -> None:
    """SIGTERM the watchdog (it finishes its tick and exits), SIGKILL if it will not."""
    current = watchdog_status(cfg)
    if not current["alive"]:
        return
    pid = current["pid"]
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.05)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    print(f"watchdog: stopped (pid {pid})")


# ============================================================================
# Tokens
#   Usage from the agents' own transcripts: Claude Code JSONL and Codex
#   rollouts, read from a byte offset (complete lines only: a torn last line
#   waits for the next read), each API response counted once with its largest
#   figures across every file (a response is written as one line per content
#   block; a resumed or forked session copies old lines into a new file).
#   agent-log.py reads with the same rules; tests keep the twins in step.
# ============================================================================

TOKEN_FIELDS = ("input", "output", "cache_creation", "cache_read")  # input is the uncached part


def token_count(value: Any) -> int:
    """A count as a transcript writes it (a number, now and then a numeric string); 0 if none."""
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError, OverflowError):
        return 0


def claude_figures(usage: dict) -> list[int]:
    figures = [usage.get("input_tokens"), usage.get("output_tokens"), usage.get("cache_creation_input_tokens"),
               usage.get("cache_read_input_tokens")]
    return [value if type(value) is int and value >= 0 else token_count(value) for value in figures]


def codex_figures(row: dict) -> list[int]:
    """A Codex TokenUsage: its input_tokens include the cached part, its output_tokens reasoning."""
    cached, written = token_count(row.get("cached_input_tokens")), token_count(row.get("cache_write_input_tokens"))
    return [max(0, token_count(row.get("input_tokens")) - cached - written), token_count(row.get("output_tokens")),
            written, cached]


@dataclass
class TokenCursor:
    """How far one transcript file (or one opencode session) has been read."""

    offset: int = 0  # bytes consumed (complete lines only); opencode: the last change read (ms since the epoch)
    inode: int = 0  # a replaced file has a new inode: read it again from the start
    codex_totals: dict[str, int] = field(default_factory=dict)  # a rollout's last cumulative totals
    session: str = ""  # the session the file belongs to (Claude sessionId, Codex session_meta id, Gemini header)
    format: str = ""  # claude, codex or gemini, decided by the first line ("": nothing read yet); or opencode
    model: str = ""  # Codex: the model its turn_context names (its token_count rows do not)
    tail: str = ""  # a digest of the TAIL_BYTES before offset: a file cut and regrown past it reads differently
    quiet: int = 0  # opencode: the session row's last change, read after a quiet minute (it moves: read again)

    @classmethod
    def from_dict(cls, data: dict) -> TokenCursor:
        data = dict(data)
        if "codex" in data:  # a book from before Gemini chats were read kept the format as a flag
            flag = data.pop("codex")
            data["format"] = "" if flag is None else "codex" if flag else "claude"
        return cls(**data)


class TokenLedger:
    """Each API response counted once, with its largest figures, whatever file it was read in.

    A response's figures can still grow while its later lines (its next content blocks) are
    written, seconds apart; so the figures of the last ``window`` responses are kept, and an older
    response is remembered by a 64-bit digest of its key alone. A copy of it (the history a
    resumed session repeats) then counts nothing, and a team that answers 10,000 times a day
    keeps a ledger of megabytes, not one line per response for ever. ``window=None`` keeps every
    response's figures (a one-off scan).
    """

    WINDOW = 8192

    def __init__(self, window: int | None = WINDOW) -> None:
        self.seen: dict[str, list[int]] = {}  # response key → the figures counted for it (the recent ones)
        self.settled: set[int] = set()  # digests of the keys of older responses
        self.totals: dict[str, list[int]] = {}  # group (a session, an agent) → the sum
        self.window = window

    def count(self, key: str | None, figures: list[int], group: str, model: str = "") -> list[int]:
        """Count one line's figures; returns what they added (nothing for a copy already counted).
        With ``model``, the group's share per model is kept too, as ``"<group>\t<model>"``."""
        if key is None:
            delta = figures
        else:
            before = self.seen.get(key)
            if before is None:
                if self.settled and key_digest(key) in self.settled:
                    return [0, 0, 0, 0]
                self.seen[key], delta = figures, figures
                if self.window is not None and len(self.seen) > self.window:
                    self.settle(len(self.seen) - self.window + self.window // 4)
            else:
                grown = [max(old, new) for old, new in zip(before, figures)]
                delta = [new - old for old, new in zip(before, grown)]
                self.seen[key] = grown
        if any(delta):
            for name in (group, f"{group}\t{model}") if model else (group,):
                sums = self.totals.setdefault(name, [0, 0, 0, 0])
                for index, value in enumerate(delta):
                    sums[index] += value
        return delta

    def settle(self, count: int) -> None:
        """Forget the figures of the ``count`` oldest responses, keeping their keys' digests."""
        for key in list(itertools.islice(self.seen, count)):
            self.settled.add(key_digest(key))
            del self.seen[key]

    def settled_text(self) -> str:
        """The settled digests as one base64 string (8 bytes each, sorted), for tokens.json."""
        return base64.b64encode(b"".join(digest.to_bytes(8, "big") for digest in sorted(self.settled))).decode()

    @staticmethod
    def settled_from(text: str) -> set[int]:
        packed = base64.b64decode(text.encode("ascii"), validate=True)
        if len(packed) % 8:
            raise ValueError("settled digests are not whole 8-byte values")
        return {int.from_bytes(packed[at:at + 8], "big") for at in range(0, len(packed), 8)}


def key_digest(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


def split_models(figures: dict[str, list[int]]) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """``{group: …, "group\tmodel": …}`` → (per group, per model summed over the groups)."""
    groups, models = {}, {}
    for name, values in figures.items():
        if "\t" not in name:
            groups[name] = values
            continue
        sums = models.setdefault(name.split("\t", 1)[1], [0, 0, 0, 0])
        for index, value in enumerate(values):
            sums[index] += value
    return groups, models


def read_transcript(path: Path, cursor: TokenCursor, ledger: TokenLedger, group: str | None = None,
                    final: bool = False) -> TokenCursor:
    """Count what was appended to ``path`` since ``cursor``; returns the cursor moved on.

    A file that shrank, was replaced (a new inode) or was cut short and regrown past the cursor
    (the bytes before it read differently) is read again from the start: its responses are known,
    so nothing counts twice. A deleted or unreadable one is left as it was. Lines that are not
    JSON, or of a type no reader knows, are skipped. ``group`` defaults to the session the lines
    belong to. With ``final`` a last line without its newline is read too.
    """
    try:
        with open(path, "rb") as handle:
            info = os.fstat(handle.fileno())
            if info.st_ino != cursor.inode or info.st_size < cursor.offset:
                cursor = TokenCursor(inode=info.st_ino)
            back = min(cursor.offset, TAIL_BYTES)  # the bytes before the cursor, read again to compare
            handle.seek(cursor.offset - back)
            data = handle.read()
            if back and cursor.tail and tail_digest(data[:back]) != cursor.tail:
                cursor, back = TokenCursor(inode=info.st_ino), 0
                handle.seek(0)
                data = handle.read()
    except OSError:
        return cursor
    # data[back:] is what is new; a cursor stays at a line's end.
    newline = data.rfind(b"\n", back)
    end = len(data) if final else newline + 1 if newline >= 0 else back
    cursor = dataclasses.replace(cursor, offset=cursor.offset - back + end,
                                 tail=tail_digest(data[max(0, end - TAIL_BYTES):end]))
    if not cursor.format and end > back:
        first_end = data.find(b"\n", back, end)
        cursor.format = transcript_format(data[back:end if first_end == -1 else first_end])
    if cursor.format in ("codex", "gemini"):
        read_line = _codex_line if cursor.format == "codex" else _gemini_line
        for raw in data[back:end].splitlines():
            read_line(raw, cursor, ledger, group)
        return cursor
    # Only a response's line carries usage: find those in the buffer and read nothing else (the
    # big tool results in between are never split out or decoded).
    at = data.find(b'"usage"', back, end)
    while at != -1:
        start, stop = data.rfind(b"\n", back, at) + 1 or back, data.find(b"\n", at, end)
        stop = end if stop == -1 else stop
        _claude_line(data, start, stop, cursor, ledger, group)
        at = data.find(b'"usage"', stop, end)
    return cursor


TAIL_BYTES = 4096
#: What decoding a CLI's JSON line raises when it cannot: bad JSON, or nesting past Python's recursion limit.
UNDECODABLE = (ValueError, RecursionError)


def transcript_format(line: bytes) -> str:
    """A transcript's format, from the keys of its first line (as agent-log.py chooses its reader):
    a Codex rollout's lines have a payload; a Gemini chat starts with a header naming its project
    hash (or with a ``$set`` update, or a model message)."""
    try:
        first = json.loads(line)
    except UNDECODABLE:
        first = None
    if not isinstance(first, dict):
        return "claude"  # (Claude files are the ones whose lines are read without decoding)
    if "payload" in first:
        return "codex"
    if "projectHash" in first or "$set" in first or first.get("type") == "gemini":
        return "gemini"
    return "claude"


def tail_digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


USAGE_AT = re.compile(rb'"usage": ?\{')
FIELD_AT = {name: re.compile(rb'"' + name.encode() + rb'": ?"((?:[^"\\]|\\.)*)"')
            for name in ("id", "model", "requestId", "requestRef", "sessionId")}
USAGE_DECODER = json.JSONDecoder()


def _claude_line(data: bytes, start: int, stop: int, cursor: TokenCursor, ledger: TokenLedger,
                 group: str | None) -> None:
    """Count one line that mentions usage. The common shape (an assistant line whose message's
    id and model precede its content) is read without decoding the line: the usage object alone
    is decoded. Any other shape is decoded whole."""
    fast = _claude_usage_fast(data, start, stop, known_session=bool(cursor.session))
    if fast is not None:
        session, key, usage, model = fast
        if usage is not None:
            cursor.session = cursor.session or session
            ledger.count(key, claude_figures(usage), group or cursor.session or "?", model)
        return
    try:
        line = json.loads(data[start:stop])
    except UNDECODABLE:
        return
    if not isinstance(line, dict) or line.get("type") != "assistant":
        return
    message = line.get("message")
    if not isinstance(message, dict) or message.get("model") == "<synthetic>":
        return
    usage = message.get("usage")
    if not isinstance(usage, dict):
        return
    cursor.session = cursor.session or str(line.get("sessionId") or "")
    # Claude Code 2.1.x writes requestRef always and requestId when the server sent one; older, requestId only.
    request = line.get("requestId") or line.get("requestRef") or ""
    key = f"claude:{message['id']}:{request}" if message.get("id") else None
    ledger.count(key, claude_figures(usage), group or cursor.session or "?", str(message.get("model") or "?"))


def _claude_usage_fast(data: bytes, start: int, stop: int,
                       known_session: bool = False) -> tuple[str, str | None, dict | None, str] | None:
    """(session, response key, usage) of the line ``data[start:stop]`` when it has the plain layout
    of an assistant line, read by position with only the usage object decoded; (…, None) for a
    <synthetic> line, which counts nothing; None for any other layout, which the caller decodes
    whole. The plain layout: top-level fields, the first ``"type"`` of them "assistant"; then the
    message — its id and model before its content with no object in between, its usage last, closing
    it, and the only "usage" after the content; then the request id. Positions are searched in the short stretches between these fields,
    never across the content."""
    message = data.find(b'"message":{', start, stop)
    if message < 0:
        return None
    content = data.find(b'"content"', message, stop)
    usage_at = data.rfind(b'"usage"', max(content, start), stop)
    if content < 0 or usage_at < 0 or b"\\u" in data[start:content] or b"{" in data[message + 11:content]:
        return None
    if data.count(b'"usage"', content, stop) != 1:
        return None  # another "usage" in the line: which one is the message's takes a real decode
    usage_match = USAGE_AT.match(data, usage_at)
    if usage_match is None:
        return None
    found_id = FIELD_AT["id"].search(data, message, content)
    model = FIELD_AT["model"].search(data, message, content)
    if found_id is None or model is None or FIELD_AT["requestId"].search(data, start, message):
        return None
    begin = usage_match.end() - 1
    chunk = data[begin:min(begin + 4096, stop)].decode("utf-8", "replace")
    try:
        usage, length = USAGE_DECODER.raw_decode(chunk)
    except ValueError:
        return None
    closed = begin + len(chunk[:length].encode())
    if not isinstance(usage, dict) or data[closed:closed + 1] != b"}":
        return None  # the usage found is not the one that closes the message
    kind = data.find(b'"type":"', start, message)
    if kind < 0:
        kind = data.find(b'"type":"', closed, stop)
    if kind < 0 or not data.startswith(b'"type":"assistant"', kind):
        return None
    if model.group(1) == b"<synthetic>":
        return "", None, None, ""
    request = FIELD_AT["requestId"].search(data, closed, stop)
    if request is None or not request.group(1):
        request = FIELD_AT["requestRef"].search(data, closed, stop)
    session = None if known_session else \
        FIELD_AT["sessionId"].search(data, start, message) or FIELD_AT["sessionId"].search(data, closed, stop)
    key = f"claude:{found_id.group(1).decode()}:{request.group(1).decode() if request else ''}"
    return (session.group(1).decode() if session else ""), key, usage, model.group(1).decode(errors="replace")


def _codex_line(raw: bytes, cursor: TokenCursor, ledger: TokenLedger, group: str | None) -> None:
    if b'"token_count"' not in raw and b'"session_meta"' not in raw and b'"turn_context"' not in raw:
        return
    try:
        line = json.loads(raw)
        payload = line.get("payload")
    except (*UNDECODABLE, AttributeError):
        return
    if not isinstance(payload, dict):
        return
    if line.get("type") == "session_meta":
        cursor.session = cursor.session or str(payload.get("id") or "")
        return
    if line.get("type") == "turn_context":
        cursor.model = str(payload.get("model") or cursor.model)
        return
    info = payload.get("info")
    total = info.get("total_token_usage") if payload.get("type") == "token_count" and isinstance(info, dict) else None
    if not isinstance(total, dict):
        return
    now = {key: token_count(value) for key, value in total.items()}
    before, cursor.codex_totals = cursor.codex_totals, now
    if now == before:
        return  # Codex re-emits unchanged totals
    if before and all(now.get(key, 0) >= before.get(key, 0) for key in now):
        figures = codex_figures({key: now.get(key, 0) - before.get(key, 0) for key in now})
    elif before:  # the totals went back (a new session in the same file): the last response's own
        last = info.get("last_token_usage")
        figures = codex_figures(last if isinstance(last, dict) else now)
    else:
        figures = codex_figures(now)
    # A copy of this row in a forked rollout has the same time and totals.
    key = f"codex:{line.get('timestamp')}:{sorted(now.items())}"
    ledger.count(key, figures, group or cursor.session or "?", cursor.model or "codex")


def gemini_figures(tokens: dict) -> list[int]:
    """A Gemini message's tokens: its input includes the cached part; thoughts and tool-use prompts
    are billed beside output and input."""
    cached = token_count(tokens.get("cached"))
    return [max(0, token_count(tokens.get("input")) - cached) + token_count(tokens.get("tool")),
            token_count(tokens.get("output")) + token_count(tokens.get("thoughts")), 0, cached]


def _gemini_line(raw: bytes, cursor: TokenCursor, ledger: TokenLedger, group: str | None) -> None:
    """A Gemini chat line: the header (its session), a model message with its tokens, or a ``$set``
    re-listing messages. A message is written again as it grows (its tool calls): one id counts once."""
    if b'"tokens"' not in raw and b'"projectHash"' not in raw:
        return
    try:
        line = json.loads(raw)
        update = line.get("$set")
    except (*UNDECODABLE, AttributeError):
        return
    if "projectHash" in line:
        cursor.session = cursor.session or str(line.get("sessionId") or "")
    listed = update.get("messages") if isinstance(update, dict) else None
    for message in [line, *(listed if isinstance(listed, list) else [])]:
        tokens = message.get("tokens") if isinstance(message, dict) and message.get("type") == "gemini" else None
        if not isinstance(tokens, dict):
            continue
        # Message ids are unique across sessions (a resumed chat keeps them); one without an id is known
        # by its time, and with neither it cannot be counted once, so it is not counted (as in agent-log.py).
        stamp = str(message.get("id") or message.get("timestamp") or "")
        if stamp:
            ledger.count(f"gemini:{stamp}", gemini_figures(tokens), group or cursor.session or "?",
                         str(message.get("model") or "gemini"))


def transcript_files(paths: Iterable[Path]) -> list[Path]:
    """The transcripts under ``paths``: files as given, folders searched for ``*.jsonl`` and
    opencode's store (``opencode.db``)."""
    found = []
    for path in paths:
        if path.is_dir():
            found += sorted(candidate for pattern in ("*.jsonl", OPENCODE_STORE) for candidate in path.rglob(pattern)
                            if candidate.is_file())
        elif path.is_file():
            found.append(path)
    return found


def token_row(name: str, figures: list[int], **more: Any) -> dict:
    return {"name": name, **dict(zip(TOKEN_FIELDS, figures)), "total": sum(figures), **more}


def token_figures(row: dict) -> dict:
    """Four figures as the token log writes them: ``{input, output, cache_creation, cache_read, total}``."""
    return {**dict(zip(TOKEN_FIELDS, row)), "total": sum(row)}


def project_slug(folder: Path) -> str:
    """Claude Code's folder name for a project: the absolute cwd, every non-alphanumeric as ``-``."""
    return re.sub(r"[^A-Za-z0-9]", "-", str(folder))


def transcript_home(cfg: Config, agent: Agent) -> Path:
    """Where the agent's CLI keeps its transcripts: Claude's config folder, Codex's home, Gemini's
    ``.gemini`` (under ``GEMINI_CLI_HOME`` if set, else the home folder), opencode's data folder
    (``XDG_DATA_HOME/opencode``, which holds its store ``opencode.db``)."""
    transcripts = cfg.backends[agent.backend].transcripts
    if transcripts == "codex":
        return cli_home(cfg, agent, "CODEX_HOME", ".codex")
    if transcripts == "gemini":
        return cli_home(cfg, agent, "GEMINI_CLI_HOME", "") / ".gemini"
    if transcripts == "opencode":
        return cli_home(cfg, agent, "XDG_DATA_HOME", ".local/share") / "opencode"
    return cli_home(cfg, agent, "CLAUDE_CONFIG_DIR", ".claude")


def cli_home(cfg: Config, agent: Agent, variable: str, default: str) -> Path:
    """The CLI's data folder as the agent's process sees it: ``variable`` from its environment
    (relative to its cwd, ``~`` expanded), else ``$HOME/default``."""
    _, env = launch_plan(cfg, agent, None)
    home = Path(env.get("HOME") or Path.home())
    configured = env.get(variable, "")
    if not configured:
        return home / default
    if configured == "~" or configured.startswith("~/"):
        configured = str(home) + configured[1:]
    return (agent.folder / configured).resolve()


def agent_transcripts(cfg: Config, agent: Agent, record: UnitRecord, home: Path | None = None,
                      owners: dict[str, str] | None = None, sharing: dict[str, list[str]] | None = None) -> list[Path]:
    """An agent's transcript files that exist now. Claude Code and Gemini CLI: the session ids it
    was started with, and their sub-agents. Codex: the rollouts whose session_meta names the agent's cwd and
    that began after its first start; where other Codex agents share that cwd, ``owners`` (rollout
    session id → agent, from ``rollout_owners``) decides, and a rollout nobody was seen to own is
    the first sharer's, so it is counted once. (agent-log.py --agent finds the same files: it
    takes the session ids recorded in the state.) ``home`` and ``sharing`` (``sharers(cfg, "codex")``)
    when already known."""
    backend = cfg.backends[agent.backend]
    home = home or transcript_home(cfg, agent)
    if backend.transcripts == "claude":
        folder = home / "projects" / project_slug(agent.folder)
        try:
            names = set(os.listdir(folder))  # one listing, not a look per session id
        except OSError:
            return []
        files = []
        for session in record.session_ids:
            if f"{session}.jsonl" in names:
                files.append(folder / f"{session}.jsonl")
            if session in names:
                files += sorted((folder / session / "subagents").glob("agent-*.jsonl"))
        return files
    if backend.transcripts == "codex":
        sessions = home / "sessions"
        found = []
        for path in sorted(sessions.rglob("rollout-*.jsonl")) if sessions.is_dir() else []:
            with contextlib.suppress(OSError, *UNDECODABLE, AttributeError):
                if path.stat().st_mtime < record.first_started - 60:
                    continue
                with open(path, "rb") as handle:
                    meta = json.loads(handle.readline()).get("payload") or {}
                if meta.get("cwd") == str(agent.folder):
                    found.append(path)
        group = (sharers(cfg, "codex") if sharing is None else sharing).get(agent.name)
        if group and owners is not None:
            found = [path for path in found if owners.get(rollout_session(path), group[0]) == agent.name]
        return found
    if backend.transcripts == "gemini":
        # tmp/<project>/chats/session-<time>-<id8>.jsonl (a resume may open a second one with the same id),
        # and its sub-agents' chats in tmp/<project>/chats/<id>/. Each chats folder is listed once.
        wanted = set(record.session_ids)
        starts = {session[:8] for session in wanted}
        files = []
        for chats in sorted(home.glob("tmp/*/chats")):
            try:
                names = sorted(os.listdir(chats))
            except OSError:
                continue
            files += [chats / name for name in names if name.startswith("session-") and name.endswith(".jsonl")
                      and name[-14:-6] in starts and chat_session(chats / name) in wanted]
            for name in names:
                if name in wanted:
                    files += sorted((chats / name).glob("*.jsonl"))
        return files
    return []


def chat_session(path: Path) -> str:
    """The session id a Gemini chat's header line names ("" if it cannot be read)."""
    with contextlib.suppress(OSError, *UNDECODABLE, AttributeError):
        with open(path, "rb") as handle:
            return str(json.loads(handle.readline()).get("sessionId") or "")
    return ""


ROLLOUT_SESSION = re.compile(r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.jsonl$")


def rollout_session(path: Path | str) -> str:
    """The session id a Codex rollout's name ends with (``rollout-<time>-<id>.jsonl``); "" if none."""
    found = ROLLOUT_SESSION.search(str(path))
    return found.group(1) if found else ""


def sharers(cfg: Config, transcripts: str) -> dict[str, list[str]]:
    """Agents whose CLI keeps ``transcripts`` and that share a cwd and that CLI's data folder with
    another: name → the group, in config order. Codex sharers' rollouts cannot be told apart by
    cwd (whose each is, their processes show); opencode sharers' sessions cannot be told apart at
    all (the first of them is billed for them)."""
    groups: dict[tuple[Path, Path], list[str]] = {}
    for agent in cfg.agents:
        if cfg.backends[agent.backend].transcripts == transcripts:
            groups.setdefault((agent.folder, transcript_home(cfg, agent)), []).append(agent.name)
    return {name: group for group in groups.values() if len(group) > 1 for name in group}


def rollouts_held_open(cfg: Config, names: Iterable[str], table: ProcessTable | None = None) -> dict[str, set[str]]:
    """For each Codex agent in ``names``: the session ids of the rollouts its processes hold open
    for writing now (the CLI keeps its rollout open while it runs; a reader's ``tail`` does not
    count). ``table``: a scan of the processes already taken."""
    wanted = set(names)
    if not wanted:
        return {}
    if table is None:
        table = ProcessTable.scan(config_marker(cfg))
    held: dict[str, set[str]] = {}
    for agent in cfg.agents:
        if agent.name in wanted:
            for pid in table.marked.get(unit_marker(cfg, agent), []):
                sessions = {rollout_session(path) for path in files_written_by(pid) if "/rollout-" in path}
                held.setdefault(agent.name, set()).update(sessions - {""})
    return {name: sessions for name, sessions in held.items() if sessions}


def codex_sightings(cfg: Config, names: Iterable[str], table: ProcessTable | None = None) -> dict[str, Sighting]:
    """``rollouts_held_open`` as sightings: ordered by id (Codex ids are UUIDv7, time-ordered)."""
    return {name: Sighting(sorted(sessions)) for name, sessions in rollouts_held_open(cfg, names, table).items()}


def files_written_by(pid: int) -> list[str]:
    """The files a process holds open for writing, from /proc (none where it cannot be read)."""
    found = []
    with contextlib.suppress(OSError):
        for entry in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                info = Path(f"/proc/{pid}/fdinfo/{entry}").read_text()
                flags = int(info.split("flags:", 1)[1].split()[0], 8)
                if flags & os.O_ACCMODE != os.O_RDONLY:
                    found.append(os.readlink(f"/proc/{pid}/fd/{entry}"))
    return found


def rollout_owners(cfg: Config, state: dict, held: dict[str, set[str]]) -> dict[str, str]:
    """Rollout session id → the agent it is known to be: recorded in the state first, then held
    open (a session already recorded for one agent stays that agent's)."""
    owners: dict[str, str] = {}
    for agent in cfg.agents:
        for session in record_of(state, agent.name).session_ids:
            owners.setdefault(session, agent.name)
    for agent in cfg.agents:
        for session in sorted(held.get(agent.name, ())):
            owners.setdefault(session, agent.name)
    return owners


# -- opencode's store --------------------------------------------------------------
# opencode keeps sessions, messages and their tokens in one SQLite file, written while
# we read it. A session's id is opencode's choice: the one a life began is found by the
# agent's folder and the time, and its messages are read by the time they last changed.

OPENCODE_STORE = "opencode.db"
OPENCODE_SLACK_MS = 2000  # a session made this close to a life's start or end is its; rows read again this far back
OPENCODE_QUIET_MS = 60_000  # a session's row unchanged this long: its messages are written (read once more, then not)


@contextlib.contextmanager
def opened_store(path: Path) -> Iterator[Any]:
    """A read-only connection to a CLI's SQLite store (None if there is none). Its writer holds it
    for moments: a query waits up to a second, then an ``OSError`` says why it could not be read."""
    try:
        import sqlite3  # only opencode agents need it
    except ImportError as error:  # a Python built without it
        raise OSError(f"{path}: Python's sqlite3 module is missing ({error})") from None
    if not path.is_file():
        yield None
        return
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)) as store:
            yield store
    except sqlite3.Error as error:
        raise OSError(f"{path}: {error}") from None


def opencode_sessions(cfg: Config, state: dict, names: Iterable[str]) -> dict[str, Sighting]:
    """For each opencode agent in ``names``: the sessions opencode began in its folder while its
    current life ran (from its start, to its end if it is stopped, exited or failed), and the
    sub-agent sessions any of its sessions started, none already recorded. Where agents share a
    folder and a store, a session there is the first sharer's, and no sharer's to resume."""
    wanted, sharing = set(names), sharers(cfg, "opencode")
    stores: dict[Path, list[Agent]] = {}
    for agent in cfg.agents:
        if cfg.backends[agent.backend].transcripts == "opencode":
            stores.setdefault(transcript_home(cfg, agent) / OPENCODE_STORE, []).append(agent)
    owners = {session: name for name, record in state.get("units", {}).items() for session in record.session_ids}
    found: dict[str, Sighting] = {}
    for store, agents in stores.items():
        lives = {agent.name: opencode_life(record_of(state, agent.name)) for agent in agents}
        lives = {name: life for name, life in lives.items() if life is not None}
        if not lives or not any(agent.name in wanted for agent in agents):
            continue
        with opened_store(store) as db:
            rows = db.execute("select id, parent_id, directory, time_created from session where time_created >= ? "
                              "order by time_created, id", [min(start for start, _ in lives.values())]).fetchall() \
                if db else []
        for session, parent, directory, created in rows:
            if session in owners:
                continue
            owner = owners.get(parent) if parent else next(
                (agent.name for agent in agents if str(agent.folder) == directory and agent.name in lives
                 and lives[agent.name][0] <= created <= lives[agent.name][1]), None)
            if owner is None:
                continue
            owner = owners[session] = sharing.get(owner, [owner])[0]
            if owner in wanted:
                seen = found.setdefault(owner, Sighting([], cli="opencode", via=f"it began in {owner}'s folder",
                                                        shared_with=[o for o in sharing.get(owner, []) if o != owner]))
                (seen.subs if parent else seen.own).append(session)
    return found


def opencode_life(record: UnitRecord) -> tuple[float, float] | None:
    """When the agent's current life ran, in ms, with a little slack each side (None: never started)."""
    if not record.started_at:
        return None
    ended = record.since * 1000 + OPENCODE_SLACK_MS if record.lifecycle in ("stopped", "exited", "failed") else math.inf
    return record.started_at * 1000 - OPENCODE_SLACK_MS, ended


def opencode_figures(tokens: dict) -> list[int]:
    """An opencode message's tokens: its input excludes the cached part, its output the reasoning."""
    cache = tokens.get("cache") if isinstance(tokens.get("cache"), dict) else {}
    return [token_count(tokens.get("input")), token_count(tokens.get("output")) + token_count(tokens.get("reasoning")),
            token_count(cache.get("write")), token_count(cache.get("read"))]


def read_opencode_session(db: Any, session: str, cursor: TokenCursor, ledger: TokenLedger,
                          group: str) -> TokenCursor:
    """Count what one opencode session's messages gained since ``cursor`` (its ``offset``: the last
    change read, in ms). A message is rewritten as it grows: it is read again, and counts once."""
    # From a little before the last change read: a row committed late, or a clock stepped back, is
    # still seen (what was counted already counts nothing again).
    rows = db.execute("select id, time_updated, data from message where session_id = ? and time_updated >= ? "
                      "order by time_updated", [session, cursor.offset - OPENCODE_SLACK_MS]).fetchall()
    for message, updated, data in rows:
        with contextlib.suppress(*UNDECODABLE, AttributeError):
            line = json.loads(data)
            tokens = line.get("tokens") if line.get("role") == "assistant" else None
            if isinstance(tokens, dict):
                ledger.count(f"opencode:{message}", opencode_figures(tokens), group, str(line.get("modelID") or "opencode"))
    latest = max((updated for _, updated, _ in rows if type(updated) is int), default=cursor.offset)
    return dataclasses.replace(cursor, offset=latest, format="opencode", session=session)


class TokenBook:
    """The watchdog's reading of every agent's transcripts: cursors, the responses counted, and
    each agent's cumulative usage — ``state_dir/tokens.json``, saved atomically.

    Cumulative usage is a function of the files alone, so a book lost or damaged is rebuilt by
    reading them again from the start, and the phase and gate bases kept in state.json still hold.
    """

    SAVE_EVERY = 120.0  # seconds between saves while only reading (a record written saves at once)

    def __init__(self, path: Path):
        self.path = path
        self.cursors: dict[str, TokenCursor] = {}
        self.ledger = TokenLedger()
        self.saved_at = 0.0
        self.dirty = False
        self.homes: dict[str, Path] = {}  # agent → its CLI's data folder, for the config in homes_of
        self.homes_of: Config | None = None
        self.held: dict[str, set[str]] = {}  # Codex agent sharing a cwd → the rollouts seen held open by it
        self.problems: list[str] = []  # what the last read could not read (a store locked or damaged)
        self.load()

    def load(self) -> None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            cursors = {path: TokenCursor.from_dict(cursor) for path, cursor in data["cursors"].items()}
            seen = {str(key): [token_count(n) for n in value][:4] for key, value in data["seen"].items()}
            settled = TokenLedger.settled_from(data.get("settled", ""))  # absent in a book from before it was kept
            totals = {str(key): [token_count(n) for n in value][:4] for key, value in data["totals"].items()}
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
            print(f"warning: {self.path}: unreadable ({error}); reading every transcript again", file=sys.stderr)
            return
        self.cursors, self.ledger.seen, self.ledger.settled, self.ledger.totals = cursors, seen, settled, totals
        if len(seen) > TokenLedger.WINDOW:  # an older book kept every response's figures
            self.ledger.settle(len(seen) - TokenLedger.WINDOW)
            self.dirty = True

    def read(self, cfg: Config, state: dict) -> dict[str, list[int]]:
        """Read what every agent's transcripts gained; returns each agent's cumulative usage."""
        self.problems = []
        sharing = sharers(cfg, "codex")
        for name, sessions in rollouts_held_open(cfg, sharing.keys()).items():
            self.held.setdefault(name, set()).update(sessions)
        owners = rollout_owners(cfg, state, self.held) if sharing else None
        sighted = self.opencode_sightings(cfg, state)
        for agent in cfg.agents:
            if cfg.backends[agent.backend].transcripts == "none":
                continue
            if self.homes_of is not cfg:  # a reloaded config may point an agent elsewhere
                self.homes, self.homes_of = {}, cfg
            home = self.homes.get(agent.name)
            if home is None:
                home = self.homes[agent.name] = transcript_home(cfg, agent)
            if cfg.backends[agent.backend].transcripts == "opencode":
                seen = sighted.get(agent.name, Sighting([]))
                try:
                    self.read_store(agent.name, [*record_of(state, agent.name).session_ids, *seen.own, *seen.subs],
                                    home / OPENCODE_STORE)
                except OSError as error:
                    self.problems.append(f"reading {agent.name}'s opencode sessions: {error}")
                continue
            for path in agent_transcripts(cfg, agent, record_of(state, agent.name), home, owners, sharing):
                key = str(path)
                cursor = self.cursors.get(key, TokenCursor())
                with contextlib.suppress(OSError):
                    info = path.stat()
                    if info.st_size == cursor.offset and info.st_ino == cursor.inode:
                        continue  # nothing new: not even opened
                moved = read_transcript(path, cursor, self.ledger, group=agent.name)
                if moved != cursor:
                    self.cursors[key], self.dirty = moved, True
        names = {agent.name for agent in cfg.agents}
        figures = {agent.name: [0, 0, 0, 0] for agent in cfg.agents}
        figures.update({name: list(values) for name, values in self.ledger.totals.items()
                        if name.split("\t", 1)[0] in names})
        return figures  # per agent, and per agent and model as "agent\tmodel"

    def opencode_sightings(self, cfg: Config, state: dict) -> dict[str, Sighting]:
        """The sessions opencode agents began that the state does not record yet (the watchdog's look
        records them after this read): counted in this read, so a phase closed now gets them."""
        names = [agent.name for agent in cfg.agents if cfg.backends[agent.backend].transcripts == "opencode"]
        try:
            return opencode_sessions(cfg, state, names) if names else {}
        except OSError as error:
            self.problems.append(f"looking for the sessions opencode began: {error}")
            return {}

    def read_store(self, name: str, sessions: list[str], store: Path) -> None:
        """Read what an opencode agent's sessions gained: one cursor per session (``<store>#<id>``).
        opencode adds a message's tokens to its session's row as it records them: a session read
        once its row had been quiet for a minute, and whose row has not changed since, has
        nothing new, and its messages are not queried again."""
        with opened_store(store) as db:
            if db is None:
                return
            touched: dict[str, int] = {}
            for at in range(0, len(sessions), 500):  # (an SQLite statement takes a bounded number of values)
                chunk = sessions[at:at + 500]
                touched.update(db.execute(f"select id, time_updated from session where id in "
                                          f"({', '.join('?' * len(chunk))})", chunk).fetchall())
            now = time.time() * 1000
            for session in sessions:
                key = f"{store}#{session}"
                cursor = self.cursors.get(key, TokenCursor())
                updated = touched.get(session)
                if updated is None or cursor.quiet and updated == cursor.quiet:
                    continue
                moved = read_opencode_session(db, session, cursor, self.ledger, name)
                moved.quiet = updated if type(updated) is int and now - updated > OPENCODE_QUIET_MS else 0
                if moved != cursor:
                    self.cursors[key], self.dirty = moved, True

    def save(self, now: float, force: bool = False) -> None:
        if not self.dirty or (not force and now - self.saved_at < self.SAVE_EVERY):
            return
        data = {"cursors": {key: dataclasses.asdict(cursor) for key, cursor in self.cursors.items()},
                "seen": self.ledger.seen, "settled": self.ledger.settled_text(), "totals": self.ledger.totals}
        write_atomically(self.path, json.dumps(data, separators=(",", ":")))
        self.saved_at, self.dirty = now, False


def usage_since(now: dict[str, list[int]], base: dict[str, list[int]]) -> dict[str, list[int]]:
    """Each agent's usage since ``base`` (an agent new since then counts from zero)."""
    return {name: [max(0, a - b) for a, b in zip(figures, base.get(name, [0, 0, 0, 0]))]
            for name, figures in now.items()}


def token_record(phase_id: str, started: float, now: float, used: dict[str, list[int]]) -> dict:
    """One line of token-log.jsonl (``models``: the same usage per model, for pricing it)."""
    groups, models = split_models(used)
    agents = {name: token_figures(figures) for name, figures in groups.items() if any(figures)}
    total = [sum(figures[index] for figures in groups.values()) for index in range(len(TOKEN_FIELDS))]
    return {"phase_id": phase_id, "started": iso(started), "ended": iso(now), "duration_s": round(now - started),
            "agents": agents, "total": token_figures(total),
            "models": {model: token_figures(figures) for model, figures in models.items() if any(figures)}}


def append_token_record(path: Path, record: dict) -> bool:
    """Append a record unless the log already holds it (a watchdog killed after writing it but
    before saving its state decides the same record again)."""
    with contextlib.suppress(FileNotFoundError):
        with open(path, "rb") as handle:
            handle.seek(max(0, os.fstat(handle.fileno()).st_size - 65536))
            for line in handle.read().splitlines():
                with contextlib.suppress(ValueError, AttributeError):
                    old = json.loads(line)
                    if old.get("phase_id") == record["phase_id"] and old.get("started") == record["started"]:
                        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, (json.dumps(record) + "\n").encode("utf-8"))
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    return True


# ============================================================================
# Commands
#   One function per verb. Each takes the parsed arguments and returns an exit
#   code: 0 ok, 1 runtime failure, 2 usage or config error.
# ============================================================================


def select_units(cfg: Config, names: list[str]) -> list[Agent | Service]:
    """The named units (all if none named); an unknown name is a usage error."""
    if not names:
        return cfg.units()
    units = []
    for name in names:
        unit = cfg.unit(name)
        if unit is None:
            known = ", ".join(u.name for u in cfg.units()) or "none"
            hint = did_you_mean(name, [u.name for u in cfg.units()]) or f"; known: {known}"
            raise ConfigError([f"{Loader._label(cfg.path)}: no agent or service named {name!r}{hint}"])
        units.append(unit)
    return units


def unit_section(unit: Agent | Service) -> str:
    return f"[[agent]] {unit.name!r}" if isinstance(unit, Agent) else f"[[service]] {unit.name!r}"


def cmd_check(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    label = Loader._label(cfg.path)
    print(f"{label}: OK")
    print(f"  sessions   prefix {cfg.session_prefix!r} on "
          + (f"private tmux socket {cfg.tmux_socket!r}" if cfg.tmux_socket else "the default tmux server"))
    print(f"  state      {cfg.state_dir}\n  logs       {cfg.log_dir}")
    print(f"\n`up` would start {len(cfg.agents)} agent(s) and {len(cfg.services)} service(s):")
    for unit in cfg.units():
        argv, _ = launch_plan(cfg, unit, "<uuid>" if isinstance(unit, Agent) and backend_of(cfg, unit).session_id_flag else None)
        if isinstance(unit, Agent):
            print(f"  {unit.name:<14} {unit.kind:<10} backend {unit.backend:<9} session {unit.session}")
        else:
            print(f"  {unit.name:<14} {'service':<10} {'':<17} session {unit.session}")
        print(f"  {'':<14} cwd {unit.folder}")
        print(f"  {'':<14} runs {shlex.join(argv)}")
        if isinstance(unit, Agent):
            kickoff = kickoff_for(cfg, unit, StateStore(cfg.state_dir).load())
            first = kickoff.strip().splitlines()[0][:70] if kickoff.strip() else "(none)"
            print(f"  {'':<14} kickoff {first!r}" + (f" ({len(kickoff)} chars in all)" if len(kickoff) > 70 else ""))
            if unit.wake:
                print(f"  {'':<14} wakes every {format_duration(unit.wake.interval)} when idle")
        problem = missing_program(cfg, unit)
        if problem:
            print(f"  {'':<14} WARNING: {problem}: `up` will refuse to start it")
    if cfg.loop:
        phases = ", ".join(phase.id for phase in cfg.loop.phases) or "(none)"
        print(f"\nloop: repo {cfg.loop.folder}, {cfg.loop.remote}/{cfg.loop.branch}, phases {phases}")
        handoff = cfg.loop.handoff
        print(f"  claims ping {', '.join(handoff.claim_pings) or 'nobody'}; reviews ping "
              f"{', '.join(handoff.review_pings) or 'nobody'}")
    w = cfg.watchdog
    print(f"\nwatchdog: tick {w.signal_interval:g}s, stall after {format_duration(w.stall_idle)} idle "
          f"(grace {format_duration(w.stall_grace)}), restart backoff {w.backoff_base:g}s…{w.backoff_max:g}s")
    for warning in cfg.warnings:
        print(f"warning: {warning}")
    return EXIT_OK


def cmd_up(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    units = select_units(cfg, args.names)
    team = Team(cfg)
    seen = team.observe()
    unreachable = server_out_of_reach(cfg, seen)
    if unreachable:
        raise RuntimeFailure(f"{unreachable}; not starting a second team")
    problems, to_start = [], []
    for unit in units:
        look = seen[unit.name]
        if look.foreign:
            problems.append(f"{unit.name}: tmux session {unit.session!r} exists but was not started by "
                            f"{cfg.path.name}; rename the session (session = …) or end it yourself")
        elif look.pane is not None and not look.pane.dead:
            continue
        else:
            missing = missing_program(cfg, unit)
            if missing:
                key = "backend" if isinstance(unit, Agent) else "command"
                detail = f" (backend {unit.backend}: command {shlex.join(backend_of(cfg, unit).command)})" \
                    if isinstance(unit, Agent) else ""
                raise ConfigError([f"{Loader._label(cfg.path)}: {unit_section(unit)} {key}: {missing}{detail}"])
            to_start.append(unit)
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        return EXIT_RUNTIME
    running = [unit for unit in units if unit not in to_start]
    for unit in running:
        with team.store.transaction() as state:
            record = record_of(state, unit.name)
            if record.lifecycle in ("stopped", "exited", "failed", "backoff"):
                transition(record, "running", "found running at `up`", time.time(), team.events, unit.name)
        pending = record_of(team.store.load(), unit.name)
        if pending.lifecycle == "starting" and pending.kickoff:  # a launch cut short: started, kickoff not sent
            print(f"{unit.name}: already running in session {unit.session}; its kickoff is still to be "
                  f"delivered" + (" (the watchdog does it)" if not args.no_watchdog else
                                  " (`agents.py watchdog` or `up` without --no-watchdog delivers it)"))
            continue
        print(f"{unit.name}: already running in session {unit.session}")
    if to_start:
        take_handoff_baseline(cfg, team)
    try:
        ok = team.bring_up(to_start, "up", keep_running=True) if to_start else True
    except (RuntimeFailure, OSError) as error:
        # Part-way: some units may run now. They are never left without a watchdog, and the user
        # learns exactly what runs and how to stop it.
        seen = team.observe()
        running = [unit.name for unit in units if seen[unit.name].pane and not seen[unit.name].pane.dead]
        detail = error if isinstance(error, RuntimeFailure) else f"{error.filename or ''} {error.strerror or error}"
        print(f"error: `up` failed part-way: {detail}", file=sys.stderr)
        watched = bool(running) and not args.no_watchdog and start_watchdog_process(cfg)
        print(f"running now: {', '.join(running) or 'nothing'}" + (" (the watchdog looks after them)" if watched else "")
              + ("; `agents.py down` stops them" if running else ""), file=sys.stderr)
        return EXIT_RUNTIME
    if not to_start:
        print("nothing to start")
    if not args.no_watchdog:
        ok = start_watchdog_process(cfg) and ok
    return EXIT_OK if ok else EXIT_RUNTIME


def take_handoff_baseline(cfg: Config, team: Team) -> None:
    """Before ``up`` starts an agent, the remote head the hand-off reads on from: a claim pushed while
    ``up`` still runs (a quick Builder's first) is then pinged, not taken for old history. A remote
    that cannot be read now leaves the baseline to the watchdog's first look."""
    if cfg.loop is None or not has_handoff(cfg) or loop_of(team.store.load()).baseline:
        return
    git, where = Git(cfg.loop.folder), f"{cfg.loop.remote}/{cfg.loop.branch}"
    try:
        git.fetch(cfg.loop.remote, cfg.loop.branch)
        head = git.head(cfg.loop.remote, cfg.loop.branch)
    except (RuntimeFailure, OSError):
        return
    with team.store.transaction() as state:
        loop = loop_of(state)
        if head and not loop.baseline:
            loop.baseline = head
            team.events.emit("handoff-baseline", "", f"hand-off baseline: {where} at {head[:7]}, taken by `up` "
                                                     f"before any agent started (older history pings nobody)")


def cmd_down(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    units = select_units(cfg, args.names)
    team = Team(cfg)
    unreachable = server_out_of_reach(cfg, team.observe())
    if unreachable:
        raise RuntimeFailure(f"{unreachable}; not stopping anything (its agents may be working)")
    if not args.names:
        stop_watchdog_process(cfg)
    panes = team.tmux.list_panes()
    stopped = []
    for unit in units:
        pane = panes.get(unit.session)
        if pane is not None and pane.owner != cfg.owner:
            print(f"{unit.name}: session {unit.session} was not started by {cfg.path.name}; left alone")
            continue
        with team.store.transaction() as state:  # first, so a watchdog tick in between does not heal it
            transition(record_of(state, unit.name), "stopped", "down", time.time(), team.events, unit.name)
        ended = team.stop(unit)
        if pane is not None or ended:
            stopped.append(unit.name)
            print(f"{unit.name}: stopped" + (f" (ended {len(ended)} process(es))" if ended else ""))
    if not args.names:
        # Sessions this config started for units since removed from it, and anything left marked as ours.
        configured = {unit.session for unit in cfg.units()}
        for session, pane in panes.items():
            if pane.owner == cfg.owner and session not in configured:
                team.tmux.kill_session(session)
                print(f"{session}: stopped (no longer in the config)")
        leftovers = Reaper().end(processes_marked(config_marker(cfg), whole_config=True))
        if leftovers:
            print(f"ended {len(leftovers)} leftover process(es): {' '.join(map(str, leftovers))}")
        remove_private_socket(team.tmux)
    if not stopped:
        print("nothing was running")
    return EXIT_OK


def remove_private_socket(tmux: Tmux) -> None:
    """Once our private server has no session left (it exits then), its socket file goes too."""
    if tmux.socket_path() is None:
        return
    with contextlib.suppress(RuntimeFailure):
        for _ in range(20):  # the server exits a moment after its last session
            if tmux.remove_socket_if_unused() or tmux.list_panes():
                return  # removed, or someone else's sessions live there: not ours to remove
            time.sleep(0.1)


#: Every word `status` can print in its STATE column (README and `status --help` list them all).
STATE_WORDS = {
    "busy": "working on a turn",
    "idle": "at its prompt, waiting for a message",
    "idle (unsent input)": "at its prompt with text typed but not sent (a person typing?)",
    "idle (waiting until 14:00)": "its last lines say WAITING-UNTIL <time>: left alone until then",
    "stalled 15m": "a heal+stall agent idle for stall_idle: its nudge or reboot is due",
    "dialog": "a confirmation or menu waits for keys (known ones are answered)",
    "dialog (needs you)": "a dialog the watchdog will not answer: `agents.py keys NAME KEY…`",
    "unknown": "a screen that reads as none of these (yet)",
    "unknown (needs you)": "unreadable for stall_idle: reported, never rebooted blind",
    "limited until 07:08": "a usage limit: the watchdog resumes it then (reset plus limit_margin)",
    "limited, resumes in 45s": "the same, under two minutes away",
    "limited (reset time unknown)": "a usage limit whose reset cannot be read (no watchdog yet)",
    "limited (API rate limit, retry in 45s)": "a rate limit or overload: retried after a minute, doubling",
    "limited (API rate limit, until 07:11)": "the same, a later retry",
    "limited (API rate limit)": "a rate limit seen while no watchdog runs",
    "limited (resume due)": "its resume time has passed: the watchdog resumes it on its next look",
    "limited (CLI retrying by itself)": "the CLI waits or retries on its own: the watchdog stands down",
    "limited (needs you: …)": "a spend, credit or org limit: never automated",
    "… (starting)": "any of these while its kickoff (or resume note) waits for the prompt",
    "backoff 25s": "dead; restarted when its backoff ends",
    "backoff until 07:11": "the same, two minutes or more away",
    "backoff (restart due)": "its backoff is over: restarted on the watchdog's next look (is it running?)",
    "dead": "its process exited; nothing restarts it yet (no watchdog, or watch = none)",
    "failed": "a crash loop (or never ready): waits for `agents.py restart NAME`",
    "paused: over budget": "a loop agent whose phase or day used its budget: raise it, or `agents.py restart NAME`",
    "running": "a service that is up",
    "stopped": "not started, `down`, or a task that finished cleanly",
    "unreachable (tmux server)": "no session visible, yet the team's processes run: the tmux socket was deleted",
}


def until_words(moment: float, now: float, soon: str, later: str) -> str:
    """"backoff 25s" when under two minutes away, else "backoff until 07:11" (``soon``/``later``
    are templates with {}): a countdown is clearer close up, a time of day further out."""
    left = moment - now
    return soon.format(format_duration(left)) if left < 120 else later.format(clock_time(moment, now))


def limit_words(screen: Screen, record: UnitRecord, now: float) -> str:
    """A limited agent as the watchdog decided it, not as the banner reads now: its own
    resume time (reset plus margin) is the truth, and it does not drift from call to call."""
    episode = record.limit
    if screen.limit_kind in ("manual", "retrying") or not episode:
        return screen.describe(now)
    until = episode.get("until")
    if not until:
        return screen.describe(now)
    if until <= now:
        return "limited (resume due)"
    if screen.limit_kind == "rate":
        return until_words(until, now, "limited (API rate limit, retry in {})", "limited (API rate limit, until {})")
    return until_words(until, now, "limited, resumes in {}", "limited until {}")


def status_of(cfg: Config, look: Seen, record: UnitRecord, now: float, state: dict | None = None) -> tuple[str, str]:
    """(state, detail) for ``status``: the lifecycle where it says more than the screen does."""
    pane, screen = look.pane, look.screen
    if look.foreign:
        return "stopped", "a session with this name belongs to another config"
    if record.lifecycle == "failed":
        return "failed", record.reason
    if state is not None and isinstance(look.unit, Agent) and paused_by_budget(cfg, state, look.unit):
        return "paused: over budget", loop_of(state).paused
    if record.lifecycle == "backoff" and (pane is None or pane.dead):
        until = record.backoff_until
        word = "backoff (restart due)" if until <= now else until_words(until, now, "backoff {}", "backoff until {}")
        return word, record.reason
    if pane is None:
        if record.lifecycle in ("stopped", "exited"):
            return "stopped", record.reason
        return "dead", "session gone"
    if pane.dead:
        unit = look.unit
        if isinstance(unit, Agent) and unit.kind == "task" and pane.dead_status == 0:
            return "stopped", "finished (exit 0)"
        return "dead", screen.detail
    if screen.state == "running":
        return "running", ""
    word = limit_words(screen, record, now) if screen.state == "limited" else screen.describe(now)
    if screen.state == "dialog" and "dialog" in record.reported or \
            screen.state == "unknown" and "needs-you" in record.reported:
        word += " (needs you)"
    unit = look.unit
    idle = idle_for(pane, record, now)
    waiting = waiting_until(record.waiting["text"], record.waiting["seen"]) if record.waiting else None
    if screen.state == "idle" and waiting and waiting > now:
        word = f"idle (waiting until {clock_time(waiting, now)})"
    elif (screen.state == "idle" and isinstance(unit, Agent) and unit.watch == "heal+stall"
            and idle >= cfg.watchdog.stall_idle and now - record.started_at >= cfg.watchdog.stall_grace):
        word = f"stalled {format_duration(idle)}"
    if record.lifecycle == "starting":
        word += " (starting)"
    return word, screen.detail


def status_rows(cfg: Config, team: Team, now: float) -> tuple[list[dict], list[dict]]:
    seen = team.observe(now)
    state = team.store.load()
    agents, services = [], []
    for unit in cfg.units():
        look = seen[unit.name]
        record = record_of(state, unit.name)
        word, detail = status_of(cfg, look, record, now, state)
        since = record.screen_since if record.screen and record.screen == word.split()[0] else None
        if since is None:
            since = record.since or None
        pane = look.pane if not look.foreign else None
        row = {
            "name": unit.name,
            "kind": unit.kind if isinstance(unit, Agent) else "service",
            "backend": unit.backend if isinstance(unit, Agent) else "",
            "session": unit.session,
            "state": word,
            "detail": detail,
            "since": iso(since) if since else None,
            "restarts": record.restarts,
            "lifecycle": record.lifecycle,
            "uptime_s": round(now - pane.created) if pane and not pane.dead else None,
            "last_activity": iso(pane.activity) if pane else None,
            "pid": pane.pid if pane and not pane.dead else None,
        }
        if isinstance(unit, Agent):
            row["session_ids"] = record.session_ids
            row["resumed_from"] = record.resumed_from or None
            until = record.limit.get("until") if look.screen.state == "limited" else None
            if until or look.screen.reset_at:
                row["limited_until"] = iso(until or look.screen.reset_at)  # the watchdog's own resume time
            if look.screen.state == "dialog":
                row["dialog"] = {"line": look.screen.detail, "lines": look.screen.lines,
                                 "answers": dialog_answer(cfg.backends[unit.backend], look.screen),
                                 "needs_you": "dialog" in record.reported}
            agents.append(row)
        else:
            services.append(row)
    return agents, services


def status_table(rows: list[dict], now: float) -> list[str]:
    """The `status` table. Columns widen to fit: a state is never cut ("limited (CLI retrying by
    itself)" stays whole)."""
    name_w = max([14, *(len(row["name"]) + 1 for row in rows)])
    backend_w = max([9, *(len(row["backend"]) + 1 for row in rows)])
    state_w = max([26, *(len(row["state"]) + 1 for row in rows)])
    lines = [f"{'NAME':<{name_w}} {'KIND':<10} {'BACKEND':<{backend_w}} {'STATE':<{state_w}} {'UPTIME':>7} "
             f"{'RESTARTS':>8}  LAST ACTIVITY"]
    for row in rows:
        uptime = format_duration(row["uptime_s"]) if row["uptime_s"] is not None else "-"
        activity = "-"
        if row["last_activity"]:
            activity = format_duration(now - datetime.fromisoformat(row["last_activity"]).timestamp()) + " ago"
        lines.append(f"{row['name']:<{name_w}} {row['kind']:<10} {row['backend'] or '-':<{backend_w}} "
                     f"{row['state']:<{state_w}} {uptime:>7} {row['restarts']:>8}  {activity}")
    return lines


def cmd_status(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    team = Team(cfg)
    now = time.time()
    agents, services = status_rows(cfg, team, now)
    unreachable = server_out_of_reach(cfg, team.observe(now))
    if unreachable:  # "dead" would be a lie: the sessions run, tmux cannot be asked
        for row in [*agents, *services]:
            if row["state"].startswith("dead"):
                row.update(state="unreachable (tmux server)", detail=unreachable)
    state = team.store.load()
    watchdog = watchdog_status(cfg)
    plan = phase_rows(cfg, state)
    phase_info = {"current": plan["current"], "complete": plan["complete"],
                  "done": [row["id"] for row in plan["phases"] if row["done"]],
                  "last_handoff": plan["last_handoff"], "last_handoff_at": plan["last_handoff_at"]}
    if args.json:
        print(json.dumps({"agents": agents, "services": services, "watchdog": watchdog, "phase": phase_info},
                         indent=1))
        return EXIT_OK
    for line in status_table([*agents, *services], now):
        print(line)
    if unreachable:
        print(f"\n{unreachable}")
    if watchdog["pid"]:
        last = watchdog["last_tick"]
        print(f"\nwatchdog: pid {watchdog['pid']}, {'alive' if watchdog['alive'] else 'NOT RUNNING'}"
              + (f", last tick {format_duration(now - datetime.fromisoformat(last).timestamp())} ago" if last else ""))
    else:
        print("\nwatchdog: not running")
    if phase_info["current"]:
        total = len(plan["phases"])
        print(f"phase: {phase_info['current']} ({len(phase_info['done'])} of {total} done)"
              + (" — the sequence is complete" if phase_info["complete"] else ""))
    if phase_info["last_handoff"]:
        moment = datetime.fromisoformat(phase_info["last_handoff_at"]).timestamp()
        print(f"last hand-off: {phase_info['last_handoff']} ({format_duration(now - moment)} ago)")
    return EXIT_OK


def cmd_send(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    unit = select_units(cfg, [args.name])[0]
    if args.file:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    else:
        text = " ".join(args.text)
    if not clean_message(text):
        raise ConfigError(["send: the message is empty"])
    team = Team(cfg)
    # The kickoff goes first: while the watchdog is still delivering it, wait a little.
    deadline = time.monotonic() + 30
    while (record_of(team.store.load(), unit.name).lifecycle == "starting" and watchdog_status(cfg)["alive"]
           and time.monotonic() < deadline):
        time.sleep(0.2)
    action = Action("send", unit.name, "sent from the command line", text=text, purpose="send")
    delivery = team._deliver(action, allow_unknown=True, command=args.command)
    with team.store.transaction() as state:
        team._record_delivery(action, delivery, state, time.time())
    if delivery.ok:
        print(f"{unit.name}: delivered ({delivery.detail}; {delivery.presses} press(es) of "
              f"{backend_of(cfg, unit).submit_key})")
        return EXIT_OK
    print(f"{unit.name}: NOT delivered: {delivery.outcome}: {delivery.detail}", file=sys.stderr)
    return EXIT_RUNTIME


def cmd_restart(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    unit = select_units(cfg, [args.name])[0]
    missing = missing_program(cfg, unit)
    if missing:
        raise ConfigError([f"{Loader._label(cfg.path)}: {unit_section(unit)} command: {missing}"])
    team = Team(cfg)
    unreachable = server_out_of_reach(cfg, team.observe())
    if unreachable:
        raise RuntimeFailure(f"{unreachable}; not restarting {unit.name}")
    with team.store.transaction() as state:
        record = record_of(state, unit.name)
        record.restarts += 1
        record.restart_times = []  # a manual restart clears the crash-loop count
        record.backoff_until = 0.0
        record.budget_waived = loop_of(state).paused_key  # and lifts a budget pause, for this agent
    how = "fresh, with its kickoff" if args.fresh else "resumed into its conversation where it can be"
    ok = team.bring_up([unit], f"restart (command line, {how}; restart #{record.restarts})", resume=not args.fresh)
    return EXIT_OK if ok else EXIT_RUNTIME


def cmd_keys(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    unit = select_units(cfg, [args.name])[0]

    def refuse(message: str) -> None:
        raise ConfigError([f"keys: {message}"])

    keys = as_keys(args.keys, refuse)
    team = Team(cfg)
    backend = backend_of(cfg, unit)
    try:
        before, after = team.sender.press(unit.session, backend, keys)
    except RuntimeFailure as failure:
        print(f"{unit.name}: {failure}", file=sys.stderr)
        return EXIT_RUNTIME
    print(f"{unit.name}: the screen read {before.state}" + (f" ({before.detail})" if before.detail else "") + ":")
    for line in before.lines:
        print(f"  | {line}")
    print(f"pressed {' '.join(keys)}; now it reads {after.state}" + (f" ({after.detail})" if after.detail else "")
          + ":")
    for line in after.lines:
        print(f"  | {line}")
    team.events.emit("keys", unit.name, f"pressed by hand: {' '.join(keys)} (the screen read {before.state}, now "
                                        f"{after.state})", keys=" ".join(keys))
    return EXIT_OK


def cmd_tokens(args: argparse.Namespace) -> int:
    if args.scan is not None:
        priced = load_config(args.config) if args.cost and args.config else None  # its [pricing], if named
        return tokens_scan([Path(path).expanduser() for path in args.scan], args.json, args.cost, priced)
    cfg = load_config(args.config)
    path = cfg.log_dir / "token-log.jsonl"
    rows = []
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                row = json.loads(line)
                if isinstance(row, dict) and isinstance(row.get("total"), dict):
                    rows.append(row)
    rows += in_flight_rows(cfg, StateStore(cfg.state_dir).load(), time.time())
    phases = [row for row in rows if ":" not in str(row.get("phase_id"))]
    if args.by == "gate":
        rows = [row for row in rows if ":" in str(row.get("phase_id"))]
    elif args.by == "phase":
        rows = phases
    elif args.by == "agent":
        per_agent: dict[str, list[int]] = {}
        for row in phases:
            for name, figures in (row.get("agents") or {}).items():
                sums = per_agent.setdefault(name, [0, 0, 0, 0])
                for index, field_name in enumerate(TOKEN_FIELDS):
                    sums[index] += token_count(figures.get(field_name))
        rows = [{"agent": name, **token_figures(figures)} for name, figures in per_agent.items()]
    total = [sum(token_count(row["total"].get(name)) for row in phases) for name in TOKEN_FIELDS]
    summary = token_row("total", total)
    if args.cost:
        for row in [*rows, *phases]:
            if "phase_id" in row:
                row["cost_usd"], row["unpriced"] = cost_of(cfg, row.get("models") or {})
        summary["cost_usd"] = round(sum(row["cost_usd"] for row in phases), 4)
        summary["unpriced"] = sorted({model for row in phases for model in row["unpriced"]})
        summary["prices_dated"] = PRICES_DATED
    if args.json:
        print(json.dumps({"rows": rows, "total": summary}, indent=1))
        return EXIT_OK
    if not rows:
        print(f"{path}: no token records yet (one is written as each phase ends)")
        return EXIT_OK
    table = []
    for row in rows:
        name = row.get("agent") or str(row.get("phase_id")) + (" (in flight)" if row.get("in_flight") else
                                                                " (abandoned)" if row.get("abandoned") else "")
        figures = row if "agent" in row else row["total"]
        priced = {key: row[key] for key in ("cost_usd", "unpriced") if key in row}
        table.append(token_row(name, [token_count(figures.get(n)) for n in TOKEN_FIELDS], **priced))
    print_token_table([*table, summary])
    return EXIT_OK


def in_flight_rows(cfg: Config, state: dict, now: float) -> list[dict]:
    """The phase (and gate) under way, as the watchdog's bases and the transcripts say now."""
    if cfg.loop is None or not cfg.loop.phases:
        return []
    loop = loop_of(state)
    if not loop.token_phase or loop.complete:
        return []
    tokens = TokenBook(cfg.state_dir / "tokens.json").read(cfg, state)  # never saved: the watchdog's own stays
    return [{**record, "in_flight": True} for record in records_in_flight(cfg, state, now, tokens)]


def records_in_flight(cfg: Config, state: dict, now: float, tokens: dict[str, list[int]]) -> list[dict]:
    """The gate (if one is open) and the phase under way, as token records ending ``now``."""
    loop = loop_of(state)
    rows = [token_record(loop.token_phase, loop.phase_started or now, now, usage_since(tokens, loop.token_base))]
    if loop.gate:
        rows.insert(0, token_record(f"{loop.token_phase}:{loop.gate}", loop.gate_started, now,
                                    usage_since(tokens, loop.gate_base)))
    return rows


def tokens_scan(paths: list[Path], as_json: bool, cost: bool = False, cfg: Config | None = None) -> int:
    """``tokens --scan PATH…``: totals per session and overall of any transcripts."""
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        raise ConfigError([f"tokens --scan: no such file or folder: {', '.join(missing)}"])
    ledger, files = TokenLedger(window=None), transcript_files(paths)  # one pass: every figure kept
    sessions: dict[str, int] = {}  # session → the files its responses were read in
    for counted in scan_in_parallel(files):
        for group in dict.fromkeys(group for _, _, group, _ in counted):
            sessions[group] = sessions.get(group, 0) + 1
        for key, figures, group, model in counted:  # replayed in file order: the same totals as one reader's
            ledger.count(key, figures, group, model)
    groups, models = split_models(ledger.totals)
    rows = [token_row(session, figures, files=sessions.get(session, 0)) for session, figures in groups.items()]
    rows.sort(key=lambda row: -row["total"])
    total = [sum(figures[index] for figures in groups.values()) for index in range(len(TOKEN_FIELDS))]
    summary = token_row("total", total, files=len(files))
    if cost:
        for row in rows:
            mine = {name.split("\t", 1)[1]: token_figures(figures) for name, figures in ledger.totals.items()
                    if name.startswith(row["name"] + "\t")}
            row["cost_usd"], row["unpriced"] = cost_of(cfg, mine)
        summary["cost_usd"], summary["unpriced"] = cost_of(cfg, {m: token_figures(f) for m, f in models.items()})
        summary["prices_dated"] = PRICES_DATED
    if as_json:
        print(json.dumps({"rows": rows, "total": summary}, indent=1))
        return EXIT_OK
    print_token_table([*rows, {**summary, "name": f"total ({len(files)} files)"}])
    return EXIT_OK


class TokenTape:
    """A ledger that only records what it is asked to count (a worker's reading, replayed later)."""

    def __init__(self) -> None:
        self.counted: list[tuple[str | None, list[int], str]] = []

    def count(self, key: str | None, figures: list[int], group: str, model: str = "") -> None:
        self.counted.append((key, figures, group, model))


def scan_files(paths: list[Path]) -> list[list]:
    """The counts each file's lines ask for, in order (run in a worker process). An opencode store
    is read whole, each session as its own group."""
    out = []
    for path in paths:
        tape = TokenTape()
        if path.name.endswith(".db"):
            try:
                with opened_store(path) as db:
                    for (session,) in db.execute("select id from session order by time_created, id") if db else []:
                        read_opencode_session(db, session, TokenCursor(), tape, session)  # type: ignore[arg-type]
            except OSError as error:
                print(f"warning: {error}; not counted (is it opencode's store?)", file=sys.stderr)
        else:
            read_transcript(path, TokenCursor(), tape, final=False)  # type: ignore[arg-type]
        out.append(tape.counted)
    return out


PARALLEL_SCAN_BYTES = 32 << 20  # below this a second process costs more than it saves


def scan_in_parallel(files: list[Path]) -> list[list]:
    """``scan_files`` over every file, split across the machine's cores for a big corpus; the
    results come back in file order."""
    sizes = []
    for path in files:
        with contextlib.suppress(OSError):
            sizes.append(path.stat().st_size)
    workers = min(os.cpu_count() or 1, 8)
    if workers < 2 or sum(sizes) < PARALLEL_SCAN_BYTES or len(files) < 2:
        return scan_files(files)
    from concurrent.futures import ProcessPoolExecutor

    chunks = [files[index::workers * 4] for index in range(workers * 4)]  # interleaved: similar sizes
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(scan_files, chunks))
    by_file = {str(path): result for chunk, found in zip(chunks, results) for path, result in zip(chunk, found)}
    return [by_file[str(path)] for path in files]


#: Dollars per million tokens (input, output, cache creation, cache read) by model family, as the
#: vendors listed them on this date. A model's longest matching prefix prices it; [pricing] entries
#: come first. A model matched by none is shown as unpriced, never guessed.
PRICES_DATED = "2025-11-24"
PRICES = {
    "claude-opus-4-5": (5.0, 25.0, 6.25, 0.50),
    "claude-opus-4": (15.0, 75.0, 18.75, 1.50),
    "claude-sonnet-4": (3.0, 15.0, 3.75, 0.30),
    "claude-3-7-sonnet": (3.0, 15.0, 3.75, 0.30),
    "claude-haiku-4-5": (1.0, 5.0, 1.25, 0.10),
    "claude-3-5-haiku": (0.80, 4.0, 1.0, 0.08),
    "gpt-5-mini": (0.25, 2.0, 0.0, 0.025),
    "gpt-5": (1.25, 10.0, 0.0, 0.125),
}


def price_of(cfg: Config | None, model: str) -> tuple[float, ...] | None:
    """$/Mtok for ``model``: the longest matching prefix of [pricing], else of the built-in table."""
    for table in ((cfg.pricing if cfg is not None else {}), PRICES):
        matches = [prefix for prefix in table if model.startswith(prefix)]
        if matches:
            return tuple(table[max(matches, key=len)])
    return None


def cost_of(cfg: Config | None, models: dict[str, dict]) -> tuple[float, list[str]]:
    """Dollars for usage per model (``{model: {input, output, …}}``), and the models left unpriced."""
    dollars, unpriced = 0.0, []
    for model, figures in models.items():
        price = price_of(cfg, model)
        if price is None:
            if any(token_count(figures.get(name)) for name in TOKEN_FIELDS):
                unpriced.append(model)
            continue
        dollars += sum(token_count(figures.get(name)) * rate for name, rate in zip(TOKEN_FIELDS, price)) / 1e6
    return round(dollars, 4), unpriced


def print_token_table(rows: list[dict]) -> None:
    width = max([8, *(len(row["name"]) + 1 for row in rows)])
    priced = any("cost_usd" in row for row in rows)
    print(f"{'NAME':<{width}} {'INPUT':>12} {'OUTPUT':>12} {'CACHE_CREATION':>14} {'CACHE_READ':>14} {'TOTAL':>14}"
          + ("         COST" if priced else ""))
    for row in rows:
        cost = ""
        if priced:
            cost = f" {'$' + format(row.get('cost_usd', 0), ',.2f'):>12}"
            cost += f" (unpriced: {', '.join(row['unpriced'])})" if row.get("unpriced") else ""
        print(f"{row['name']:<{width}} {row['input']:>12,} {row['output']:>12,} {row['cache_creation']:>14,} "
              f"{row['cache_read']:>14,} {row['total']:>14,}" + cost)
    if priced:
        print(f"(prices: the built-in table of {PRICES_DATED}, or [pricing]; $ per million tokens)")


def phase_rows(cfg: Config, state: dict) -> dict:
    """The phase plan as ``phase show --json`` prints it."""
    loop = loop_of(state)
    phase = current_phase(cfg, state)
    phases = cfg.loop.phases if cfg.loop else []
    return {"phases": [{"id": p.id, "status_file": in_subdir(cfg.loop, p.status), "done": p.id in loop.done}
                       for p in phases],
            "current": phase.id if phase else None, "complete": loop.complete,
            "started": iso(loop.phase_started) if loop.phase_started and not loop.complete else None,
            "completed": iso(loop.completed_at) if loop.complete and loop.completed_at else None,
            "last_handoff": loop.last_handoff or None,
            "last_handoff_at": iso(loop.last_handoff_at) if loop.last_handoff_at else None}


def no_phases(cfg: Config) -> ConfigError:
    return ConfigError([f"{Loader._label(cfg.path)}: [loop] phases: no phases in the config"])


def cmd_phase(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if not cfg.loop or not cfg.loop.phases:
        raise no_phases(cfg)
    store = StateStore(cfg.state_dir)
    if args.action == "set":
        if not args.id:
            raise ConfigError(["agents.py phase set: which phase? (phases: "
                               + ", ".join(phase.id for phase in cfg.loop.phases) + ")"])
        return phase_set(cfg, store, args.id)
    info = phase_rows(cfg, store.load())
    if args.json:
        print(json.dumps(info, indent=1))
        return EXIT_OK
    now = time.time()
    for row in info["phases"]:
        mark = "done" if row["done"] else ("current" if row["id"] == info["current"] and not info["complete"] else "")
        print(f"{'*' if row['id'] == info['current'] and not info['complete'] else ' '} {row['id']:<14} "
              f"{mark:<8} {row['status_file']}")
    if info["complete"]:
        print("\nthe sequence is complete" + (f" (since {clock_time(datetime.fromisoformat(info['completed']).timestamp(), now)})"
                                              if info["completed"] else ""))
    else:
        started = info["started"]
        print(f"\ncurrent: {info['current']}" + (f", for {format_duration(now - datetime.fromisoformat(started).timestamp())}"
                                                 if started else "") + f"; done when its status file on "
              f"{cfg.loop.remote}/{cfg.loop.branch} says {cfg.loop.done_marker!r}")
    return EXIT_OK


def move_to_phase(cfg: Config, state: dict, wanted: str, now: float, tokens: dict[str, list[int]] | None) -> list[dict]:
    """The loop memory moved by hand to phase ``wanted`` (it and later phases not done). Returns the
    token records of what it leaves unfinished — the phase, and its gate, under way — marked
    ``"abandoned": true``, so the bill still holds every token; the new phase counts from ``tokens``,
    each agent's cumulative usage now (None: not known here, so from the watchdog's next look)."""
    loop, ids = loop_of(state), [phase.id for phase in cfg.loop.phases]
    left = []
    if tokens is not None and loop.token_phase and not loop.complete:
        left = [{**record, "abandoned": True} for record in records_in_flight(cfg, state, now, tokens)]
        loop.token_phase, loop.token_base = wanted, tokens
        loop.gate, loop.gate_base, loop.gate_started = "", tokens, now
    else:
        loop.token_phase = ""  # its tokens count from the watchdog's next look
    loop.current, loop.phase_started = wanted, now
    loop.done = [done for done in loop.done if done not in ids[ids.index(wanted):]]
    loop.complete, loop.completed_at = False, 0.0
    return left


def phase_set(cfg: Config, store: StateStore, wanted: str) -> int:
    """Move the machine by hand: ``wanted`` becomes current (it and later phases not done) and the
    loop agents that run are restarted fresh with its kickoff."""
    ids = [phase.id for phase in cfg.loop.phases]
    if wanted not in ids:
        hint = did_you_mean(wanted, ids)
        raise ConfigError([f"{Loader._label(cfg.path)}: [loop] phases: no phase {wanted!r}{hint} "
                           f"(phases: {', '.join(ids)})"])
    events = EventLog(cfg.log_dir)
    tokens = None
    before = store.load()
    if loop_of(before).token_phase and not loop_of(before).complete:
        try:  # read before the lock (cumulative figures): the watchdog and `status` do not wait on it
            tokens = TokenBook(cfg.state_dir / "tokens.json").read(cfg, before)
        except Exception as error:  # noqa: BLE001 - the phase still moves; only its record is lost
            print(f"warning: transcripts unreadable ({error}); the phase left gets no token record", file=sys.stderr)
    now = time.time()
    with store.transaction() as state:
        left = move_to_phase(cfg, state, wanted, now, tokens)
        running = [agent for agent in cfg.agents
                   if agent.kind == "loop" and record_of(state, agent.name).lifecycle not in ("stopped", "failed")]
        for agent in running:
            record_of(state, agent.name).pings = []
        if cfg.watchdog.log_tokens:
            for record in left:
                append_token_record(cfg.log_dir / "token-log.jsonl", record)
    with contextlib.suppress(FileNotFoundError):
        (cfg.log_dir / "SEQUENCE-COMPLETE").unlink()
    used = f"; phase {left[-1]['phase_id']} left unfinished after {left[-1]['total']['total']:,} tokens" if left else ""
    events.emit("phase-set", "", f"phase {wanted} set by hand (`agents.py phase set`){used}", now=now)
    print(f"phase {wanted} is current" + (f" (phase {left[-1]['phase_id']}'s {left[-1]['total']['total']:,} tokens "
                                          f"so far are logged as abandoned)" if left else ""))
    with contextlib.suppress(RuntimeFailure):
        git = Git(cfg.loop.folder)
        text = git.show(git.head(cfg.loop.remote, cfg.loop.branch), in_subdir(cfg.loop, cfg.loop.phases[ids.index(wanted)].status))
        if text is not None and cfg.loop.done_marker in text:
            print(f"note: its status file on {cfg.loop.remote}/{cfg.loop.branch} already says "
                  f"{cfg.loop.done_marker!r}: the watchdog will advance past it at its next tick")
    if not running:
        return EXIT_OK
    ok = Team(cfg, events=events).bring_up(running, f"phase {wanted} set by hand: restarted fresh with its kickoff")
    return EXIT_OK if ok else EXIT_RUNTIME


def cmd_attach(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    unit = select_units(cfg, [args.name])[0]
    team = Team(cfg)
    pane = team.tmux.list_panes().get(unit.session)
    if pane is None:
        print(f"{unit.name}: no session {unit.session} (is it up?)", file=sys.stderr)
        return EXIT_RUNTIME
    team.tmux.attach(unit.session)
    return EXIT_OK  # not reached: attach replaces this process


def cmd_logs(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if args.name == "watchdog":
        return follow_file(cfg.log_dir / "watchdog.log", args.lines, args.follow)
    unit = select_units(cfg, [args.name])[0]
    team = Team(cfg)
    pane = team.tmux.list_panes().get(unit.session)
    if pane is None:
        print(f"{unit.name}: no session {unit.session}", file=sys.stderr)
        return EXIT_RUNTIME
    # The blank rows under the last output are no lines of it: read more, drop them, keep N.
    lines = team.tmux.capture_history(pane.pane_id, args.lines + pane.height)
    while lines and not lines[-1].strip():
        lines.pop()
    lines = lines[-args.lines:] if args.lines else []
    print("\n".join(lines))
    while args.follow:
        time.sleep(1.0)
        pane = team.tmux.list_panes().get(unit.session)
        if pane is None:
            print(f"-- session {unit.session} ended --")
            return EXIT_OK
        fresh = team.tmux.capture_history(pane.pane_id, max(args.lines, 200))
        while fresh and not fresh[-1].strip():
            fresh.pop()
        for line in new_lines(lines, fresh):
            print(line, flush=True)
        lines = fresh
    return EXIT_OK


def new_lines(before: list[str], after: list[str]) -> list[str]:
    """The lines of ``after`` that follow what ``before`` ended with (for following a pane)."""
    anchor = [line for line in before if line.strip()][-3:]
    if not anchor:
        return after
    for end in range(len(after), len(anchor) - 1, -1):
        window = [line for line in after[:end] if line.strip()][-len(anchor):]
        if window == anchor:
            return after[end:]
    return after


def follow_file(path: Path, lines: int, follow: bool) -> int:
    if not path.exists():
        print(f"{path}: no log yet", file=sys.stderr)
        return EXIT_RUNTIME
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle.readlines()[-lines:]:
            print(line, end="")
        while follow:
            line = handle.readline()
            if line:
                print(line, end="", flush=True)
            else:
                time.sleep(0.5)
    return EXIT_OK


def cmd_watchdog(args: argparse.Namespace) -> int:
    path = find_config_path(args.config)
    watchdog = Watchdog(path, echo=(lambda line: print(line, flush=True)) if sys.stdout.isatty() else None)
    return watchdog.run(once=args.once)


#: Every kind of event the watchdog writes (`events --kind` alone lists them).
EVENT_KINDS = {
    "watchdog-start": "the watchdog started", "watchdog-stop": "it stopped",
    "start": "a session started (`resumed` names the conversation it resumed)",
    "start-failed": "a unit died at once when `up` started it",
    "lifecycle": "a unit moved between stopped, starting, running, backoff, failed and exited",
    "kickoff": "a kickoff delivered", "resume-note": "a resumed agent told it was restarted",
    "resume-failed": "a resume that did not take: the next start is fresh",
    "resume": "the backend's resume sent after a limit", "ping": "a hand-off ping delivered",
    "nudge": "a DONE-nudge delivered", "wake": "a wake delivered", "waiting-over": "a WAITING-UNTIL time passed",
    "send": "a message from `agents.py send`", "keys": "keys pressed by `agents.py keys`",
    "…-held / …-failed / …-late": "a delivery held (dialog, typed text), failed, or overtaken by a restart",
    "dialog": "a known dialog answered, or one that needs you", "needs-you": "a screen nobody can read",
    "slow-start": "no prompt after ready_timeout", "wake-skipped": "a task's wake while it still runs",
    "limit-wait": "a limit seen and its wait decided", "limit-over": "the agent works again",
    "handoff": "new commits or inbox files read", "handoff-baseline": "the hand-off's starting point",
    "branch-rewritten": "the remote branch was force-pushed", "git-failed": "the repo could not be read",
    "git-ok": "it can again", "advance": "a phase done, the next begins", "phase-begin": "a phase is current",
    "phase-resume": "appended phases resume a completed sequence", "phase-set": "`agents.py phase set`",
    "sequence-complete": "every phase done", "config-error": "an edit that does not validate (ignored)",
    "config-ok": "the config validates again", "config-added": "a unit new in the config",
    "config-removed": "a unit gone from the config", "clock-jump": "the wall clock jumped; timers moved",
    "skipped": "an action dropped: its unit (or the loop) changed meanwhile", "act-failed": "an action that raised",
    "check-failed": "a check that raised (the others went on)", "observe-failed": "tmux could not be read",
    "tick-failed": "a tick that raised", "server-unreachable": "sessions gone but processes alive: not healing",
    "bug": "an illegal lifecycle move, refused",
    "state-repaired": "a damaged state file or field repaired (named), never silently reset",
    "tokens": "a phase's or gate's token record written",
    "tokens-failed": "transcripts (or the CLIs holding them open) that could not be read",
    "transcript": "a session known to be an agent's (the rollout its Codex holds open, one opencode began in its "
                  "folder): resumed into, counted for it",
    "budget-pause": "a budget passed: the loop agents are paused", "budget-ok": "under budget again: resumed",
    "interrupt": "a paused agent's turn interrupted (its interrupt_key)",
}


def cmd_events(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    path = cfg.log_dir / "events.jsonl"
    if args.kind and "?" in args.kind:
        for kind, meaning in EVENT_KINDS.items():
            print(f"{kind:<28} {meaning}")
        return EXIT_OK

    def wanted(event: dict) -> bool:
        return (not args.agent or event.get("agent") == args.agent) and (not args.kind or event.get("kind") in args.kind)

    def show(line: str) -> None:
        with contextlib.suppress(json.JSONDecodeError):
            event = json.loads(line)
            if wanted(event):
                if args.json:
                    print(json.dumps(event, ensure_ascii=False), flush=True)
                else:
                    details = {k: v for k, v in event.items() if k not in ("time", "kind", "agent", "reason")
                               and v not in (None, "", [], {}) and k != "traceback"}
                    extra = " ".join(f"{k}={v}" for k, v in details.items())
                    print(f"{event.get('time', '')} {event.get('kind', ''):<14} {event.get('agent') or '-':<14} "
                          f"{event.get('reason', '')}" + (f"  [{extra}]" if extra else ""), flush=True)

    if not path.exists():
        if not args.follow:
            print(f"{path}: no events yet", file=sys.stderr)
            return EXIT_OK
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    with open(path, encoding="utf-8", errors="replace") as handle:
        lines = handle.readlines()
        selected = [line for line in lines if line.strip()]
        if args.lines:
            matching = []
            for line in reversed(selected):
                with contextlib.suppress(json.JSONDecodeError):
                    if wanted(json.loads(line)):
                        matching.append(line)
                if len(matching) >= args.lines:
                    break
            selected = list(reversed(matching))
        for line in selected:
            show(line)
        while args.follow:
            line = handle.readline()
            if line:
                show(line)
            else:
                time.sleep(0.5)
    return EXIT_OK


# ============================================================================
# main
#   Argument parsing: every verb documented with examples (`--help`).
# ============================================================================

OVERVIEW = """\
Run a team of terminal coding agents (Claude Code, Codex, Gemini CLI, aider,
opencode, or any REPL) in tmux sessions from one config file, agents.toml, and
keep them working unattended.

quick start:
  python3 agents.py check           validate agents.toml, show what `up` would start
  python3 agents.py up              start every agent and service (idempotent)
  python3 agents.py status          who is busy, idle, stuck, limited or dead
  python3 agents.py send NAME TEXT  deliver a message the safe, verified way
  python3 agents.py attach NAME     look over an agent's shoulder (detach: C-b d)
  python3 agents.py down            stop everything this config started
"""

EPILOG = """\
config file:
  --config PATH, else $AGENTS_CONFIG, else ./agents.toml. --config may come
  before or after the command. Paths in the file are relative to its folder.

idle is not stalled:
  Only a loop agent is judged stalled (watch = "heal+stall" by default): idle
  for stall_idle it gets a DONE-nudge, then a fresh reboot; persistent and task
  agents (watch = "heal") may idle for ever and are restarted only when they die.
  A wake that is due goes out instead of a reboot, and a screen that cannot be
  read is reported ("needs you"), never rebooted blind.

a heal resumes:
  A dead agent is restarted after its backoff into the same conversation where
  its CLI can resume (Claude Code and Gemini CLI: --resume <its session id>;
  Codex: resume <the id of the rollout it was seen writing>; opencode:
  --session <the id of the session it began>; aider: --restore-chat-history),
  with a one-line note; else, or with restart_mode = "fresh", fresh with its
  kickoff.

exit codes:
  0 ok   1 runtime failure (tmux refused, delivery not seen)   2 usage or config error

Each command has its own help: python3 agents.py COMMAND --help
"""


def as_line_count(text: str) -> int:
    """``-n N``: a whole number, 0 or more."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a number of lines (0 or more), got {text!r}")
    return int(text)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keep the hand-made layout of descriptions and epilogs."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agents.py", description=OVERVIEW, epilog=EPILOG,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--config", metavar="PATH", help="the config file (default: $AGENTS_CONFIG or ./agents.toml)")
    parser.add_argument("--version", action="version", version=f"agents.py {VERSION}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    def command(name: str, summary: str, description: str, handler: Callable) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=summary, description=f"{summary}\n\n{description}",
                                  formatter_class=HelpFormatter)
        sub.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                         help="the config file (also accepted before the command)")
        sub.set_defaults(handler=handler)
        return sub

    sub = command("up", "start agents and services that are not running", """\
Starts each named agent or service (all when none is named) that has no live
session: a tmux session with its command (no shell in between), cwd, env, a
fixed window size and a large history. Then it answers known start-up dialogs
by the backend's rules (Claude Code's bypass-permissions warning: Down, Enter),
waits for the prompt and delivers the kickoff (the agent's prompt, or its
phase's kickoff for a loop agent); a screen that stays limited shows no prompt
before the reset, so `up` says so and leaves the kickoff to the watchdog.
Running sessions are left alone, so `up` is safe to repeat. A command that is
not on PATH is an error before anything starts.

examples:
  agents.py up                    everything
  agents.py up builder            just the builder
  agents.py up --no-watchdog      start agents but no watchdog""", cmd_up)
    sub.add_argument("names", nargs="*", metavar="NAME", help="agents or services to start (default: all)")
    sub.add_argument("--no-watchdog", action="store_true", help="do not start the background watchdog")

    sub = command("down", "stop sessions this config started", """\
Kills the named sessions (all of this config's when none is named) and every
process they left behind (found by pid through a marker in their environment,
never by name), and stops the watchdog when stopping everything. Sessions that
another config or a human started are never touched.

examples:
  agents.py down
  agents.py down reviewer""", cmd_down)
    sub.add_argument("names", nargs="*", metavar="NAME", help="agents or services to stop (default: all)")

    sub = command("status", "show every agent's and service's state", """\
Read-only. One tmux call lists every pane, one more captures their screens, and
each screen is read through its backend; limits and backoffs are shown as the
watchdog decided them. Also shown: uptime, restarts, last activity, the
watchdog, the current phase and the last hand-off. STATE is one of:

""" + "\n".join(f"  {word:<34} {meaning}" for word, meaning in STATE_WORDS.items()) + """

examples:
  agents.py status
  agents.py status --json | jq '.agents[] | select(.state | startswith("idle")) | .name'""", cmd_status)
    sub.add_argument("--json", action="store_true",
                     help='machine-readable: {"agents": [...], "services": [...], "watchdog": {...}, "phase": {...}}')

    sub = command("send", "deliver a message to an agent, verified", """\
Types TEXT into the agent's session the way the watchdog does: one sender per
session at a time, copy mode left, never typed into a dialog (the message is
held instead), control characters stripped, the text sent literally (several
lines go as one bracketed paste), the backend's submit key pressed after its
submit delay, and the landing verified on screen (the input box emptied or the
agent turned busy), pressing the submit key again up to three times. Quotes,
$(…), backticks and ';' arrive verbatim and run nothing. A message starting
with '/' would be a command to the CLI ('/exit' quits): it is held unless
--command says you mean it; one starting with '!' (Claude's shell mode) is
sent after a space, so it stays text. Exits 1 when delivery could not be seen.

examples:
  agents.py send builder "pull, then re-run the tests"
  agents.py send builder --file notes.md
  git log -1 --format=%B | agents.py send reviewer --file -
  agents.py send --command builder /compact""", cmd_send)
    sub.add_argument("name", metavar="NAME", help="the agent")
    sub.add_argument("text", nargs="*", metavar="TEXT", help="the message (several words are joined by spaces)")
    sub.add_argument("--file", metavar="PATH", help="read the message from a file ('-' for standard input)")
    sub.add_argument("--command", action="store_true",
                     help="send a CLI command on purpose (a message starting with '/' is held otherwise)")

    sub = command("restart", "kill an agent or service and start it again", """\
Ends the session and everything it left behind and starts it again: back into
its last conversation where its backend can resume one (restart_mode =
"resume"; Claude Code and Gemini CLI: --resume <its session id>; Codex: resume
<the id of the rollout its CLI holds open>; opencode: --session <the id of the
session it began>; aider: --restore-chat-history), with a one-line note that it
was restarted; otherwise, or with --fresh, in a new conversation with its
kickoff. Clears a crash-loop `failed` state, and lifts an over-budget pause for
this agent.

examples:
  agents.py restart builder            # same conversation, told it was restarted
  agents.py restart builder --fresh    # a new conversation and its kickoff""", cmd_restart)
    sub.add_argument("name", metavar="NAME", help="the agent or service")
    sub.add_argument("--fresh", action="store_true", help="start a new conversation with the kickoff")

    sub = command("keys", "press keys in an agent's session (answer a dialog by hand)", """\
Shows the bottom lines of the agent's screen, presses KEY… one by one (tmux key
names: Enter, Escape, Up, Down, Tab, C-c, y, 1 …) and shows the screen a second
later. For a dialog the watchdog does not know (`status` says "needs you"); a
known one is answered by the backend's dialog_keys. Nothing is typed as text.

examples:
  agents.py keys builder Down Enter     # choose the second option
  agents.py keys builder Escape""", cmd_keys)
    sub.add_argument("name", metavar="NAME", help="the agent")
    sub.add_argument("keys", nargs="+", metavar="KEY", help="tmux key names, pressed in order")

    sub = command("tokens", "token use per phase and gate, or of any transcripts", """\
Without --scan: the rows of log_dir/token-log.jsonl (one per phase as it ends,
and per gate as phase:label), then the phase and gate in flight (read from the
transcripts now), and the total of the phases. --by phase|gate|agent narrows
or regroups the rows.

With --scan PATH…: reads Claude Code JSONL, Codex rollouts, Gemini CLI chats and
opencode stores (files, or folders searched for *.jsonl and opencode.db) and
totals them per session and overall. Each API response counts once, with its
largest figures, across all files (a response is written as one line per
content block; a resumed session copies old lines; opencode rewrites a message);
sub-agent files count; <synthetic> lines and a torn last line do not. INPUT is
the uncached input; CACHE_CREATION and CACHE_READ are the cached parts.
--cost prices the rows per model from a built-in table (its date is printed)
or [pricing]; a model neither knows is listed as unpriced.

examples:
  agents.py tokens
  agents.py tokens --by agent --json
  agents.py tokens --cost
  agents.py tokens --scan ~/.claude/projects/-home-me-repo
  agents.py tokens --scan ~/.codex/sessions --json | jq .total""", cmd_tokens)
    sub.add_argument("--scan", nargs="+", metavar="PATH", help="total these transcript files or folders")
    sub.add_argument("--by", choices=("phase", "gate", "agent"), help="only phase rows, only gate rows, or per agent")
    sub.add_argument("--cost", action="store_true",
                     help=f"price the rows per model (a built-in table dated {PRICES_DATED}, or [pricing]); "
                          f"unknown models are shown as unpriced")
    sub.add_argument("--json", action="store_true",
                     help='{"rows": [...], "total": {"input", "output", "cache_creation", "cache_read", "total"}}')

    sub = command("attach", "attach your terminal to an agent's session", """\
Attaches to the agent's tmux session (inside tmux on the same server it switches
to it instead). Detach again with C-b d; the agent keeps running.

example:
  agents.py attach builder""", cmd_attach)
    sub.add_argument("name", metavar="NAME", help="the agent or service")

    sub = command("logs", "print an agent's recent screen output", """\
Prints the last lines of the agent's pane, scrollback included; --follow keeps
printing new output. `logs watchdog` shows the watchdog's log instead.

examples:
  agents.py logs builder -n 200
  agents.py logs watchdog --follow""", cmd_logs)
    sub.add_argument("name", metavar="NAME", help="an agent or service, or 'watchdog'")
    sub.add_argument("-n", "--lines", type=as_line_count, default=60, help="how many lines (default 60)")
    sub.add_argument("-f", "--follow", action="store_true", help="keep printing new output")

    sub = command("watchdog", "run the watchdog in the foreground", """\
What `up` starts in the background (and `down` stops). Every signal_interval it
looks at every pane (one `tmux list-panes`, one batched capture) and acts:
  heal      a dead agent or service is restarted with its kickoff, after a
            backoff that doubles from backoff_base to backoff_max; too many
            restarts within crash_loop_window → `failed` until `restart`
  stall     an agent idle for stall_idle (from its pane's real last activity)
            is nudged once per phase if it is a loop agent, else rebooted;
            never while busy, limited, in a dialog, within stall_grace of its
            start, or while its screen says WAITING-UNTIL <time> still ahead
  limits    a usage-limit banner is waited out until its parsed reset time
            plus limit_margin (limit_fallback_wait if none), then the backend's
            resume is sent; short API rate limits retry within minutes;
            spend and org limits are reported, never automated
  wakes     an idle agent with `wake` is pinged every interval; a task re-runs
  dialogs   known dialogs are answered by the backend's rules
Every action is an event (`agents.py events`) with its reason. The config is
re-read when it changes; an edit that does not validate is logged once and the
last good config stays in force. One watchdog per config; SIGTERM ends it.

examples:
  agents.py watchdog              foreground, events printed as they happen
  agents.py watchdog --once       one tick, then exit (for cron or debugging)""", cmd_watchdog)
    sub.add_argument("--once", action="store_true", help="run a single tick and exit")

    sub = command("events", "show the watchdog's event log", """\
Every watchdog action — start, heal, nudge, ping, wake, limit wait, resume,
config error, delivery failure — with its reason, from log_dir/events.jsonl.

examples:
  agents.py events -n 50
  agents.py events --follow --agent builder
  agents.py events --json --kind limit-wait --kind resume | jq .""", cmd_events)
    sub.add_argument("-n", "--lines", type=int, default=40, help="how many recent events (default 40; 0 for all)")
    sub.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    sub.add_argument("--json", action="store_true", help="one JSON object per line: {time, kind, agent, reason, …}")
    sub.add_argument("--agent", metavar="NAME", help="only events about this agent")
    sub.add_argument("--kind", metavar="KIND", action="append", nargs="?", const="?",
                     help="only events of this kind (repeatable); --kind alone lists the kinds")

    sub = command("phase", "show the phase plan, or move it by hand", """\
The phase plan is [loop] phases. A phase is done when its status file (in the
work repo's subdir, as pushed on the remote branch) contains the done marker
('## DONE'); the watchdog checks every tick, then moves to the next phase and
restarts the loop agents fresh with its kickoff. After the last phase it
writes SEQUENCE-COMPLETE in log_dir and stops the loop-tied work (hand-off
pings, loop agents' heals and wakes). Phases added to the config later resume
the machine.

  phase show          each phase with its done mark, the current one, and
                      whether the sequence is complete (--json: {"phases":
                      [{"id", "status_file", "done"}], "current", "complete"})
  phase set ID        make ID the current phase (it and the phases after it
                      count as not done) and restart the loop agents with its
                      kickoff; the phase under way is logged in token-log.jsonl
                      as "abandoned": true with what it used so far; an
                      unknown ID is an error (exit 2)

examples:
  agents.py phase show
  agents.py phase set p2""", cmd_phase)
    sub.add_argument("action", choices=("show", "set"), nargs="?", default="show", help="show (default) or set")
    sub.add_argument("id", nargs="?", metavar="ID", help="with set: the phase to make current")
    sub.add_argument("--json", action="store_true", help="machine-readable output")

    sub = command("check", "validate the config and show what `up` would start", """\
Validates agents.toml completely (unknown keys with a 'did you mean', wrong
types, duplicate names, unknown backends or agents, invalid regexes, missing
@files and folders): each problem is one line naming the file, the section and
the key, and the exit code is 2. When valid, prints every agent and service
with the exact command line, folder and kickoff `up` would use.

example:
  agents.py check --config examples/demo/agents.toml""", cmd_check)

    return parser


def main(argv: list[str] | None = None) -> int:
    # Run from inside an agent's pane, we inherit its marker; a child of ours that kept it
    # (the watchdog, a tmux server we start) would be ended along with that agent.
    for key in [key for key in os.environ if key.startswith("AGENTS_PY_")]:
        del os.environ[key]
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.handler(args)
    except ConfigError as error:
        for line in error.lines:
            print(line, file=sys.stderr)
        return EXIT_USAGE
    except RuntimeFailure as failure:
        print(f"error: {failure}", file=sys.stderr)
        return EXIT_RUNTIME
    except BrokenPipeError:  # `agents.py events | head`: the reader left, that is fine (before OSError: it is one)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush must not fail again
        return EXIT_OK
    except OSError as error:  # a full disk, a file we may not read: say so, no traceback
        name = f"{error.filename}: " if error.filename else ""
        print(f"error: {name}{error.strerror or error}", file=sys.stderr)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
