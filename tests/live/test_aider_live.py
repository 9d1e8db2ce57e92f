"""Live: the REAL aider (pinned in tests/live/pins/aider), driven through agents.py's command line.

aider runs offline against ``mock_aider.MockAider`` (OpenAI Chat Completions through litellm:
``OPENAI_API_BASE`` names the mock, ``AIDER_MODEL=openai/mock-model``), in tmux on a private socket.
The config is the built-in ``aider`` preset with only ``command``'s program pointed at the pinned
binary (the preset's flags kept) and the sandbox env: no pattern is overridden, so these tests prove
the preset. ``HTTPS_PROXY``/``HTTP_PROXY`` point at the mock too: anything aider tried to fetch from
the internet (model prices, release notes, analytics, update checks) would show up in
``mock.foreign()`` instead of leaving the machine.

One ``up`` per module (the ``rig`` fixture); each test waits for the agent to be ready first.

  a  ``up`` meets no dialog (``--yes-always`` answers aider's .gitignore question itself), the kickoff
     reaches the model verbatim, ``status`` reads busy during a held turn and idle after; a slow
     turn reads busy then idle; a message starting with "!" goes to the model, not to aider's shell
  b  ``restart`` comes back into the conversation: ``--restore-chat-history`` (the preset's resume),
     and the model's next request holds the first life's turns and the resume note
  d  429s: aider retries by itself ("Retrying in 0.2 seconds...") under its spinner, read busy and
     never idle; once it gets its answer the old banner is history: idle, not limited.
     The give-up after aider's ~64 s of its own backoff reads ``limited (API rate limit)`` (the
     slowest test here; tests/run runs it beside the rest; AGENTS_LIVE_AIDER_GIVEUP=0 skips it)
  e  tokens: ``.aider.chat.history.md`` has one ``> Tokens: 1.0k sent, 51 received.`` line per
     answer (rounded above 999); the local analytics log (``AIDER_ANALYTICS_LOG``, nothing sent)
     has one ``message_send`` event per answer with the exact counts the mock served
  z  ``down`` leaves no process of the sandbox (found by its HOME in /proc/PID/environ)

Skipped loudly when the CLI cannot be had, unless AGENTS_REQUIRE_REAL_CLI=1.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import clis  # noqa: E402
from cli_rig import CliRig, report_wall_times, timed  # noqa: E402,F401
from claude_team import LiveProject, make_repo, toml_env  # noqa: E402
from conftest import marked_pids, pids_with_env  # noqa: E402
from conftest import agents as ag  # noqa: E402
from mock_aider import MockAider, newest_user_text  # noqa: E402

KICKOFF = "You are {name}: reply \"ready\" & don't run $(anything) or `this`; wait for work."
KICKOFF_RENDERED = KICKOFF.replace("{name}", "main")
RESUME_NOTE = "You were restarted after "
MODEL = "mock-model"
# Variables of the caller's environment that must not reach the sandboxed CLI.
SCRUB_PREFIXES = ("OPENAI_", "AIDER_", "LITELLM_", "ANTHROPIC_", "GEMINI_", "OPENROUTER_")
SCREENS = os.environ.get("AGENTS_AIDER_SCREENS")  # a folder: every distinct screen seen is saved there


def prepare_home(home: Path) -> Path:
    """A HOME whose aider model-price cache is fresh and not empty: aider then fetches nothing.

    aider reads ``~/.aider/caches/model_prices_and_context_window.json`` (kept 24 h by mtime); an empty
    or missing one makes it download litellm's price list from GitHub at the first model lookup."""
    caches = home / ".aider" / "caches"
    caches.mkdir(parents=True, exist_ok=True)
    info = {"max_tokens": 4096, "max_input_tokens": 128000, "max_output_tokens": 4096,
            "input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06, "litellm_provider": "openai",
            "mode": "chat"}
    (caches / "model_prices_and_context_window.json").write_text(json.dumps({f"openai/{MODEL}": info}))
    return home


def aider_env(home: Path, base_url: str, analytics_log: Path) -> dict[str, str]:
    """The sandbox env. ``AIDER_ANALYTICS_LOG`` (``--analytics-log``) only writes aider's events to a
    local JSONL file: with ``--no-analytics`` nothing is sent, and its ``message_send`` events hold
    the exact token counts."""
    proxy = base_url.rsplit("/v1", 1)[0]
    return {"HOME": str(home), "OPENAI_API_BASE": base_url, "OPENAI_API_KEY": "sk-mock-aider",
            "AIDER_ANALYTICS_LOG": str(analytics_log),
            "AIDER_MODEL": f"openai/{MODEL}", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "HTTPS_PROXY": proxy, "HTTP_PROXY": proxy, "https_proxy": proxy, "http_proxy": proxy,
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
            "TERM": os.environ.get("TERM") or "xterm-256color", "LANG": os.environ.get("LANG") or "C.UTF-8"}


def sandbox_pids(home: Path) -> list[int]:
    """Live processes whose environment names this HOME (aider and anything it started)."""
    return pids_with_env("HOME", home)


class AiderProject(LiveProject):
    """No OPENAI_*/AIDER_*/LITELLM_* (or proxy) variable of the caller reaches the agents."""

    def env(self) -> dict[str, str]:
        return {key: value for key, value in super().env().items()
                if not key.upper().startswith(SCRUB_PREFIXES) and key.upper() not in ("HTTPS_PROXY", "HTTP_PROXY",
                                                                                         "ALL_PROXY", "NO_PROXY")}


class Rig(CliRig):
    READY_TIMEOUT, RUN_TIMEOUT, POLL = 40.0, 120.0, 0.2

    def __init__(self, binary: Path, root: Path, terminal) -> None:
        super().__init__(terminal)
        self.binary, self.root = binary, root
        self.project = AiderProject(root, f"agt-aider-{os.getpid()}-{secrets.token_hex(3)}")
        self.repo = make_repo(root / "repo")
        self.mock = MockAider().start()
        self.home = prepare_home(root / "aider-home")
        self.analytics_log = root / "aider-analytics.jsonl"
        self.saved: set[str] = set()
        preset = ag.BACKEND_PRESETS["aider"]["command"]
        assert preset[1:] == ["--yes-always", "--no-stream", "--no-check-update", "--no-show-release-notes",
                              "--no-analytics", "--no-show-model-warnings"], preset
        self.project.write(f"""
            [backend.aider]
            command = {json.dumps([str(binary), *preset[1:]])}
            env = {toml_env(aider_env(self.home, self.mock.base_url, self.analytics_log))}

            [[agent]]
            name = "main"
            backend = "aider"
            cwd = "repo"
            prompt = {json.dumps(KICKOFF)}
            """)

    def state(self, name: str = "main") -> str:
        state = super().state(name)
        self.save(state)
        return state

    def save(self, state: str) -> None:
        """With AGENTS_AIDER_SCREENS set: keep each distinct screen (for the fixtures)."""
        if not SCREENS:
            return
        text = self.screen()
        key = re.sub(r"[░█#=]", "", text)  # one file per screen, not per spinner frame
        if key in self.saved:
            return
        self.saved.add(key)
        folder = Path(SCREENS)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{len(self.saved):03d}-{re.sub(r'[^a-z]+', '-', state)}.txt").write_text(text)

    def history(self) -> str:
        path = self.repo / ".aider.chat.history.md"
        return path.read_text(encoding="utf-8") if path.exists() else ""

    def cleanup(self) -> None:
        try:
            self.project.cleanup()
            for pid in sandbox_pids(self.home):  # ours by their HOME; only if the marker missed one
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        finally:
            self.mock.stop()


def watch(rig: Rig, until, timeout: float) -> list[tuple[float, str]]:
    """States read back to back until ``until(state)`` holds; (seconds, state) each."""
    started = time.monotonic()
    readings: list[tuple[float, str]] = []
    while time.monotonic() - started < timeout:
        readings.append((round(time.monotonic() - started, 2), rig.state()))
        if until(readings[-1][1]):
            return readings
        time.sleep(0.1)
    pytest.fail(f"no end after {timeout}s: {readings}\n{rig.screen()}")


def assert_busy_until_answered(readings: list[tuple[float, str]]) -> None:
    """The shape of one turn's readings, from the first busy one to the last (idle, answered).

    Around the spinner aider shows only the echoed "> message", which reads like typed text: before
    the spinner is drawn, and again for a moment after it is wiped and before the answer is printed
    (seen on a loaded CI machine). So: busy, then perhaps "idle (unsent input)", then idle; never
    idle or unsent input between two busy readings, which would be the turn read as over mid-way."""
    states = [state for _, state in readings]
    assert "busy" in states, readings
    turn = states[states.index("busy"):-1]
    last_busy = len(turn) - turn[::-1].index("busy")
    assert set(turn[:last_busy]) == {"busy"}, readings  # nothing else while the spinner came and went
    assert set(turn[last_busy:]) <= {"idle (unsent input)"}, readings  # the echo alone, then the answer


@pytest.fixture(scope="module")
def rig(tmp_path_factory, request):
    binary = clis.require("aider")
    rig = Rig(binary, tmp_path_factory.mktemp("aider-live"), request.config.pluginmanager.get_plugin("terminalreporter"))
    try:
        started = time.monotonic()
        gate = rig.mock.hold("kickoff answered: ready")
        rig.facts["up"] = rig.run("up", "--no-watchdog", "main")
        rig.timings["a: up until the kickoff was delivered"] = round(time.monotonic() - started, 2)
        # aider draws its spinner half a second to a few seconds after taking the message: until
        # then only the echoed "> message" shows. Busy first, then three more looks while held.
        try:
            rig.facts["busy_after"] = watch(rig, lambda state: state == "busy", timeout=30)
            held = []
            for _ in range(3):
                held.append(rig.state())
                time.sleep(0.2)
            rig.facts["held_states"] = held
        except BaseException as exc:  # noqa: BLE001 - test a reports it
            rig.facts["held_states"] = [f"never busy: {exc}"]
        gate.set()
        try:
            rig.facts["after_state"] = rig.ready(timeout=30)
        except BaseException as exc:  # noqa: BLE001 - test a reports it
            rig.facts["after_state"] = f"not ready: {exc}"
        rig.timings["a: up + held kickoff + idle (fixture)"] = round(time.monotonic() - started, 2)
        yield rig
    finally:
        try:
            rig.cleanup()
        finally:
            report(rig, request)


def report(rig: Rig, request) -> None:
    report_wall_times(rig, request, "aider-live", skip_in_total="until the kickoff", extra=[
        f"  facts: busy seen after {rig.facts.get('busy_after', [(None,)])[-1][0]} s of looking; "
        f"kickoff presses {rig.facts.get('kickoff_presses')}",
        f"  slow turn readings: {rig.facts.get('slow_readings')}",
        f"  429 readings: {rig.facts.get('429_readings')}"])


# ----------------------------------------------------------------------------
# a. up: no dialog, the kickoff verbatim, busy then idle
# ----------------------------------------------------------------------------

def test_a_up_delivers_kickoff_verbatim_busy_then_idle(rig):
    up = rig.facts["up"]
    assert up.returncode == 0, up.stdout + up.stderr
    assert "kickoff delivered" in up.stdout, up.stdout
    kickoff = rig.project.events("kickoff", "main")
    assert len(kickoff) == 1, kickoff
    rig.facts["kickoff_presses"] = kickoff[0].get("presses")
    # --yes-always answered the .gitignore question before any screen showed it.
    assert rig.project.events("dialog", "main") == []
    assert ".aider*" in (rig.repo / ".gitignore").read_text()
    start = rig.project.events("start", "main")[0]
    assert start["argv"].startswith(f"{rig.binary} --yes-always --no-stream"), start
    # aider sends the message, then its own reminder of the edit format, in one user message.
    first = rig.mock.user_texts()[0]
    assert first == KICKOFF_RENDERED or first.startswith(KICKOFF_RENDERED + "\n\n"), first
    assert all(state == "busy" for state in rig.facts["held_states"]), rig.facts["held_states"]
    assert rig.facts["after_state"] == "idle", rig.facts["after_state"]
    assert "kickoff answered: ready" in rig.screen()
    assert len(rig.mock.chat_requests()) == 1, rig.mock.statuses()  # one Enter landed, one turn
    assert rig.mock.foreign() == [], rig.mock.foreign()  # nothing went for the internet


def test_a_slow_turn_reads_busy_then_idle(rig):
    rig.ready()
    rig.mock.slow("slow answer arrived", delay=4)
    started = time.monotonic()
    sent = rig.send("take your time")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    readings = watch(rig, lambda state: state == "idle" and "slow answer arrived" in rig.screen(), timeout=40)
    rig.facts["slow_readings"] = readings
    assert time.monotonic() - started >= 4  # the answer came after the mock's 4 s
    assert_busy_until_answered(readings)
    assert re.search(r"^Tokens: \S+ sent, \S+ received\.", rig.screen(), re.MULTILINE), rig.screen()


def test_a_leading_bang_is_sent_as_text_not_run(rig):
    rig.ready()
    before = len(rig.mock.chat_requests())
    sent = rig.send("!touch from-bang")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    rig.wait("the turn", lambda: len(rig.mock.chat_requests()) > before, timeout=30)
    assert rig.mock.user_texts()[-1].startswith(" !touch from-bang\n\n"), rig.mock.user_texts()[-1]
    assert rig.ready() == "idle"
    assert not (rig.repo / "from-bang").exists()  # aider's "!" shell mode did not run it


# ----------------------------------------------------------------------------
# b. restart: back into the conversation (--restore-chat-history)
# ----------------------------------------------------------------------------

def test_b_restart_restores_the_chat_history(rig):
    rig.ready()
    before = len(rig.mock.chat_requests())
    restart = rig.run("restart", "main")
    assert restart.returncode == 0, restart.stdout + restart.stderr + rig.screen()
    start = rig.project.events("start", "main")[-1]
    assert start["argv"].endswith(" --restore-chat-history") and start.get("resumed") == "last", start
    assert start["reason"].endswith("resumed into its last conversation"), start
    rig.wait("the resume note", lambda: any(text.startswith(RESUME_NOTE) for text in rig.mock.user_texts()[before:]),
             timeout=60)
    note = next(r for r in rig.mock.chat_requests()[before:] if newest_user_text(r["body"]).startswith(RESUME_NOTE))
    history = json.dumps(note["body"]["messages"])
    # The turns of the first life went with it, read back from .aider.chat.history.md.
    assert "take your time" in history and "slow answer arrived" in history, history[:2000]
    assert rig.ready() == "idle"


# ----------------------------------------------------------------------------
# d. rate limits
# ----------------------------------------------------------------------------

def test_d_429_retries_read_busy_and_the_answer_idle(rig):
    rig.ready()
    # aider retries after 0.25, 0.5 and 1 s; the fourth try answers. Each 429 takes 1 s to come, so
    # the retries last long enough (about 5 s) to be read on a loaded machine.
    rig.mock.error(429, times=3, delay=1.0)
    rig.mock.reply("answered after the 429s")
    before = len(rig.mock.chat_requests())
    sent = rig.send("this will be rate limited")
    assert sent.returncode == 0, sent.stdout + sent.stderr  # delivered (busy, or new output below the line)
    readings = watch(rig, lambda state: state == "idle" and "answered after the 429s" in rig.screen(), timeout=40)
    statuses = rig.mock.statuses()[before:]
    assert statuses == [429, 429, 429, 200], statuses
    screen = rig.screen()
    assert "Retrying in 1.0 seconds..." in screen and "litellm.RateLimitError" in screen, screen
    assert_busy_until_answered(readings)  # the retries under the spinner: never idle once it showed
    # The banners stay on screen above the answer: not limited, as "Tokens: …" came after them.
    assert rig.ready() == "idle"
    rig.facts["429_readings"] = readings


@pytest.mark.skipif(os.environ.get("AGENTS_LIVE_AIDER_GIVEUP") == "0",
                    reason="AGENTS_LIVE_AIDER_GIVEUP=0: aider's own backoff takes ~64 s")
def test_d_429_give_up_reads_rate_limited(rig):
    rig.ready()
    already = rig.mock.statuses().count(429)
    rig.mock.error(429, times=100)
    assert rig.send("this will give up").returncode == 0

    def given_up(state: str) -> bool:
        # Between two retries the spinner is gone and the last banner reads as a rate limit too: the
        # give-up is the banner with the prompt drawn again below it (fixture 09), no "Retrying in".
        lines = [line for line in rig.screen().splitlines() if line.strip()]
        return state == "limited (API rate limit)" and lines[-1].strip() == ">" and "Retrying in" not in "\n".join(lines[-3:])

    started = time.monotonic()
    readings = watch(rig, given_up, timeout=120)
    took = time.monotonic() - started
    rig.mock.clear()
    assert took > 40, (took, readings)  # aider's own backoff: 0.2 + 0.5 + 1 + … + 32 s
    assert rig.mock.statuses().count(429) - already >= 8, rig.mock.statuses()
    assert "idle" not in [state for moment, state in readings if moment > 3], readings


# ----------------------------------------------------------------------------
# e. tokens: the chat history
# ----------------------------------------------------------------------------

def test_e_chat_history_records_one_tokens_line_per_answer(rig):
    rig.ready()
    found = re.findall(r"^> Tokens: (\S+) sent, (\S+) received\.", rig.history(), re.MULTILINE)
    served = rig.mock.served_usages()
    assert len(found) == len(served), (found, served)
    # Rounded to "1.0k" above 999; small counts are exact.
    assert [int(received) for _, received in found] == [u["completion_tokens"] for u in served], (found, served)
    assert all(sent.endswith("k") for sent, _ in found), found
    events = [json.loads(line) for line in rig.analytics_log.read_text().splitlines() if line.strip()]
    sends = [e["properties"] for e in events if e["event"] == "message_send"]
    assert [(p["prompt_tokens"], p["completion_tokens"]) for p in sends] == \
        [(u["prompt_tokens"], u["completion_tokens"]) for u in served], (sends, served)
    assert rig.mock.foreign() == [], rig.mock.foreign()  # the analytics log sent nothing anywhere


# ----------------------------------------------------------------------------
# z. down ends everything
# ----------------------------------------------------------------------------

def test_z_down_leaves_no_process(rig):
    before = sandbox_pids(rig.home)
    assert before, "aider should be running in the sandbox"
    assert set(before) <= set(marked_pids(rig.project.config)), before
    down = rig.run("down")
    assert down.returncode == 0, down.stdout + down.stderr
    rig.wait("no process of the sandbox", lambda: not sandbox_pids(rig.home), timeout=30)
    assert rig.project.sessions() == []
    assert not marked_pids(rig.project.config)
    assert rig.mock.foreign() == [], rig.mock.foreign()
