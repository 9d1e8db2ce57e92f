"""Live: supervision without collateral damage, with real tmux and the simulated agent.

An idle persistent agent is left alone and gets every wake; a loop agent idle past stall_idle is
nudged, then rebooted; a killed agent comes back into its conversation (``--resume <id>`` and a
one-line note), or fresh with its kickoff when its backend says ``restart_mode = "fresh"``; an
unknown dialog is reported at once and answered by hand with ``keys``; ``down`` removes the
private socket file. Every server is private to its test and cleaned up by the ``project`` fixture.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys

import pytest

from conftest import SIMAGENT, Project, wait_for

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None or shutil.which("git") is None,
                                reason="tmux and git are required")

RESUME_NOTE = "You were restarted after "


def demo(project: Project, watchdog: str, agents_extra: str = "", backend_extra: str = "") -> Project:
    """The demo team (builder, reviewer), fast, with extra keys for [defaults] and [backend.sim]."""
    project.use_demo(work=0.3, extra=f"\n[watchdog]\n{watchdog}\n")
    text = project.config.read_text()
    text = text.replace("[defaults]\n", f"[defaults]\n{agents_extra}\n", 1)
    text = text.replace("[backend.sim]\n", f"[backend.sim]\n{backend_extra}\n", 1)
    project.config.write_text(text)
    return project


def up(project: Project) -> None:
    result = project.run("up")
    assert result.returncode == 0, result.stdout + result.stderr
    wait_for(lambda: set(project.states().values()) == {"idle"}, timeout=20, message="agents idle")


def when(event: dict) -> float:
    return dt.datetime.fromisoformat(event["time"]).timestamp()


def test_idle_persistent_agent_with_a_wake_is_never_rebooted_and_gets_every_wake(project):
    """The README's 'real team' shape, shortened: stall_idle far below the wake interval. Before, an
    idle persistent agent was rebooted every stall_idle and its wake never came."""
    demo(project, "signal_interval = 1\nstall_idle = 2\nstall_grace = 1\nbackoff_base = 1",
         agents_extra='wake = { interval = 5, message = "wake: anything new?" }')
    up(project)
    wait_for(lambda: len([m for m in project.messages("builder") if m.startswith("wake:")]) >= 3, timeout=60,
             message="three wakes")
    assert [e["agent"] for e in project.events("start")] == ["builder", "reviewer"]  # `up` only: no reboot
    assert not project.events("nudge") and project.row("builder")["restarts"] == 0
    wakes = [when(e) for e in project.events("wake", "builder")]
    assert len(wakes) >= 3 and all(4 <= later - earlier <= 8 for earlier, later in zip(wakes, wakes[1:]))
    assert project.row("builder")["state"] == "idle"  # never "stalled": it is not a loop agent


def test_loop_agent_idle_past_stall_idle_gets_its_nudge_then_a_fresh_reboot(project):
    remote, clone = project.root / "remote.git", project.root / "work"
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True, env=env)
    seed = project.root / "seed"
    subprocess.run(["git", "init", "-q", "-b", "main", str(seed)], check=True, env=env)
    (seed / "README.md").write_text("work\n")
    for args in (["add", "README.md"], ["-c", "user.name=t", "-c", "user.email=t@e.invalid", "commit", "-qm", "seed"],
                 ["push", "-q", str(remote), "main"]):
        subprocess.run(["git", "-C", str(seed), *args], check=True, env=env, capture_output=True)
    subprocess.run(["git", "clone", "-q", str(remote), str(clone)], check=True, env=env, capture_output=True)
    project.write(f"""
[watchdog]
signal_interval = 1
stall_idle = 3
stall_grace = 1

[backend.sim]
preset = "claude"
command = ["{sys.executable}", "{SIMAGENT}", "--work", "0.3"]
submit_delay = 0.2
env = {{ CLAUDE_CONFIG_DIR = ".agents/sim-claude" }}

[loop]
repo = "work"
phases = [{{ id = "p1", kickoff = "Phase {{phase}}: build it." }}]

[[agent]]
name = "builder"
kind = "loop"
backend = "sim"
""")
    up(project)
    wait_for(lambda: project.events("start", "builder")[1:], timeout=40, message="a reboot after the nudge")
    nudges = project.events("nudge", "builder")
    assert len(nudges) == 1 and "DONE-nudge for phase p1" in nudges[0]["reason"]
    reboot = project.events("start", "builder")[1]
    assert "after its DONE-nudge; rebooted with its kickoff" in reboot["reason"] and not reboot.get("resumed")
    assert when(reboot) - when(nudges[0]) >= 3 - 1  # a fresh idle window after the nudge
    wait_for(lambda: project.messages("builder").count("Phase p1: build it.") == 2, timeout=20,
             message="the kickoff again, in a fresh session")
    assert not [m for m in project.messages("builder") if m.startswith(RESUME_NOTE)]


def test_killed_agent_is_resumed_into_its_session_with_a_note_not_the_kickoff(project):
    demo(project, "signal_interval = 15\nbackoff_base = 1")  # a long interval: the death wakes the watchdog
    up(project)
    row = project.row("builder")
    (session_id,) = row["session_ids"]
    os.kill(row["pid"], signal.SIGKILL)
    killed = dt.datetime.now().timestamp()
    wait_for(lambda: any(m.startswith(RESUME_NOTE) for m in project.messages("builder")), timeout=30,
             message="the resume note")
    heal = project.events("start", "builder")[-1]
    assert heal["resumed"] == session_id and f"--resume {session_id}" in heal["argv"]
    assert "--session-id" not in heal["argv"] and "resumed into session" in heal["reason"]
    assert when(heal) - killed < 1 + 3  # backoff 1 s, not the 15 s interval
    starts = [e for e in project.sim_log("builder") if e.get("kind") == "start"]
    assert [e["session_id"] for e in starts] == [session_id, session_id] and starts[1]["resumed"] is True
    kickoffs = [m for m in project.messages("builder") if m.startswith("You are builder")]
    assert len(kickoffs) == 1  # the kickoff went to the first life only
    note = [m for m in project.messages("builder") if m.startswith(RESUME_NOTE)]
    assert len(note) == 1 and "\n" not in note[0] and "Carry on where you left off." in note[0]
    assert project.row("builder")["session_ids"] == [session_id]
    assert project.row("builder")["resumed_from"] == session_id
    wait_for(lambda: project.events("resume-note", "builder"), timeout=10, message="the note's event")


def test_restart_mode_fresh_starts_a_new_session_with_the_kickoff(project):
    demo(project, "signal_interval = 1\nbackoff_base = 1", backend_extra='restart_mode = "fresh"')
    up(project)
    first = project.row("builder")
    os.kill(first["pid"], signal.SIGKILL)
    wait_for(lambda: len([m for m in project.messages("builder") if m.startswith("You are builder")]) == 2,
             timeout=30, message="the kickoff again")
    heal = project.events("start", "builder")[-1]
    assert not heal.get("resumed") and "--resume" not in heal["argv"] and "--session-id" in heal["argv"]
    ids = project.row("builder")["session_ids"]
    assert len(ids) == 2 and ids[0] == first["session_ids"][0]
    assert not [m for m in project.messages("builder") if m.startswith(RESUME_NOTE)]


def test_resume_of_a_session_that_never_talked_is_fresh_and_restart_fresh_flag(project):
    """`restart NAME` resumes; `restart NAME --fresh` starts a new conversation with the kickoff."""
    demo(project, "signal_interval = 1\nbackoff_base = 1")
    up(project)
    (session_id,) = project.row("builder")["session_ids"]
    resumed = project.run("restart", "builder")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert project.events("start", "builder")[-1]["resumed"] == session_id
    fresh = project.run("restart", "builder", "--fresh")
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    last = project.events("start", "builder")[-1]
    assert not last.get("resumed") and "fresh, with its kickoff" in last["reason"]
    assert len(project.row("builder")["session_ids"]) == 2
    assert project.row("builder")["restarts"] == 2
    assert len([m for m in project.messages("builder") if m.startswith("You are builder")]) == 2


def test_unknown_dialog_is_reported_at_once_and_answered_with_keys(project):
    demo(project, "signal_interval = 1")
    up(project)
    project.run("send", "builder", "SIM:dialog")
    wait_for(lambda: project.events("dialog", "builder"), timeout=10, message="the dialog reported")
    (report,) = project.events("dialog", "builder")
    assert report["reason"].startswith("needs you: a dialog waits")
    row = project.row("builder")
    assert row["state"] == "dialog (needs you)"
    assert "Do you want to proceed?" in "\n".join(row["dialog"]["lines"]) and row["dialog"]["needs_you"]
    table = project.run("status").stdout
    assert "dialog (needs you)" in table
    pressed = project.run("keys", "builder", "Escape")
    assert pressed.returncode == 0, pressed.stderr
    assert "the screen read dialog" in pressed.stdout and "pressed Escape" in pressed.stdout
    assert "Do you want to proceed?" in pressed.stdout
    wait_for(lambda: project.states()["builder"] == "idle", timeout=10, message="the dialog gone")
    assert project.events("keys", "builder")[0]["keys"] == "Escape"
    bad = project.run("keys", "builder", "rm -rf")
    assert bad.returncode == 2 and "expected tmux key names" in bad.stderr


def test_down_removes_the_socket_file_of_its_private_server(project):
    demo(project, "signal_interval = 1")
    up(project)
    folder = os.path.join(os.environ.get("TMUX_TMPDIR") or "/tmp", f"tmux-{os.getuid()}")
    path = os.path.join(folder, project.socket)
    assert os.path.exists(path)
    down = project.run("down")
    assert down.returncode == 0, down.stderr
    wait_for(lambda: not os.path.exists(path), timeout=5, message="socket file removed")
