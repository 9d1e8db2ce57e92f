"""Live: the loop machine with real tmux, real git and the simulated agent.

A bare remote in tmp_path, the watchdog's own clone of it (``[loop] repo``) and the test's clone,
from which the test pushes claims, reviews, inbox files and status files. The agents are plain
simulated agents (no ``--role``): they log every message they receive, and the tests read those
logs, the watchdog's events and the files it writes. Every tmux server is private to its test and
every process is ended by pid in the ``project`` fixture's finalizer, even when a test fails.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SIMAGENT, Project, wait_for
from conftest import agents as ag

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None or shutil.which("git") is None,
                                reason="tmux and git are required")

SIGNAL_INTERVAL = 1
KICKOFF = "Phase {phase} starts now."
GIT = ["git", "-c", "user.name=tester", "-c", "user.email=tester@example.invalid", "-c", "commit.gpgsign=false"]
GIT_ENV = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run([*GIT, "-C", str(cwd), *args], capture_output=True, text=True, env=GIT_ENV, timeout=30)
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stderr}"
    return result.stdout.strip()


class Team:
    """A project on a private tmux socket with a git remote, the watchdog's clone and the test's clone."""

    def __init__(self, project: Project, phases: tuple[str, ...] = ("p1", "p2"), ops_wake: float | None = None):
        self.project = project
        root = project.root
        self.remote, self.watch, self.me = root / "remote.git", root / "watch", root / "me"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(self.remote)], check=True, env=GIT_ENV)
        subprocess.run(["git", "clone", "-q", str(self.remote), str(self.me)], check=True, env=GIT_ENV,
                       capture_output=True)
        git(self.me, "checkout", "-q", "-b", "main")
        self.push("seed: the work repo", {"README.md": "the work repo\n"})
        subprocess.run(["git", "clone", "-q", "-b", "main", str(self.remote), str(self.watch)], check=True,
                       env=GIT_ENV)
        self.ops_wake = ops_wake
        self.write_config(phases)

    # -- config --

    def write_config(self, phases: tuple[str, ...]) -> None:
        plan = ",\n".join(f'  {{ id = "{p}", kickoff = "{KICKOFF}" }}' for p in phases)
        ops = "" if self.ops_wake is None else f"""
[[agent]]
name = "ops"
kind = "persistent"
prompt = "You are {{name}}."
wake = {{ interval = {self.ops_wake}, message = "ops: wake up" }}
"""
        self.project.write(f"""
[watchdog]
signal_interval = {SIGNAL_INTERVAL}
stall_idle = 600
backoff_base = 1

[backend.sim]
preset = "claude"
command = ["{sys.executable}", "{SIMAGENT}", "--work", "0.3"]
submit_delay = 0.2
env = {{ CLAUDE_CONFIG_DIR = ".agents/sim-claude" }}

[defaults]
backend = "sim"
cwd = "."
kind = "loop"

[[agent]]
name = "builder"
prompt = "You are {{name}}."

[[agent]]
name = "rev1"
prompt = "You are {{name}}."

[[agent]]
name = "rev2"
prompt = "You are {{name}}."
{ops}
[loop]
repo = "watch"
phases = [
{plan},
]

[loop.handoff]
claim_pings = ["rev1", "rev2"]
review_pings = "builder"
inboxes = [ {{ file = "TO-BUILDER.md", ping = "builder" }} ]
""")

    # -- git --

    def push(self, subject: str, files: dict[str, str] | None = None, to: Path | None = None) -> str:
        """Commit ``files`` (name → text; none: a line in work.log) and push, to ``origin`` or the bare repo
        at ``to``; the new sha."""
        for name, text in (files or {}).items():
            (self.me / name).write_text(text)
        if files is None:
            (self.me / "work.log").open("a").write(f"{subject}\n")
        git(self.me, "add", "-A")
        git(self.me, "commit", "-q", "-m", subject)
        git(self.me, "push", "-q", str(to) if to else "origin", "HEAD:main")
        return git(self.me, "rev-parse", "HEAD")

    # -- running --

    def up(self) -> None:
        result = self.project.run("up")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "watchdog: started" in result.stdout, result.stdout
        wait_for(lambda: self.project.events("handoff-baseline"), timeout=20, message="the hand-off baseline")
        self.wait_idle()

    def wait_idle(self, names: tuple[str, ...] = ("builder", "rev1", "rev2")) -> None:
        wait_for(lambda: all(self.project.states().get(n) == "idle" for n in names)
                 and all(any(m.startswith("You are") for m in self.project.messages(n)) for n in names),
                 timeout=30, message=f"{', '.join(names)} kicked off and idle")

    def pings(self, name: str) -> list[str]:
        return [m for m in self.project.messages(name) if m.startswith("New on origin/main")]

    def received(self, name: str, needle: str) -> list[dict]:
        return [e for e in self.project.sim_log(name) if e.get("kind") == "message" and needle in e["text"]]

    def wait_received(self, name: str, needle: str, timeout: float = 30) -> dict:
        return wait_for(lambda: (self.received(name, needle) or [None])[0], timeout=timeout,
                        message=f"{name} to receive {needle!r}")

    def wait_ticks(self, count: int) -> None:
        for _ in range(count):
            tick = self.project.status()["watchdog"]["last_tick"]
            wait_for(lambda: self.project.status()["watchdog"]["last_tick"] != tick, message="a watchdog tick")

    def handoff_event(self, sha: str, timeout: float = 30) -> dict:
        return wait_for(lambda: next((e for e in self.project.events("handoff") if sha[:7] in e["reason"]), None),
                        timeout=timeout, message=f"the handoff event for {sha[:7]}")

    def wait_complete(self) -> None:
        wait_for(lambda: self.project.events("sequence-complete"), timeout=30, message="sequence-complete")
        wait_for(lambda: (self.project.root / ".agents" / "logs" / "SEQUENCE-COMPLETE").exists(), timeout=10,
                 message="the SEQUENCE-COMPLETE file")


def at(entry: dict) -> float:
    return dt.datetime.fromisoformat(entry["time"]).timestamp()


def no_failures(project: Project) -> None:
    bad = [e for e in project.events() if e["kind"] in ("check-failed", "tick-failed", "act-failed", "observe-failed",
                                                       "watchdog-crash")]
    assert not bad, bad


@pytest.fixture
def team(project):
    return Team(project)


# -- a. claim, review and inbox pings --------------------------------------------------------------------


def test_claim_pings_each_reviewer_once_review_pings_builder_inbox_pings_its_agent(team):
    team.up()
    claim = team.push("claim(parser): ready for review")
    for name in ("rev1", "rev2"):
        team.wait_received(name, claim[:7])
    review = team.push("review(parser): PASS")
    team.wait_received("builder", review[:7])
    team.push("note for the builder", {"TO-BUILDER.md": "Please double-check the parser.\n"})
    team.wait_received("builder", "TO-BUILDER.md is new or changed")
    # The review and inbox pings arrived: every ping of the claim is out by now. Each reviewer got it
    # exactly once, named in its own session; the builder got none of it.
    for name in ("rev1", "rev2"):
        pings = team.pings(name)
        assert len([p for p in pings if claim[:7] in p]) == 1, pings
        assert pings[0].startswith(f"New on origin/main — pull, then act on each: {claim[:7]} claim(parser)")
        assert not [p for p in pings if review[:7] in p or "TO-BUILDER" in p], pings
    builder = team.pings("builder")
    assert not [p for p in builder if claim[:7] in p], builder
    assert len([p for p in builder if review[:7] in p]) == 1
    assert len([p for p in builder if "TO-BUILDER.md" in p]) == 1
    # The watchdog records a ping once it saw it arrive: four ping events, one per delivered message.
    wait_for(lambda: len(team.project.events("ping")) >= 4, message="four ping events")
    pinged = [e["agent"] for e in team.project.events("ping")]
    assert sorted(pinged) == ["builder", "builder", "rev1", "rev2"], pinged
    no_failures(team.project)


# -- b. phases: advance, completion, after completion ----------------------------------------------------


def test_done_advances_then_completes_and_after_it_nobody_is_pinged_but_persistent_wakes_go_on(project):
    team = Team(project, ops_wake=3)
    team.up()
    team.wait_idle(("ops",))
    team.push("status(p1): done", {"STATUS-p1.md": "## DONE\n"})
    wait_for(lambda: project.events("advance"), timeout=20, message="advance")
    assert "phase p1 done" in project.events("advance")[0]["reason"]
    for name in ("builder", "rev1", "rev2"):
        kickoff = team.wait_received(name, "Phase p2 starts now.")
        assert kickoff["text"] == f"You are {name}.\n\nPhase p2 starts now."
    assert not team.received("ops", "Phase p2")  # a persistent agent does not follow the phases
    team.wait_idle()
    team.push("status(p2): done", {"STATUS-p2.md": "## DONE\n"})
    team.wait_complete()
    done_at = at(project.events("sequence-complete")[0])
    show = project.run("phase", "show", "--json")
    assert show.returncode == 0, show.stderr
    plan = json.loads(show.stdout)
    assert plan["complete"] is True and [p["done"] for p in plan["phases"]] == [True, True]
    # A claim after the end: the watchdog reads it (positive signal) and pings nobody.
    late = team.push("claim(extra): after the end")
    event = team.handoff_event(late)
    assert "pings nobody" in event["reason"], event
    assert not [e for e in project.events("ping") if at(e) >= done_at]
    for name in ("rev1", "rev2"):
        assert not team.received(name, late[:7])
    # The persistent agent keeps its wakes (every 3 s) after the sequence completed.
    wait_for(lambda: len([e for e in project.events("wake", "ops") if at(e) > at(event)]) >= 2,
             timeout=20, message="two wakes of ops after the end")
    assert len(team.received("ops", "ops: wake up")) >= 2
    assert not [e for e in project.events("wake") if e["agent"] != "ops" and at(e) >= done_at]
    no_failures(project)


# -- c. kill -9 the watchdog --------------------------------------------------------------------------


def test_watchdog_killed_then_restarted_repeats_no_ping_and_pings_what_landed_meanwhile_once(team):
    project = team.project
    team.up()
    first = team.push("claim(one): before the crash")
    for name in ("rev1", "rev2"):
        team.wait_received(name, first[:7])
    # A ping is recorded (pending list cleared, `ping` event) after its delivery is seen; a kill -9 in
    # between would send it again (at least once, by design). Kill only after it is recorded and a
    # later tick has begun (so the state was saved).
    wait_for(lambda: {e["agent"] for e in project.events("ping")} == {"rev1", "rev2"}, message="ping events")
    team.wait_ticks(2)
    pid = project.watchdog_pid()
    assert pid and ag.pid_alive(pid)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not ag.pid_alive(pid) or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z",
             timeout=10, message="the watchdog gone")
    second = team.push("claim(two): while the watchdog was down")
    again = project.run("up")
    assert again.returncode == 0 and "watchdog: started" in again.stdout, again.stdout + again.stderr
    assert project.watchdog_pid() not in (None, pid)
    for name in ("rev1", "rev2"):
        team.wait_received(name, second[:7])
    # The ping of what landed meanwhile is out: nothing old came with or before it.
    for name in ("rev1", "rev2"):
        pings = team.pings(name)
        assert len([p for p in pings if first[:7] in p]) == 1, pings
        assert len([p for p in pings if second[:7] in p]) == 1, pings
    assert len(project.events("handoff-baseline")) == 1  # the restart did not take a new baseline
    no_failures(project)


# -- d. the remote unreachable for a while --------------------------------------------------------------


def test_unreachable_remote_is_reported_survived_and_caught_up(team):
    project = team.project
    team.up()
    pid = project.watchdog_pid()
    away = team.remote.with_name("remote.git.away")
    team.remote.rename(away)
    try:
        wait_for(lambda: project.events("git-failed"), timeout=20, message="git-failed")
        failed_at = time.time()
        tick = project.status()["watchdog"]["last_tick"]
        # Still alive and ticking while the remote is away.
        wait_for(lambda: project.status()["watchdog"]["last_tick"] != tick, timeout=10, message="a tick while away")
        assert ag.pid_alive(pid) and project.status()["watchdog"]["alive"]
        # A claim lands on the remote while the watchdog cannot read it (pushed straight into the moved folder).
        claim = team.push("claim(late): pushed during the outage", to=away)
        while time.time() < failed_at + 10:
            time.sleep(0.5)
        assert not team.received("rev1", claim[:7]) and not project.events("git-ok")
    finally:
        away.rename(team.remote)
    wait_for(lambda: project.events("git-ok"), timeout=60, message="git-ok")
    for name in ("rev1", "rev2"):
        team.wait_received(name, claim[:7])
    for name in ("rev1", "rev2"):
        assert len([p for p in team.pings(name) if claim[:7] in p]) == 1
    assert project.watchdog_pid() == pid and ag.pid_alive(pid)
    assert len(project.events("git-failed")) == 1  # one event per distinct failure, not one per tick
    no_failures(project)


# -- e. phases appended after the end -------------------------------------------------------------------


def test_phases_appended_after_the_end_resume_the_machine(team):
    project = team.project
    team.up()
    team.push("status(p1): done", {"STATUS-p1.md": "## DONE\n"})
    for name in ("builder", "rev1", "rev2"):
        team.wait_received(name, "Phase p2 starts now.")
    team.wait_idle()
    team.push("status(p2): done", {"STATUS-p2.md": "## DONE\n"})
    team.wait_complete()
    team.write_config(("p1", "p2", "p3"))
    wait_for(lambda: project.events("phase-resume"), timeout=20, message="phase-resume")
    assert "phase p3" in project.events("phase-resume")[0]["reason"]
    for name in ("builder", "rev1", "rev2"):
        kickoff = team.wait_received(name, "Phase p3 starts now.")
        assert kickoff["text"] == f"You are {name}.\n\nPhase p3 starts now."
    assert not (project.root / ".agents" / "logs" / "SEQUENCE-COMPLETE").exists()
    plan = json.loads(project.run("phase", "show", "--json").stdout)
    assert plan["current"] == "p3" and plan["complete"] is False
    assert [p["done"] for p in plan["phases"]] == [True, True, False]
    # The machine is back: a claim pings the reviewers again.
    team.wait_idle()
    claim = team.push("claim(p3-g1): ready")
    for name in ("rev1", "rev2"):
        team.wait_received(name, claim[:7])
    no_failures(project)


# -- f. latency ------------------------------------------------------------------------------------------

LATENCY_MAX = 8.0  # signal_interval + 2 s, and a generous margin for a busy 2-core machine


def test_latency_of_a_ping_and_of_the_next_kickoff(team):
    team.up()
    pushed = time.time()
    claim = team.push("claim(fast): ready")
    pushed = (pushed + time.time()) / 2  # the push itself takes a moment: count from its middle
    received = [at(team.wait_received(name, claim[:7])) for name in ("rev1", "rev2")]
    ping_latency = max(received) - pushed
    team.wait_idle()
    pushed = time.time()
    team.push("status(p1): done", {"STATUS-p1.md": "## DONE\n"})
    pushed = (pushed + time.time()) / 2
    kicked = [at(team.wait_received(name, "Phase p2 starts now.")) for name in ("builder", "rev1", "rev2")]
    kickoff_latency = max(kicked) - pushed
    print(f"\nlatency (signal_interval {SIGNAL_INTERVAL} s): claim push → last reviewer ping received "
          f"{ping_latency:.2f} s; DONE push → last p2 kickoff received {kickoff_latency:.2f} s")
    assert ping_latency <= LATENCY_MAX, ping_latency
    assert kickoff_latency <= LATENCY_MAX, kickoff_latency


def usage_of(project: Project, name: str, before: float = float("inf"), cache_reads: bool = True) -> int:
    """What the simulated agent's turns used (its own log of the usage it wrote), before a moment."""
    return sum(sum(value for key, value in entry["usage"].items() if cache_reads or key != "cache_read_input_tokens")
               for entry in project.sim_log(name) if entry.get("kind") == "usage" and at(entry) < before)


def mid_gate(project: Project) -> tuple[Team, str]:
    """A p1/p2 team up, its claim(g1) pinged to both reviewers, every agent idle again."""
    team = Team(project, phases=("p1", "p2"))
    team.up()
    claim = team.push("claim(g1): the parser")
    team.handoff_event(claim)
    for name in ("rev1", "rev2"):
        team.wait_received(name, "claim(g1)")
    team.wait_idle()
    return team, claim


def test_token_records_equal_the_transcripts_usage_across_a_watchdog_kill(project):
    team, claim = mid_gate(project)
    first = project.watchdog_pid()
    os.kill(first, signal.SIGKILL)  # mid-phase, mid-gate
    wait_for(lambda: not ag.pid_alive(first), message="the watchdog gone")
    again = project.run("up")
    assert "watchdog: started" in again.stdout, again.stdout
    assert project.run("send", "builder", "one more turn in p1").returncode == 0
    team.wait_received("builder", "one more turn in p1")
    team.wait_idle()
    team.push("status(p1): done", {"STATUS-p1.md": "## DONE\n"})
    log = project.root / ".agents" / "logs" / "token-log.jsonl"
    wait_for(lambda: log.exists() and '"phase_id": "p1"' in log.read_text(), timeout=30, message="the p1 record")
    advanced = at(project.events("tokens")[-1])
    rows = {row["phase_id"]: row for row in map(json.loads, log.read_text().splitlines())}
    assert set(rows) == {"p1:g1", "p1"}
    phase = {name: figures["total"] for name, figures in rows["p1"]["agents"].items()}
    assert phase == {name: usage_of(project, name, advanced) for name in ("builder", "rev1", "rev2")}
    claimed = at(team.handoff_event(claim))
    gate = {name: figures["total"] for name, figures in rows["p1:g1"]["agents"].items()}
    assert gate == {name: usage_of(project, name, advanced) - usage_of(project, name, claimed)
                    for name in ("builder", "rev1", "rev2") if usage_of(project, name, advanced) > usage_of(project, name, claimed)}
    assert rows["p1"]["total"]["total"] == sum(phase.values()) and all(phase.values())
    listed = json.loads(project.run("tokens", "--json").stdout)
    flying = [row for row in listed["rows"] if row.get("in_flight")]
    assert [row["phase_id"] for row in flying] == ["p2"]  # p2's kickoffs, read from the transcripts now
    assert listed["total"]["total"] == sum(phase.values()) + flying[0]["total"]["total"]
    by_agent = json.loads(project.run("tokens", "--by", "agent", "--json").stdout)["rows"]
    assert sum(row["total"] for row in by_agent) == listed["total"]["total"]


def test_a_phase_set_by_hand_logs_what_the_phase_it_leaves_used(project):
    """`phase set` mid-phase and mid-gate: the phase and gate it leaves are logged as abandoned,
    with every token used so far; the new phase counts from the moment it was set."""
    team, _ = mid_gate(project)
    before = time.time()  # every agent idle: nothing is used until p2's kickoffs
    result = project.run("phase", "set", "p2")
    assert result.returncode == 0, result.stderr
    assert "phase p2 is current (phase p1's" in result.stdout and "logged as abandoned" in result.stdout
    for name in ("builder", "rev1", "rev2"):
        team.wait_received(name, "Phase p2 starts now.")
    team.wait_idle()
    team.push("status(p2): done", {"STATUS-p2.md": "## DONE\n"})
    log = project.root / ".agents" / "logs" / "token-log.jsonl"
    wait_for(lambda: '"phase_id": "p2"' in log.read_text(), timeout=30, message="the p2 record")
    finished = at(project.events("tokens")[-1])
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(row["phase_id"], row.get("abandoned", False)) for row in rows] == \
        [("p1:g1", True), ("p1", True), ("p2", False)]
    names = ("builder", "rev1", "rev2")
    p1, p2 = ({name: figures["total"] for name, figures in row["agents"].items()} for row in rows[1:])
    assert p1 == {name: usage_of(project, name, before) for name in names}
    assert p2 == {name: usage_of(project, name, finished) - usage_of(project, name, before) for name in names}
    assert all(p1.values()) and all(p2.values())
    table = project.run("tokens").stdout
    assert "p1 (abandoned)" in table and "p1:g1 (abandoned)" in table
    listed = json.loads(project.run("tokens", "--json").stdout)
    assert listed["total"]["total"] == sum(p1.values()) + sum(p2.values())  # the bill holds every token


def test_a_phase_over_its_budget_pauses_the_loop_agents_until_the_budget_is_raised(project):
    team = Team(project, phases=("p1", "p2"))
    project.config.write_text(project.config.read_text().replace('[loop]\nrepo = "watch"',
                                                                 '[loop]\nrepo = "watch"\nphase_budget = 100000'))
    team.up()
    used = sum(usage_of(project, name, cache_reads=False) for name in ("builder", "rev1", "rev2"))  # as budgets count
    assert 0 < used < 100000
    config = project.config.read_text()
    project.config.write_text(config.replace("phase_budget = 100000", f"phase_budget = {used + 300}"))
    for turn in range(4):  # each turn of the simulated agent uses a few hundred tokens
        if project.events("budget-pause"):
            break
        turns = len([e for e in project.sim_log("builder") if e.get("kind") == "usage"])
        assert project.run("send", "builder", f"turn {turn}").returncode == 0
        wait_for(lambda: len([e for e in project.sim_log("builder") if e.get("kind") == "usage"]) > turns
                 or project.events("budget-pause"), message="the turn's usage written (or the pause)")
    pause = wait_for(lambda: project.events("budget-pause"), timeout=30, message="the budget pause")[0]
    assert "over its phase_budget" in pause["reason"]
    paused_at = at(pause)
    wait_for(lambda: {e["agent"] for e in project.events("interrupt")} == {"builder", "rev1", "rev2"},
             timeout=15, message="each loop agent interrupted once")
    assert set(project.states().values()) == {"paused: over budget"}
    claim = team.push("claim(g1): while paused")
    team.handoff_event(claim)
    team.wait_ticks(3)
    typed = [m for name in ("builder", "rev1", "rev2") for m in project.sim_log(name)
             if m.get("kind") == "message" and at(m) > paused_at and not m["text"].startswith("turn ")]
    assert typed == []  # the watchdog typed nothing at a paused agent (the test's own turns aside): pings wait
    project.config.write_text(project.config.read_text().replace(f"phase_budget = {used + 300}",
                                                                 "phase_budget = 10000000"))
    wait_for(lambda: project.events("budget-ok"), timeout=30, message="resumed once the budget is raised")
    team.wait_received("rev1", "claim(g1)")
    assert len(project.events("budget-pause")) == 1


def test_a_claim_pushed_while_up_still_runs_is_pinged_not_taken_for_history(team):
    """`up` takes the hand-off baseline before it starts any agent, so a quick Builder's first claim,
    pushed before the watchdog's first look, is pinged like any other."""
    result = team.project.run("up", "--no-watchdog")
    assert result.returncode == 0, result.stdout + result.stderr
    baseline = team.project.events("handoff-baseline")
    assert len(baseline) == 1 and "taken by `up` before any agent started" in baseline[0]["reason"], baseline
    claim = team.push("claim(parser): pushed before the watchdog ever looked")
    result = team.project.run("up")  # nothing to start; the watchdog starts now
    assert "watchdog: started" in result.stdout, result.stdout
    for name in ("rev1", "rev2"):
        team.wait_received(name, claim[:7])
    assert len(team.project.events("handoff-baseline")) == 1
    no_failures(team.project)
