"""Tests of examples/simagent.py, the simulated Claude-Code-like agent, driven through real tmux.

Every test runs the simulated agent in a tmux session on a private server
(`tmux -L simtest-<random>`, never the default one), types into it the way a supervisor does
(send-keys -l for text, send-keys Enter, paste-buffer -p for bracketed paste) and checks the
screen (capture-pane), the agent's event log and its Claude-format transcript. Waits are polls
with deadlines, never fixed long sleeps.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import random
import re
import secrets
import shutil
import subprocess
import sys
import time
import uuid

import pytest

SIMAGENT = pathlib.Path(__file__).resolve().parent.parent / "examples" / "simagent.py"

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

RULE = re.compile(r"^─{20,}$")
SPINNER = re.compile(r"^[✢✳✶✻✽·] \S+… \(\d+s\)$")
PROMPT = re.compile(r"^❯[ \u00a0]")


def wait_for(condition, what: str, timeout: float = 8.0, describe=lambda: ""):
    """Poll `condition` until it returns something truthy; fail with `describe()` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{describe()}")
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------------
# tmux on a private socket, and one simulated agent per session
# ---------------------------------------------------------------------------------------------

class Tmux:
    """A private tmux server: every command carries -L <socket> and ignores the user's config."""

    def __init__(self):
        self.socket = f"simtest-{secrets.token_hex(6)}"
        self.socket_path = ""   # learnt once the server runs; tmux does not remove it on exit
        # A test run from inside tmux must not talk to the surrounding server.
        self.env = {key: value for key, value in os.environ.items() if key != "TMUX"}

    def run(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        result = subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            input=stdin, capture_output=True, text=True, env=self.env, timeout=10,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def new_session(self, *args: str) -> None:
        self.run("new-session", *args)
        if not self.socket_path:
            self.socket_path = self.run("display-message", "-p", "#{socket_path}").strip()

    def kill_server(self) -> None:
        """Stop the server and remove its socket file, which tmux leaves behind."""
        self.run("kill-server", check=False)
        if self.socket_path.endswith(self.socket):
            pathlib.Path(self.socket_path).unlink(missing_ok=True)


class Sim:
    """One simulated agent running in its own tmux session."""

    def __init__(self, tmux: Tmux, session: str, cwd: pathlib.Path, log: pathlib.Path):
        self.tmux = tmux          # the private server it runs on
        self.session = session    # tmux session name, also the send-keys target
        self.cwd = cwd            # the agent's working folder
        self.log = log            # its event log (JSON lines)

    # -- looking ----------------------------------------------------------------------------

    def screen(self) -> list[str]:
        return self.tmux.run("capture-pane", "-p", "-t", self.session).split("\n")

    def visible(self) -> list[str]:
        """The screen's non-blank lines, right-trimmed."""
        # Only plain spaces are trimmed: the prompt line ends in a no-break space.
        return [line.rstrip(" ") for line in self.screen() if line.strip()]

    def describe(self) -> str:
        records = "\n".join(json.dumps(r, ensure_ascii=False) for r in self.records())
        return "screen:\n" + "\n".join(self.screen()) + "\nlog:\n" + records

    def records(self, kind: str | None = None) -> list[dict]:
        try:
            text = self.log.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        found = []
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line being written right now
            if kind is None or record.get("kind") == kind:
                found.append(record)
        return found

    def messages(self) -> list[str]:
        return [record["text"] for record in self.records("message")]

    def pane_status(self) -> tuple[bool, str]:
        dead, status = self.tmux.run(
            "display-message", "-p", "-t", self.session, "#{pane_dead} #{pane_dead_status}"
        ).split(" ", 1)
        return dead == "1", status.strip()

    # -- acting -----------------------------------------------------------------------------

    def type(self, text: str) -> None:
        # tmux reads an argument that ends in ";" as a command separator and drops the ";",
        # even with -l; an escaped "\;" at the end is sent as a literal ";".
        if text.endswith(";"):
            text = text[:-1] + "\\;"
        self.tmux.run("send-keys", "-t", self.session, "-l", "--", text)

    def keys(self, *names: str) -> None:
        self.tmux.run("send-keys", "-t", self.session, *names)

    def paste(self, text: str) -> None:
        buffer = f"b{secrets.token_hex(4)}"
        self.tmux.run("load-buffer", "-b", buffer, "-", stdin=text)
        self.tmux.run("paste-buffer", "-p", "-d", "-b", buffer, "-t", self.session)

    def send(self, text: str) -> None:
        """Type a message, wait until it shows on the prompt line, then press Enter."""
        self.type(text)
        wait_for(lambda: any(PROMPT.match(line) and text[-10:] in line for line in self.visible()),
                 f"{text!r} on the prompt line", describe=self.describe)
        self.keys("Enter")

    # -- waiting ----------------------------------------------------------------------------

    def bottom(self, count: int = 4) -> list[str]:
        return self.visible()[-count:]

    def is_idle(self) -> bool:
        bottom = self.bottom()
        if len(bottom) < 4:
            return False          # still starting
        rule, prompt, rule2, footer = bottom
        return bool(RULE.match(rule) and PROMPT.match(prompt) and RULE.match(rule2)
                    and "? for shortcuts" in footer)

    def is_busy(self) -> bool:
        return "esc to interrupt" in "".join(self.bottom(1))

    def wait_idle(self, timeout: float = 8.0) -> None:
        wait_for(self.is_idle, "the idle prompt", timeout, describe=self.describe)

    def wait_busy(self) -> None:
        wait_for(self.is_busy, "the busy footer", describe=self.describe)

    def wait_records(self, kind: str, count: int = 1) -> list[dict]:
        return wait_for(lambda: len(found := self.records(kind)) >= count and found,
                        f"{count} {kind} record(s)", describe=self.describe)

    def wait_exit_status(self) -> int:
        """The agent's exit status, as tmux reports it in #{pane_dead_status}.

        tmux 3.3a has a race: now and then it marks the pane dead (EOF on the pty) before it
        reaps the process, and then never fills in #{pane_dead_status}. Only in that case is
        the status taken from the agent's own exit record.
        """
        wait_for(lambda: self.pane_status()[0], "the agent to exit", describe=self.describe)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            status = self.pane_status()[1]
            if status:
                return int(status)
            time.sleep(0.05)
        return self.records("exit")[-1]["code"]


@pytest.fixture(scope="module")
def tmux():
    server = Tmux()
    yield server
    server.kill_server()


@pytest.fixture
def start_sim(tmux, tmp_path):
    """Factory: start_sim(*args, env=...) runs simagent in a fresh 120x40 tmux session."""
    sessions = []

    def start(*args: str, env: dict | None = None, wait: bool = True) -> Sim:
        session = f"sim{len(sessions)}-{secrets.token_hex(3)}"
        cwd = tmp_path / f"work-{session}"
        home = tmp_path / "home"
        config_dir = tmp_path / "claude"
        log = tmp_path / f"{session}.log"
        for folder in (cwd, home):
            folder.mkdir(exist_ok=True)
        environment = {"HOME": str(home), "CLAUDE_CONFIG_DIR": str(config_dir), **(env or {})}
        command = [sys.executable, str(SIMAGENT), "--name", "x", "--log", str(log), *args]
        env_args = [arg for key, value in environment.items() for arg in ("-e", f"{key}={value}")]
        tmux.new_session("-d", "-s", session, "-x", "120", "-y", "40", "-c", str(cwd),
                         *env_args, "--", *command)
        sessions.append(session)
        # Keep the pane after the agent exits so that its exit status can be read.
        tmux.run("set-option", "-w", "-t", session, "remain-on-exit", "on")
        sim = Sim(tmux, session, cwd, log)
        if wait:
            sim.wait_idle()
        return sim

    yield start
    for session in sessions:
        tmux.run("kill-session", "-t", session, check=False)


def load_simagent():
    spec = importlib.util.spec_from_file_location("simagent", SIMAGENT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["simagent"] = module   # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------
# Screens
# ---------------------------------------------------------------------------------------------

def test_idle_screen_has_prompt_between_rules_and_no_busy_marker(start_sim):
    sim = start_sim()
    rule, prompt, rule2, footer = sim.bottom()
    assert RULE.match(rule) and RULE.match(rule2)
    assert len(rule) == 120
    assert prompt == "❯\u00a0"   # as the real CLI draws it: arrow, no-break space
    assert footer == "  ⏵⏵ simulated agent x · ? for shortcuts"
    screen = "\n".join(sim.screen())
    assert "esc to interrupt" not in screen
    assert sim.visible()[0] == " ▐▛███▜▌   Sim Agent v1 (simulated coding agent)"
    assert str(sim.cwd) in screen
    (start,) = sim.records("start")
    assert start["agent"] == "x" and start["cwd"] == os.path.realpath(sim.cwd)


def test_busy_screen_shows_spinner_and_esc_to_interrupt(start_sim):
    sim = start_sim("--work", "1.5")
    sim.send("hello there")
    sim.wait_busy()
    lines = sim.visible()
    assert lines[-1] == "  ⏵⏵ simulated agent x · esc to interrupt"
    assert SPINNER.match(lines[-5]), lines  # spinner, then rule, prompt, rule, footer
    assert "❯ hello there" in lines
    sim.wait_idle()
    lines = sim.visible()
    assert "● ack: hello there" in lines
    assert any(re.match(r"^✻ Worked for \d+s$", line) for line in lines)
    assert "esc to interrupt" not in "\n".join(sim.screen())


def test_typed_text_stays_on_the_prompt_line_until_enter(start_sim):
    sim = start_sim()
    sim.type("typed but not submitted")
    wait_for(lambda: sim.bottom()[1] == "❯\u00a0typed but not submitted", "typed text",
             describe=sim.describe)
    assert sim.records("message") == []


def test_screen_is_redrawn_for_a_new_size(start_sim, tmux):
    sim = start_sim()
    tmux.run("resize-window", "-t", sim.session, "-x", "80", "-y", "30")
    wait_for(lambda: len(sim.bottom()[0]) == 80, "a rule 80 wide", describe=sim.describe)
    assert sim.is_idle()


# ---------------------------------------------------------------------------------------------
# Input arrives verbatim
# ---------------------------------------------------------------------------------------------

def test_shell_metacharacters_arrive_verbatim(start_sim):
    sim = start_sim("--work", "0.1")
    message = '"; touch /tmp/x; $(touch y) `z`'
    sim.send(message)
    sim.wait_records("message")
    assert sim.messages() == [message]
    sim.wait_idle()
    assert not (sim.cwd / "y").exists() and not (sim.cwd / "z").exists()


def test_message_ending_in_semicolon_arrives_verbatim(start_sim):
    sim = start_sim("--work", "0.1")
    sim.send("echo a; echo b;")
    sim.wait_records("message")
    assert sim.messages() == ["echo a; echo b;"]


def test_multiline_bracketed_paste_is_one_message_with_its_newlines(start_sim):
    sim = start_sim("--work", "0.1")
    message = "first line\nsecond line with 'quotes'\nthird line $(date)"
    sim.paste(message)
    wait_for(lambda: sim.bottom()[1] == "❯\u00a0[Pasted text #1 +2 lines]",
             "the paste placeholder", describe=sim.describe)
    assert sim.records("message") == []
    sim.keys("Enter")
    sim.wait_records("message")
    assert sim.messages() == [message]
    sim.wait_idle()
    # the echo of the submitted paste, once the turn's redraw has settled
    wait_for(lambda: "❯ first line (+2 lines)" in sim.visible(), "the paste's echo", describe=sim.describe)


def test_messages_submitted_while_busy_are_queued_in_order(start_sim):
    sim = start_sim("--work", "0.6")
    sim.send("one")
    sim.wait_busy()
    sim.send("two")
    wait_for(lambda: sim.visible().count("✻ Worked for 1s") == 2, "two finished turns",
             describe=sim.describe)
    lines = sim.visible()
    assert lines.index("● ack: one") < lines.index("❯ two") < lines.index("● ack: two")
    assert sim.messages() == ["one", "two"]


def test_unexpected_bytes_do_not_crash_it(start_sim):
    sim = start_sim("--work", "0.1")
    # Invalid UTF-8, a C1 control, NUL, an unknown CSI sequence, an SS3 sequence, a bell.
    sim.keys("-H", "ff", "fe", "c3", "28", "80", "9b", "00", "1b", "5b", "31", "3b", "35",
             "7e", "1b", "4f", "5a", "07", "1b", "5b", "3f")
    sim.keys("C-u")
    for _ in range(12):
        sim.keys("BSpace")
    sim.send("still alive")
    sim.wait_records("message")
    assert sim.messages()[-1].endswith("still alive")
    sim.wait_idle()
    assert sim.pane_status()[0] is False


def test_key_reader_survives_random_bytes():
    simagent = load_simagent()
    generator = random.Random(1234)
    alphabet = [b"\x1b", b"[", b"O", b"200~", b"201~", b"\r", b"\n", b"\x7f", b"\x03", b"a",
                b"\xc3", b"\xa9", b"\xff", b"\x9b", b"A", b"B", b"~", b"1;5"]
    for _ in range(300):
        reader = simagent.KeyReader()
        prompt = simagent.PromptInput()
        now = 0.0
        for _ in range(40):
            data = b"".join(generator.choice(alphabet) for _ in range(generator.randint(0, 6)))
            now += generator.choice([0.0, 0.01, 3.0])
            for key in reader.feed(data, now) + reader.flush_stale(now + 5):
                if key.name == "text":
                    prompt.type(key.text)
                elif key.name == "paste":
                    prompt.paste(key.text)
                elif key.name == "backspace":
                    prompt.backspace()
                key.label()
            prompt.display()


def test_key_reader_splits_sequences_across_reads():
    simagent = load_simagent()
    reader = simagent.KeyReader()
    stream = b"ab\x1b[B\x1b[200~x\r\ny\ry\xc3\xa9\x1b[201~\r\x1b"
    keys = []
    for index in range(len(stream)):       # one byte per read: the worst case
        keys += reader.feed(stream[index:index + 1], 0.0)
    keys += reader.flush_stale(1.0)
    assert [(key.name, key.text) for key in keys] == [
        ("text", "a"), ("text", "b"), ("down", ""), ("paste", "x\ny\nyé"), ("enter", ""),
        ("esc", ""),
    ]


# ---------------------------------------------------------------------------------------------
# Transcripts and usage
# ---------------------------------------------------------------------------------------------

def test_transcript_has_claude_format_usage_and_duplicated_message_ids(start_sim):
    session_id = str(uuid.uuid4())
    sim = start_sim("--work", "0.1", "--session-id", session_id, "--model", "claude-sim",
                    "--dangerously-skip-permissions", "--permission-mode", "whatever",
                    env={"CLAUDE_CONFIG_DIR": "claude-config"})   # relative to the cwd
    messages = ["first message", "second one, a bit longer"]
    for message in messages:
        sim.send(message)
        sim.wait_idle()
    usages = sim.wait_records("usage", 2)

    cwd = os.path.realpath(sim.cwd)
    slug = re.sub(r"[^A-Za-z0-9]", "-", cwd)
    path = pathlib.Path(cwd) / "claude-config" / "projects" / slug / f"{session_id}.jsonl"
    entries = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [entry["type"] for entry in entries] == ["user", "assistant", "assistant"] * 2

    parent = None
    for entry in entries:
        assert entry["parentUuid"] == parent
        parent = entry["uuid"]
        assert entry["sessionId"] == session_id and entry["cwd"] == cwd
        assert entry["isSidechain"] is False and entry["version"] == "sim-1"
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", entry["timestamp"])

    for turn, message in enumerate(messages, start=1):
        user, thinking, text = entries[3 * (turn - 1):3 * turn]
        assert user["message"] == {"role": "user", "content": message}
        reply = f"ack: {message}"
        expected = {"input_tokens": 100 + len(message), "output_tokens": 20 + len(reply),
                    "cache_creation_input_tokens": 50, "cache_read_input_tokens": 200 * turn}
        assert thinking["message"]["id"] == text["message"]["id"]
        assert re.match(r"^msg_sim_[0-9a-f]{32}$", text["message"]["id"])
        assert thinking["requestId"] == text["requestId"]
        assert text["requestId"].startswith("req_sim_")
        assert thinking["message"]["content"][0]["type"] == "thinking"
        assert text["message"]["content"] == [{"type": "text", "text": reply}]
        assert thinking["message"]["usage"] == {**expected, "output_tokens": 1}
        assert text["message"]["usage"] == expected
        for line in (thinking, text):
            assert line["message"]["model"] == "claude-sim"
            assert line["message"]["role"] == "assistant"
            assert line["message"]["stop_reason"] == "end_turn"
        assert usages[turn - 1]["usage"] == expected
        assert usages[turn - 1]["message_id"] == text["message"]["id"]


def test_esc_interrupts_work_without_usage(start_sim):
    sim = start_sim()
    sim.send("SIM:work 30")
    sim.wait_busy()
    sim.keys("Escape")
    sim.wait_idle()
    assert "  ⎿ Interrupted" in sim.visible()
    assert sim.records("usage") == []


# ---------------------------------------------------------------------------------------------
# Directives
# ---------------------------------------------------------------------------------------------

def test_die_exits_with_the_given_status(start_sim):
    sim = start_sim()
    sim.send("SIM:die 7")
    assert sim.wait_exit_status() == 7
    assert sim.records("exit")[-1]["code"] == 7
    assert sim.messages() == ["SIM:die 7"]


def test_ctrl_c_twice_exits_0(start_sim):
    sim = start_sim()
    sim.keys("C-c")
    wait_for(lambda: "Press Ctrl-C again to exit" in sim.bottom(1)[0], "the Ctrl-C hint",
             describe=sim.describe)
    sim.keys("C-c")
    assert sim.wait_exit_status() == 0


def test_limit_banner_answers_every_message_until_it_lifts(start_sim):
    sim = start_sim("--work", "0.1")
    banner = "You've hit your session limit · resets in 3s"
    sim.send(f"SIM:limit 2.5 {banner}")
    wait_for(lambda: sim.visible()[-5] == f"● {banner}", "the banner", describe=sim.describe)
    sim.send("are you there?")
    wait_for(lambda: sim.visible()[-6:-4] == ["❯ are you there?", f"● {banner}"],
             "the banner as the answer", describe=sim.describe)
    assert sim.messages()[-1] == "are you there?"
    sim.send("SIM:work 0.1")          # work for the model: limited too
    wait_for(lambda: sim.visible()[-6:-4] == ["❯ SIM:work 0.1", f"● {banner}"],
             "the banner as the answer to SIM:work", describe=sim.describe)
    assert sim.records("usage") == []
    sim.wait_records("limit-over")
    sim.send("and now?")
    wait_for(lambda: "● ack: and now?" in sim.visible(), "a normal answer",
             describe=sim.describe)
    assert len(sim.records("usage")) == 1


def test_say_prints_text_verbatim(start_sim):
    sim = start_sim()
    sim.send('SIM:say The docs say "Claude usage limit reached" here\\nsecond line')
    wait_for(lambda: sim.visible()[-6:-4] == ['The docs say "Claude usage limit reached" here',
                                              "second line"],
             "the said lines", describe=sim.describe)
    assert sim.is_idle()


def test_permission_dialog_logs_keys_and_types_nothing(start_sim):
    sim = start_sim()
    sim.send("SIM:dialog")
    wait_for(lambda: sim.bottom() == [
        " Do you want to proceed?",
        " ❯ 1. Yes",
        "   2. No, and tell Claude what to do differently",
        " Enter to confirm · Esc to cancel",
    ], "the dialog", describe=sim.describe)
    assert RULE.match(sim.bottom(5)[0])
    sim.type("a message")
    sim.keys("Down")
    wait_for(lambda: sim.bottom()[1:3] == [
        "   1. Yes",
        " ❯ 2. No, and tell Claude what to do differently",
    ], "the moved selection", describe=sim.describe)
    sim.keys("Enter")
    sim.wait_idle()
    assert [record["key"] for record in sim.records("dialog-key")] == \
        ["text:a message", "Down", "Enter"]
    assert sim.messages() == ["SIM:dialog"]
    assert "  ⎿ dialog answered: No" in sim.visible()
    assert sim.bottom()[1] == "❯\u00a0"   # nothing was typed into the input


def test_busyhang_stays_busy_and_only_esc_ends_it(start_sim):
    sim = start_sim()
    sim.send("SIM:busyhang")
    sim.wait_busy()
    first = sim.visible()[-5]
    wait_for(lambda: sim.visible()[-5] != first, "the spinner to move", describe=sim.describe)
    sim.type("ignored")
    sim.keys("Enter")
    time.sleep(0.3)
    assert sim.is_busy() and "ignored" not in "\n".join(sim.screen())
    sim.keys("Escape")
    sim.wait_idle()
    assert sim.messages() == ["SIM:busyhang"]


def test_hang_freezes_with_the_idle_screen(start_sim):
    sim = start_sim()
    sim.send("SIM:hang")
    sim.wait_records("frozen")
    sim.type("nobody reads this")
    time.sleep(0.4)
    assert sim.is_idle() and "nobody reads this" not in "\n".join(sim.screen())
    assert sim.pane_status()[0] is False


# ---------------------------------------------------------------------------------------------
# Startup
# ---------------------------------------------------------------------------------------------

def wait_bypass_warning(sim: Sim) -> None:
    wait_for(lambda: " WARNING: Sim Agent running in Bypass Permissions mode" in sim.visible(),
             "the bypass warning", describe=sim.describe)
    assert sim.bottom(3) == [" ❯ No, exit", "   Yes, I accept", " Enter to confirm · Esc to cancel"]
    assert RULE.match(sim.visible()[0])


def test_startup_dialog_enter_exits_1(start_sim):
    sim = start_sim("--startup-dialog", "--dangerously-skip-permissions", wait=False)
    wait_bypass_warning(sim)
    sim.type("ping")
    sim.keys("Enter")
    assert sim.wait_exit_status() == 1
    assert [record["key"] for record in sim.records("dialog-key")] == ["text:ping", "Enter"]
    assert sim.records("message") == []


def test_startup_dialog_down_enter_proceeds_to_the_prompt(start_sim):
    sim = start_sim("--startup-dialog", wait=False)
    wait_bypass_warning(sim)
    sim.keys("Down")
    wait_for(lambda: " ❯ Yes, I accept" in sim.visible(), "the moved selection",
             describe=sim.describe)
    sim.keys("Enter")
    sim.wait_idle()


def test_startup_delay_shows_only_starting_first(start_sim):
    sim = start_sim("--startup-delay", "0.8", wait=False)
    wait_for(lambda: sim.visible() == ["Starting…"], "the starting line", describe=sim.describe)
    sim.wait_idle()
