"""Live: the simulated agent in real tmux on a private socket, driven through the command line.

What a new user sees with the offline demo: up, status, send, up again, down.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from conftest import marked_pids, wait_for

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def test_demo_up_send_status_down(project, tmp_path):
    project.use_demo()
    started = time.monotonic()
    up = project.run("up", "--no-watchdog")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "builder: started in session demo-builder" in up.stdout
    assert "reviewer: started in session demo-reviewer" in up.stdout
    # The reviewer's start-up dialog was answered (Down, Enter), not typed into.
    keys = [entry["key"] for entry in project.sim_log("reviewer") if entry.get("kind") == "dialog-key"]
    assert keys == ["Down", "Enter"]
    # Both kickoffs arrived verbatim (multi-line, so as one bracketed paste).
    assert project.messages("builder")[0].startswith("You are builder, the Builder")
    assert "\n" in project.messages("builder")[0]
    assert project.messages("reviewer")[0].startswith("You are reviewer")
    wait_for(lambda: set(project.states().values()) == {"idle"}, timeout=10, message="both agents idle")
    assert time.monotonic() - started < 10

    # A hostile-looking message arrives verbatim and runs nothing.
    marker = tmp_path / "pwned"
    text = f'"; touch {marker}1; $(touch {marker}2) `touch {marker}3` \'quoted\' & | > x'
    send = project.run("send", "builder", text)
    assert send.returncode == 0, send.stderr
    assert "delivered" in send.stdout
    assert project.messages("builder")[-1] == text
    assert not any(Path(f"{marker}{n}").exists() for n in (1, 2, 3))
    assert not (project.root / "x").exists()

    # While the builder works on it, status reads busy for it and idle for the reviewer.
    current = project.states()
    assert current == {"builder": "busy", "reviewer": "idle"}, current
    events = (project.root / ".agents" / "logs" / "events.jsonl").read_text()
    assert '"kind": "send"' in events

    # up again starts nothing new.
    sessions_before = project.sessions()
    pids_before = {row["name"]: row["pid"] for row in project.status()["agents"]}
    again = project.run("up", "--no-watchdog")
    assert again.returncode == 0
    assert "builder: already running" in again.stdout and "nothing to start" in again.stdout
    assert project.sessions() == sessions_before
    assert {row["name"]: row["pid"] for row in project.status()["agents"]} == pids_before
    assert len([e for e in project.sim_log("builder") if e.get("kind") == "start"]) == 1

    # down leaves no session and no process.
    pids = [pid for pid in pids_before.values() if pid]
    down = project.run("down")
    assert down.returncode == 0
    assert project.sessions() == []
    assert all(not os.path.exists(f"/proc/{pid}") or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
               for pid in pids)
    assert marked_pids(project.config) == []
    assert {row["state"] for row in project.status()["agents"]} == {"stopped"}


@pytest.mark.parametrize("text", ["ends with a semicolon;", "two;;", ";", "escaped \\;", "back\\slash\\",
                                  "{braces} #{pane_id} -t x", "x" * 1500 + ";" + "y" * 20])
def test_tricky_text_arrives_verbatim(project, text):
    project.use_demo(work=0.1)
    assert project.run("up", "--no-watchdog", "builder").returncode == 0
    wait_for(lambda: project.states()["builder"] == "idle", message="builder idle")
    send = project.run("send", "builder", text)
    assert send.returncode == 0, send.stderr
    assert project.messages("builder")[-1] == text


def test_multiline_message_is_one_paste(project):
    project.use_demo(work=0.5)
    assert project.run("up", "--no-watchdog").returncode == 0
    wait_for(lambda: project.states()["builder"] == "idle", message="builder idle")
    text = "first line\nsecond line with $(date)\n\n  indented fourth"
    assert project.run("send", "builder", text).returncode == 0
    assert project.messages("builder")[-1] == text


def test_message_is_held_while_a_dialog_is_open(project):
    project.use_demo(work=0.2)
    assert project.run("up", "--no-watchdog").returncode == 0
    wait_for(lambda: project.states()["builder"] == "idle", message="builder idle")
    assert project.run("send", "builder", "SIM:dialog").returncode == 0
    wait_for(lambda: project.states()["builder"] == "dialog", message="dialog shown")
    held = project.run("send", "builder", "this must not be typed")
    assert held.returncode == 1
    assert "NOT delivered: held" in held.stderr and "dialog" in held.stderr
    assert "this must not be typed" not in project.messages("builder")
    assert [e for e in project.sim_log("builder") if e.get("kind") == "dialog-key"] == []
    events = (project.root / ".agents" / "logs" / "events.jsonl").read_text().splitlines()
    assert any('"kind": "send-held"' in line for line in events)


def test_dead_agent_and_restart(project):
    project.use_demo(work=0.2)
    assert project.run("up", "--no-watchdog").returncode == 0
    wait_for(lambda: project.states()["builder"] == "idle", message="builder idle")
    first = project.status()["agents"][0]["session_ids"]
    project.run("send", "builder", "SIM:die 3")
    # tmux 3.3a sometimes misses the child's exit; observe() makes it collect the status (Tmux.reap).
    wait_for(lambda: project.row("builder")["detail"] == "exited with status 3"
             and project.states()["builder"] == "dead", message="builder dead with status 3")
    restart = project.run("restart", "builder")  # back into its conversation
    assert restart.returncode == 0, restart.stdout + restart.stderr
    row = next(r for r in project.status()["agents"] if r["name"] == "builder")
    assert row["restarts"] == 1 and row["session_ids"] == first and row["resumed_from"] == first[0]
    fresh = project.run("restart", "builder", "--fresh")  # a new conversation with its kickoff
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    row = next(r for r in project.status()["agents"] if r["name"] == "builder")
    assert row["restarts"] == 2 and len(row["session_ids"]) == 2 and row["session_ids"][0] == first[0]
    # Each start used the session id recorded for it.
    starts = [e for e in project.sim_log("builder") if e.get("kind") == "start"]
    assert [e["session_id"] for e in starts] == [first[0], first[0], row["session_ids"][-1]]
    assert [e["resumed"] for e in starts] == [False, True, False]


def test_up_reports_an_agent_that_dies_at_start(project):
    project.use_demo(extra="""
[backend.failing]
command = ["python3", "-c", "import sys; print('boom: no API key'); sys.exit(4)"]

[[agent]]
name = "broken"
backend = "failing"
""")
    up = project.run("up", "--no-watchdog", "broken")
    assert up.returncode == 1
    assert "broken: died at start (exited with status 4): boom: no API key" in up.stdout


def test_down_touches_only_what_this_config_started(project):
    project.use_demo(work=0.2)
    # Someone else's session on the same server, and one that merely shares a name prefix.
    project.tmux("new-session", "-d", "-s", "demo-builderX", "sleep", "300")
    project.tmux("new-session", "-d", "-s", "unrelated", "sleep", "300")
    assert project.run("up", "--no-watchdog").returncode == 0
    assert project.run("down").returncode == 0
    assert sorted(project.sessions()) == ["demo-builderX", "unrelated"]


def test_foreign_session_with_our_name_is_not_adopted(project):
    project.use_demo(work=0.2)
    project.tmux("new-session", "-d", "-s", "demo-builder", "sleep", "300")
    up = project.run("up", "--no-watchdog")
    assert up.returncode == 1
    assert "demo-builder' exists but was not started by" in up.stderr
    assert sorted(project.sessions()) == ["demo-builder"]  # nothing started, nothing killed
    down = project.run("down")
    assert "left alone" in down.stdout
    assert project.sessions() == ["demo-builder"]


def test_down_ends_processes_left_behind(project):
    """A daemon that escaped the pane's process tree (like Codex's app-server) is found by its marker."""
    project.use_demo(work=0.2)
    text = project.config.read_text() + (
        '\n[[service]]\nname = "spawner"\n'
        'command = ["python3", "-c", "import subprocess, time; '
        "subprocess.Popen(['setsid', 'sleep', '300'], start_new_session=True); time.sleep(300)\"]\n")
    project.config.write_text(text)
    assert project.run("up", "--no-watchdog", "spawner").returncode == 0
    wait_for(lambda: len(marked_pids(project.config)) >= 2, message="daemon started")
    daemon = [pid for pid in marked_pids(project.config)]
    assert project.run("down").returncode == 0
    wait_for(lambda: marked_pids(project.config) == [], timeout=5, message="leftovers ended")
    assert all(not os.path.exists(f"/proc/{pid}") for pid in daemon) or marked_pids(project.config) == []


def test_logs_and_check(project):
    project.use_demo(work=0.2)
    assert project.run("up", "--no-watchdog").returncode == 0
    wait_for(lambda: project.states()["builder"] == "idle", message="builder idle")
    logs = project.run("logs", "builder", "-n", "100")
    assert logs.returncode == 0
    assert "Sim Agent" in logs.stdout and "ack:" in logs.stdout
