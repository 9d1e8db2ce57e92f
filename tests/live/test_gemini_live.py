"""Live: the REAL Gemini CLI (pinned in tests/live/pins/gemini-cli), driven through agents.py's command line.

Gemini CLI runs offline against ``mock_gemini.MockGemini`` (``GOOGLE_GEMINI_BASE_URL`` and a dummy
``GEMINI_API_KEY`` in the backend's env, a sandbox HOME; see gemini_sandbox.py), in tmux on a private
socket. The config is the built-in ``gemini`` preset with only ``command``'s program pointed at the
pinned binary (the preset's flags kept) and the sandbox env: no pattern is overridden, so these tests
prove the preset. The HOME is fresh: nothing trusted, no auth method chosen. The preset must answer all three
start-up boxes (trust, auth method, API key).

One ``up`` per module (the ``rig`` fixture); each test waits for the agent to be ready first.

  a  ``up`` answers the trust, auth and key boxes (Enter each; never during the trust restart), the
     kickoff reaches the model verbatim, ``status`` reads busy during a held turn and idle after
  c  a ``run_shell_command`` function call really commits in the agent's repo
  d  429s: the CLI retries by itself under its busy line: busy, never idle, until an answer comes;
     a terminal quota error ("Please retry in 7200s") reads ``limited until …`` with the reset
     parsed from ``Access resets at 5:25 PM UTC``; the preset's resume ("continue" + Enter) picks
     "Keep trying" and the turn is answered
  e  the chat file's ``tokens`` equal the usage the mock served for the main turns, and so do
     agents.py's reading of main's transcripts and ``agent-log.py --totals --agent main``
  f  the agent starts with ``--session-id <id>`` (its chat file takes the id); ``restart`` resumes it with
     ``--resume <id>``: the old turns go with the next request, the same chat file grows (a stub
     file may appear), the old CLI ended
  z  ``down`` ends every process of the sandbox (the CLI and its relaunched child)

Skipped loudly ("REAL GEMINI-CLI SKIPPED …") when the CLI cannot be had, unless AGENTS_REQUIRE_REAL_CLI=1.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import clis  # noqa: E402
from cli_rig import CliRig, report_wall_times, timed, up_with_held_kickoff  # noqa: E402,F401
import gemini_sandbox as gs  # noqa: E402
from claude_team import LiveProject, git, make_repo, toml_env  # noqa: E402
from conftest import marked_pids  # noqa: E402
from conftest import agents as ag  # noqa: E402
from mock_gemini import MockGemini, newest_user_text  # noqa: E402

AGENT_LOG = HERE.parent.parent / "agent-log.py"

KICKOFF = "You are {name}: reply \"ready\" & don't run $(anything) or `this`; wait for work."
KICKOFF_RENDERED = KICKOFF.replace("{name}", "main")
RESUME_NOTE = "You were restarted after "


class GeminiProject(LiveProject):
    """No GEMINI_*/GOOGLE_* variable of the caller reaches the agents; CI=true always does, as on a CI
    machine: with it Gemini CLI runs headless and exits at once, unless the preset's env says CI=false."""

    def env(self) -> dict[str, str]:
        env = {key: value for key, value in super().env().items() if not key.startswith(gs.SCRUB_PREFIXES)}
        return {**env, "CI": "true", "GITHUB_ACTIONS": "true"}


class Rig(CliRig):
    def __init__(self, binary: Path, root: Path, terminal) -> None:
        super().__init__(terminal)
        self.binary, self.root = binary, root
        self.project = GeminiProject(root, f"agt-gemini-{os.getpid()}-{secrets.token_hex(3)}")
        self.repo = make_repo(root / "repo")
        self.mock = MockGemini().start()
        self.home = gs.prepare_gemini_home(root / "gemini-home")
        preset = ag.BACKEND_PRESETS["gemini"]["command"]
        assert preset[1:] == ["--yolo"], preset
        self.project.write(f"""
            [backend.gemini]
            command = {json.dumps([str(binary), *preset[1:]])}
            env = {toml_env(gs.gemini_env(self.home, self.mock.base_url))}

            [[agent]]
            name = "main"
            backend = "gemini"
            cwd = "repo"
            prompt = {json.dumps(KICKOFF)}
            """)

    def cleanup(self) -> None:
        try:
            self.project.cleanup()
            for pid in gs.sandbox_pids(self.home):  # ours by their HOME; only if the marker missed one
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        finally:
            self.mock.stop()


@pytest.fixture(scope="module")
def rig(tmp_path_factory, request):
    binary = clis.require("gemini-cli")
    rig = Rig(binary, tmp_path_factory.mktemp("gemini-live"), request.config.pluginmanager.get_plugin("terminalreporter"))
    try:
        up_with_held_kickoff(rig, "a: up + trust/auth/key boxes + held kickoff + idle (fixture)")
        yield rig
    finally:
        try:
            rig.cleanup()
        finally:
            report(rig, request)


def report(rig: Rig, request) -> None:
    report_wall_times(rig, request, "gemini-live")


# ----------------------------------------------------------------------------
# a. up: three boxes answered, the kickoff verbatim, busy then idle
# ----------------------------------------------------------------------------

def test_a_up_answers_the_startup_boxes_and_delivers_kickoff(rig):
    up = rig.facts["up"]
    assert up.returncode == 0, up.stdout + up.stderr
    assert "kickoff delivered" in up.stdout, up.stdout
    dialogs = rig.project.events("dialog", "main")
    assert all("keys" in d for d in dialogs), dialogs  # no "needs you" (the trust restart is not one)
    reasons = [d["reason"] for d in dialogs]
    assert [d["keys"] for d in dialogs] == ["Enter"] * 3, dialogs
    assert "Do you trust the files in this folder?" in reasons[0], reasons
    assert "How would you like to authenticate" in reasons[1], reasons
    assert "Enter Gemini API Key" in reasons[2], reasons
    assert all("pressed Enter" in reason for reason in reasons), reasons
    # The answers were saved: the folder trusted, the API key chosen.
    trusted = json.loads((rig.home / ".gemini" / "trustedFolders.json").read_text())
    assert trusted == {str(rig.repo.resolve()): "TRUST_FOLDER"}, trusted
    settings = json.loads((rig.home / ".gemini" / "settings.json").read_text())
    assert settings["security"]["auth"]["selectedType"] == "gemini-api-key", settings
    start = rig.project.events("start", "main")[0]
    assert start["argv"].startswith(f"{rig.binary} --yolo"), start
    assert rig.mock.user_texts()[0] == KICKOFF_RENDERED, rig.mock.user_texts()
    assert all(state == "busy" for state in rig.facts["held_states"]), rig.facts["held_states"]
    assert rig.facts["after_state"] == "idle", rig.facts["after_state"]
    assert "kickoff answered: ready" in rig.screen()
    # The router's JSON call is a side call: it took nothing from the queue.
    assert rig.mock.requests("side"), [r["kind"] for r in rig.mock.requests()]
    assert all(r["headers"].get("x-goog-api-key") == gs.API_KEY for r in rig.mock.requests("main"))


# ----------------------------------------------------------------------------
# c. a function call runs a real command (YOLO: no approval box)
# ----------------------------------------------------------------------------

def test_c_function_call_commits_in_the_repo(rig):
    rig.ready()
    rig.mock.command("git commit --allow-empty -m from-gemini-live", then="committed it.")
    assert rig.send("make an empty commit").returncode == 0
    rig.wait("the commit", lambda: "from-gemini-live" in git(rig.repo, "log", "--format=%s").stdout, timeout=60)
    rig.wait("the answer after the tool", lambda: "committed it." in rig.screen(), timeout=60)
    assert rig.ready() == "idle"
    responses = rig.mock.function_responses()
    assert any(r.get("name") == "run_shell_command" for r in responses), responses
    assert any("from-gemini-live" in json.dumps(r) for r in responses), responses


# ----------------------------------------------------------------------------
# d. limits
# ----------------------------------------------------------------------------

def test_d_429s_are_retried_by_the_cli_under_its_busy_line(rig):
    rig.ready()
    rig.mock.error(429, times=1)
    rig.mock.reply("answered after the 429s")
    assert rig.send("this will be rate limited").returncode == 0
    seen = []

    def answered() -> bool:
        seen.append(rig.state())
        return seen[-1] == "idle" and "answered after the 429s" in rig.screen()

    rig.wait("the answer after the CLI's retries", answered, timeout=40)
    errors = [r for r in rig.mock.requests("main") if r.get("status") == 429]
    assert len(errors) == 1, errors  # the positive signal: the 429 was served before the answer
    assert "busy" in seen, seen
    # Never idle while the CLI retried (before its busy line is first drawn, the emptied box may read idle).
    assert "idle" not in seen[seen.index("busy"):-1], seen
    assert set(seen) <= {"busy", "idle"}, seen


def test_d_quota_limit_reads_limited_with_its_reset_then_resume_keeps_trying(rig):
    rig.ready()
    asked = time.time()
    rig.mock.error(429, body={"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                                        "message": "Quota exceeded for metric (mock). Please retry in 7200s."}})
    rig.mock.reply("answered after keep trying")
    assert rig.send("and now the quota").returncode == 0

    def limited_row() -> dict | None:
        row = rig.row()
        return row if row["state"].startswith("limited until") else None

    row = rig.wait("limited until", limited_row, timeout=30)
    screen = rig.screen()
    assert "Usage limit reached for" in screen and "Access resets at" in screen, screen
    reset = datetime.fromisoformat(row["limited_until"]).timestamp()
    # The box prints the clock minute of now + 7200 s: the reset is that minute.
    assert (asked + 7200) // 60 * 60 - 60 <= reset <= (asked + 7200) // 60 * 60 + 60, (row, asked)
    rig.facts["limit_row"] = row
    # What the watchdog types once the limit resets: "continue", then Enter ("1. Keep trying" is selected).
    assert ag.BACKEND_PRESETS["gemini"]["resume"] == "continue"
    rig.project.tmux("send-keys", "-t", "t-main", "-l", "continue")
    time.sleep(0.3)
    rig.project.tmux("send-keys", "-t", "t-main", "Enter")
    rig.wait("the answer after Keep trying", lambda: "answered after keep trying" in rig.screen(), timeout=30)
    assert rig.ready() == "idle"
    assert "continue" not in rig.mock.user_texts(), rig.mock.user_texts()  # the letters went nowhere


# ----------------------------------------------------------------------------
# e. tokens in the chat file
# ----------------------------------------------------------------------------

def test_e_chat_tokens_equal_what_was_served(rig):
    files = gs.chats(rig.home)
    assert len(files) == 1, files
    assert files[0].parent.parent.name == rig.repo.name, files  # ~/.gemini/tmp/<project name>/chats/
    tokens = list(gs.chat_tokens(files[0]).values())
    served = rig.mock.served_usage_total("main")
    assert len(tokens) == served["responses"], (tokens, served)
    assert sum(t["input"] for t in tokens) == served["prompt"], (tokens, served)  # input includes cached
    assert sum(t["cached"] for t in tokens) == served["cached"], (tokens, served)
    assert sum(t["output"] for t in tokens) == served["candidates"], (tokens, served)
    assert sum(t["thoughts"] for t in tokens) == served["thoughts"], (tokens, served)
    assert sum(t["total"] for t in tokens) == served["total"], (tokens, served)
    # agents.py finds main's chat by the session id it started it with, under the sandbox HOME, and reads
    # the same: input without its cached part, thoughts as output. agent-log.py --agent agrees.
    expected = [served["prompt"] - served["cached"], served["candidates"] + served["thoughts"], 0, served["cached"]]
    cfg = ag.load_config(str(rig.project.config))
    book = ag.TokenBook(rig.root / "e-tokens.json")
    assert book.read(cfg, ag.StateStore(cfg.state_dir).load())["main"] == expected, expected
    log = subprocess.run([sys.executable, str(AGENT_LOG), "--totals", "--agent", "main", "--config",
                          str(rig.project.config)], capture_output=True, text=True, timeout=60)
    assert log.returncode == 0, log.stderr
    total = log.stdout.splitlines()[-1]
    assert f"in={expected[0]} out={expected[1]} cache_creation=0 cache_read={expected[3]} " in total, log.stdout


# ----------------------------------------------------------------------------
# f. restart resumes the conversation (--session-id, then --resume <id>)
# ----------------------------------------------------------------------------

def test_f_restart_resumes_the_conversation(rig):
    rig.ready()
    (session_id,) = rig.row()["session_ids"]
    (chat,) = gs.chats(rig.home)
    assert json.loads(chat.read_text(encoding="utf-8").splitlines()[0])["sessionId"] == session_id
    first = rig.project.events("start", "main")[0]
    assert f"--yolo --session-id {session_id}" in first["argv"], first
    old = set(gs.sandbox_pids(rig.home))
    restarted = rig.run("restart", "main")
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    start = rig.project.events("start", "main")[-1]
    assert start.get("resumed") == session_id and f"--resume {session_id}" in start["argv"], start
    rig.wait("the resume note answered", lambda: any(t.startswith(RESUME_NOTE) for t in rig.mock.user_texts()),
             timeout=60)
    assert rig.ready() == "idle"
    note = next(r for r in rig.mock.requests("main") if newest_user_text(r["body"]).startswith(RESUME_NOTE))
    history = json.dumps(note["body"]["contents"])
    assert json.dumps(KICKOFF_RENDERED)[1:-1] in history, history[:2000]  # the old turns went with it
    # The resumed turns are appended to the same chat file. The resumed CLI also opens
    # session-<now>-<id8>.jsonl: the same file when the minute is the same, else a stub (header, context).
    assert RESUME_NOTE in chat.read_text(encoding="utf-8")
    for other in set(gs.chats(rig.home)) - {chat}:
        assert json.loads(other.read_text(encoding="utf-8").splitlines()[0])["sessionId"] == session_id, other
        assert not gs.chat_tokens(other), other.read_text(encoding="utf-8")[:2000]
    assert not old & set(gs.sandbox_pids(rig.home)), (old, gs.sandbox_pids(rig.home))  # the old CLI ended


# ----------------------------------------------------------------------------
# z. down ends everything
# ----------------------------------------------------------------------------

def test_z_down_ends_every_process(rig):
    """The CLI outlives its tmux session (both node processes stayed after kill-session here); ``down``
    finds them by agents.py's marker and ends them."""
    before = gs.sandbox_pids(rig.home)
    assert len(before) >= 2, [(pid, gs.cmdline(pid)) for pid in before]  # gemini.js and its relaunched child
    marked = set(marked_pids(rig.project.config))
    assert set(before) <= marked, (before, marked)
    rig.project.tmux("kill-session", "-t", "=t-main")
    rig.wait("the session gone", lambda: rig.project.sessions() == [], timeout=10)
    time.sleep(1.0)
    survivors = gs.sandbox_pids(rig.home)
    rig.facts["after_kill_session"] = [(pid, gs.cmdline(pid)) for pid in survivors]
    assert set(survivors) <= marked, (survivors, marked)
    down = rig.run("down")
    assert down.returncode == 0, down.stdout + down.stderr
    rig.wait("no process of the sandbox", lambda: not gs.sandbox_pids(rig.home), timeout=30)
    assert rig.project.sessions() == []
    assert not marked_pids(rig.project.config)
    if rig.terminal is not None:
        rig.terminal.write_line(f"\ngemini-live: {len(survivors)} of {len(before)} processes outlived kill-session; "
                                f"down ended them")
