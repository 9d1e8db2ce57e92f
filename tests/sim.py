"""A deterministic world for the watchdog: fake clock, fake tmux, fake agents, in-memory state.

The real ``agents.Watchdog`` runs unchanged; everything it touches is injected:

    sim = Sim(tmp_path, config_text(agents=[...]), behaviours={...}, seed=1)
    sim.up()                       # what `agents.py up --no-watchdog` does: launch every unit
    sim.run(3600)                  # one simulated hour of ticks, every signal_interval
    sim.agent("a01").received      # what the agent was sent, with fake times
    sim.events("lifecycle")        # the watchdog's own event log (events.jsonl), parsed

Pieces (each usable on its own):

- ``FakeClock``: ``now()``, ``monotonic()``, ``sleep(s)`` (advances time; the agents catch up
  whenever they are looked at, so a sender polling the screen while it sleeps sees them change).
- ``FakeTmux``: duck-types ``agents.Tmux``; counts every call that would spawn tmux in ``calls``;
  owns the ``FakeAgent`` of every session and keeps every incarnation ever started
  (``incarnations[name]``), every kill (``kills``) and the account-level limits (``limits``).
- ``FakeAgent``: a Claude-Code-like screen (idle, busy, dialog, limit banners, 429s) that reacts
  to typed text and keys; can crash, hang, hit limits, open dialogs; records every message
  (``received``), every text typed (``typed``) and every key (``keys``).
- ``MemoryStore``: ``agents.StateStore`` with the JSON kept in memory (a real JSON round trip per
  load and save) and a thread lock instead of a file lock.
- ``NullReaper``: finds and ends no processes.
- ``Sim``: wires them to a real ``agents.toml`` in a temporary folder; schedules world events
  (``at``), ticks, restarts the watchdog (a new ``Watchdog`` on the same store, tmux and clock:
  what a kill -9 and a restart look like), resets a crash-looped unit like ``agents.py restart``.
- ``Faults`` / ``long_run(root, seed, days)``: the 20-agent world with seeded random crashes, hangs,
  limits of every banner form (``usage_banner``), 429s, manual limits, dialogs, crash loops,
  watchdog restarts and broken config edits.
- ``ScreenMemo``: a verified memo of ``agents.read_screen`` that makes a simulated week fast.
- ``check_invariants(sim)``: the invariants of a run, from the fake tmux's records and the event
  log; returns ``{"a": [...], …, "g": [...]}`` of violations (all empty = fine).
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
from bisect import bisect_left, bisect_right
import inspect
import json
import math
import random
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo

from conftest import agents as ag

UTC = timezone.utc
#: Monday 2026-11-23 00:00 UTC: where every simulation starts.
START = datetime(2026, 11, 23, tzinfo=UTC).timestamp()

RULE = "─" * 80
FOOTER = "  ⏵⏵ bypass permissions on (shift+tab to cycle)"
BUSY_FOOTER = FOOTER + " · esc to interrupt"
SPINNER = "✢ Working…"
DIALOG_UNKNOWN = [" Do you want to proceed?", " ❯ 1. Yes", "   2. No", "", " Enter to confirm · Esc to cancel"]
DIALOG_KNOWN = [" Do you trust the files in this folder?", " ❯ 1. Yes, I trust this folder", "   2. No, exit", "",
                " Enter to confirm · Esc to cancel"]  # one the claude preset answers (Enter)
RATE_BANNER = "● API Error: Request rejected (429) · Rate limited"
MANUAL_BANNER = "● You've hit your monthly spend limit"
UNPARSEABLE_BANNER = "● Claude usage limit reached."
NUDGE_PREFIX = "You have been idle for"


def iso_utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------------
# Clock
# ---------------------------------------------------------------------------------------------


class FakeClock:
    """Simulated time. ``sleep`` advances it; the world catches up lazily (and eagerly if attached)."""

    def __init__(self, start: float = START):
        self.t = float(start)
        self.world: FakeTmux | None = None
        self.slept = 0.0

    def now(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.t - START + 1000.0

    def sleep(self, seconds: float) -> None:
        seconds = max(0.0, float(seconds))
        self.t += seconds
        self.slept += seconds
        if self.world is not None:
            self.world.advance(self.t)

    def advance_to(self, moment: float) -> None:
        if moment > self.t:
            self.t = float(moment)
            if self.world is not None:
                self.world.advance(self.t)


# ---------------------------------------------------------------------------------------------
# Agents
# ---------------------------------------------------------------------------------------------


@dataclass
class Limit:
    """An account-level limit of one agent: it survives restarts of the agent's session."""

    kind: str  # usage, rate, manual
    banner: str  # the line the agent prints
    since: float  # when it was hit
    reset: float | None  # the true reset (manual: when the operator lifts it)
    form: str = ""  # how the banner names the reset (clock_utc, weekday, duration, unparseable, …)
    parsed: bool = True  # whether the banner names its reset (usage only)
    ended: float | None = None  # when the agent worked again after it
    typed: list[tuple[float, str]] = field(default_factory=list)  # text typed while it held
    resumes: list[float] = field(default_factory=list)  # "continue" received while it held or right after

    def active(self, now: float) -> bool:
        return self.ended is None and (self.reset is None or now < self.reset)


@dataclass
class Behaviour:
    """How one agent works. ``work(purpose, text, rng)`` gives seconds of work for a message."""

    work: Callable[[str, str, random.Random], float] = lambda purpose, text, rng: 600.0
    boot_seconds: float = 2.0
    exits_when_done: bool = False  # a task: exits with status 0 when its work is done
    crash_after_start: list[float] = field(default_factory=list)  # one per start: die this long after it
    crash_status: int = 1
    waiting: Callable[[float, random.Random], tuple[str, float] | None] | None = None  # after work
    ignores_messages: bool = False  # reads input, answers nothing (stays idle)
    limit_banner_at_boot: bool = False  # started while its account is limited, it prints the banner at once
    redraws_history: bool = False  # resumed (--resume), it draws its last life's conversation again, as Claude and Codex do


@dataclass
class Message:
    t: float
    text: str
    purpose: str  # kickoff, wake, nudge, resume, waiting-over, other
    state: str  # the screen state when it was submitted
    incarnation: int


def classify(text: str, wake_messages: dict[str, str], name: str) -> str:
    if text.startswith(NUDGE_PREFIX):
        return "nudge"
    if text.startswith("New on "):
        return "ping"
    if text == "continue":
        return "resume"
    if text.startswith("You were restarted after "):
        return "resume-note"
    if text.startswith("It is past ") and "the time you were waiting for" in text:
        return "waiting-over"
    if wake_messages.get(name) and text == wake_messages[name]:
        return "wake"
    if "kickoff" in text.lower():
        return "kickoff"
    return "other"


class FakeAgent:
    """One session's pane: a Claude-Code-like screen that reacts to typing and keys."""

    def __init__(self, world: FakeTmux, name: str, session: str, pane_id: str, pid: int, owner: str,
                 argv: list[str], env: dict[str, str], started_at: float, behaviour: Behaviour, incarnation: int):
        self.world, self.name, self.session, self.pane_id, self.pid, self.owner = world, name, session, pane_id, pid, owner
        self.argv, self.env = argv, env
        self.started_at = started_at
        self.behaviour = behaviour
        self.incarnation = incarnation
        self.rng = random.Random(f"{world.seed}:{name}:{incarnation}")
        self.history: list[str] = [" Claude Code (simulated) · " + name, ""]
        self.input = ""
        self.boot_until: float | None = started_at + behaviour.boot_seconds
        self.busy_since: float | None = None
        self.busy_until: float | None = None
        self.queued: list[str] = []
        self.showing_limit: Limit | None = None
        self.dialog: str | None = None  # known, unknown
        self.dialog_since: float | None = None
        self.waiting_until: float | None = None  # a WAITING-UNTIL marker on screen names this time
        self.dead = False
        self.dead_status: int | None = None
        self.died_at: float | None = None
        self.death_cause = ""
        self.killed_at: float | None = None
        self.status_hidden_until: float | None = None
        self.hung_at: float | None = None
        self.frozen: tuple[list[str], str] | None = None
        self.in_mode = False
        self.activity = int(started_at)
        crashes = behaviour.crash_after_start
        self.crash_at = started_at + crashes.pop(0) if crashes else None
        self.received: list[Message] = []
        self.typed: list[tuple[float, str, str]] = []  # (t, text, screen state)
        self.keys: list[tuple[float, str, str]] = []  # (t, key, screen state)
        self.work_log: list[tuple[float, float | None, str]] = []  # (start, end, purpose)
        self.markers: list[tuple[float, float]] = []  # (printed at, until) of every WAITING-UNTIL it printed

    # -- time --

    def update(self, now: float) -> None:
        """Catch up to ``now``: boot, the end of work, a scheduled crash; the spinner's activity."""
        if self.boot_until is None and self.crash_at is None and self.busy_until is None:
            return  # idle, dead, hung or gone: nothing moves by itself
        while not self.dead and self.hung_at is None and self.killed_at is None:
            due = [(moment, kind) for moment, kind in ((self.boot_until, "boot"), (self.crash_at, "crash"),
                                                       (self.busy_until, "done")) if moment is not None and moment <= now]
            if not due:
                break
            moment, kind = min(due)
            if kind == "boot":
                self.boot_until = None
                limit = self.world.limits.get(self.name)
                if self.behaviour.limit_banner_at_boot and limit is not None and limit.active(moment):
                    self.history.append(limit.banner)
                    self.showing_limit = limit
                self.touch(moment)
            elif kind == "crash":
                self.crash_at = None
                self.die(moment, self.behaviour.crash_status, "crash-after-start")
            else:
                self.finish_work(moment)
        if self.busy_until is not None and not self.dead and self.hung_at is None and self.killed_at is None:
            self.activity = max(self.activity, int(now))  # the spinner redraws every second

    def touch(self, moment: float) -> None:
        self.activity = max(self.activity, int(moment))

    # -- what it shows --

    @property
    def alive(self) -> bool:
        return not self.dead and self.killed_at is None

    def state(self) -> str:
        if self.killed_at is not None:
            return "gone"
        if self.dead:
            return "dead"
        if self.hung_at is not None:
            return self.frozen[1]
        if self.boot_until is not None:
            return "booting"
        if self.dialog:
            return "dialog"
        if self.busy_until is not None:
            return "busy"
        if self.showing_limit is not None:
            return "limited"
        return "idle"

    def screen(self) -> list[str]:
        if self.hung_at is not None:
            return list(self.frozen[0])
        lines = self.history[-self.world.screen_history:]
        if self.dead:
            return [*lines, "", f"Pane is dead (status {self.dead_status})"]
        if self.boot_until is not None:
            return []
        if self.dialog:
            return [*lines, "", *(DIALOG_KNOWN if self.dialog == "known" else DIALOG_UNKNOWN)]
        box = [RULE, "❯ " + self.input.replace("\n", " "), RULE]
        if self.busy_until is not None:
            return [*lines, SPINNER, *box, BUSY_FOOTER]
        return [*lines, *box, FOOTER]

    def pane(self) -> ag.Pane:
        hidden = self.status_hidden_until is not None and self.world.clock.now() < self.status_hidden_until
        return ag.Pane(session=self.session, pane_id=self.pane_id, pid=self.pid, dead=self.dead,
                       dead_status=self.dead_status if self.dead and not hidden else None, activity=float(self.activity),
                       created=float(int(self.started_at)), in_mode=self.in_mode, owner=self.owner, width=200,
                       height=50)

    # -- input --

    def type_text(self, now: float, text: str) -> None:
        self.update(now)
        state = self.state()
        self.typed.append((now, text, state))
        limit = self.world.limits.get(self.name)
        if limit is not None and limit.ended is None:
            limit.typed.append((now, text))
        if not self.alive or self.hung_at is not None or self.boot_until is not None or self.dialog:
            return  # lost (typing into a dialog is a violation the checker reports)
        if self.in_mode:
            return  # copy mode eats keys
        self.input += text
        self.touch(now)

    def press(self, now: float, key: str) -> None:
        self.update(now)
        self.keys.append((now, key, self.state()))
        if not self.alive or self.hung_at is not None or self.boot_until is not None or self.in_mode:
            return
        if self.dialog:
            if key == "Enter":  # "1. Yes" is selected: the agent carries on
                self.close_dialog(now)
            elif key in ("Escape", "Esc"):
                self.dialog = None
                self.busy_until = None
                self.touch(now)
            return
        if key == "Enter" and self.input.strip():
            text, self.input = self.input, ""
            self.submit(now, text)

    def submit(self, now: float, text: str) -> None:
        purpose = classify(text, self.world.wake_messages, self.name)
        self.received.append(Message(now, text, purpose, self.state(), self.incarnation))
        self.history.append("❯ " + text.replace("\n", " "))
        self.waiting_until = None
        self.touch(now)
        limit = self.world.limits.get(self.name)
        if purpose == "resume" and limit is not None and (limit.ended is None or limit.ended == now):
            limit.resumes.append(now)
        if limit is not None and limit.active(now):
            self.history.append(limit.banner)
            self.showing_limit = limit
            return
        if limit is not None and limit.ended is None:
            limit.ended = now  # reset has passed: the agent works again
        if self.behaviour.ignores_messages:
            return
        seconds = self.behaviour.work(purpose, text, self.rng)
        if self.busy_until is not None:
            self.busy_until += seconds  # queued behind the current work
            return
        self.start_work(now, seconds, purpose)

    def start_work(self, now: float, seconds: float, purpose: str) -> None:
        self.showing_limit = None
        self.waiting_until = None
        self.busy_since, self.busy_until = now, now + max(1.0, seconds)
        self.work_log.append((now, None, purpose))
        self.touch(now)

    def finish_work(self, moment: float) -> None:
        self.busy_since, self.busy_until = None, None
        if self.work_log:
            start, _, purpose = self.work_log[-1]
            self.work_log[-1] = (start, moment, purpose)
        self.history.append("● ack")
        if self.behaviour.waiting is not None:
            marker = self.behaviour.waiting(moment, self.rng)
            if marker is not None:
                line, until = marker
                self.history.append(line)
                self.waiting_until = until
                self.markers.append((moment, until))
        self.touch(moment)
        if self.behaviour.exits_when_done:
            self.die(moment, 0, "task-done")

    # -- faults --

    def die(self, moment: float, status: int, cause: str) -> None:
        self.update(moment)
        if not self.alive:
            return
        self.dead, self.dead_status, self.died_at, self.death_cause = True, status, moment, cause
        if self.world.status_delay:
            self.status_hidden_until = moment + self.world.status_delay  # tmux learns the status a moment later
        self.busy_until = None
        self.crash_at = None
        self.touch(moment)

    def hang(self, moment: float) -> None:
        self.update(moment)
        if not self.alive or self.hung_at is not None:
            return
        self.frozen = (self.screen(), self.state())
        self.hung_at = moment

    def hit_limit(self, moment: float, limit: Limit) -> None:
        self.update(moment)
        self.world.limits[self.name] = limit
        self.world.limit_log.append((self.name, limit))
        if not self.alive or self.hung_at is not None:
            return
        if self.busy_until is not None and self.work_log:
            start, _, purpose = self.work_log[-1]
            self.work_log[-1] = (start, moment, purpose + " (limit)")
        self.busy_since, self.busy_until = None, None
        self.history.append(limit.banner)
        self.showing_limit = limit
        self.waiting_until = None
        self.touch(moment)

    def open_dialog(self, moment: float, known: bool) -> None:
        self.update(moment)
        if not self.alive or self.hung_at is not None:
            return
        self.dialog, self.dialog_since = ("known" if known else "unknown"), moment
        self.touch(moment)

    def close_dialog(self, moment: float) -> None:
        """The dialog is answered (by the watchdog's keys or the operator): work goes on."""
        self.update(moment)
        if not self.dialog:
            return
        self.dialog = None
        if self.busy_until is not None:
            self.busy_until = max(self.busy_until, moment + 1)
        self.touch(moment)

    def operator_types(self, moment: float, seconds: float) -> None:
        """A human lifted a manual limit and told the agent to go on (not the watchdog's message)."""
        self.update(moment)
        if not self.alive or self.hung_at is not None:
            return
        self.history.append("❯ (operator) please go on")
        self.start_work(moment, seconds, "operator")


# ---------------------------------------------------------------------------------------------
# tmux
# ---------------------------------------------------------------------------------------------


@dataclass
class Kill:
    t: float
    name: str
    session: str
    state: str  # the agent's screen state when killed
    activity: float
    started_at: float
    hung_at: float | None
    waiting_until: float | None
    limited: bool
    incarnation: int


class FakeTmux:
    """Duck-types ``agents.Tmux``: sessions are ``FakeAgent`` objects; every call is recorded."""

    def __init__(self, clock: FakeClock, behaviours: dict[str, Behaviour] | None = None,
                 default: Callable[[str], Behaviour] | None = None, seed: int = 0):
        self.clock = clock
        self.seed = seed
        self.calls = 0
        self.socket = None
        self.behaviours = dict(behaviours or {})
        self.default = default or (lambda name: Behaviour())
        self.sessions: dict[str, FakeAgent] = {}
        self.by_pane: dict[str, FakeAgent] = {}
        self.incarnations: dict[str, list[FakeAgent]] = {}
        self.kills: list[Kill] = []
        self.log: list[tuple[float, str, str, str]] = []  # (t, op, session, detail)
        self.limits: dict[str, Limit] = {}  # agent name → its current (or last) limit
        self.limit_log: list[tuple[str, Limit]] = []
        self.wake_messages: dict[str, str] = {}
        self.screen_history = 30  # history lines shown above the input box
        self.status_delay = 0.0  # seconds after a death before tmux shows its exit status (until reap())
        self.fail_new_session: int = 0  # make the next N new_session calls fail like tmux would
        # hook (what, agent) called before "type", "keys", "start" and after "pressed": kill -9 tests raise in it
        self.on_act: Callable[[str, str], None] | None = None
        self._next_pane = 1
        self._next_pid = 4000

    # -- the world --

    def advance(self, now: float) -> None:
        for agent in self.sessions.values():
            agent.update(now)

    def agent(self, name: str) -> FakeAgent | None:
        runs = self.incarnations.get(name)
        return runs[-1] if runs else None

    def _pane(self, pane_id: str) -> FakeAgent:
        agent = self.by_pane.get(pane_id)
        if agent is None or agent.killed_at is not None:
            raise ag.RuntimeFailure(f"tmux: can't find pane: {pane_id}")
        return agent

    # -- looking --

    def list_panes(self) -> dict[str, ag.Pane]:
        self.calls += 1
        now = self.clock.now()
        panes = {}
        for session, agent in self.sessions.items():
            agent.update(now)
            panes[session] = agent.pane()
        return panes

    def capture_many(self, pane_ids: list[str]) -> dict[str, list[str]]:
        if not pane_ids:
            return {}
        self.calls += 1
        now = self.clock.now()
        screens = {}
        for pane_id in pane_ids:
            agent = self.by_pane.get(pane_id)
            if agent is None or agent.killed_at is not None:
                self.calls += 1  # the real one retries the rest one by one
                continue
            agent.update(now)
            screens[pane_id] = agent.screen()
        return screens

    def capture_history(self, pane_id: str, lines: int) -> list[str]:
        self.calls += 1
        agent = self.by_pane.get(pane_id)
        if agent is None:
            return []
        agent.update(self.clock.now())
        return agent.history[-max(lines, 1):]

    # -- starting and stopping --

    def new_session(self, name: str, argv: list[str], cwd: Path, env: dict[str, str], owner: str,
                    env_dir: Path, width: int = 200, height: int = 50, history: int = 50000,
                    died_channel: str = "") -> None:
        self.calls += 1
        now = self.clock.now()
        if self.on_act is not None:
            self.on_act("start", env.get("AGENTS_PY_NAME", name))
        if self.fail_new_session > 0:
            self.fail_new_session -= 1
            raise ag.RuntimeFailure("tmux new-session failed: server exited unexpectedly")
        if name in self.sessions:
            raise ag.RuntimeFailure(f"tmux new-session failed: duplicate session: {name}")
        unit = env.get("AGENTS_PY_NAME", name)
        behaviour = self.behaviours.get(unit) or self.default(unit)
        runs = self.incarnations.setdefault(unit, [])
        pane_id = f"%{self._next_pane}"
        self._next_pane += 1
        self._next_pid += 7
        agent = FakeAgent(self, unit, name, pane_id, self._next_pid, owner, list(argv), dict(env), now, behaviour,
                          len(runs))
        if behaviour.redraws_history and runs and "--resume" in argv:
            agent.history = list(runs[-1].history)
        runs.append(agent)
        self.sessions[name] = agent
        self.by_pane[pane_id] = agent
        self.log.append((now, "new-session", name, " ".join(argv)))

    def kill_session(self, name: str) -> bool:
        self.calls += 1
        now = self.clock.now()
        agent = self.sessions.pop(name, None)
        if agent is None:
            return False
        agent.update(now)
        self.kills.append(Kill(now, agent.name, name, agent.state(), agent.activity, agent.started_at, agent.hung_at,
                               agent.waiting_until, agent.showing_limit is not None, agent.incarnation))
        agent.killed_at = now
        self.log.append((now, "kill-session", name, agent.state()))
        return True

    # -- typing --

    def send_text(self, pane_id: str, text: str, chunk: int = 512) -> None:
        agent = self._pane(pane_id)
        if self.on_act is not None:
            self.on_act("type", agent.name)
        for start in range(0, len(text), chunk):
            self.calls += 1
            agent.type_text(self.clock.now(), text[start:start + chunk])
        self.log.append((self.clock.now(), "send-text", agent.session, text))

    def paste(self, pane_id: str, text: str) -> None:
        agent = self._pane(pane_id)
        if self.on_act is not None:
            self.on_act("type", agent.name)
        self.calls += 2
        agent.type_text(self.clock.now(), text)
        self.log.append((self.clock.now(), "paste", agent.session, text))

    def send_keys(self, pane_id: str, *keys: str) -> None:
        agent = self._pane(pane_id)
        if self.on_act is not None:
            self.on_act("keys", agent.name)
        self.calls += 1
        for key in keys:
            agent.press(self.clock.now(), key)
        self.log.append((self.clock.now(), "send-keys", agent.session, " ".join(keys)))
        if self.on_act is not None:
            self.on_act("pressed", agent.name)

    def reap(self) -> None:
        """Let the server collect exit statuses it missed: every dead pane's status becomes known."""
        self.calls += 1
        for agent in self.sessions.values():
            agent.status_hidden_until = None

    def leave_copy_mode(self, pane_id: str) -> None:
        self.calls += 1
        agent = self.by_pane.get(pane_id)
        if agent is not None:
            agent.in_mode = False


class NullReaper:
    """No processes to find or end: the fake sessions have none."""

    def leftovers(self, cfg: Any, unit: Any, pane: Any, processes: Any = None) -> set[int]:
        return set()

    def end(self, pids: Any) -> list[int]:
        return []


class FakeGit:
    """The work repo's remote branch in memory: commits with files, pushes, force-pushes, outages.

    It answers the same named operations as ``agents.Git`` (fetch, head, has_commit, is_ancestor,
    commits, show). ``push`` appends a commit (a subject and file changes, ``None`` deletes a
    file); ``force_push`` rebases the last N commits (new shas, same author times and subjects);
    ``down = True`` makes every call fail as an unreachable remote does.
    """

    def __init__(self, folder: Path | None = None, clock: FakeClock | None = None):
        self.folder = folder
        self.clock = clock
        self.calls = 0
        self.fetches = 0
        self.down = False
        self.branch: list[dict] = []  # {sha, when, subject, files}: the remote branch, oldest first
        self.objects: dict[str, dict] = {}  # every commit ever pushed (a force-push leaves the old ones)
        self._n = 0
        self.push("init", {"PLAN.md": "p1: g1 g2\n"})

    def _sha(self) -> str:
        self._n += 1
        return f"{self._n:040x}"

    def push(self, subject: str, files: dict[str, str | None] | None = None, when: int | None = None) -> str:
        tree = dict(self.branch[-1]["files"]) if self.branch else {}
        for path, text in (files or {}).items():
            if text is None:
                tree.pop(path, None)
            else:
                tree[path] = text
        moment = int(self.clock.now()) if when is None and self.clock else (when or 0)
        commit = {"sha": self._sha(), "when": moment, "subject": subject, "files": tree,
                  "parent": self.branch[-1]["sha"] if self.branch else None}
        self.branch.append(commit)
        self.objects[commit["sha"]] = commit
        return commit["sha"]

    def force_push(self, rebase_last: int) -> None:
        """Rewrite the last commits (as a rebase onto an amended base does): new shas, same keys."""
        kept, moved = self.branch[:-rebase_last - 1], self.branch[-rebase_last - 1:]
        self.branch = list(kept)
        for commit in moved:
            copy_ = {**commit, "sha": self._sha(), "parent": self.branch[-1]["sha"] if self.branch else None}
            self.branch.append(copy_)
            self.objects[copy_["sha"]] = copy_

    def _call(self) -> None:
        self.calls += 1
        if self.down:
            raise ag.RuntimeFailure(f"git fetch in {self.folder}: Could not read from remote repository.")

    def fetch(self, remote: str, branch: str) -> None:
        self._call()
        self.fetches += 1

    def head(self, remote: str, branch: str) -> str:
        self._call()
        return self.branch[-1]["sha"]

    def has_commit(self, sha: str) -> bool:
        self._call()
        return sha in self.objects

    def _ancestry(self, sha: str) -> list[str]:
        out = []
        while sha:
            out.append(sha)
            sha = self.objects[sha]["parent"]
        return out

    def is_ancestor(self, older: str, newer: str) -> bool:
        self._call()
        return older in self._ancestry(newer)

    def commits(self, head: str, since: str | None, limit: int = 500) -> list[ag.Commit]:
        self._call()
        exclude = set(self._ancestry(since)) if since else set()
        chain = [sha for sha in self._ancestry(head) if sha not in exclude][:limit]
        return [ag.Commit(sha, self.objects[sha]["when"], self.objects[sha]["subject"]) for sha in reversed(chain)]

    def show(self, commit: str, path: str) -> str | None:
        self._call()
        return self.objects[commit]["files"].get(path)


# ---------------------------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------------------------


class MemoryStore(ag.StateStore):
    """The real store's logic with the JSON kept in memory: no fsync, so days of ticks run in seconds.

    Every load parses the saved JSON and every save serialises it, so a record that does not
    survive a JSON round trip breaks here as it would on disk. A "kill -9" loses exactly what
    was not saved, as with the file.
    """

    def __init__(self, state_dir: Path | None = None):
        super().__init__(state_dir or Path("/nonexistent/sim-state"))
        self.text: str | None = None
        self.lock = threading.RLock()
        self.saves = 0

    @staticmethod
    def dumps(data: dict) -> str:
        """The same JSON value as the real store saves (``test_memory_store_matches_the_real_one``), ~10× faster.

        Compact (the C encoder) instead of indented, keys in insertion order (a load keeps the
        saved order, so "unchanged" still compares equal), and a record's fields read directly
        instead of deep-copied by ``asdict``: anything that is not JSON still raises.
        """
        loop = data.get("loop")
        plain = {**data, "units": {name: vars(record) for name, record in data["units"].items()},
                 "loop": vars(loop) if isinstance(loop, ag.LoopRecord) else vars(ag.LoopRecord())}
        return json.dumps(plain, separators=(",", ":"))

    def load(self) -> dict:
        data = json.loads(self.text) if self.text else {}
        data.setdefault("units", {})
        fields = self._fields()
        data["units"] = {name: ag.UnitRecord(**record) if record.keys() <= fields else ag.UnitRecord.from_dict(record)
                         for name, record in data["units"].items()}  # from_dict, without its per-call fields()
        loop = data.get("loop")
        data["loop"] = ag.LoopRecord.from_dict(loop) if isinstance(loop, dict) else ag.LoopRecord()
        return data

    @staticmethod
    def _fields() -> set[str]:
        return {f.name for f in dataclasses.fields(ag.UnitRecord)}

    def save(self, data: dict) -> None:
        self.text = self.dumps(data)
        self.saves += 1

    @contextlib.contextmanager
    def transaction(self):
        """Load, let the block change the state, save if it changed: as the real one, under a thread lock.

        The real one copies or serialises the whole state before and after the block and again
        to save; this one compares the new JSON with the saved text (the same thing, since a
        load of the saved text serialises back to it: ``test_memory_store_matches_the_real_one``
        checks) and keeps that as the save.
        """
        with self.lock:
            data = self.load()
            before = self.text if self.text is not None else self.dumps(data)
            yield data
            after = self.dumps(data)
            if after != before:
                self.text = after
                self.saves += 1


class ScreenMemo:
    """A verified memo of ``agents.read_screen``, for runs of days: install with
    ``monkeypatch.setattr(ag, "read_screen", ScreenMemo())``.

    ``read_screen`` is a pure function of the backend, the pane's liveness and the screen's
    lines (and of ``now`` only when it parses a usage banner's reset); classifying the same
    screen twice gives the same answer, at ~60-150 µs a time — most of a long run's cost. The
    memo answers a screen it has classified before from its table (a copy), never for a usage
    limit (time-dependent), and re-runs the real function on every ``verify_every``-th hit,
    raising if the answers differ, so a ``read_screen`` that stops being pure is caught.
    """

    def __init__(self, verify_every: int = 25):
        self.real = ag.read_screen
        self.verify_every = verify_every
        self.table: dict[tuple, tuple[Any, ag.Screen]] = {}
        self.calls = self.hits = self.verified = 0

    def __call__(self, backend, pane, screen, now):
        self.calls += 1
        if pane is None or pane.dead or not screen:
            return self.real(backend, pane, screen, now)
        key = (id(backend), tuple(screen))
        found = self.table.get(key)
        if found is not None and found[0] is backend:
            self.hits += 1
            if self.hits % self.verify_every == 0:
                fresh = self.real(backend, pane, screen, now)
                self.verified += 1
                if fresh != found[1]:
                    raise AssertionError(f"read_screen is not pure: {fresh} != {found[1]}")
            return dataclasses.replace(found[1], lines=list(found[1].lines))
        result = self.real(backend, pane, screen, now)
        if not (result.state == "limited" and result.limit_kind == "usage"):
            if len(self.table) > 20000:
                self.table.clear()
            self.table[key] = (backend, dataclasses.replace(result, lines=list(result.lines)))
        return result


# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------

LONG_RUN_WATCHDOG = dict(signal_interval=60, stall_idle=900, stall_grace=180, backoff_base=30, backoff_max=600,
                         crash_loop_restarts=5, crash_loop_window=1800, limit_margin=120, limit_fallback_wait=3600)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {toml_value(item)}" for key, item in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(value)


def agent_spec(name: str, kind: str = "persistent", wake: float | None = None, **extra: Any) -> dict:
    """One ``[[agent]]`` on backend claude with cwd "." and a kickoff the fake agent recognises."""
    spec = {"name": name, "kind": kind, "backend": "claude", "cwd": "."}
    if kind != "loop":
        spec["prompt"] = "Kickoff for {name}: start working."
    if wake:
        spec["wake"] = {"interval": wake, "message": f"WAKE {name}: check your inbox."}
    spec.update(extra)
    return spec


def config_text(agents: list[dict], watchdog: dict | None = None, loop: bool = True,
                phases: tuple[str, ...] = ("p1", "p2"), handoff: dict | None = None,
                ready_settle: float = 0.0) -> str:
    """The fake agents draw no prompt before a dialog, so by default a kickoff is typed at the
    prompt's first sight (``ready_settle = 0``): the sims' timings stay whole seconds after a tick.
    The settle itself is tested on the real Sender (test_a_kickoff_waits_for_the_prompt_to_settle)."""
    settings = {**LONG_RUN_WATCHDOG, **(watchdog or {})}
    out = ['session_prefix = "sim-"', "", "[watchdog]"]
    out += [f"{key} = {toml_value(value)}" for key, value in settings.items()]
    out += ["", "[backend.claude]", f"ready_settle = {toml_value(ready_settle)}"]
    if loop:
        out += ["", "[loop]", 'repo = "."', "phases = [" + ", ".join(
            toml_value({"id": phase, "kickoff": "Phase {phase} kickoff for {name}: read {status_file}."})
            for phase in phases) + "]"]
    if loop and handoff:
        out += ["", "[loop.handoff]"] + [f"{key} = {toml_value(value)}" for key, value in handoff.items()]
    for spec in agents:
        out += ["", "[[agent]]"] + [f"{key} = {toml_value(value)}" for key, value in spec.items()]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# The simulation
# ---------------------------------------------------------------------------------------------


class Sim:
    """A watchdog in a fake world: real agents.toml, real Watchdog, fake everything it touches."""

    def __init__(self, root: Path, config: str, behaviours: dict[str, Behaviour] | None = None,
                 default: Callable[[str], Behaviour] | None = None, seed: int = 0, start: float = START,
                 config_recheck: float | None = None):
        self.root = Path(root)
        self.config_recheck = config_recheck
        self.config_path = self.root / "agents.toml"
        self.config_path.write_text(config)
        self.good_config = config
        self.seed = seed
        self.rng = random.Random(seed)
        self.clock = FakeClock(start)
        self.tmux = FakeTmux(self.clock, behaviours, default, seed)
        self.clock.world = self.tmux
        self.store = MemoryStore(self.root / ".agents" / "state")
        self.reaper = NullReaper()
        self.git = FakeGit(self.root, self.clock)
        self.watchdog = self._new_watchdog()
        self.tmux.wake_messages = {agent.name: agent.wake.message for agent in self.cfg.agents if agent.wake}
        self.next_tick = float(start)
        self.tick_times: list[float] = []
        self.actions: list[tuple[float, list[ag.Action]]] = []
        self.queue: list[tuple[float, int, str, Callable[[], None]]] = []
        self._seq = 0
        self.world_log: list[tuple[float, str]] = []  # (t, what) of every scheduled world event fired
        self.watchdog_restarts: list[float] = []
        self.operator_resets: list[tuple[float, str]] = []

    # -- wiring --

    def _new_watchdog(self) -> ag.Watchdog:
        kwargs = dict(clock=self.clock, tmux=self.tmux, reaper=self.reaper, store=self.store)
        kwargs["make_git"] = lambda folder: self.git
        watchdog = ag.Watchdog(self.config_path, **kwargs)
        watchdog.team.parallel = False
        if self.config_recheck is not None:
            watchdog.CONFIG_RECHECK = self.config_recheck  # edits are still seen at once (size and mtime change)
        return watchdog

    @property
    def cfg(self) -> ag.Config:
        return self.watchdog.cfg

    @property
    def interval(self) -> float:
        return self.cfg.watchdog.signal_interval

    @property
    def now(self) -> float:
        return self.clock.now()

    # -- driving --

    def up(self, names: list[str] | None = None) -> None:
        """What `agents.py up --no-watchdog` does: launch the units; the watchdog delivers kickoffs."""
        with self.store.transaction() as state:
            for unit in self.cfg.units():
                if names is None or unit.name in names:
                    self.watchdog.team.launch(unit, state, "up", self.now)

    def tick(self) -> list[ag.Action]:
        now = self.now
        self.tick_times.append(now)
        actions = self.watchdog.tick()
        self.actions.append((now, actions))
        return actions

    def at(self, moment: float, action: Callable[[], None], label: str = "") -> None:
        self._seq += 1
        heapq.heappush(self.queue, (moment, self._seq, label, action))

    def after(self, seconds: float, action: Callable[[], None], label: str = "") -> None:
        self.at(self.now + seconds, action, label)

    def _fire_until(self, moment: float) -> None:
        while self.queue and self.queue[0][0] <= moment:
            when, _, label, action = heapq.heappop(self.queue)
            self.clock.advance_to(when)
            self.world_log.append((self.now, label))
            action()

    def run_until(self, end: float, each_tick: Callable[[Sim], None] | None = None) -> None:
        """Tick every signal_interval (as the real loop does: a late tick starts at once) until ``end``."""
        while self.next_tick <= end:
            self._fire_until(self.next_tick)
            self.clock.advance_to(self.next_tick)
            began = self.now
            self.tick()
            if each_tick is not None:
                each_tick(self)
            self.next_tick = began + self.interval
        self._fire_until(end)
        self.clock.advance_to(end)

    def run(self, seconds: float, each_tick: Callable[[Sim], None] | None = None) -> None:
        self.run_until(self.now + seconds, each_tick)

    def restart_watchdog(self) -> None:
        """kill -9 and start again: a new Watchdog on the same state store, tmux and clock."""
        self.watchdog = self._new_watchdog()
        self.watchdog_restarts.append(self.now)

    def operator_restart(self, name: str) -> None:
        """What `agents.py restart NAME` does (clears a crash-loop `failed`); the watchdog sends the kickoff."""
        unit = self.cfg.unit(name)
        with self.store.transaction() as state:
            record = ag.record_of(state, name)
            record.restarts += 1
            record.restart_times = []
            record.backoff_until = 0.0
            self.watchdog.team.launch(unit, state, f"restart (command line; restart #{record.restarts})", self.now,
                                      resume=True)
        self.operator_resets.append((self.now, name))

    def write_config(self, text: str) -> None:
        self.config_path.write_text(text)

    def break_config(self) -> None:
        self.write_config(self.good_config + "\n[[agent]\nname = broken\n")

    def restore_config(self) -> None:
        self.write_config(self.good_config)

    # -- looking --

    def agent(self, name: str) -> FakeAgent:
        return self.tmux.agent(name)

    def runs(self, name: str) -> list[FakeAgent]:
        return self.tmux.incarnations.get(name, [])

    def state(self) -> dict:
        return self.store.load()

    def record(self, name: str) -> ag.UnitRecord:
        return ag.record_of(self.store.load(), name)

    def events(self, kind: str | None = None, agent: str | None = None) -> list[dict]:
        path = self.cfg.log_dir / "events.jsonl"
        if not path.exists():
            return []
        found = []
        for line in path.read_text(encoding="utf-8").splitlines():
            event = json.loads(line)
            event["t"] = datetime.fromisoformat(event["time"]).timestamp()
            if (kind is None or event["kind"] == kind or (kind.endswith("*") and event["kind"].startswith(kind[:-1]))) \
                    and (agent is None or event["agent"] == agent):
                found.append(event)
        return found

    def received(self, name: str, purpose: str | None = None) -> list[Message]:
        return [message for run in self.runs(name) for message in run.received
                if purpose is None or message.purpose == purpose]

    def starts(self, name: str) -> list[float]:
        return [run.started_at for run in self.runs(name)]

    def first_tick_at_or_after(self, moment: float) -> float | None:
        return next((t for t in self.tick_times if t >= moment - 1e-6), None)

    # -- faults (applied now) --

    def crash(self, name: str, status: int = 1) -> None:
        self.agent(name).die(self.now, status, "crash")

    def hang(self, name: str) -> None:
        self.agent(name).hang(self.now)

    def limit(self, name: str, banner: str, reset: float | None, kind: str = "usage", form: str = "",
              parsed: bool = True) -> Limit:
        limit = Limit(kind, banner, self.now, reset, form, parsed)
        self.agent(name).hit_limit(self.now, limit)
        return limit

    def dialog(self, name: str, known: bool) -> None:
        self.agent(name).open_dialog(self.now, known)


# ---------------------------------------------------------------------------------------------
# Banners with a known true reset
# ---------------------------------------------------------------------------------------------

USAGE_FORMS = ("clock_utc", "clock_zone", "clock_local", "weekday", "duration", "epoch", "unparseable")
ZONES = ("Europe/Berlin", "America/New_York", "Asia/Tokyo", "America/Los_Angeles")


def clock_words(moment: datetime) -> str:
    hour = moment.hour % 12 or 12
    ampm = "am" if moment.hour < 12 else "pm"
    return f"{hour}{ampm}" if moment.minute == 0 else f"{hour}:{moment.minute:02d}{ampm}"


def usage_banner(form: str, since: float, rng: random.Random) -> tuple[str, float | None, bool]:
    """(banner line, true reset, parseable) for a usage limit hit at ``since``, in one of USAGE_FORMS.

    Clock forms name a reset at least 20 minutes ahead on a 10-minute boundary (the machine's
    zone is pinned to UTC by the tests, so zone-less times are UTC).
    """
    if form == "unparseable":
        return UNPARSEABLE_BANNER, since + rng.uniform(600, 3 * 3600), False
    if form == "duration":
        minutes = rng.randint(10, 5 * 60)
        hours, rest = divmod(minutes, 60)
        words = (f"{hours}h{rest}m" if rest else f"{hours}h") if hours else f"{rest}m"
        return f"● You've hit your session limit · resets in {words}", since + minutes * 60, True
    if form == "weekday":
        ahead = rng.uniform(3 * 3600, 5 * 86400)
    else:
        ahead = rng.uniform(20 * 60, 6 * 3600)
    reset = math.ceil((since + ahead) / 600) * 600
    moment = datetime.fromtimestamp(reset, UTC)
    if form == "clock_utc":
        return f"● You've hit your session limit · resets {clock_words(moment)} (UTC)", reset, True
    if form == "clock_zone":
        zone = rng.choice(ZONES)
        there = moment.astimezone(ZoneInfo(zone))
        return f"● You've hit your session limit · resets {clock_words(there)} ({zone})", reset, True
    if form == "clock_local":
        return f"● 5-hour limit reached ∙ resets {clock_words(moment)}", reset, True
    if form == "weekday":
        return f"● You've hit your weekly limit · resets {moment.strftime('%a')} {clock_words(moment)}", reset, True
    if form == "epoch":
        return f"● Claude AI usage limit reached|{int(reset)}", reset, True
    raise ValueError(form)


# ---------------------------------------------------------------------------------------------
# Invariants
# ---------------------------------------------------------------------------------------------


#: How long a restart may wait for an agent that died right after a limit's resume, before a tick saw
#: it work (the watchdog may first wait for the resume's retry; it must not wait for the next reset).
AFTER_RESUME_SLACK = 15 * 60.0


def check_invariants(sim: Sim, *, failure_kinds=("check-failed", "tick-failed", "act-failed", "observe-failed", "bug")
                     ) -> dict[str, list[str]]:
    """Every invariant of a run, each a list of violations (all empty = the run was clean).

    a heal: every death of a watched agent → restart at the first tick at or after detection +
      backoff (computed independently), never before; crash loops → failed and left alone.
    b pings: one kickoff per session, one DONE-nudge per agent and phase, wakes at least an
      interval apart and only to idle agents, resumes at least 60 s apart and only while limited.
    c limits: nothing typed at a limited agent before its true reset + limit_margin (parsed),
      its first sighting + limit_fallback_wait (unparseable), + 60 s (429); never for manual.
    d kills: no agent busy and active (activity within stall_idle) is killed; a live idle agent is
      killed only after stall_idle of idleness, past stall_grace, with no WAITING-UNTIL ahead.
    e failures: no check-failed, tick-failed, act-failed, observe-failed event.
    f end: every agent is alive (not hung), or failed after a crash loop, or a task that exited 0.
    g dialogs: nothing typed into a dialog.
    """
    cfg = sim.cfg
    settings = cfg.watchdog
    events = sim.events()
    ticks = sim.tick_times
    problems: dict[str, list[str]] = {key: [] for key in "abcdefg"}

    def tick_at_or_after(moment: float) -> float | None:
        index = bisect_left(ticks, moment - 1e-6)
        return ticks[index] if index < len(ticks) else None

    def tick_of(moment: float) -> float:
        """The tick during which something at ``moment`` happened (the last one started by then)."""
        index = bisect_right(ticks, moment + 1e-6) - 1
        return ticks[max(index, 0)]

    def died_right_after_resume(name: str, died_at: float) -> bool:
        """The agent died before a tick had seen it work after a limit's resume."""
        return any(limit.ended is not None and limit.ended <= died_at and tick_at_or_after(limit.ended) is not None
                   and tick_at_or_after(limit.ended + 1e-3) >= died_at - 1e-6
                   for who, limit in sim.tmux.limit_log if who == name)

    resets_by_agent: dict[str, list[float]] = {}
    for moment, name in sim.operator_resets:
        resets_by_agent.setdefault(name, []).append(moment)

    failed_legit: set[str] = set()
    for agent in cfg.agents:
        name = agent.name
        if agent.watch == "none":
            continue
        runs = sim.runs(name)
        heal_restarts: list[float] = []
        interval = sim.interval
        for index, run in enumerate(runs):
            following = runs[index + 1] if index + 1 < len(runs) else None
            if run.died_at is None:
                continue
            if agent.kind == "task" and run.dead_status == 0:
                continue  # a clean exit: the wake re-runs it (checked below)
            detected = tick_at_or_after(run.died_at)
            if detected is None:
                continue  # died after the last tick
            if run.killed_at is not None and run.killed_at < detected:
                continue
            limit = sim.tmux.limits.get(name)
            if limit is not None and limit.since <= run.died_at and (limit.ended is None or limit.ended > run.died_at):
                continue  # died while limited: heal waits for the limit (not injected in long runs)
            after_resume = died_right_after_resume(name, run.died_at)
            for moment in resets_by_agent.get(name, []):
                if moment <= detected:
                    heal_restarts = [r for r in heal_restarts if r > moment]
            recent = [r for r in heal_restarts if detected - r < settings.crash_loop_window]
            if len(recent) >= settings.crash_loop_restarts:
                reset = next((m for m in resets_by_agent.get(name, []) if m > detected), None)
                if following is not None and (reset is None or following.started_at < reset - 1e-6):
                    problems["a"].append(f"{name}: restarted at {iso_utc(following.started_at)} after a crash loop "
                                         f"(death {iso_utc(run.died_at)}, {len(recent)} recent restarts)")
                if reset is None:
                    failed_legit.add(name)
                continue
            delay = min(settings.backoff_base * 2 ** len(recent), settings.backoff_max)
            due = detected + delay
            # Dead before a tick saw it work after a limit's resume: the watchdog cannot tell a resume
            # that worked from one that did not, and may first wait for its retry. Bounded, not exact.
            slack = AFTER_RESUME_SLACK if after_resume else 0.0
            if following is None:
                if ticks and ticks[-1] > due + slack + interval + 1e-6:
                    problems["a"].append(f"{name}: died {iso_utc(run.died_at)} (status {run.dead_status}), detected "
                                         f"{iso_utc(detected)}, backoff {delay:.0f}s, never restarted")
                continue
            started = following.started_at
            if started < due - 1e-6:
                problems["a"].append(f"{name}: died {iso_utc(run.died_at)}, detected {iso_utc(detected)}; restarted "
                                     f"{started - detected:.0f}s later, before its {delay:.0f}s backoff")
            elif started > due + slack + interval + 1e-6:
                problems["a"].append(f"{name}: died {iso_utc(run.died_at)}, detected {iso_utc(detected)}; restarted "
                                     f"{started - detected:.0f}s later, backoff was {delay:.0f}s (late)"
                                     f"{' after a resume' if after_resume else ''}")
            heal_restarts.append(started)

    # b: pings
    for agent in cfg.agents:
        name = agent.name
        runs = sim.runs(name)
        for run in runs:
            kickoffs = [m for m in run.received if m.purpose == "kickoff"]
            if len(kickoffs) > 1:
                problems["b"].append(f"{name}#{run.incarnation}: {len(kickoffs)} kickoffs")
        messages = sim.received(name)
        nudges: dict[str, int] = {}
        for message in messages:
            if message.purpose == "nudge":
                phase = message.text.split("Phase ", 1)[1].split(" ", 1)[0] if "Phase " in message.text else "?"
                nudges[phase] = nudges.get(phase, 0) + 1
            if message.purpose == "other":
                problems["b"].append(f"{name}: unexpected message at {iso_utc(message.t)}: {message.text[:60]!r}")
        for phase, count in nudges.items():
            if count > 1:
                problems["b"].append(f"{name}: {count} DONE-nudges for phase {phase}")
        wakes = [m for m in messages if m.purpose == "wake"]
        for message in wakes:
            if message.state != "idle":
                problems["b"].append(f"{name}: wake at {iso_utc(message.t)} while {message.state}")
        if agent.wake:
            # A wake is decided at a tick and typed a little later (other sends of the tick go first):
            # compare the ticks that decided them.
            decided = [tick_of(m.t) for m in wakes]
            for earlier, later in zip(decided, decided[1:]):
                if later - earlier < agent.wake.interval - 1e-6:
                    problems["b"].append(f"{name}: wakes decided {later - earlier:.0f}s apart at {iso_utc(later)} "
                                         f"(interval {agent.wake.interval:.0f}s)")
        wake_events = [e for e in events if e["agent"] == name and e["kind"] in ("wake", "wake-failed", "wake-held")]
        if agent.wake and agent.kind != "task":
            decided = [tick_of(e["t"] + 0.999) for e in wake_events]  # event times are whole seconds
            for earlier, later in zip(decided, decided[1:]):
                if later - earlier < agent.wake.interval - 1e-6:
                    problems["b"].append(f"{name}: wake attempts decided {later - earlier:.0f}s apart at "
                                         f"{iso_utc(later)}")
        runs_markers = [(t, until) for run in runs for t, until in run.markers]
        told = [m for m in messages if m.purpose == "waiting-over"]
        for earlier, message in zip([None, *told], told):
            since = earlier.t if earlier is not None else -math.inf
            printed = [until for t, until in runs_markers if since < t <= message.t]
            if not printed:
                problems["b"].append(f"{name}: told its wait is over at {iso_utc(message.t)} twice for one marker")
            elif message.t < printed[-1] - 1e-6:
                problems["b"].append(f"{name}: told its wait is over at {iso_utc(message.t)}, before "
                                     f"{iso_utc(printed[-1])}")
        episode, seen_numbers = 0, set()
        for event in events:  # the watchdog's own record: one resume #N per limit episode
            if event["agent"] != name:
                continue
            if event["kind"] == "limit-wait":
                episode += 1
            elif event["kind"].startswith("resume") and "resume #" in event["reason"]:
                number = event["reason"].split("resume #", 1)[1].split(":", 1)[0].split()[0]
                if (episode, number) in seen_numbers:
                    problems["b"].append(f"{name}: resume #{number} twice in one limit episode ({event['time']})")
                seen_numbers.add((episode, number))
        resumes = [m for m in messages if m.purpose == "resume"]
        for message in resumes:
            if message.state != "limited":
                problems["b"].append(f"{name}: 'continue' at {iso_utc(message.t)} while {message.state}")
        for earlier, later in zip(resumes, resumes[1:]):
            if later.t - earlier.t < 60 - 1e-6:
                problems["b"].append(f"{name}: resumes {later.t - earlier.t:.0f}s apart at {iso_utc(later.t)}")

    # c: limits
    for name, limit in sim.tmux.limit_log:
        for moment, text in limit.typed:
            if limit.kind == "manual":
                if limit.reset is None or moment < limit.reset:
                    problems["c"].append(f"{name}: typed {text[:30]!r} at {iso_utc(moment)} during a manual limit")
                continue
            if limit.kind == "rate":
                earliest = limit.since + ag.RATE_LIMIT_RETRY
            elif limit.parsed:
                earliest = limit.reset + settings.limit_margin
            else:
                earliest = limit.since + settings.limit_fallback_wait
            if moment < earliest - 1e-6:
                problems["c"].append(f"{name}: typed {text[:30]!r} at {iso_utc(moment)}, "
                                     f"{earliest - moment:.0f}s before {iso_utc(earliest)} ({limit.kind} "
                                     f"{limit.form or ''}: {limit.banner[:60]!r})")

    # d: kills
    for kill in sim.tmux.kills:
        if kill.state == "busy" and kill.t - kill.activity < settings.stall_idle:
            problems["d"].append(f"{kill.name}: killed at {iso_utc(kill.t)} while busy and active "
                                 f"(activity {kill.t - kill.activity:.0f}s ago)")
        if kill.state in ("idle", "booting"):
            idle_from = max(kill.activity, kill.started_at)
            if kill.t - idle_from < settings.stall_idle - 1e-6:
                problems["d"].append(f"{kill.name}: killed at {iso_utc(kill.t)} while {kill.state}, idle only "
                                     f"{kill.t - idle_from:.0f}s")
            if kill.t - kill.started_at < settings.stall_grace:
                problems["d"].append(f"{kill.name}: killed at {iso_utc(kill.t)} within stall_grace of its start")
            if kill.waiting_until is not None and kill.waiting_until > kill.t + 1e-6:
                problems["d"].append(f"{kill.name}: killed at {iso_utc(kill.t)} while WAITING-UNTIL "
                                     f"{iso_utc(kill.waiting_until)}")
        if kill.state in ("limited", "dialog"):
            problems["d"].append(f"{kill.name}: killed at {iso_utc(kill.t)} while {kill.state}")

    # e: failures
    for event in events:
        if event["kind"] in failure_kinds:
            problems["e"].append(f"{event['time']} {event['kind']} {event['agent']}: {event['reason'][:200]}")

    # f: the end
    state = sim.state()
    for agent in cfg.agents:
        run = sim.agent(agent.name)
        record = ag.record_of(state, agent.name)
        if run is not None and run.alive and run.hung_at is None:
            continue
        if record.lifecycle == "failed" and agent.name in failed_legit:
            continue
        if agent.kind == "task" and run is not None and run.dead and run.dead_status == 0 \
                and record.lifecycle == "exited":
            continue
        if run is not None and run.dead and record.lifecycle == "backoff" and record.backoff_until > sim.now - sim.interval:
            continue
        problems["f"].append(f"{agent.name}: at the end {run.state() if run else 'never started'}"
                             f"{' (hung)' if run and run.hung_at else ''}, lifecycle {record.lifecycle} "
                             f"({record.reason})")

    # g: dialogs
    for agent in cfg.agents:
        for run in sim.runs(agent.name):
            for moment, text, state in run.typed:
                if state == "dialog":
                    problems["g"].append(f"{agent.name}: typed {text[:30]!r} into a dialog at {iso_utc(moment)}")
    return {key: value for key, value in problems.items()}


def task_reruns(sim: Sim, name: str) -> list[str]:
    """A task that exited 0 is re-run at the first wake due strictly after the tick that saw it exit."""
    problems = []
    agent = sim.cfg.agent(name)
    runs = sim.runs(name)
    for index, run in enumerate(runs):
        if run.died_at is None or run.dead_status != 0:
            continue
        following = runs[index + 1] if index + 1 < len(runs) else None
        if following is not None and following.started_at < run.died_at + 1e-6:
            problems.append(f"{name}: re-run before it exited")
        if following is not None and following.started_at - run.died_at > agent.wake.interval * 2 + sim.interval * 2:
            problems.append(f"{name}: exited {iso_utc(run.died_at)}, re-run only {iso_utc(following.started_at)}")
        if following is None and sim.now - run.died_at > agent.wake.interval * 2 + sim.interval * 2:
            problems.append(f"{name}: exited {iso_utc(run.died_at)}, never re-run")
    return problems


# ---------------------------------------------------------------------------------------------
# The long run: 20 agents, seeded faults
# ---------------------------------------------------------------------------------------------

HOUR, DAY = 3600.0, 86400.0


def default_work(purpose: str, text: str, rng: random.Random) -> float:
    return {"kickoff": rng.uniform(20 * 60, 3 * HOUR), "wake": rng.uniform(5 * 60, HOUR),
            "nudge": rng.uniform(60, 600), "resume": rng.uniform(10 * 60, 1.5 * HOUR)}.get(purpose, 300.0)


def work(default: float = 600.0, **by_purpose: float) -> Callable[[str, str, random.Random], float]:
    """Fixed seconds of work per message purpose: ``work(kickoff=3600, wake=300)``."""
    return lambda purpose, text, rng: by_purpose.get(purpose, default)


def task_work(purpose: str, text: str, rng: random.Random) -> float:
    return rng.uniform(5 * 60, 40 * 60)


def waiting_marker(moment: float, rng: random.Random) -> tuple[str, float] | None:
    """Sometimes an agent ends its turn with ``WAITING-UNTIL <time>`` (ISO, clock or epoch)."""
    if rng.random() > 0.35:
        return None
    until = math.ceil((moment + rng.uniform(20 * 60, 2 * HOUR)) / 60) * 60
    form = rng.choice(("iso", "clock", "epoch"))
    text = {"iso": datetime.fromtimestamp(until, UTC).strftime("%Y-%m-%dT%H:%MZ"),
            "clock": datetime.fromtimestamp(until, UTC).strftime("%H:%M"),
            "epoch": str(int(until))}[form]
    return f"WAITING-UNTIL {text}", until


def long_run_agents() -> tuple[list[dict], dict[str, Behaviour]]:
    specs, behaviours = [], {}
    wakes = {"p01": 900, "p02": 1200, "p03": 1800, "p04": 2400, "p05": 3600, "p06": 1500}
    for number in range(1, 13):
        name = f"p{number:02d}"
        # p01–p06 keep the persistent default (heal: idle for ever is fine); the rest are judged stalled.
        extra = {"watch": "heal"} if name in ("p09", "p10") else {"watch": "heal+stall"} if number > 6 else {}
        specs.append(agent_spec(name, "persistent", wake=wakes.get(name), **extra))
        behaviours[name] = Behaviour(work=default_work,
                                     waiting=waiting_marker if name in ("p07", "p08", "p11") else None)
    for number in range(1, 5):
        name = f"l{number}"
        specs.append(agent_spec(name, "loop", wake=1800 if number <= 2 else None))
        behaviours[name] = Behaviour(work=default_work)
    for number, wake in zip(range(1, 5), (3600, 5400, 7200, 2700)):
        name = f"t{number}"
        specs.append(agent_spec(name, "task", wake=wake))
        behaviours[name] = Behaviour(work=task_work, exits_when_done=True)
    return specs, behaviours


@dataclass
class FaultRates:
    """Mean faults per agent per day."""

    crash: float = 1.2
    hang: float = 0.25
    usage: float = 0.4
    rate: float = 0.8
    manual: float = 0.05
    dialog: float = 0.2


class Faults:
    """Seeded random faults over a run, applied to agents that are up and not already in trouble."""

    EXIT_CODES = (1, 1, 2, 130, 137, 139, 255, 0)

    def __init__(self, sim: Sim, seed: int, days: float, rates: FaultRates | None = None,
                 quiet_tail: float = 4 * HOUR, watchdog_restart_every: float = 6 * HOUR, config_breaks: int = 3,
                 crash_loops: int = 2):
        self.sim = sim
        self.rng = random.Random(f"faults:{seed}")
        self.days = days
        self.rates = rates or FaultRates()
        self.end = sim.now + days * DAY
        self.quiet_from = self.end - quiet_tail
        self.applied: dict[str, int] = {}
        self.skipped: dict[str, int] = {}
        self.watchdog_restart_every = watchdog_restart_every
        self.config_breaks = config_breaks
        self.crash_loops = crash_loops

    def count(self, what: str, applied: bool = True) -> None:
        table = self.applied if applied else self.skipped
        table[what] = table.get(what, 0) + 1

    def schedule(self) -> None:
        sim, rng, start = self.sim, self.rng, self.sim.now
        names = [agent.name for agent in sim.cfg.agents]
        for name in names:
            for kind, rate in dataclasses.asdict(self.rates).items():
                moment = start
                while rate > 0:
                    moment += rng.expovariate(rate / DAY)
                    if moment >= self.quiet_from:
                        break
                    sim.at(moment, (lambda kind=kind, name=name: self.apply(kind, name)), f"{kind} {name}")
        # config breaks, each restored an hour later; watchdog restarts never inside them
        breaks = []
        for number in range(self.config_breaks):
            moment = start + (number + 0.5) * (self.quiet_from - start) / max(1, self.config_breaks) \
                + rng.uniform(-3 * HOUR, 3 * HOUR)
            breaks.append((moment, moment + HOUR))
            sim.at(moment, self.break_config, "config broken")
            sim.at(moment + HOUR, self.restore_config, "config restored")
        moment = start
        while self.watchdog_restart_every:
            moment += self.watchdog_restart_every + rng.uniform(-HOUR, HOUR)
            if moment >= self.end:
                break
            if any(begin - 120 <= moment <= end + 120 for begin, end in breaks):
                continue
            sim.at(moment, self.restart_watchdog, "watchdog restart")
        for number in range(self.crash_loops):
            moment = start + (number + 1) * (self.quiet_from - start) / (self.crash_loops + 1) + rng.uniform(0, HOUR)
            sim.at(moment, self.crash_loop, "crash loop")

    # -- appliers --

    def eligible(self, name: str) -> FakeAgent | None:
        agent = self.sim.agent(name)
        if agent is None:
            return None
        agent.update(self.sim.now)
        limit = self.sim.tmux.limits.get(name)
        if (not agent.alive or agent.hung_at is not None or agent.boot_until is not None or agent.dialog
                or agent.showing_limit is not None or (limit is not None and limit.ended is None)):
            return None
        return agent

    def apply(self, kind: str, name: str) -> None:
        agent = self.eligible(name)
        if agent is None:
            self.count(kind, applied=False)
            return
        sim, rng, now = self.sim, self.rng, self.sim.now
        if kind == "crash":
            agent.die(now, rng.choice(self.EXIT_CODES), "crash")
        elif kind == "hang":
            if self.sim.cfg.agent(name).watch != "heal+stall":
                self.count(kind, applied=False)  # nobody is asked to judge its screen
                return
            agent.hang(now)
        elif kind == "usage":
            form = rng.choice(USAGE_FORMS)
            banner, reset, parsed = usage_banner(form, now, rng)
            agent.hit_limit(now, Limit("usage", banner, now, reset, form, parsed))
        elif kind == "rate":
            agent.hit_limit(now, Limit("rate", RATE_BANNER, now, now + rng.uniform(10, 400), "429"))
        elif kind == "manual":
            limit = Limit("manual", MANUAL_BANNER, now, None, "manual")
            agent.hit_limit(now, limit)
            lift = now + rng.uniform(HOUR, 3 * HOUR)
            sim.at(lift, (lambda: self.lift_manual(name, limit)), f"operator lifts {name}'s manual limit")
        elif kind == "dialog":
            known = rng.random() < 0.5
            agent.open_dialog(now, known)
            if not known:
                sim.at(now + rng.uniform(30 * 60, 90 * 60), (lambda agent=agent: agent.close_dialog(self.sim.now)),
                       f"operator answers {name}'s dialog")
        self.count(kind)

    def lift_manual(self, name: str, limit: Limit) -> None:
        now = self.sim.now
        limit.reset = now
        limit.ended = now
        agent = self.sim.agent(name)
        if agent is not None and agent.showing_limit is limit:
            agent.operator_types(now, self.rng.uniform(20 * 60, HOUR))

    def crash_loop(self) -> None:
        """One persistent agent (up and fault-free now) starts crashing 20 s after each start."""
        candidates = [agent.name for agent in self.sim.cfg.agents
                      if agent.kind == "persistent" and agent.watch != "none" and self.eligible(agent.name)]
        if not candidates:  # all busy with other faults: try again a little later
            self.count("crash-loop", applied=False)
            self.sim.after(10 * 60, self.crash_loop, "crash loop (again)")
            return
        name = self.rng.choice(candidates)
        agent = self.eligible(name)
        behaviour = self.sim.tmux.behaviours[name]
        behaviour.crash_after_start[:] = [20.0] * self.sim.cfg.watchdog.crash_loop_restarts
        agent.die(self.sim.now, 1, "crash")
        self.count("crash-loop")
        self.sim.after(3 * HOUR, (lambda: self.reset_if_failed(name)), f"operator resets {name}")

    def reset_if_failed(self, name: str) -> None:
        if self.sim.record(name).lifecycle == "failed":
            self.sim.operator_restart(name)
            self.count("operator-reset")

    def break_config(self) -> None:
        self.sim.break_config()
        self.count("config-break")

    def restore_config(self) -> None:
        self.sim.restore_config()

    def restart_watchdog(self) -> None:
        self.sim.restart_watchdog()
        self.count("watchdog-restart")


def long_run(root: Path, seed: int, days: float = 7.0, rates: FaultRates | None = None,
             config_recheck: float | None = 3600.0) -> tuple[Sim, Faults]:
    """Build the 20-agent world with its faults scheduled, brought up; the caller runs it."""
    specs, behaviours = long_run_agents()
    sim = Sim(root, config_text(specs), behaviours=behaviours, seed=seed, config_recheck=config_recheck)
    faults = Faults(sim, seed, days, rates)
    faults.schedule()
    sim.up()
    return sim, faults
