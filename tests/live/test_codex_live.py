"""Live: the REAL Codex CLI (pinned in tests/live/pins/codex), driven through agents.py's command line.

Codex runs offline against ``mock_openai.MockOpenAI`` (a custom model provider in a sandbox
``CODEX_HOME/config.toml``, see codex_sandbox.py), in tmux on a private socket. The config is the
built-in ``codex`` preset with only ``command``'s program pointed at the pinned binary (the preset's
flags kept) and the sandbox env: no pattern is overridden, so these tests prove the preset.
The main agent's folder is NOT trusted in its CODEX_HOME: the preset must answer the trust question.

One ``up`` per module (the ``rig`` fixture); each test waits for the agent to be ready first.

  a  ``up`` answers ``Trust this folder?`` (Enter), the kickoff reaches the model verbatim,
     ``status`` reads busy during a held turn and idle after; a slow turn reads busy then idle
  b  ``restart main`` resumes it (``codex … resume <id>``, the id of the rollout its CLI holds open):
     the model gets the resume note with the old turns; the same rollout grows; tokens count once
  c  an ``exec_command`` function call really commits in the agent's repo
  d  429s: busy while Codex retries, ``limited (API rate limit)`` once it gives up, never idle;
     a ``usage_limit_reached`` answer reads ``limited until …`` with the reset parsed (status --json)
  e  ``tokens --scan`` over the rollouts equals the usage the mock served for the main turns
  f  a second agent in main's folder and CODEX_HOME: the running CLIs hold their rollouts open,
     each agent's tokens are its own rollout's (told apart by /proc), and both together are what
     the mock served — nothing counted twice
  z  an agent started WITHOUT ``--no-daemon`` leaves ``codex app-server --managed-daemon``
     behind; ``down`` ends it (by its marker) and every other process of both sandboxes

Skipped loudly ("REAL CODEX SKIPPED …") when the CLI cannot be had, unless AGENTS_REQUIRE_REAL_CLI=1.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
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
import codex_sandbox as cx  # noqa: E402
from claude_team import LiveProject, git, make_repo, toml_env  # noqa: E402
from conftest import marked_pids  # noqa: E402
from conftest import agents as ag  # noqa: E402
from mock_openai import MockOpenAI  # noqa: E402

KICKOFF = "You are {name}: reply \"ready\" & don't run $(anything) or `this`; wait for work."
KICKOFF_RENDERED = KICKOFF.replace("{name}", "main")


class CodexProject(LiveProject):
    """No OPENAI_*/CODEX_* variable of the caller reaches the agents."""

    def env(self) -> dict[str, str]:
        return {key: value for key, value in super().env().items() if not key.startswith(cx.SCRUB_PREFIXES)}


class Rig(CliRig):
    def __init__(self, binary: Path, root: Path, terminal) -> None:
        super().__init__(terminal)
        self.binary, self.root = binary, root
        self.project = CodexProject(root, f"agt-codex-{os.getpid()}-{secrets.token_hex(3)}")
        self.repo = make_repo(root / "repo")
        self.daemon_repo = make_repo(root / "daemon-repo")
        self.mock, self.side_mock = MockOpenAI().start(), MockOpenAI().start()
        self.codex_home = cx.prepare_codex_home(root / "codex-main", self.mock.base_url)  # trusts nothing
        self.daemon_home = cx.prepare_codex_home(root / "codex-daemon", self.side_mock.base_url,
                                                 trusted=[self.daemon_repo])
        preset = ag.BACKEND_PRESETS["codex"]["command"]
        assert preset[1:] == ["--dangerously-bypass-approvals-and-sandbox", "--no-daemon"], preset
        command = [str(binary), *preset[1:]]
        daemon_command = [c for c in command if c != "--no-daemon"]
        self.project.write(f"""
            [backend.codex]
            command = {json.dumps(command)}
            env = {toml_env(cx.codex_env(root / "home", self.codex_home))}

            # The same preset, but the background app-server daemon allowed.
            [backend.codex-daemon]
            preset = "codex"
            command = {json.dumps(daemon_command)}
            env = {toml_env(cx.codex_env(root / "home", self.daemon_home))}

            [[agent]]
            name = "main"
            backend = "codex"
            cwd = "repo"
            prompt = {json.dumps(KICKOFF)}

            # Beside main, in its folder and CODEX_HOME (the example config's layout): test f.
            [[agent]]
            name = "pair"
            backend = "codex"
            cwd = "repo"
            prompt = "You are pair: reply ready."

            [[agent]]
            name = "daemon"
            backend = "codex-daemon"
            cwd = "daemon-repo"
            prompt = "daemon kickoff"
            """)

    def leftovers(self) -> list[int]:
        return cx.sandbox_pids(self.codex_home) + cx.sandbox_pids(self.daemon_home)

    def cleanup(self) -> None:
        try:
            self.project.cleanup()
            for pid in self.leftovers():  # ours by their CODEX_HOME; only if the marker missed one
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        finally:
            self.mock.stop()
            self.side_mock.stop()


@pytest.fixture(scope="module")
def rig(tmp_path_factory, request):
    binary = clis.require("codex")
    rig = Rig(binary, tmp_path_factory.mktemp("codex-live"), request.config.pluginmanager.get_plugin("terminalreporter"))
    try:
        up_with_held_kickoff(rig, "a: up + trust dialog + held kickoff + idle (fixture)")
        yield rig
    finally:
        try:
            rig.cleanup()
        finally:
            report(rig, request)


def report(rig: Rig, request) -> None:
    report_wall_times(rig, request, "codex-live")


# ----------------------------------------------------------------------------
# a. up: the trust question answered, the kickoff verbatim, busy then idle
# ----------------------------------------------------------------------------

def test_a_up_answers_trust_dialog_and_delivers_kickoff(rig):
    up = rig.facts["up"]
    assert up.returncode == 0, up.stdout + up.stderr
    assert "kickoff delivered" in up.stdout, up.stdout
    dialogs = rig.project.events("dialog", "main")
    assert len(dialogs) == 1, dialogs
    assert dialogs[0]["keys"] == "Enter" and "Trust this folder?" in dialogs[0]["reason"], dialogs[0]
    # Codex saved the answer: the folder is trusted now.
    assert f'[projects."{rig.repo.resolve()}"]' in (rig.codex_home / "config.toml").read_text()
    start = rig.project.events("start", "main")[0]
    assert start["argv"].startswith(f"{rig.binary} --dangerously-bypass-approvals-and-sandbox --no-daemon"), start
    assert rig.mock.user_texts()[0] == KICKOFF_RENDERED, rig.mock.user_texts()
    assert all(state == "busy" for state in rig.facts["held_states"]), rig.facts["held_states"]
    assert rig.facts["after_state"] == "idle", rig.facts["after_state"]
    assert "kickoff answered: ready" in rig.screen()
    # The title request is a side call: it took nothing from the queue.
    assert rig.mock.requests("side"), [r["kind"] for r in rig.mock.requests()]


def test_a_slow_turn_reads_busy_then_idle(rig):
    rig.ready()
    rig.mock.slow("slow answer arrived", delay=4)
    started = time.monotonic()
    assert rig.send("take your time").returncode == 0
    readings = []
    while time.monotonic() - started < 40:
        readings.append((round(time.monotonic() - started, 2), rig.state()))
        if readings[-1][1] == "idle" and "slow answer arrived" in rig.screen():
            break
    assert readings[-1][1] == "idle", readings
    busy = [moment for moment, state in readings if state == "busy"]
    assert busy and busy[-1] >= 2.5, readings  # the model's 4 s of silence read as busy
    assert all(state in ("busy", "idle") for _, state in readings), readings
    assert "Worked for" in rig.screen()


# ----------------------------------------------------------------------------
# b. restart resumes into the conversation: `codex … resume <the id of the rollout it holds>`
# ----------------------------------------------------------------------------

def test_b_restart_resumes_main_into_its_conversation(rig):
    rig.ready()
    (path,) = cx.rollouts(rig.codex_home)
    session, size = ag.rollout_session(path), path.stat().st_size
    files = len(cx.rollouts(rig.codex_home))
    restart = rig.run("restart", "main")
    assert restart.returncode == 0, restart.stdout + restart.stderr + rig.screen()
    # The rollout its CLI held open, recorded just before it was ended, is the session resumed.
    assert [e["reason"] for e in rig.project.events("transcript", "main")][-1] == \
        f"Codex session {session} is main's: its CLI holds the rollout open"
    start = rig.project.events("start", "main")[-1]
    assert start["argv"].endswith(f" resume {session}") and start.get("resumed") == session, start
    note = rig.wait("the resume note", lambda: [r for r in rig.mock.requests("main")
                                                if "You were restarted after" in json.dumps(r["body"])], timeout=60)
    history = json.dumps(note[0]["body"])
    assert "You are main: reply" in history and "slow answer arrived" in history, history  # the old turns came too
    rig.ready()
    assert len(cx.rollouts(rig.codex_home)) == files and path.stat().st_size > size  # the same rollout, grown
    result = rig.run("tokens", "--scan", str(rig.codex_home / "sessions"), "--json")
    total, served = json.loads(result.stdout)["total"], rig.mock.served_usage_total("main")
    assert total["input"] + total["cache_read"] == served["input"] and total["output"] == served["output"], \
        (total, served)  # the resumed rollout's figures count once


# ----------------------------------------------------------------------------
# c. a function call runs a real command
# ----------------------------------------------------------------------------

def test_c_function_call_commits_in_the_repo(rig):
    rig.ready()
    rig.mock.command("git commit --allow-empty -m from-codex-live", then="committed it.")
    assert rig.send("make an empty commit").returncode == 0
    rig.wait("the commit", lambda: "from-codex-live" in git(rig.repo, "log", "--format=%s").stdout, timeout=60)
    rig.wait("the answer after the tool", lambda: "committed it." in rig.screen(), timeout=60)
    assert rig.ready() == "idle"
    outputs = rig.mock.function_outputs()
    assert any("from-codex-live" in json.dumps(item) for item in outputs), outputs
    call = next(s["call"] for s in rig.mock.served("main") if s.get("call"))
    assert call["name"] == "exec_command", call


# ----------------------------------------------------------------------------
# d. limits
# ----------------------------------------------------------------------------

def test_d_429_retries_then_rate_limited(rig):
    rig.ready()
    rig.mock.error(429, times=20, delay=1.5)
    assert rig.send("this will be rate limited").returncode == 0
    seen = []

    def gave_up() -> bool:
        seen.append(rig.state())
        return seen[-1] == "limited (API rate limit)"

    rig.wait("the 429 give-up", gave_up, timeout=90)
    rig.mock.clear()
    assert "exceeded retry limit, last status: 429" in rig.screen()
    assert "busy" in seen, seen  # Codex's own retries show "◦ Working (…)"
    assert "idle" not in seen, seen  # never idle while Codex retried
    assert set(seen) <= {"busy", "limited (API rate limit)"}, seen


def test_d_usage_limit_reads_limited_with_its_reset(rig):
    rig.ready()
    resets = (int(time.time()) // 60 + 190) * 60  # whole minutes: the screen shows "12:25 AM"
    rig.mock.usage_limit(resets)
    assert rig.send("and now the usage limit").returncode == 0
    def limited_row() -> dict | None:
        row = rig.row()
        return row if row["state"].startswith("limited until") else None

    row = rig.wait("limited until", limited_row, timeout=60)
    assert "hit your usage limit" in rig.screen()
    assert datetime.fromisoformat(row["limited_until"]).timestamp() == resets, (row, resets)
    rig.facts["limit_row"] = row


def test_d_a_restart_while_limited_keeps_the_wait(rig):
    """Resumed, Codex draws its conversation again, the limit banner at its end too: the watchdog's
    wait from before the restart goes on (never a new one read from the old banner)."""
    if "limit_row" not in rig.facts:
        pytest.skip("needs test_d_usage_limit_reads_limited_with_its_reset's limited screen")
    once = rig.run("watchdog", "--once")
    assert once.returncode == 0, once.stdout + once.stderr
    cfg = ag.load_config(str(rig.project.config))
    waited = ag.StateStore(cfg.state_dir).load()["units"]["main"].limit
    assert waited.get("kind") == "usage" and waited.get("until"), waited
    restart = rig.run("restart", "main")  # its prompt cannot show before the reset: it says so, and waits no longer
    assert restart.returncode == 0, restart.stdout + restart.stderr
    assert "limited until" in restart.stdout and "the watchdog delivers its note once the limit is over" in \
        restart.stdout, restart.stdout
    assert rig.state().startswith("limited until") and "hit your usage limit" in rig.screen()
    once = rig.run("watchdog", "--once")
    assert once.returncode == 0, once.stdout + once.stderr
    reasons = [e["reason"] for e in rig.project.events("limit-wait", "main")]
    assert reasons[-1].startswith("usage limit of its last life, drawn again with its conversation"), reasons
    record = ag.StateStore(cfg.state_dir).load()["units"]["main"]
    assert record.limit["until"] == waited["until"] and record.kickoff.startswith("You were restarted"), record


# ----------------------------------------------------------------------------
# e. tokens from the rollouts
# ----------------------------------------------------------------------------

def test_e_rollout_tokens_equal_what_was_served(rig):
    files = cx.rollouts(rig.codex_home)
    assert len(files) == 1, files
    meta = cx.session_meta(files[0])
    assert meta["cwd"] == str(rig.repo.resolve()), meta
    result = rig.run("tokens", "--scan", str(rig.codex_home / "sessions"), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    total = json.loads(result.stdout)["total"]
    served = rig.mock.served_usage_total("main")
    # agents.py: input = Codex input minus its cached part; cache_read = cached; output includes reasoning.
    assert total["input"] + total["cache_read"] == served["input"], (total, served)
    assert total["cache_read"] == served["cached"], (total, served)
    assert total["output"] == served["output"], (total, served)
    assert total["cache_creation"] == 0
    # The title request's usage is not in the rollout.
    assert rig.mock.served_usage_total("side")["responses"] >= 1


# ----------------------------------------------------------------------------
# f. two agents in one folder: each rollout counted once, for the agent whose CLI holds it
# ----------------------------------------------------------------------------

def test_f_two_agents_in_one_folder_count_each_rollout_once(rig):
    up = rig.run("up", "--no-watchdog", "pair")
    assert up.returncode == 0, up.stdout + up.stderr
    rig.wait("pair's kickoff", lambda: "You are pair: reply ready." in rig.mock.user_texts(), timeout=60, name="pair")
    rig.ready("pair", timeout=60)
    files = rig.wait("two rollouts", lambda: len(cx.rollouts(rig.codex_home)) == 2 and cx.rollouts(rig.codex_home))
    whose = {("pair" if "You are pair" in path.read_text() else "main"): path for path in files}
    assert set(whose) == {"main", "pair"}, files
    cfg = ag.load_config(str(rig.project.config))
    book = ag.TokenBook(rig.root / "f-tokens.json")
    figures = book.read(cfg, ag.StateStore(cfg.state_dir).load())
    assert book.held == {name: {ag.rollout_session(path)} for name, path in whose.items()}
    for name, path in whose.items():
        ledger = ag.TokenLedger()
        ag.read_transcript(path, ag.TokenCursor(), ledger)
        assert figures[name] == next(iter(ag.split_models(ledger.totals)[0].values())), name
    served = rig.mock.served_usage_total("main")
    both = [a + b for a, b in zip(figures["main"], figures["pair"])]
    assert both[0] + both[3] == served["input"] and both[1] == served["output"], (both, served)  # not twice


# ----------------------------------------------------------------------------
# z. down ends everything, the daemon a CLI leaves behind included
# ----------------------------------------------------------------------------

def test_z_down_ends_the_daemon_and_every_process(rig):
    up = rig.run("up", "--no-watchdog", "daemon")
    assert up.returncode == 0, up.stdout + up.stderr
    rig.wait("the daemon agent's kickoff", lambda: "daemon kickoff" in rig.side_mock.user_texts(), timeout=60,
             name="daemon")

    def daemons() -> list[int]:
        return [pid for pid in cx.sandbox_pids(rig.daemon_home) if "--managed-daemon" in cx.cmdline(pid)]

    found = rig.wait("the app-server daemon", daemons, timeout=30, name="daemon")
    assert not [pid for pid in cx.sandbox_pids(rig.codex_home) if "app-server" in cx.cmdline(pid)]  # --no-daemon
    marked = set(marked_pids(rig.project.config))
    assert set(found) <= marked, (found, marked)  # the daemon carries the agent's marker
    before = rig.leftovers()
    down = rig.run("down")
    assert down.returncode == 0, down.stdout + down.stderr
    rig.wait("no process of either sandbox", lambda: not rig.leftovers(), timeout=30)
    assert rig.project.sessions() == []
    assert not marked_pids(rig.project.config)
    rig.facts["down_ended"] = [(pid, cx.cmdline(pid)) for pid in before]
