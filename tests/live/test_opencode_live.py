"""Live: the REAL opencode CLI (pinned in tests/live/pins/opencode), driven through agents.py's command line.

opencode runs offline against ``mock_opencode.MockOpencode`` (a custom ``@ai-sdk/openai-compatible``
provider in a sandbox ``opencode.json``, see opencode_sandbox.py), in tmux on a private socket. The
config is the built-in ``opencode`` preset with only ``command``'s program pointed at the pinned binary
(the preset's ``--auto`` kept) and the sandbox env: no pattern is overridden, so these tests prove the
preset. The sandbox config sets ``"permission": {"bash": "ask"}``: only the preset's ``--auto`` lets the
bash tool run unattended.

One ``up`` per module (the ``rig`` fixture); each test waits for the agent to be ready first.

  a  ``up`` sees no startup dialog, the kickoff reaches the model verbatim, ``status`` reads busy during
     a held turn and idle after; a slow turn reads busy then idle
  b  ``restart`` resumes the session opencode began (``--session <id>``): the old turns reach the model
  c  a call of opencode's bash tool really commits in the agent's repo, no permission asked
  d  429s: ``limited (CLI retrying by itself)`` while opencode retries, ``limited (API rate limit)`` once it
     gives up, never idle; opencode Go's usage limit reads ``limited until …`` with the reset parsed
  e  opencode.db holds the usage the mock served for the main turns; agents.py and agent-log.py --agent
     read the same from main's recorded session
  z  ``down`` while a tool runs ends the CLI and the tool: no process of the sandbox is left

Skipped loudly ("REAL OPENCODE SKIPPED …") when the CLI cannot be had, unless AGENTS_REQUIRE_REAL_CLI=1.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import sqlite3
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
import opencode_sandbox as oc  # noqa: E402
from claude_team import LiveProject, git, make_repo, toml_env  # noqa: E402
from conftest import marked_pids  # noqa: E402
from conftest import agents as ag  # noqa: E402
from mock_opencode import MockOpencode  # noqa: E402

KICKOFF = "You are {name}: reply \"ready\" & don't run $(anything) or `this`; wait for work."
KICKOFF_RENDERED = KICKOFF.replace("{name}", "main")


class OpencodeProject(LiveProject):
    """No OPENCODE*/OPENAI_*/XDG_*/npm_config_* variable of the caller reaches the agent."""

    def env(self) -> dict[str, str]:
        return {key: value for key, value in super().env().items() if not key.startswith(oc.SCRUB_PREFIXES)}


class Rig(CliRig):
    READY_TIMEOUT, RUN_TIMEOUT, POLL = 30.0, 120.0, 0.3

    def __init__(self, binary: Path, root: Path, terminal) -> None:
        super().__init__(terminal)
        self.binary, self.root = binary, root
        self.project = OpencodeProject(root, f"agt-opencode-{os.getpid()}-{secrets.token_hex(3)}")
        self.repo = make_repo(root / "repo")
        self.mock = MockOpencode().start()
        self.home = oc.prepare_opencode_home(root / "oc-home", self.mock.base_url, permission={"bash": "ask"})
        preset = ag.BACKEND_PRESETS["opencode"]["command"]
        assert preset[1:] == ["--auto"], preset
        self.command = [str(binary), *preset[1:]]
        self.project.write(f"""
            [backend.opencode]
            command = {json.dumps(self.command)}
            env = {toml_env(oc.opencode_env(self.home))}

            [[agent]]
            name = "main"
            backend = "opencode"
            cwd = "repo"
            prompt = {json.dumps(KICKOFF)}
            """)

    def cleanup(self) -> None:
        try:
            self.project.cleanup()
            for pid in oc.sandbox_pids(self.home):  # ours by their XDG_DATA_HOME; only if the marker missed one
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        finally:
            self.mock.stop()


@pytest.fixture(scope="module")
def rig(tmp_path_factory, request):
    binary = clis.require("opencode")
    rig = Rig(binary, tmp_path_factory.mktemp("opencode-live"), request.config.pluginmanager.get_plugin("terminalreporter"))
    try:
        up_with_held_kickoff(rig, "a: up + held kickoff + idle (fixture)", ready_timeout=rig.READY_TIMEOUT)
        yield rig
    finally:
        try:
            rig.cleanup()
        finally:
            report(rig, request)


def report(rig: Rig, request) -> None:
    report_wall_times(rig, request, "opencode-live")


# ----------------------------------------------------------------------------
# a. up: no startup dialog, the kickoff verbatim, busy then idle
# ----------------------------------------------------------------------------

def test_a_up_delivers_kickoff_without_dialogs(rig):
    up = rig.facts["up"]
    assert up.returncode == 0, up.stdout + up.stderr
    assert "kickoff delivered" in up.stdout, up.stdout
    assert rig.project.events("dialog", "main") == []  # opencode asks nothing at start
    start = rig.project.events("start", "main")[0]
    assert start["argv"].startswith(f"{rig.binary} --auto"), start
    assert rig.mock.user_texts()[0] == KICKOFF_RENDERED, rig.mock.user_texts()
    assert all(state == "busy" for state in rig.facts["held_states"]), rig.facts["held_states"]
    assert rig.facts["after_state"] == "idle", rig.facts["after_state"]
    assert "kickoff answered: ready" in rig.screen()
    assert "Build auto · Mock Model" in rig.screen()  # the preset's --auto is on
    # The session title is a side call (no tools): it took nothing from the queue.
    assert rig.mock.requests("side"), [r["kind"] for r in rig.mock.requests()]


def test_a_slow_turn_reads_busy_then_idle(rig):
    rig.ready()
    rig.mock.slow("slow answer arrived", delay=8)
    started = time.monotonic()
    assert rig.send("take your time").returncode == 0
    readings = []
    while time.monotonic() - started < 30:
        readings.append((round(time.monotonic() - started, 2), rig.state()))
        if readings[-1][1] == "idle" and "slow answer arrived" in rig.screen():
            break
    assert readings[-1][1] == "idle", readings
    busy = [moment for moment, state in readings if state == "busy"]
    # The model's 8 s of silence read as busy, look after look (each look is a `status` process, slow
    # on a loaded machine: the span asked for leaves seconds of room).
    assert len(busy) >= 2 and busy[-1] - busy[0] >= 3, readings
    assert all(state in ("busy", "idle") for _, state in readings), readings


# ----------------------------------------------------------------------------
# b. restart resumes the session opencode began (--session <id>)
# ----------------------------------------------------------------------------

def sessions(rig: Rig) -> list[tuple[str, str | None]]:
    with contextlib.closing(sqlite3.connect(f"file:{oc.database(rig.home)}?mode=ro", uri=True)) as db:
        return db.execute("select id, parent_id from session order by time_created").fetchall()


def test_b_restart_resumes_main_into_its_session(rig):
    rig.ready()
    ((session, _),) = sessions(rig)
    restart = rig.run("restart", "main")
    assert restart.returncode == 0, restart.stdout + restart.stderr + rig.screen()
    # The session opencode began in main's folder in this life, found in its store (by the watchdog's
    # look, or by restart's own just before it ended the CLI), is the one resumed.
    assert [e["reason"] for e in rig.project.events("transcript", "main")] == \
        [f"opencode session {session} is main's: it began in main's folder"]
    start = rig.project.events("start", "main")[-1]
    assert start["argv"].endswith(f" --session {session}") and start.get("resumed") == session, start
    note = rig.wait("the resume note", lambda: [r for r in rig.mock.requests("main")
                                                if "You were restarted after" in json.dumps(r["body"])], timeout=60)
    history = json.dumps(note[0]["body"])
    assert KICKOFF_RENDERED.split(":")[0] in history and "slow answer arrived" in history, history  # the old turns
    rig.ready()
    assert sessions(rig) == [(session, None)]  # the same session went on; no new one


# ----------------------------------------------------------------------------
# c. the bash tool runs a real command, no permission asked
# ----------------------------------------------------------------------------

def test_c_bash_tool_commits_without_a_permission_dialog(rig):
    rig.ready()
    rig.mock.command("git commit --allow-empty -m from-opencode-live", then="committed it.")
    assert rig.send("make an empty commit").returncode == 0
    rig.wait("the commit", lambda: "from-opencode-live" in git(rig.repo, "log", "--format=%s").stdout)
    rig.wait("the answer after the tool", lambda: "committed it." in rig.screen())
    assert rig.ready() == "idle"
    assert "Permission required" not in rig.screen()
    assert rig.project.events("dialog", "main") == []
    results = rig.mock.tool_results()
    assert any("from-opencode-live" in json.dumps(item) for item in results), results
    call = next(s["call"] for s in rig.mock.served("main") if s.get("call"))
    assert call["name"] == "bash", call


# ----------------------------------------------------------------------------
# d. limits
# ----------------------------------------------------------------------------

def test_d_429_retries_then_rate_limited(rig):
    rig.ready()
    rig.mock.error(429, times=6, headers={"retry-after-ms": "600"})  # the first try and opencode's 5 retries
    assert rig.send("this will be rate limited").returncode == 0
    seen, idle_screens = [], []

    def gave_up() -> bool:
        seen.append(rig.state())
        if seen[-1] == "idle":
            idle_screens.append(rig.screen())
        return seen[-1] == "limited (API rate limit)"

    rig.wait("the 429 give-up", gave_up, timeout=40, interval=0.2)
    assert rig.mock.pending() == 0
    assert "Rate limit reached for mock-model" in rig.screen()
    assert "limited (CLI retrying by itself)" in seen, seen  # "[retrying in 2s attempt #3]" in the footer
    # Between two of its retries opencode itself may draw its idle footer for a moment (seen in two of six
    # loaded CI rehearsals, never in five loaded runs of this module): a reading, never the state it settles in.
    assert seen.count("idle") <= len(seen) // 3, (seen, idle_screens[:1])
    rig.facts["429_idle_moments"] = seen.count("idle")
    assert set(seen) <= {"busy", "limited (CLI retrying by itself)", "limited (API rate limit)", "idle"}, seen  # idle: the moments above


def test_d_usage_limit_reads_limited_with_its_reset(rig):
    rig.ready()
    asked = time.time()
    rig.mock.usage_limit(retry_after=7500)  # "It will reset in 2 hours 5 minutes"

    def limited_row() -> dict | None:
        row = rig.row()
        return row if row["state"].startswith("limited until") else None

    assert rig.send("and now the usage limit").returncode == 0
    row = rig.wait("limited until", limited_row, timeout=30)
    assert "usage limit reached. It will reset in 2 hours 5 minutes" in rig.screen()
    reset = datetime.fromisoformat(row["limited_until"]).timestamp()
    assert asked + 7500 - 120 <= reset <= time.time() + 7500 + 60, (row, asked)  # minute precision on screen
    rig.facts["limit_row"] = row
    # opencode would wait the 2 hours itself: two Esc end the turn. The interrupted turn leaves no
    # "▣ … · 3.1s" footer, so test d's error block above still reads as fresh: limited (API rate limit),
    # until a turn finishes (the watchdog's resume message does that).
    rig.mock.clear()
    for _ in range(2):
        rig.project.tmux("send-keys", "-t", "=t-main:", "Escape")
        time.sleep(0.4)
    # idle if test d's block has scrolled out of the bottom lines (or test d did not run)
    assert rig.ready() in ("idle", "limited (API rate limit)")
    assert rig.send("continue").returncode == 0
    rig.wait("the answer to continue", lambda: "ack: continue" in rig.screen())
    assert rig.ready() == "idle"


# ----------------------------------------------------------------------------
# e. tokens in opencode.db
# ----------------------------------------------------------------------------

def test_e_database_holds_the_served_usage(rig):
    stored = [m for m in oc.assistant_messages(rig.home) if m.get("tokens", {}).get("total")]
    served = rig.mock.served_usage_total("main")
    assert len(stored) == served["responses"], (stored, served)
    assert sum(m["tokens"]["input"] + m["tokens"]["cache"]["read"] for m in stored) == served["input"]
    assert sum(m["tokens"]["cache"]["read"] for m in stored) == served["cached"]
    assert sum(m["tokens"]["output"] for m in stored) == served["output"]
    assert {m["providerID"] for m in stored} == {"mock"}
    # agents.py reads main's recorded session in the same store: input without its cached part.
    expected = [served["input"] - served["cached"], served["output"], 0, served["cached"]]
    cfg = ag.load_config(str(rig.project.config))
    book = ag.TokenBook(rig.root / "e-tokens.json")
    assert book.read(cfg, ag.StateStore(cfg.state_dir).load())["main"] == expected, (expected, book.problems)
    log = subprocess.run([sys.executable, str(HERE.parent.parent / "agent-log.py"), "--totals", "--agent", "main",
                          "--config", str(rig.project.config)], capture_output=True, text=True, timeout=60)
    assert log.returncode == 0, log.stderr
    total = log.stdout.splitlines()[-1]
    assert f"in={expected[0]} out={expected[1]} cache_creation=0 cache_read={expected[3]} " in total, log.stdout


# ----------------------------------------------------------------------------
# z. down ends everything
# ----------------------------------------------------------------------------

def test_z_down_leaves_no_process(rig):
    """``down`` while the bash tool runs ``sleep 300``: the CLI and the tool's processes all end."""
    rig.ready()
    rig.mock.command("sleep 300", then="slept.")
    assert rig.send("sleep a while").returncode == 0

    def sleeping() -> list[int]:
        return [pid for pid in oc.sandbox_pids(rig.home) if oc.cmdline(pid) == "sleep 300"]

    rig.wait("the tool's sleep", sleeping, timeout=20)
    before = oc.sandbox_pids(rig.home)
    marked = set(marked_pids(rig.project.config))
    assert set(before) <= marked, (before, marked)  # everything of the sandbox carries the agent's marker
    down = rig.run("down")
    assert down.returncode == 0, down.stdout + down.stderr
    rig.wait("no process of the sandbox", lambda: not oc.sandbox_pids(rig.home), timeout=20)
    assert rig.project.sessions() == []
    assert not marked_pids(rig.project.config)
    rig.facts["down_ended"] = [(pid, oc.cmdline(pid)) for pid in before]
