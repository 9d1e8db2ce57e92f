"""Live: the watchdog against the simulated agent in real tmux, with short intervals.

kill -9 an agent → healed; a hang → stall reboot; a limit banner → waited out, then
resumed; kill -9 the watchdog and start it again → clocks kept, nothing repeated.
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

import pytest

from conftest import AGENTS_PY, Project, wait_for
from conftest import agents as ag

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

FAST = """
[watchdog]
signal_interval = 0.5
backoff_base = 1
backoff_max = 4
stall_idle = {stall_idle}
stall_grace = 2
limit_margin = 2
limit_fallback_wait = 30
"""


def fast_project(project: Project, stall_idle: float = 600, work: float = 0.3, extra: str = "") -> Project:
    """The demo, fast; with a short ``stall_idle`` its (persistent) agents are also judged stalled."""
    project.use_demo(work=work, extra=FAST.format(stall_idle=stall_idle) + extra)
    if stall_idle < 600:
        project.config.write_text(project.config.read_text().replace("[defaults]\n", '[defaults]\nwatch = "heal+stall"\n', 1))
    return project


def up(project: Project) -> None:
    result = project.run("up")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "watchdog: started" in result.stdout
    wait_for(lambda: set(project.states().values()) == {"idle"}, timeout=15, message="agents idle")


def event_times(project: Project, kind: str, agent: str | None = None) -> list[float]:
    return [dt.datetime.fromisoformat(e["time"]).timestamp() for e in project.events(kind, agent)]


def test_watchdog_runs_once_per_config_and_stops_on_sigterm(project):
    fast_project(project)
    up(project)
    status = project.status()["watchdog"]
    assert status["alive"] and status["pid"] == project.watchdog_pid()
    second = project.run("watchdog", timeout=10)
    assert second.returncode == 1 and "a watchdog already runs" in second.stderr
    again = project.run("up")
    assert f"watchdog: already running (pid {status['pid']})" in again.stdout
    wait_for(lambda: project.status()["watchdog"]["last_tick"], message="a first tick")
    os.kill(status["pid"], signal.SIGTERM)
    wait_for(lambda: not project.status()["watchdog"]["alive"], timeout=10, message="watchdog gone")
    assert project.events("watchdog-stop")[-1]["reason"] == "stopped by signal"


def test_kill_9_agent_is_healed_with_backoff(project):
    fast_project(project)
    up(project)
    first_pid = project.row("builder")["pid"]
    os.kill(first_pid, signal.SIGKILL)
    wait_for(lambda: project.row("builder")["pid"] not in (None, first_pid)
             and project.states()["builder"] == "idle", timeout=20, message="builder healed")
    row = project.row("builder")
    assert row["restarts"] == 1 and row["lifecycle"] == "running"
    assert len(row["session_ids"]) == 1  # resumed into the same session
    backoff = project.events("lifecycle", "builder")
    assert any("restart in 1s" in e["reason"] for e in backoff), backoff
    heal = project.events("start", "builder")[-1]
    assert heal["reason"].startswith("heal: restart #1") and heal["resumed"] == row["session_ids"][0]
    # The new process got the one-line note, not the kickoff again.
    wait_for(lambda: any(m.startswith("You were restarted after") for m in project.messages("builder")),
             timeout=10, message="the resume note")
    kickoffs = [m for m in project.messages("builder") if m.startswith("You are builder")]
    assert len(kickoffs) == 1


def test_crash_loop_ends_in_failed_until_restart(project):
    fast_project(project, extra='\n[[agent]]\nname = "crasher"\nbackend = "crashy"\n'
                                '[backend.crashy]\ncommand = ["python3", "-c", "import sys; sys.exit(7)"]\n')
    project.config.write_text(project.config.read_text().replace("[watchdog]", "[watchdog]\ncrash_loop_restarts = 2"))
    result = project.run("up")
    assert "crasher: died at start" in result.stdout
    wait_for(lambda: project.states()["crasher"] == "failed", timeout=30, message="crash loop detected")
    row = project.row("crasher")
    assert row["restarts"] == 2 and "crash loop" in row["detail"]
    time.sleep(2)
    assert project.row("crasher")["restarts"] == 2  # no more restarts while failed


def test_hang_is_rebooted_after_stall_idle(project):
    fast_project(project, stall_idle=4)
    up(project)
    project.run("send", "builder", "SIM:hang")
    hung_at = time.time()
    wait_for(lambda: project.events("start", "builder")[1:], timeout=20, message="stall reboot")
    reboot = project.events("start", "builder")[-1]
    assert reboot["reason"].startswith("stalled ") and "rebooted with its kickoff" in reboot["reason"]
    # Not before stall_idle (4 s) from the last activity. tmux keeps activity in whole seconds and `send`
    # returns after verifying, so the last activity can be up to ~2 s before hung_at: 2 s is the floor.
    assert dt.datetime.fromisoformat(reboot["time"]).timestamp() - hung_at >= 2
    # A fresh process took the kickoff again.
    wait_for(lambda: len([e for e in project.sim_log("builder") if e.get("kind") == "start"]) >= 2
             and project.messages("builder")[-1].startswith("You are builder"), timeout=15, message="builder back")
    # Every restart after `up` was a stall reboot (the reviewer, idle as long, too): none for anything else.
    assert all(e["reason"].startswith("stalled") for e in project.events("start")[2:])


def test_waiting_until_defers_the_stall(project):
    fast_project(project, stall_idle=4)
    up(project)
    said = time.time()
    later = dt.datetime.fromtimestamp(int(said) + 12, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    project.run("send", "builder", f"SIM:say WAITING-UNTIL {later}")
    wait_for(lambda: project.events("start", "builder")[1:], timeout=30, message="stall after the wait")
    reboot = project.events("start", "builder")[1]
    assert reboot["reason"].startswith("stalled")
    # Without the marker the stall would have come ~4 s after the say; it waited for the marker's time.
    assert dt.datetime.fromisoformat(reboot["time"]).timestamp() >= int(said) + 12 - 1


def test_limit_is_waited_out_then_resumed(project):
    fast_project(project)
    up(project)
    project.run("send", "builder", "SIM:limit 8 You've hit your session limit · resets in 8s")
    limited_at = time.time()
    wait_for(lambda: project.events("limit-wait", "builder"), timeout=10, message="limit noticed")
    wait = project.events("limit-wait", "builder")[0]
    assert "usage limit; waiting until" in wait["reason"]
    assert project.states()["builder"].startswith("limited, resumes in ")  # under two minutes: a countdown
    wait_for(lambda: project.events("resume", "builder"), timeout=25, message="resume")
    resumed_at = event_times(project, "resume", "builder")[0]
    assert resumed_at - limited_at >= 8 + 2 - 1  # reset + margin, never earlier
    # Nothing was typed at it in between: the only message after the banner is the resume.
    after = [m for m in project.messages("builder") if not m.startswith(("You are", "SIM:"))]
    assert after == ["continue"]
    wait_for(lambda: project.events("limit-over", "builder"), timeout=10, message="limit over")
    assert len(project.events("resume", "builder")) == 1


def test_rate_limit_is_retried_soon(project):
    fast_project(project)
    up(project)
    project.run("send", "builder", "SIM:limit 1 API Error: Request rejected (429) · Rate limited")
    wait_for(lambda: project.events("limit-wait", "builder"), timeout=10, message="rate limit noticed")
    reason = project.events("limit-wait", "builder")[0]["reason"]
    assert reason.startswith("rate limit; waiting until")


def test_kill_9_watchdog_then_restart_keeps_clocks_and_repeats_nothing(project):
    fast_project(project, stall_idle=8)
    up(project)
    idle_since = time.time()
    first = project.watchdog_pid()
    time.sleep(2)
    os.kill(first, signal.SIGKILL)
    time.sleep(2)
    kickoffs_before = len(project.events("kickoff"))
    again = project.run("up")
    assert "watchdog: started" in again.stdout and "nothing to start" in again.stdout
    assert project.watchdog_pid() != first
    wait_for(lambda: project.events("start", "builder")[1:], timeout=25, message="stall reboot")
    reboot_at = event_times(project, "start", "builder")[-1]
    # The idle clock came from the pane's activity, not the new watchdog's start: the stall
    # fires ~8 s after the agent went idle, not 8 s after the restart.
    assert reboot_at - idle_since < 8 + 4, reboot_at - idle_since
    # Nothing repeated: one kickoff per start, and the builder started only by `up` and the stall.
    starts = [e["agent"] for e in project.events("start")]
    kickoffs = [e["agent"] for e in project.events("kickoff")]
    assert starts.count("builder") == 2
    assert kickoffs.count("builder") <= starts.count("builder")
    assert kickoffs_before == 2


def test_task_exits_cleanly_and_reruns_on_wake(project):
    fast_project(project, extra="""
[backend.job]
command = ["python3", "-c", "import os, time; open('runs.txt', 'a').write('run\\\\n'); time.sleep(0.5)"]

[[agent]]
name = "nightly"
kind = "task"
backend = "job"
wake = { interval = 6, message = "unused" }
""")
    result = project.run("up")
    assert result.returncode == 0, result.stdout
    assert "nightly: started in session demo-nightly" in result.stdout or "nightly: ran and finished" in result.stdout
    wait_for(lambda: (lambda row: row["lifecycle"] == "exited" and row["state"] == "stopped"
                      and row["detail"] == "finished (exit 0)")(project.row("nightly")),
             timeout=15, message="task finished")
    wait_for(lambda: (project.root / "runs.txt").read_text().count("run") >= 2, timeout=20,
             message="task re-run by its wake")
    assert not [e for e in project.events("lifecycle", "nightly") if "backoff" in e.get("state", "")]


def test_invalid_config_edit_is_logged_once_and_ignored(project):
    fast_project(project)
    up(project)
    good = project.config.read_text()
    project.config.write_text(good + "\n[watchdog\nbroken = \n")
    wait_for(lambda: project.events("config-error"), timeout=10, message="config error logged")
    time.sleep(2)
    assert len(project.events("config-error")) == 1
    assert "TOML syntax error" in project.events("config-error")[0]["reason"]
    assert ag.pid_alive(project.watchdog_pid())  # still running on the last good config
    project.config.write_text(good)
    wait_for(lambda: project.events("config-ok"), timeout=10, message="config ok logged")
    assert set(project.states().values()) <= {"idle", "busy"}


def test_down_stops_the_watchdog_and_everything(project):
    fast_project(project)
    up(project)
    pid = project.watchdog_pid()
    down = project.run("down")
    assert down.returncode == 0
    assert f"watchdog: stopped (pid {pid})" in down.stdout
    assert project.sessions() == []
    assert not project.status()["watchdog"]["alive"]


def test_events_command(project):
    fast_project(project)
    up(project)
    listing = project.run("events", "-n", "5")
    assert listing.returncode == 0 and "watchdog-start" in listing.stdout
    as_json = project.run("events", "--json", "--kind", "kickoff")
    rows = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert {row["agent"] for row in rows} == {"builder", "reviewer"}
    assert all({"time", "kind", "agent", "reason"} <= set(row) for row in rows)
    follow = subprocess.Popen([sys.executable, str(AGENTS_PY), "--config", str(project.config), "events", "-f",
                               "-n", "0", "--agent", "builder"], stdout=subprocess.PIPE, text=True, env=project.env())
    try:
        time.sleep(0.5)
        project.run("send", "builder", "followed")
        wait_for(lambda: project.events("send", "builder"), message="send event")
        time.sleep(1)
    finally:
        follow.terminate()
        out = follow.communicate(timeout=5)[0]
    assert "send" in out and "builder" in out


def test_up_into_a_limited_screen_says_so_and_waits_no_longer(project):
    """A CLI that starts into a usage limit (or a resumed one drawing its old banner again) shows
    no prompt before the reset: `up` says so at once and leaves the kickoff to the watchdog."""
    project.write("""
        [backend.lim]
        command = ["sh", "-c", "echo 'LIMIT: your limit resets in 2h'; exec sleep 600"]
        limit = ['^LIMIT: your limit resets in']

        [[agent]]
        name = "main"
        backend = "lim"
        prompt = "the kickoff"
        """)
    began = time.monotonic()
    up = project.run("up", "--no-watchdog")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "main: started in session t-main, limited until " in up.stdout, up.stdout
    assert "the watchdog delivers its kickoff once the limit is over" in up.stdout, up.stdout
    assert time.monotonic() - began < 60  # not the 90 s ready_timeout
    assert ag.StateStore(project.root / ".agents" / "state").load()["units"]["main"].kickoff == "the kickoff"
