"""Live: the watchdog heals a killed REAL Claude Code CLI into the same conversation.

A team of one ``claude`` agent (the built-in preset, the pinned binary, the
mock model of mock_anthropic) under agents.py's watchdog (private tmux socket,
temp folder, ``signal_interval = 1``, a short backoff). The agent takes its
kickoff and one more turn, then its CLI is killed with SIGKILL by pid:

  resume   (the default ``restart_mode``) the heal starts ``claude --resume <its
           session id>``: the model's next request carries the earlier turns,
           the agent gets the one-line "You were restarted" note and not its
           kickoff, the ``start`` event says ``resumed`` with the id, and the
           usage of the agent's transcripts (every file of its project folder,
           de-duplicated by message id; agent-log.py's totals) equals what the
           mock served: history a resumed run copies is not counted twice
  fresh    ``restart_mode = "fresh"``: a new session id, the kickoff again, no
           earlier turns at the model
  --fresh  ``agents.py restart main --fresh`` on a resume-mode agent: the same
  gone     the transcript is gone when the heal comes: the resume fails, a
           ``resume-failed`` event, and the agent starts fresh with its kickoff

Facts about the CLI (2.1.330, checked by hand against the mock):
``--resume X`` keeps session id X and appends to ``X.jsonl``; the
bypass-permissions warning, accepted once, is not shown again
(``skipDangerousModePermissionPrompt`` in ``$HOME/.claude/settings.json``);
the idle prompt is back in about a second. ``--resume X --session-id Y`` exits
1 with ``Error: --session-id with --continue or --resume also needs
--fork-session.``; ``--resume X --fork-session [--session-id Y]`` copies the
history into a new file with the same ``message.id`` / ``requestId`` /
``requestRef``. A ``--resume`` of an id with no transcript (none is written
before the first prompt) prints ``No conversation found with session ID: X``
and exits 1. Older versions (1.0.x-2.0.x) gave a resumed run a new session id
and file: the token check below holds either way.

Skipped loudly ("REAL CLAUDE CODE SKIPPED …") without the CLI, unless
``AGENTS_REQUIRE_REAL_CLI=1``; knobs as in claude_team.py. Each test has its own
team, cleaned up (watchdog, tmux server, processes by pid) even on failure.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import claude_sandbox as cs  # noqa: E402
from claude_team import ClaudeTeam, require_binary, toml_str  # noqa: E402
from conftest import agents as ag  # noqa: E402
from mock_anthropic import SYSTEM_REMINDER_OPEN, typed_text  # noqa: E402

KICKOFF = "You are {name}: reply \"ready\" and wait for work."
KICKOFF_RENDERED = KICKOFF.replace("{name}", "main")
KICKOFF_ANSWER = "kickoff answered: ready"
REMEMBER = "Remember the word PELICAN for later."
REMEMBERED = "Noted: the word is PELICAN."
RESUME_NOTE = "You were restarted"

HEAL_DEADLINE = 120.0  # kill → healed agent at the model; a busy 2-core machine is slow, a healthy one takes ~5 s


# ----------------------------------------------------------------------------
# The team: one claude agent under the watchdog
# ----------------------------------------------------------------------------

class HealTeam(ClaudeTeam):
    """One agent ``main`` in ``repo`` on the claude preset, the watchdog ticking every second."""

    def write_config(self, restart_mode: str | None = None, backoff: float = 1.0) -> None:
        mode = f"restart_mode = {toml_str(restart_mode)}\n" if restart_mode else ""
        self.project.write(f"""
[watchdog]
signal_interval = 1
backoff_base = {backoff:g}
backoff_max = {max(8.0, 2 * backoff):g}
stall_idle = 3600
stall_grace = 3600

{self.backend_toml(extra=mode)}
[[agent]]
name = "main"
cwd = "repo"
prompt = {toml_str(KICKOFF)}
""")

    def up_with_two_turns(self) -> tuple[str, int]:
        """``up`` (watchdog included), the kickoff answered, one more turn remembered;
        returns the agent's session id and its CLI's pid."""
        self.mock.reply(KICKOFF_ANSWER)
        up = self.run("up")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "watchdog: started" in up.stdout, up.stdout
        self.wait("the kickoff at the model", lambda: KICKOFF_RENDERED in self.mock.typed_texts(), timeout=60)
        self.wait("the kickoff's answer", lambda: KICKOFF_ANSWER in self.screen(), timeout=60)
        self.ready(timeout=90)
        self.mock.reply(REMEMBERED)
        sent = self.send(REMEMBER)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        self.wait("the remembered turn", lambda: REMEMBERED in self.screen(), timeout=60)
        self.ready(timeout=90)
        row = self.row()
        assert row["session_ids"] and row["pid"], row
        session_id = row["session_ids"][-1]
        path = cs.transcript_path(self.home, self.repo, session_id)
        self.wait(f"the transcript {path.name}", path.exists, timeout=30)
        first = self.project.events("start", "main")
        assert len(first) == 1 and first[0]["session_id"] == session_id, first
        assert not first[0].get("resumed"), first[0]
        return session_id, row["pid"]

    def kill_cli(self, pid: int) -> None:
        """SIGKILL the agent's CLI by pid (only if it is the pinned binary), and wait until it is gone."""
        exe = os.path.realpath(f"/proc/{pid}/exe")
        assert exe == os.path.realpath(self.binary), (pid, exe)
        os.kill(pid, signal.SIGKILL)
        self.wait(f"pid {pid} gone", lambda: not ag.pid_alive(pid), timeout=30)

    def heal_start(self, count: int = 2) -> dict:
        """The ``start`` event of the heal (the agent's ``count``-th start)."""
        starts = self.wait(f"start event #{count}", lambda: self.project.events("start", "main")[count - 1:],
                           timeout=HEAL_DEADLINE, interval=0.5)
        return starts[0]

    def healed(self, requests_before: int) -> dict:
        """Wait for the healed CLI's first main request and for it to be ready again; returns the request."""
        self.wait("the healed agent's first request to the model",
                  lambda: len(self.mock.main_requests()) > requests_before, timeout=HEAL_DEADLINE, interval=0.5)
        self.ready(timeout=HEAL_DEADLINE)
        return self.mock.main_requests()[requests_before]

    def ticks(self, count: int) -> None:
        """Wait until the watchdog has ticked ``count`` more times (its heartbeat changed): the window
        in which something it should not do (a kickoff typed after the note) would have happened."""
        seen = [self.project.status()["watchdog"]["last_tick"]]

        def ticked() -> bool:
            now = self.project.status()["watchdog"]["last_tick"]
            if now != seen[-1]:
                seen.append(now)
            return len(seen) > count

        self.wait(f"{count} watchdog ticks", ticked, timeout=30 + 5 * count, interval=0.3)

    def check_tokens(self) -> dict[str, int]:
        """Usage over every transcript of the project folder == what the mock served (each API call once),
        and agent-log.py's totals agree, over the folder and over the agent's recorded session ids."""
        want_per_message = self.mock.served_usage()
        want = self.mock.served_usage_total()
        self.wait("transcript usage == served usage",
                  lambda: cs.transcript_usage(*self.transcripts()) == want_per_message, timeout=30, interval=0.5)
        assert cs.usage_total(cs.transcript_usage(*self.transcripts())) == want
        folder = cs.projects_dir(self.home) / cs.project_slug(self.repo)
        assert self.agent_log_totals(str(folder)) == want
        assert self.agent_log_totals("--agent", "main", "--config", str(self.project.config)) == want
        return want


def conversation(body: dict) -> list[tuple[str, str]]:
    """(role, text) of each message the CLI sent, without its <system-reminder> blocks."""
    out = []
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            text = content
        else:
            text = "\n".join(block.get("text", "") for block in content or []
                             if isinstance(block, dict) and block.get("type") == "text"
                             and not block.get("text", "").lstrip().startswith(SYSTEM_REMINDER_OPEN))
        out.append((message.get("role", ""), text))
    return out


def said(body: dict, role: str, text: str) -> int:
    """Index of the first ``role`` message containing ``text`` (-1: none)."""
    return next((i for i, (r, t) in enumerate(conversation(body)) if r == role and text in t), -1)


@pytest.fixture
def team(tmp_path):
    binary = require_binary()
    team = HealTeam(binary, tmp_path, "heal")
    try:
        yield team
    finally:
        team.cleanup()


# ----------------------------------------------------------------------------
# resume: healed into the same conversation
# ----------------------------------------------------------------------------

def test_killed_agent_is_resumed_into_the_same_conversation(team):
    team.write_config()  # restart_mode left at the claude preset's default: resume
    session_id, pid = team.up_with_two_turns()
    requests_before, typed_before = len(team.mock.main_requests()), len(team.mock.typed_texts())

    team.kill_cli(pid)
    start = team.heal_start()
    request = team.healed(requests_before)
    team.ticks(4)

    # (3) The events say it was resumed, with the session id; the CLI got --resume, not --session-id.
    assert start.get("resumed") == session_id, start
    assert "resumed" in start["reason"], start
    # the backend's command, then the resume arguments (where --session-id would go), no new id
    assert start["argv"] == f"{team.binary} --dangerously-skip-permissions --resume {session_id}", start["argv"]
    words = start["argv"].split()
    assert "--session-id" not in words or "--fork-session" in words, start["argv"]  # else the CLI exits 1 at once
    assert not team.project.events("resume-failed", "main"), team.project.events("resume-failed")
    assert len(team.project.events("start", "main")) == 2, team.project.events("start", "main")
    row = team.row()
    assert row["pid"] and row["pid"] != pid and row["restarts"] == 1 and row["lifecycle"] == "running", row

    # (1) The model's next request carries the earlier turns, then the note.
    kickoff_at, remember_at = said(request["body"], "user", KICKOFF_RENDERED), said(request["body"], "user", REMEMBER)
    answered_at = said(request["body"], "assistant", REMEMBERED)
    assert 0 <= kickoff_at < remember_at < answered_at, conversation(request["body"])
    assert said(request["body"], "assistant", KICKOFF_ANSWER) >= 0, conversation(request["body"])
    assert typed_text(request["body"]["messages"][-1]).startswith(RESUME_NOTE), conversation(request["body"])

    # (2) One one-line note, and not the kickoff again (four ticks after the healed agent was ready).
    after = team.mock.typed_texts()[typed_before:]
    assert len(after) == 1, after
    note = after[0]
    assert note.startswith(RESUME_NOTE) and "\n" not in note.strip(), note
    assert KICKOFF_RENDERED not in note, note
    assert KICKOFF_RENDERED not in "\n".join(team.mock.user_texts()[typed_before:])

    # agents.py knows the session id the resumed run writes under (whatever the CLI chose).
    resumed_ids = {r["headers"].get("x-claude-code-session-id") for r in team.mock.main_requests()[requests_before:]}
    assert resumed_ids and resumed_ids <= set(team.row()["session_ids"]), (resumed_ids, team.row()["session_ids"])

    # (4) Tokens: every API call counted once over all the agent's transcripts.
    total = team.check_tokens()
    assert total["messages"] == len(team.mock.served()) >= 3, total


# ----------------------------------------------------------------------------
# fresh: a new conversation with the kickoff
# ----------------------------------------------------------------------------

def check_fresh_start(team: HealTeam, start: dict, old_id: str, requests_before: int, typed_before: int) -> str:
    """A fresh start after ``old_id``: a new session id, the kickoff again, none of the earlier turns."""
    assert not start.get("resumed"), start
    assert "resumed" not in start["reason"], start
    new_id = start["session_id"]
    assert new_id and new_id != old_id, start
    assert start["argv"].startswith(f"{team.binary} "), start["argv"]
    assert "--resume" not in start["argv"].split() and f"--session-id {new_id}" in start["argv"], start["argv"]
    request = team.healed(requests_before)
    team.ticks(3)
    after = team.mock.typed_texts()[typed_before:]
    assert after and after[0] == KICKOFF_RENDERED, after
    assert not [text for text in after if text.startswith(RESUME_NOTE)], after
    assert said(request["body"], "user", REMEMBER) < 0, conversation(request["body"])
    assert said(request["body"], "assistant", REMEMBERED) < 0, conversation(request["body"])
    assert request["headers"].get("x-claude-code-session-id") == new_id, request["headers"]
    assert team.row()["session_ids"][-2:] == [old_id, new_id], team.row()
    return new_id


def test_restart_mode_fresh_starts_a_new_conversation_with_the_kickoff(team):
    team.write_config(restart_mode="fresh")
    session_id, pid = team.up_with_two_turns()
    requests_before, typed_before = len(team.mock.main_requests()), len(team.mock.typed_texts())

    team.kill_cli(pid)
    start = team.heal_start()
    new_id = check_fresh_start(team, start, session_id, requests_before, typed_before)
    assert start["reason"].startswith("heal: restart #1"), start
    assert not team.project.events("resume-failed", "main")

    files = {path.name for path in team.transcripts()}
    assert {f"{session_id}.jsonl", f"{new_id}.jsonl"} <= files, files
    total = team.check_tokens()
    assert total["messages"] == len(team.mock.served()) >= 3, total


def test_restart_fresh_flag_starts_a_new_conversation_with_the_kickoff(team):
    team.write_config()  # resume by default; --fresh overrides it for this restart
    session_id, _pid = team.up_with_two_turns()
    requests_before, typed_before = len(team.mock.main_requests()), len(team.mock.typed_texts())

    restart = team.run("restart", "main", "--fresh")
    assert restart.returncode == 0, restart.stdout + restart.stderr
    start = team.heal_start()
    check_fresh_start(team, start, session_id, requests_before, typed_before)
    team.check_tokens()


# ----------------------------------------------------------------------------
# gone: the session cannot be resumed, so it starts fresh
# ----------------------------------------------------------------------------

def test_resume_of_a_vanished_session_falls_back_to_a_fresh_start(team):
    # A longer backoff: the transcript is moved away well before the heal comes.
    team.write_config(backoff=5)
    session_id, pid = team.up_with_two_turns()
    requests_before, typed_before = len(team.mock.main_requests()), len(team.mock.typed_texts())
    path = cs.transcript_path(team.home, team.repo, session_id)

    team.kill_cli(pid)
    path.rename(team.root / "vanished.jsonl")  # "No conversation found with session ID: …", exit 1
    failed = team.wait("a resume-failed event", lambda: team.project.events("resume-failed", "main"),
                       timeout=HEAL_DEADLINE, interval=0.5)
    assert failed[0]["agent"] == "main", failed
    team.wait("a fresh start after the failed resume",
              lambda: [e for e in team.project.events("start", "main")[1:] if not e.get("resumed")],
              timeout=HEAL_DEADLINE, interval=0.5)
    fresh = [e for e in team.project.events("start", "main")[1:] if not e.get("resumed")][0]
    check_fresh_start(team, fresh, session_id, requests_before, typed_before)
    assert KICKOFF_RENDERED in team.mock.typed_texts()[typed_before:]
