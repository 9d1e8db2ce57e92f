"""Live: the REAL Claude Code CLI, driven through agents.py's command line.

The pinned CLI (tests/live/pins/claude-code/package-lock.json) runs offline against
``mock_anthropic.MockAnthropic``, in tmux on a private socket, with a sandbox
HOME prepared as REAL-AGENTS.md says (onboarding done, key approved, folder
trusted) but the bypass-permissions warning left for the ``claude`` preset to
answer. The config is the built-in ``claude`` preset with only ``command``
pointed at the pinned binary (the preset's flags kept) and the sandbox env
(``claude_sandbox.claude_env``: mock address, key, ``IS_SANDBOX=1``, HOME, …):
no pattern is overridden, so these tests prove the preset on the real program.

One ``up`` per module (the ``rig`` fixture) is shared by the scenarios; each
test waits for the agent to be ready first and checks only what it caused.

  a  ``up`` answers the bypass dialog (Down, Enter), the kickoff reaches the
     model verbatim, ``status`` reads busy during a held turn and idle after;
     an untrusted folder's trust dialog is answered too
  b  ``send`` of quotes, ``$(…)``, backticks, ``;`` and a second line arrives
     verbatim and runs nothing, nor does a leading ``!`` (shell mode) or ``/``
     (slash command); a message is held, never typed, while a dialog is up: the
     model's own question (AskUserQuestion), a menu a human opened (``/model``),
     the trust question of a second agent; a long line arrives in one piece
  c  a Bash tool call really commits in the agent's repo
  d  a 429 storm: ``limited`` while the CLI retries and after it gives up, never idle
  e  the session id ``up`` chose names the transcript, whose usage equals what was served
  z  ``down`` leaves no session and no process

Skipped loudly ("REAL CLAUDE CODE SKIPPED …") when the CLI cannot be installed,
unless ``AGENTS_REQUIRE_REAL_CLI=1`` (then it fails). Env knobs:
  AGENTS_TEST_CLAUDE=PATH       the pinned binary (tests/run sets it); else install_claude.ensure_claude()
  AGENTS_LIVE_MAX_RETRIES=N     CLAUDE_CODE_MAX_RETRIES for the CLI (default 4)
  AGENTS_LIVE_TIMINGS=FILE      also write the per-scenario wall times there
  AGENTS_SAVE_SCREENS=DIR       save the screens the scenarios look at
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import claude_sandbox as cs  # noqa: E402
from claude_team import MAX_RETRIES, ClaudeTeam, git, make_repo, require_binary, toml_env, toml_str  # noqa: E402
from conftest import marked_pids  # noqa: E402
from conftest import agents as ag  # noqa: E402
from mock_anthropic import MockAnthropic  # noqa: E402

KICKOFF = "You are {name}: reply \"ready\" & don't run $(anything) or `this`; wait for work."
KICKOFF_RENDERED = KICKOFF.replace("{name}", "main")
QUESTION_FOOTER = "Enter to select · ↑/↓ to navigate"
RETRY_BANNER = re.compile(r"429 Rate limited · retrying in \d+s · attempt \d+/" + str(MAX_RETRIES))
GAVE_UP = "API Error: Request rejected (429) · Rate limited"


# ----------------------------------------------------------------------------
# The rig: one project, one mock, one `up` for the module
# ----------------------------------------------------------------------------

class Rig(ClaudeTeam):
    def __init__(self, binary: Path, root: Path, terminal) -> None:
        super().__init__(binary, root, "claude")
        self.terminal = terminal
        self.side_mock = MockAnthropic().start()  # for the agents that only show dialogs
        self.timings: dict[str, float] = {}
        self.facts: dict[str, object] = {}
        self.save_dir = Path(os.environ["AGENTS_SAVE_SCREENS"]) if os.environ.get("AGENTS_SAVE_SCREENS") else None
        self.saved = 0
        # Other agents: each with its own HOME whose .claude.json trusts nothing.
        self.stranger_home, self.stranger_cwd = root / "home-stranger", make_repo(root / "stranger")
        self.asker_home, self.asker_cwd = root / "home-asker", make_repo(root / "asker")
        cs.prepare_home(self.stranger_home, None, self.api_key)
        cs.prepare_home(self.asker_home, None, self.api_key)
        self.write_config()

    # -- config --

    def write_config(self) -> None:
        command = self.command()
        main_env = self.sandbox_env(self.home, self.mock.port)
        stranger_env = {k: v for k, v in self.sandbox_env(self.stranger_home, self.side_mock.port).items()
                        if main_env.get(k) != v}
        asker_env = self.sandbox_env(self.asker_home, self.side_mock.port)
        self.project.write(f"""
            [backend.claude]
            command = {json.dumps(command)}
            env = {toml_env(main_env)}

            # Only to keep a real dialog on screen: the claude preset, but no dialog answered.
            [backend.claude-noanswer]
            preset = "claude"
            command = {json.dumps(command)}
            env = {toml_env(asker_env)}
            dialog_keys = {{}}
            ready_timeout = 6

            [[agent]]
            name = "main"
            cwd = "repo"
            prompt = {toml_str(KICKOFF)}

            [[agent]]
            name = "stranger"
            cwd = "stranger"
            prompt = "stranger kickoff"
            env = {toml_env(stranger_env)}

            [[agent]]
            name = "asker"
            backend = "claude-noanswer"
            cwd = "asker"
            prompt = "asker kickoff"
            """)

    # -- looking --

    def save(self, name: str, screen: str) -> None:
        self.saved += 1
        if self.save_dir is not None:
            self.save_dir.mkdir(parents=True, exist_ok=True)
            (self.save_dir / f"{self.saved:02d}-{name}.txt").write_text(screen, encoding="utf-8")


@pytest.fixture(scope="module")
def rig(tmp_path_factory, request):
    binary = require_binary()
    terminal = request.config.pluginmanager.get_plugin("terminalreporter")
    rig = Rig(binary, tmp_path_factory.mktemp("claude-live"), terminal)
    rig.capture_manager = request.config.pluginmanager.get_plugin("capturemanager")
    try:
        started = time.monotonic()
        # The kickoff's turn is held: `up` returns once the kickoff has landed (the CLI turned busy).
        gate = rig.mock.hold("kickoff answered: ready")
        rig.facts["up"] = rig.run("up", "--no-watchdog", "main")
        rig.facts["up_s"] = round(time.monotonic() - started, 2)
        held = []
        for _ in range(4):
            held.append(rig.state())
            time.sleep(0.25)
        rig.facts["held_states"] = held
        rig.save("kickoff-held-busy", rig.screen())
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
            rig.side_mock.stop()
            report(rig)


def report(rig: Rig) -> None:
    if not rig.timings:
        return
    total = sum(rig.timings.values())
    lines = ["claude-live wall times (s):", *(f"  {secs:7.2f}  {name}" for name, secs in rig.timings.items()),
             f"  {total:7.2f}  total"]
    text = "\n".join(lines)
    if rig.terminal is not None:
        capture = rig.capture_manager
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            rig.terminal.write_line("")
            for line in lines:
                rig.terminal.write_line(line)
    else:
        print("\n" + text, file=sys.stderr)
    target = os.environ.get("AGENTS_LIVE_TIMINGS")
    if target:
        Path(target).write_text(text + "\n", encoding="utf-8")


@pytest.fixture(autouse=True)
def timed(request):
    started = time.monotonic()
    yield
    rig = request.node.funcargs.get("rig")
    if rig is not None:
        rig.timings[request.node.name] = round(time.monotonic() - started, 2)


# ----------------------------------------------------------------------------
# a. up: the bypass dialog answered by the preset, the kickoff verbatim, busy then idle
# ----------------------------------------------------------------------------

def test_a_up_answers_bypass_dialog_and_delivers_kickoff(rig):
    up = rig.facts["up"]
    assert up.returncode == 0, up.stdout + up.stderr
    assert "main: started in session t-main" in up.stdout and "kickoff delivered" in up.stdout, up.stdout
    # The bypass warning was answered by the preset's rule: Down, then Enter (never Enter alone).
    dialogs = rig.project.events("dialog", "main")
    assert len(dialogs) == 1, dialogs
    assert dialogs[0]["keys"] == "Down Enter", dialogs[0]
    assert "Bypass Permissions mode" in dialogs[0]["reason"] and "pressed Down Enter" in dialogs[0]["reason"]
    # Started from the preset's command with a session id of ours.
    start = rig.project.events("start", "main")[0]
    assert start["argv"].startswith(f"{rig.binary} --dangerously-skip-permissions --session-id ")
    assert start["session_id"] == rig.row()["session_ids"][-1]
    # The kickoff reached the model verbatim, as the first main turn.
    assert rig.mock.typed_texts()[0] == KICKOFF_RENDERED
    assert rig.project.events("kickoff", "main"), rig.project.events()
    # busy while the model held its answer, idle once it came.
    assert all(state == "busy" for state in rig.facts["held_states"]), rig.facts["held_states"]
    assert rig.facts["after_state"] == "idle", rig.facts["after_state"]
    assert "kickoff answered: ready" in rig.screen()


def test_a_slow_turn_reads_busy_then_idle(rig):
    rig.ready()
    rig.mock.slow("slow answer arrived", delay=3)
    started = time.monotonic()
    sent = rig.send("take your time")
    assert sent.returncode == 0, sent.stderr
    readings = []  # (seconds since the send began, state)
    while time.monotonic() - started < 30:
        readings.append((round(time.monotonic() - started, 2), rig.state()))
        if readings[-1][1] == "idle":
            break
    assert readings[-1][1] == "idle", readings
    assert all(state == "busy" for _, state in readings[:-1]), readings
    busy = [moment for moment, state in readings if state == "busy"]
    assert busy and busy[-1] >= 2.0, readings  # the model's 3 s of silence read as busy, not idle
    assert "slow answer arrived" in rig.screen()


def test_a_untrusted_folder_trust_dialog_is_answered_too(rig):
    up = rig.run("up", "--no-watchdog", "stranger")
    assert up.returncode == 0, up.stdout + up.stderr
    dialogs = rig.project.events("dialog", "stranger")
    assert [d["keys"] for d in dialogs] == ["Down Enter", "Down Enter"], dialogs
    assert "Quick safety check" in dialogs[0]["reason"], dialogs
    assert "Bypass Permissions mode" in dialogs[1]["reason"], dialogs
    assert all("pressed Down Enter" in d["reason"] for d in dialogs), dialogs
    rig.wait("the kickoff at the model", lambda: "stranger kickoff" in rig.side_mock.typed_texts(), name="stranger")
    data = json.loads((rig.stranger_home / ".claude.json").read_text())
    assert data["projects"][str(rig.stranger_cwd.resolve())]["hasTrustDialogAccepted"] is True
    rig.ready("stranger")


# ----------------------------------------------------------------------------
# b. send: verbatim, runs nothing; held while a dialog is up
# ----------------------------------------------------------------------------

PASTED = re.compile(r'\s*<pasted_content id="(\w+)">\n(?P<inner>.*)\n</pasted_content id="\1">\s*', re.S)


def test_b_send_arrives_verbatim_and_runs_nothing(rig, tmp_path):
    m = [tmp_path / f"ran-{n}" for n in range(8)]
    single = (f'single: "double" \'single\' $(touch {m[0]}) `touch {m[1]}` & | > {m[2]} '
              f'#{{pane_id}} \\ ends with a semicolon;')
    two = f'first line: "dq" \'sq\' $(touch {m[3]}) `touch {m[4]}`;\nsecond line; > {m[5]} ends;'
    many = (f'line one: $(touch {m[6]});\n  line two, indented `touch {m[7]}`\n'
            f'line three: "quoted" \'single\' & |\nline four ends with;')
    rig.ready()
    got = []
    for text in (single, two, many):
        before = len(rig.mock.typed_texts())
        sent = rig.send(text)
        assert sent.returncode == 0, sent.stderr
        assert "main: delivered" in sent.stdout, sent.stdout
        rig.wait("the message at the model", lambda: len(rig.mock.typed_texts()) > before)
        got.append(rig.mock.typed_texts()[-1])
        rig.ready()
    assert got[0] == single
    # Several lines go as one bracketed paste. Claude Code 2.1.330 shows a short one inline and
    # passes it on as is; a longer one is collapsed ("[Pasted text #1 +3 lines]") and reaches the
    # model wrapped in <pasted_content id="…"> … </pasted_content id="…">.
    assert got[1] == two or unwrap(got[1]) == two, got[1]
    assert unwrap(got[2]) == many, got[2]
    assert not [p for p in m if p.exists()], "something ran"
    assert not list(rig.repo.glob("ran-*"))


def unwrap(text: str) -> str | None:
    wrapped = PASTED.fullmatch(text)
    return wrapped.group("inner") if wrapped else None


QUESTION = {"questions": [{"question": "Which colour should the button be?", "header": "Colour",
                           "multiSelect": False,
                           "options": [{"label": "Red", "description": "a red one"},
                                       {"label": "Blue", "description": "a blue one"}]}]}


def open_question(rig: Rig, tag: str) -> str:
    """The model asks the user a question (AskUserQuestion): a real menu waiting for keys."""
    rig.ready()
    rig.mock.tool("AskUserQuestion", QUESTION, then=f"noted ({tag}).")
    sent = rig.send(f"ask me something ({tag})")
    assert sent.returncode == 0, sent.stderr
    rig.wait("the question", lambda: QUESTION_FOOTER in rig.screen())
    time.sleep(0.5)
    return rig.screen()


def close_question(rig: Rig, tag: str) -> None:
    """Answer it as a human would (Enter on the first option), then wait for the follow-up turn."""
    before = len(rig.mock.tool_results())
    rig.keys("main", "Enter")
    rig.wait("the answer to the question", lambda: len(rig.mock.tool_results()) > before)
    rig.wait("the follow-up", lambda: f"noted ({tag})." in rig.screen())
    rig.ready()


def test_b_message_is_held_while_the_agent_asks_a_question(rig):
    secret = "this must not be typed into the question"
    screen = open_question(rig, "held")
    rig.save("ask-user-question", screen)
    pid = rig.row()["pid"]
    state = rig.state()
    requests = len(rig.mock.main_requests())
    held = rig.send(secret)
    try:
        assert state == "dialog", state  # a question waiting for a human, not "idle (unsent input)"
        assert held.returncode == 1, held.stdout + held.stderr
        assert "NOT delivered: held: a dialog is open" in held.stderr, held.stderr
        time.sleep(1.0)
        after = rig.screen()
        assert secret not in after and QUESTION_FOOTER in after, after
        assert "❯ 1. Red" in after, after  # the selection did not move
        assert rig.row()["pid"] == pid and ag.pid_alive(pid)
        assert len(rig.mock.main_requests()) == requests
        assert rig.project.events("send-held", "main")
    finally:
        close_question(rig, "held")
    answer = json.dumps(rig.mock.tool_results()[-1])
    assert "Red" in answer and secret not in answer, answer
    assert not any(secret in text for text in rig.mock.user_texts(with_tool_results=True))


def test_b_leading_bang_is_data_not_a_shell_command(rig, tmp_path):
    rig.ready()
    marker = tmp_path / "bang"
    text = f"!touch {marker}"
    before = len(rig.mock.typed_texts())
    sent = rig.send(text)
    time.sleep(2.0)
    rig.save("shell-mode-ran", rig.screen())
    rig.ready()
    assert sent.returncode == 0, sent.stderr
    assert not marker.exists(), "the message ran as a shell command"
    assert rig.mock.typed_texts()[before:] and rig.mock.typed_texts()[-1].strip() == text


def test_b_leading_slash_is_held_unless_sent_as_a_command(rig):
    """'/…' is a slash command to Claude Code even after a leading space ('/exit' quits, '/clear'
    wipes the context): `send` holds it and types nothing; `send --command` runs it on purpose."""
    rig.ready()
    text = "/cost is what I want to know about, please"
    before = len(rig.mock.typed_texts())
    held = rig.send(text)
    time.sleep(1.0)
    screen = rig.screen()
    assert held.returncode == 1 and "held" in held.stderr and "--command" in held.stderr, held.stdout + held.stderr
    assert "Esc to close" not in screen and text not in screen, screen
    assert len(rig.mock.typed_texts()) == before
    command = rig.run("send", "--command", "main", "/cost", timeout=120)
    assert command.returncode == 0, command.stdout + command.stderr
    rig.wait("the usage panel", lambda: "Esc to close" in rig.screen())
    for _ in range(3):  # close the panel again
        if "Esc to close" not in rig.screen():
            break
        rig.keys("main", "Escape")
        time.sleep(0.7)
    rig.ready()


def test_b_message_is_held_while_a_human_has_a_menu_open(rig):
    rig.ready()
    settings = rig.home / ".claude" / "settings.json"
    settings_before = settings.read_text() if settings.exists() else None
    rig.keys("main", "-l", "/model")
    time.sleep(0.7)
    rig.keys("main", "Enter")
    rig.wait("the model picker", lambda: "Select model" in rig.screen() and "Esc to cancel" in rig.screen())
    time.sleep(0.5)
    rig.save("model-picker", rig.screen())
    state = rig.state()
    held = rig.send("hello picker")
    after = rig.screen()
    for _ in range(3):  # a human closes it again
        if "Select model" not in rig.screen():
            break
        rig.keys("main", "Escape")
        time.sleep(0.7)
    rig.keys("main", "C-u")
    rig.ready()
    settings_after = settings.read_text() if settings.exists() else None
    assert state.startswith("dialog"), state
    assert held.returncode == 1 and "held" in held.stderr, held.stdout + held.stderr
    assert "Select model" in after, after  # still open: nothing chosen, nothing saved
    assert settings_after == settings_before, (settings_before, settings_after)


def test_b_long_single_line_arrives_in_one_piece(rig):
    """Typed as 512-char chunks, Claude Code took the fast later chunks for a paste and split the
    message; a line over Sender.PASTE_OVER goes as one bracketed paste instead."""
    text = "".join(f"{i:04d}," for i in range(600)) + " ends;"  # 3006 chars, position-coded
    got = []
    for _ in range(2):  # the split depends on timing: seen on every try at 1.5k-3k chars, never at 1.1k
        rig.ready()
        before = len(rig.mock.typed_texts())
        sent = rig.send(text)
        assert sent.returncode == 0, sent.stderr
        rig.wait("the message at the model", lambda: len(rig.mock.typed_texts()) > before)
        got.append(rig.mock.typed_texts()[-1])
    rig.ready()
    for one in got:
        assert one == text or unwrap(one) == text, one


def test_b_message_is_held_while_the_trust_dialog_waits(rig):
    """A second agent in a folder its HOME does not trust, on a backend that answers no dialog:
    the real trust question stays up; a message is held, never typed into it."""
    up = rig.run("up", "--no-watchdog", "asker")
    assert up.returncode == 1, up.stdout + up.stderr
    assert "asker: started in t-asker, but no prompt yet (screen reads dialog)" in up.stdout, up.stdout
    screen = rig.screen("asker")
    assert "Quick safety check" in screen and "❯ No, exit" in screen, screen
    assert rig.state("asker").startswith("dialog"), rig.state("asker")
    pid = rig.row("asker")["pid"]
    held = rig.send("hello there; this is not an answer", name="asker")
    assert held.returncode == 1, held.stdout + held.stderr
    assert "NOT delivered: held" in held.stderr and "dialog" in held.stderr, held.stderr
    time.sleep(1.5)  # Enter here would pick "No, exit" and end Claude Code
    after = rig.screen("asker")
    assert "hello there" not in after and "❯ No, exit" in after and "Quick safety check" in after, after
    assert ag.pid_alive(pid) and rig.row("asker")["pid"] == pid
    assert rig.state("asker").startswith("dialog")
    reports = rig.project.events("dialog", "asker")
    assert not [e for e in reports if e.get("keys")], reports  # nothing pressed (an "unknown dialog" report is fine)
    down = rig.run("down", "asker")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not ag.pid_alive(pid)


# ----------------------------------------------------------------------------
# c. a tool call: Claude Code really runs git commit in its cwd
# ----------------------------------------------------------------------------

def test_c_tool_call_commits_in_the_agent_repo(rig):
    rig.ready()
    subject = f"live: commit made by claude {secrets.token_hex(3)}"
    before = git(rig.repo, "log", "--format=%s").stdout.splitlines()
    # The command waits for a file the test creates once it has read the screen three times while the
    # tool runs: a fixed `sleep 1` was over before a loaded machine's first `status` came back.
    release = rig.root / f"release-{secrets.token_hex(3)}"
    started = rig.root / f"started-{secrets.token_hex(3)}"
    rig.mock.tool_use(f"touch '{started}'; while [ ! -e '{release}' ]; do sleep 0.2; done; "
                      f"git commit -q --allow-empty -m '{subject}'", "Commit an empty change", then="committed it.")
    results = len(rig.mock.tool_results())
    sent = rig.send("please make an empty commit")
    assert sent.returncode == 0, sent.stderr
    rig.wait("the tool to start", started.exists)
    states, odd = [], []  # what status read while the tool ran (before its result went back)
    while len(states) < 3:
        state, screen = rig.state(), rig.screen()
        states.append(state)
        if state != "busy":
            odd.append(screen)
        time.sleep(0.1)
    assert len(rig.mock.tool_results()) == results  # the tool was still running throughout
    release.touch()
    rig.wait("the reply after the tool", lambda: "committed it." in rig.screen())
    rig.ready()
    assert states and set(states) == {"busy"}, (states, odd[:1])
    log = git(rig.repo, "log", "--format=%s").stdout.splitlines()
    assert log == [subject, *before], log
    result = rig.mock.tool_results()[-1]
    assert result["tool_use_id"].startswith("toolu_mock_") and not result.get("is_error"), result


# ----------------------------------------------------------------------------
# d. 429: limited while the CLI retries and after it gives up, never idle
# ----------------------------------------------------------------------------

def test_d_rate_limit_reads_limited_never_idle(rig):
    rig.ready()
    requests = len(rig.mock.main_requests())
    rig.mock.error(429, times=MAX_RETRIES + 1, retry_after=None)
    sent = rig.send("LIMIT me now")
    assert sent.returncode == 0, sent.stderr
    seen: list[tuple[str, bool]] = []  # (state, the retry banner on screen just before and just after status read it)
    deadline = time.monotonic() + 30 + 3 * sum(min(0.5 * 2 ** i, 32) for i in range(MAX_RETRIES))
    while time.monotonic() < deadline:
        before = rig.screen()
        state = rig.state()
        screen = rig.screen()
        seen.append((state, bool(RETRY_BANNER.search(before) and RETRY_BANNER.search(screen))))
        if seen[-1][1] and "retrying-screen" not in rig.facts:
            rig.facts["retrying-screen"] = screen
            rig.save("api-429-retrying", screen)
        if GAVE_UP in screen and state.startswith("limited (API rate limit)"):
            break
        time.sleep(0.05)
    states = [s for s, _ in seen]
    assert states and states[-1] == "limited (API rate limit)", seen
    assert not [s for s in states if s.startswith("idle")], seen
    assert set(s.split(" (")[0] for s in states) <= {"busy", "limited"}, seen
    retrying = [s for s, banner in seen if banner]
    assert retrying, f"the retry banner never showed: {seen}"
    # While the banner shows the CLI retries by itself: limited, stand down (not busy, never idle).
    assert all(s == "limited (CLI retrying by itself)" for s in retrying), seen
    assert len(rig.mock.main_requests()) - requests == MAX_RETRIES + 1
    assert rig.mock.pending() == 0
    rig.save("api-429-gave-up", rig.screen())
    time.sleep(1.0)
    assert rig.state() == "limited (API rate limit)"
    # The next message is typed over the placeholder ("Resend your message to try again") and lands.
    after = rig.send("after the limit")
    assert after.returncode == 0, after.stderr
    rig.wait("the ack after the limit", lambda: "ack: after the limit" in rig.screen())
    rig.ready()
    assert rig.state() == "idle"


# ----------------------------------------------------------------------------
# e. the transcript: named by our session id, usage equal to what was served
# ----------------------------------------------------------------------------

def test_e_transcript_named_by_session_id_and_usage_matches(rig):
    rig.ready()
    rig.mock.reply("one more for the books")
    assert rig.send("count this turn too").returncode == 0
    rig.wait("the reply", lambda: "one more for the books" in rig.screen())
    rig.ready()
    row = rig.row()
    session_id = row["session_ids"][-1]
    assert len(row["session_ids"]) == 1  # started once
    path = cs.transcript_path(rig.home, rig.repo, session_id)
    rig.wait(f"the transcript {path}", path.exists, timeout=10)
    assert sorted(p.name for p in path.parent.glob("*.jsonl")) == [f"{session_id}.jsonl"]
    assert {r["headers"].get("x-claude-code-session-id") for r in rig.mock.main_requests()} == {session_id}
    want = rig.mock.served_usage_total()
    rig.wait("transcript usage == served usage",
             lambda: cs.usage_total(cs.transcript_usage(path)) == want, timeout=15)
    assert cs.transcript_usage(path) == rig.mock.served_usage()
    assert want["messages"] >= 2, want


# ----------------------------------------------------------------------------
# z. down: no session, no process
# ----------------------------------------------------------------------------

def test_z_down_leaves_no_session_and_no_process(rig):
    rows = [r for r in rig.project.status()["agents"] if r["pid"]]
    assert {r["name"] for r in rows} >= {"main"}, rows
    pids = {r["name"]: r["pid"] for r in rows}
    tree = ag.process_tree(list(pids.values()))
    claude = [pid for pid in tree if Path(f"/proc/{pid}/exe").exists()
              and os.path.realpath(f"/proc/{pid}/exe") == os.path.realpath(rig.binary)]
    assert pids["main"] in claude, (pids, claude)  # the pane's process is Claude Code itself (exec'd)
    down = rig.run("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "main: stopped" in down.stdout
    assert rig.project.sessions() == []
    rig.wait("every process ended", lambda: not [pid for pid in tree if ag.pid_alive(pid)], timeout=10)
    assert marked_pids(rig.project.config) == []
    assert {r["state"] for r in rig.project.status()["agents"]} == {"stopped"}
