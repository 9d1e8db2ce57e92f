#!/usr/bin/env python3
"""Bench: how soon the watchdog acts once something is due, and what `up` costs in CPU.

Runs simulated agents (examples/simagent.py) on a private tmux server in a
temporary folder, with the real watchdog (`agents.py watchdog`) in a child
process, and prints per signal_interval the median and max of:

  - heal: an agent's process is killed (SIGKILL, by the pid tmux reports for its
    pane) with backoff_base = 1. Timed from the kill to: the watchdog noticing
    (its running→backoff event), its `start` event, the new agent process up
    (simagent's own log), its first message received by the agent (simagent's
    log) and the watchdog's event for it (written once the delivery was verified):
    `resume-note` when the heal resumed the conversation, else `kickoff`.
    Target: start ≤ backoff_base + 1 s.
  - limit: the agent shows a usage-limit banner naming an exact reset instant
    ("Claude AI usage limit reached|<epoch>", which reset_time_from_banner reads
    to the second), with limit_margin = 2. Timed from "due" (reset + margin) to
    the resume received by the agent and to the watchdog's `resume` event
    (written once the delivery was verified), and from the reset itself to that
    event. Target: reset → resume event ≤ limit_margin + 2 s.
  - up: `agents.py up --no-watchdog` of N agents whose command is `sleep`: the
    wall time, the agents.py process's own user+sys CPU, the CPU of the tmux
    clients it ran (its waited-for children) and of the tmux server (from /proc,
    before the server is killed).

Each trial starts at a random moment within a tick, so the figures cover the
whole tick phase. Every trial uses an agent of its own (a second crash of one
agent would double its backoff).

Usage: python3 bench/timeliness.py [--intervals 1,15] [--reps 3] [--agents 100]
                                   [--only heal,limit,up] [--quick]

--quick is one repetition at interval 1 only (a smoke test, about a minute).
Everything it starts is stopped again, even on failure or Ctrl-C: the watchdog
child by its pid, then `agents.py down`, then `tmux -L <its socket> kill-server`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
AGENTS_PY = REPO / "agents.py"
SIMAGENT = REPO / "examples" / "simagent.py"

BACKOFF_BASE = 1.0
LIMIT_MARGIN = 2.0
SUBMIT_DELAY = 0.2  # as examples/demo

# Runs agents.py in-process and writes its own and its children's rusage to argv[1]:
# RUSAGE_CHILDREN around a plain subprocess would mix the tmux clients into agents.py's CPU.
RUSAGE_WRAPPER = """\
import json, resource, runpy, sys
out, script = sys.argv[1], sys.argv[2]
sys.argv = sys.argv[2:]
code = 0
try:
    runpy.run_path(script, run_name="__main__")
except SystemExit as done:
    code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
finally:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out, "w") as handle:
        json.dump({"own": own.ru_utime + own.ru_stime, "children": kids.ru_utime + kids.ru_stime}, handle)
sys.exit(code)
"""


class BenchFailed(Exception):
    pass


def stamp(text: str) -> float:
    """An event's ISO time (agents.py: local with offset; simagent: UTC with Z) as a Unix time."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def read_jsonl(path: Path) -> list[dict]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line being written right now
    return records


def wait_for(find, timeout: float, what: str):
    """Poll ``find()`` until it returns something; BenchFailed after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = find()
        if found is not None:
            return found
        time.sleep(0.05)
    raise BenchFailed(f"timed out after {timeout:.0f} s waiting for {what}")


class Sandbox:
    """A temporary folder, a config and a private tmux server; stops all it started on exit."""

    def __init__(self, label: str, config_text: str):
        self.socket = f"agents-bench-time-{os.getpid()}-{label}"
        self.temp = tempfile.TemporaryDirectory(prefix="agents-bench-time-")
        self.folder = Path(self.temp.name)
        self.config = self.folder / "agents.toml"
        self.config.write_text(f'tmux_socket = "{self.socket}"\n' + config_text)
        self.env = {**os.environ, "HOME": str(self.folder)}
        self.env.pop("TMUX", None)
        self.env.pop("AGENTS_CONFIG", None)
        self.cli = [sys.executable, str(AGENTS_PY), "--config", str(self.config)]
        self.watchdog: subprocess.Popen | None = None
        self.team_started = False

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.watchdog is not None and self.watchdog.poll() is None:
                self.watchdog.terminate()
                try:
                    self.watchdog.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.watchdog.kill()
                    self.watchdog.wait()
            if self.team_started:
                subprocess.run([*self.cli, "down"], capture_output=True, env=self.env, timeout=120)
        finally:
            subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)
            Path(os.environ.get("TMUX_TMPDIR") or "/tmp", f"tmux-{os.getuid()}", self.socket).unlink(missing_ok=True)
            self.temp.cleanup()

    def run(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        result = subprocess.run([*self.cli, *args], capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and result.returncode != 0:
            raise BenchFailed(f"agents.py {' '.join(args[:2])} exited {result.returncode}: "
                              f"{(result.stdout + result.stderr).strip()[-600:]}")
        return result

    def up(self) -> None:
        self.team_started = True
        self.run("up", "--no-watchdog")

    def start_watchdog(self) -> None:
        log = open(self.folder / "watchdog.out", "ab")
        self.watchdog = subprocess.Popen([*self.cli, "watchdog"], stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, cwd=self.folder, env=self.env)
        log.close()
        wait_for(lambda: self.event("watchdog-start") or self._watchdog_died(), 20, "the watchdog to start")

    def _watchdog_died(self) -> None:
        if self.watchdog.poll() is not None:
            tail = (self.folder / "watchdog.out").read_text(errors="replace").strip()[-600:]
            raise BenchFailed(f"the watchdog exited {self.watchdog.returncode}: {tail}")

    def events(self) -> list[dict]:
        return read_jsonl(self.folder / ".agents" / "logs" / "events.jsonl")

    def event(self, kind: str, agent: str = "", after: float = 0.0, match=None) -> dict | None:
        """The first event of ``kind`` (for ``agent``) stamped after ``after``."""
        if self.watchdog is not None:
            self._watchdog_died()
        for event in self.events():
            if event["kind"] == kind and event.get("agent", "") == agent and stamp(event["time"]) > after \
                    and (match is None or match(event)):
                return event
        return None

    def agent_log(self, agent: str, kind: str, after: float, match=None) -> dict | None:
        """The first record of ``kind`` in simagent's own log stamped after ``after``."""
        for record in read_jsonl(self.folder / ".simagent" / f"{agent}.log"):
            if record["kind"] == kind and stamp(record["time"]) > after and (match is None or match(record)):
                return record
        return None

    def state(self, agent: str) -> dict:
        try:
            return json.loads((self.folder / ".agents" / "state" / "state.json").read_text())["units"].get(agent, {})
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            return {}

    def server_cpu(self) -> float:
        """User+sys CPU seconds the tmux server has used so far (Linux /proc)."""
        pid = subprocess.run(["tmux", "-L", self.socket, "display-message", "-p", "#{pid}"], capture_output=True,
                             text=True).stdout.strip()
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime

    def pane_pid(self, agent: str) -> int:
        result = subprocess.run(["tmux", "-L", self.socket, "list-panes", "-t", f"=tl-{agent}:", "-F",
                                 "#{pane_pid} #{pane_dead}"], capture_output=True, text=True)
        pid, dead = result.stdout.split()[:2]
        if dead != "0":
            raise BenchFailed(f"{agent}'s pane is already dead")
        return int(pid)


def sim_team_config(interval: float, reps: int) -> str:
    agents = "".join(f'[[agent]]\nname = "{kind}{n}"\n' for kind in ("heal", "limit") for n in range(reps))
    return f'''session_prefix = "tl-"
[watchdog]
signal_interval = {interval}
backoff_base = {BACKOFF_BASE}
limit_margin = {LIMIT_MARGIN}
[backend.sim]
preset = "claude"
command = ["{sys.executable}", "{SIMAGENT}", "--work", "0.3"]
submit_delay = {SUBMIT_DELAY}
env = {{ CLAUDE_CONFIG_DIR = ".agents/sim-claude" }}
[defaults]
backend = "sim"
prompt = "Hello {{name}}."
{agents}'''


def heal_trial(box: Sandbox, agent: str, interval: float) -> dict[str, float]:
    """Kill the agent's process; seconds from the kill to each step of its healing."""
    wait_for(lambda: box.state(agent).get("lifecycle") == "running" and box.state(agent).get("screen") == "idle"
             or None, 60, f"{agent} to be running and idle")
    time.sleep(random.uniform(0, interval))  # any moment within a tick
    pid = box.pane_pid(agent)
    died = time.time()
    os.kill(pid, signal.SIGKILL)
    patience = 3 * interval + BACKOFF_BASE + 30
    noticed = wait_for(lambda: box.event("lifecycle", agent, died, lambda e: e.get("state", "").endswith("→backoff")),
                       patience, f"the watchdog to notice {agent}'s death")
    started = wait_for(lambda: box.event("start", agent, died), patience, f"{agent}'s heal start")
    process = wait_for(lambda: box.agent_log(agent, "start", died), 30, f"{agent}'s new process")
    received = wait_for(lambda: box.agent_log(agent, "message", died), patience, f"{agent}'s first message to arrive")
    # A heal resumes the conversation where the backend can: its first message is a resume note, else the kickoff.
    kickoff = wait_for(lambda: box.event("resume-note", agent, died) or box.event("kickoff", agent, died), patience,
                       f"{agent}'s resume-note or kickoff event")
    return {
        "heal: death → noticed (backoff event)": stamp(noticed["time"]) - died,
        "heal: death → start event": stamp(started["time"]) - died,
        "heal: death → new process up": stamp(process["time"]) - died,
        "heal: death → note/kickoff received": stamp(received["time"]) - died,
        "heal: death → note/kickoff event": stamp(kickoff["time"]) - died,
    }


def limit_trial(box: Sandbox, agent: str, interval: float) -> dict[str, float]:
    """Show a banner with an exact reset instant; seconds from reset + margin to the resume."""
    wait_for(lambda: box.state(agent).get("lifecycle") == "running" and box.state(agent).get("screen") == "idle"
             or None, 60, f"{agent} to be running and idle")
    time.sleep(random.uniform(0, interval))  # any moment within a tick
    # Far enough ahead that the watchdog sees the banner before it is due, as with a real limit.
    reset = math.ceil(time.time()) + interval + 6
    shown = time.time()
    # The simulated limit lifts at the reset, so the resume is answered as work, not by the banner.
    box.run("send", agent, f"SIM:limit {reset - shown:.2f} Claude AI usage limit reached|{reset}")
    due = reset + LIMIT_MARGIN
    waited = wait_for(lambda: box.event("limit-wait", agent, shown), interval + 30, f"{agent}'s limit to be seen")
    if stamp(waited["time"]) > due:
        raise BenchFailed(f"{agent}'s banner was first seen after its reset + margin; the trial is void")
    until = box.state(agent).get("limit", {}).get("until")
    if until is None or abs(until - due) > 0.001:
        raise BenchFailed(f"{agent}: the watchdog waits until {until}, not reset + margin = {due}")
    patience = due - time.time() + 2 * interval + 30
    resumed = wait_for(lambda: box.event("resume", agent, shown) or box.event("resume-failed", agent, shown)
                       or box.event("resume-held", agent, shown), patience, f"{agent}'s resume")
    if resumed["kind"] != "resume":
        raise BenchFailed(f"{agent}'s resume did not land: {resumed['reason']}")
    received = wait_for(lambda: box.agent_log(agent, "message", due - LIMIT_MARGIN - 1,
                                              lambda r: r.get("text") == "continue"), 10, f"{agent}'s resume to arrive")
    return {
        "limit: due → resume received": stamp(received["time"]) - due,
        "limit: due → resume event": stamp(resumed["time"]) - due,
        "limit: reset → resume event": stamp(resumed["time"]) - reset,
    }


def watchdog_figures(figures: dict[str, list[float]], interval: float, reps: int, only: set[str]) -> None:
    """Heal and limit trials at one interval, added to ``figures`` as they finish."""
    with Sandbox(f"sim-{interval:g}", sim_team_config(interval, reps)) as box:
        box.up()
        box.start_watchdog()
        time.sleep(interval + 0.5)  # one full tick: the watchdog has seen every screen
        for rep in range(reps):
            trials = [(heal_trial, f"heal{rep}")] * ("heal" in only) + [(limit_trial, f"limit{rep}")] * ("limit" in only)
            for trial, agent in trials:
                for name, seconds in trial(box, agent, interval).items():
                    figures.setdefault(name, []).append(seconds)
                print(f"  interval {interval:g} s, rep {rep + 1}: {trial.__name__} done", file=sys.stderr)


def up_figures(figures: dict[str, list[float]], interval: float, reps: int, count: int) -> None:
    """`up --no-watchdog` of ``count`` sleeping agents, each rep on a fresh tmux server."""
    agents = "".join(f'[[agent]]\nname = "u{n:03d}"\n' for n in range(count))
    config = f'''session_prefix = "tl-"
[watchdog]
signal_interval = {interval}
[backend.idle]
preset = "shell"
command = ["sleep", "3600"]
[defaults]
backend = "idle"
{agents}'''
    for rep in range(reps):
        with Sandbox(f"up-{interval:g}-{rep}", config) as box:
            usage = box.folder / "rusage.json"
            box.team_started = True
            began = time.perf_counter()
            result = subprocess.run([sys.executable, "-c", RUSAGE_WRAPPER, str(usage), str(AGENTS_PY), "--config",
                                     str(box.config), "up", "--no-watchdog"], capture_output=True, text=True,
                                    env=box.env, timeout=600)
            wall = time.perf_counter() - began
            if result.returncode != 0:
                raise BenchFailed(f"up of {count} agents exited {result.returncode}: "
                                  f"{(result.stdout + result.stderr).strip()[-600:]}")
            cpu = json.loads(usage.read_text())
            for name, value in ((f"up {count}: wall", wall), (f"up {count}: agents.py CPU (user+sys)", cpu["own"]),
                                (f"up {count}: its tmux clients' CPU", cpu["children"]),
                                (f"up {count}: tmux server CPU", box.server_cpu())):
                figures.setdefault(name, []).append(value)
        print(f"  interval {interval:g} s, rep {rep + 1}: up of {count} done", file=sys.stderr)


TARGETS = {  # figure → (the target in seconds, as text)
    "heal: death → start event": (BACKOFF_BASE + 1, "≤ backoff + 1 s"),
    "limit: reset → resume event": (LIMIT_MARGIN + 2, "≤ margin + 2 s"),
}


def print_table(results: dict[float, dict[str, list[float]]]) -> None:
    intervals = sorted(results)
    names = list(dict.fromkeys(name for figures in results.values() for name in figures))
    width = max(len(name) for name in names) + 2
    head = "".join(f"{f'interval {interval:g} s':>22}" for interval in intervals)
    print(f"{'':<{width}}{'target':<17}{head}")
    print(f"{'':<{width}}{'':<17}" + "".join(f"{'median':>11}{'max':>11}" for _ in intervals))
    for name in names:
        target = TARGETS.get(name)
        row = f"{name:<{width}}{target[1] if target else '':<17}"
        for interval in intervals:
            values = results[interval].get(name)
            if not values:
                row += f"{'-':>11}{'-':>11}"
                continue
            worst = max(values)
            flag = "" if target is None else (" " if worst <= target[0] else "!")
            row += f"{statistics.median(values):>10.2f}s{worst:>9.2f}s{flag or ' '}"
        print(row.rstrip())
    print("(! = the max misses the target; seconds; heal and limit with backoff_base = "
          f"{BACKOFF_BASE:g}, limit_margin = {LIMIT_MARGIN:g}, submit_delay = {SUBMIT_DELAY:g})")


def interrupted(signum: int, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--intervals", default="1,15", help="signal_interval values, comma-separated (default 1,15)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per figure and interval (default 3)")
    parser.add_argument("--agents", type=int, default=100, help="agents in the `up` figure (default 100)")
    parser.add_argument("--only", default="heal,limit,up", help="figures to measure (default heal,limit,up)")
    parser.add_argument("--quick", action="store_true", help="one repetition at interval 1 only (a smoke test)")
    args = parser.parse_args()
    intervals = [1.0] if args.quick else [float(text) for text in args.intervals.split(",")]
    reps = 1 if args.quick else args.reps
    only = set(args.only.split(","))
    # SIGTERM and SIGHUP end the bench like Ctrl-C does: through every `finally`, so nothing is left running.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupted)
    tmux_version = subprocess.run(["tmux", "-V"], capture_output=True, text=True).stdout.strip()
    print(f"python {sys.version.split()[0]}, {tmux_version}, {os.cpu_count()} cpu(s); "
          f"{reps} rep(s) per figure at signal_interval {', '.join(f'{i:g}' for i in intervals)} s")
    results: dict[float, dict[str, list[float]]] = {}
    try:
        for interval in intervals:
            figures = results.setdefault(interval, {})
            if only & {"heal", "limit"}:
                watchdog_figures(figures, interval, reps, only)
            if "up" in only:
                up_figures(figures, interval, reps, args.agents)
    except (BenchFailed, KeyboardInterrupt) as failure:
        print(f"bench failed: {failure}" if isinstance(failure, BenchFailed) else "interrupted", file=sys.stderr)
        if any(results.values()):
            print_table(results)
        raise SystemExit(1 if isinstance(failure, BenchFailed) else 130)
    print_table(results)


if __name__ == "__main__":
    main()
