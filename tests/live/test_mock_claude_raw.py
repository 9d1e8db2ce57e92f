"""The real Claude Code CLI against mock_anthropic, driven through tmux by hand.

No agents.py here: this proves the test rig itself (the pinned CLI, the mock
Messages API, the sandbox HOME) before agents.py is tested on top of it.

tmux runs on a private socket (``tmux -L claude-raw-<random>``), never the
default server; the fixture's finalizer kills that server and every process
it started, by pid, even when a test fails.

Skipped, loudly, when the CLI cannot be installed (no npm, no registry) or
tmux is missing.

Env knobs:
  AGENTS_SAVE_SCREENS=DIR       write every screen the scenario captures to DIR/NN-name.txt
  AGENTS_LIVE_MAX_RETRIES=N     CLAUDE_CODE_MAX_RETRIES for the CLI (default 4; the CLI's
                                own default, 10, takes about 3 minutes to give up on a 429)
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import claude_sandbox as cs  # noqa: E402
import install_claude  # noqa: E402
from mock_anthropic import MockAnthropic  # noqa: E402

from conftest import agents as ag  # noqa: E402

COLS, ROWS = 120, 40
SESSION = "raw"
MAX_RETRIES = int(os.environ.get("AGENTS_LIVE_MAX_RETRIES") or 4)

BUSY = "esc to interrupt"
FOOTER = "bypass permissions on"


# ----------------------------------------------------------------------------
# The mock alone (no CLI needed)
# ----------------------------------------------------------------------------

def _post(url: str, body: dict, headers: dict | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _sse(raw: bytes) -> list[tuple[str, dict]]:
    events = []
    for chunk in raw.decode().split("\n\n"):
        if not chunk.strip():
            continue
        name = re.search(r"^event: (.*)$", chunk, re.M).group(1)
        data = json.loads(re.search(r"^data: (.*)$", chunk, re.M).group(1))
        events.append((name, data))
    return events


MAIN_BODY = {"model": "claude-test", "max_tokens": 1000, "stream": True,
             "tools": [{"name": "Bash", "input_schema": {"type": "object"}}],
             "messages": [{"role": "user", "content": [
                 {"type": "text", "text": "<system-reminder>\nctx\n</system-reminder>"},
                 {"type": "text", "text": "hello mock"}]}]}


def test_mock_speaks_the_messages_api():
    with MockAnthropic() as mock:
        url = mock.base_url + "/v1/messages?beta=true"
        # Default answer: ack of the typed text, streamed.
        status, _, raw = _post(url, MAIN_BODY)
        assert status == 200
        events = _sse(raw)
        names = [n for n, _ in events]
        assert names == ["message_start", "content_block_start", "content_block_delta",
                         "content_block_delta", "content_block_stop", "message_delta",
                         "message_stop"]  # 15 chars: two text_delta chunks of 8
        start = events[0][1]["message"]
        assert start["id"] == "msg_mock_1" and start["usage"]["output_tokens"] == 1
        assert start["usage"]["input_tokens"] == 1001
        text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
        assert text == "ack: hello mock"
        assert events[-2][1]["delta"]["stop_reason"] == "end_turn"
        assert events[-2][1]["usage"]["output_tokens"] == 51

        # A scripted tool_use, then its follow-up.
        mock.tool_use("git status", "Show status", then="all done")
        events = _sse(_post(url, MAIN_BODY)[2])
        block = [d for n, d in events if n == "content_block_start"][0]["content_block"]
        assert block["type"] == "tool_use" and block["name"] == "Bash"
        args = json.loads("".join(d["delta"]["partial_json"] for n, d in events
                                  if n == "content_block_delta"))
        assert args == {"command": "git status", "description": "Show status"}
        assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
        text = "".join(d["delta"].get("text", "") for n, d in _sse(_post(url, MAIN_BODY)[2])
                       if n == "content_block_delta")
        assert text == "all done"

        # Errors: 429 twice with retry-after, then 529.
        mock.error(429, times=2, retry_after=3)
        mock.error(529)
        for _ in range(2):
            status, headers, raw = _post(url, MAIN_BODY)
            assert status == 429 and headers.get("retry-after") == "3"
            assert json.loads(raw) == {"type": "error", "error": {"type": "rate_limit_error",
                                                                  "message": "Rate limited"}}
        status, _, raw = _post(url, MAIN_BODY)
        assert status == 529 and json.loads(raw)["error"]["type"] == "overloaded_error"
        mock.error(529, in_stream=True)  # an error event inside a 200 stream
        status, _, raw = _post(url, MAIN_BODY)
        assert status == 200 and _sse(raw) == [("error", {"type": "error", "error": {
            "type": "overloaded_error", "message": "Overloaded"}})]

        # Side calls (no tools, non-streaming) do not consume the queue.
        mock.reply("for the main turn")
        status, _, raw = _post(url, {"model": "m", "max_tokens": 1, "messages": [
            {"role": "user", "content": "quota"}]})
        assert status == 200 and json.loads(raw)["type"] == "message"
        assert mock.pending() == 1

        # count_tokens and anything else.
        status, _, raw = _post(mock.base_url + "/v1/messages/count_tokens?beta=true", MAIN_BODY)
        assert status == 200 and json.loads(raw)["input_tokens"] > 0
        status, _, raw = _post(mock.base_url + "/api/whatever", {})
        assert status == 200 and json.loads(raw) == {}

        kinds = [r["kind"] for r in mock.requests()]
        assert kinds.count("main") == 7 and kinds.count("side") == 1
        assert kinds.count("count_tokens") == 1 and kinds.count("other") == 1
        assert mock.user_texts(dedupe_retries=False)[0] == (
            "<system-reminder>\nctx\n</system-reminder>\n\nhello mock")
        assert mock.typed_texts() == ["hello mock"]
        total = mock.served_usage_total()
        assert total == {"input": 1001 + 1002 + 1003, "output": 51 + 52 + 53,
                         "cache_creation": 900, "cache_read": 2000 * 6, "messages": 3}
        assert all(m["complete"] for m in mock.served())


# ----------------------------------------------------------------------------
# tmux on a private socket
# ----------------------------------------------------------------------------

# Process trees and liveness: the same /proc readings agents.py uses (by pid, never by name).
_descendants = ag.process_tree
_alive = ag.pid_alive



class Tmux:
    """One private tmux server (``-L claude-raw-<hex>``) holding one session."""

    def __init__(self) -> None:
        self.socket = f"claude-raw-{secrets.token_hex(4)}"
        self.server_pid: int | None = None
        self.pids: set[int] = set()

    def run(self, *args: str, input: str | None = None, env: dict | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-L", self.socket, *args], input=input, env=env,
                              capture_output=True, text=True, check=check, timeout=20)

    def start(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        # The server is started by this very command, with the sandbox env as
        # its whole environment: nothing of ours leaks into the session.
        self.run("-f", "/dev/null", "new-session", "-d", "-s", SESSION, "-x", str(COLS),
                 "-y", str(ROWS), "-c", str(cwd), *argv, env=env)
        self.run("set-option", "-t", SESSION, "remain-on-exit", "on", env=env)
        # Without it Claude Code may show a "tmux focus-events off" tip line.
        self.run("set-option", "-s", "focus-events", "on", env=env)
        self.server_pid = int(self.run("display-message", "-p", "#{pid}").stdout.strip())
        self.note_pids()

    def pane_pids(self) -> list[int]:
        out = self.run("list-panes", "-a", "-F", "#{pane_pid}", check=False).stdout
        return [int(x) for x in out.split() if x.isdigit()]

    def note_pids(self) -> None:
        self.pids.update(_descendants(self.pane_pids()))

    def capture(self) -> str:
        return self.run("capture-pane", "-p", "-t", SESSION).stdout

    def keys(self, *keys: str, literal: bool = False) -> None:
        self.run("send-keys", "-t", SESSION, *(["-l"] if literal else []), *keys)

    def paste(self, text: str) -> None:
        """A bracketed paste, as a terminal does it for a multi-line clipboard."""
        self.run("load-buffer", "-b", "rawpaste", "-", input=text)
        self.run("paste-buffer", "-p", "-d", "-b", "rawpaste", "-t", SESSION)

    def kill(self) -> None:
        """Kill the server and, by pid, every process it started."""
        if self.server_pid is None:
            return
        try:
            self.note_pids()
        except Exception:  # noqa: BLE001 - cleanup must go on
            pass
        try:
            subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=20)
        except subprocess.SubprocessError:
            pass
        victims = sorted(self.pids | {self.server_pid})
        for sig in (signal.SIGTERM, signal.SIGKILL):
            left = [p for p in victims if _alive(p)]
            for pid in left:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 3
            while any(_alive(p) for p in left) and time.monotonic() < deadline:
                time.sleep(0.05)
        sock = Path(f"/tmp/tmux-{os.getuid()}/{self.socket}")
        try:
            sock.unlink()
        except OSError:
            pass


# ----------------------------------------------------------------------------
# Reading Claude Code's screen (v2.1.330)
# ----------------------------------------------------------------------------

def is_rule(line: str) -> bool:
    return len(line) >= 20 and set(line.strip()) == {"─"}


def prompt_box(screen: str) -> str | None:
    """The text of the input box: the lines between the last two rules, with
    the leading ``❯ `` removed; None when there is no input box."""
    lines = screen.rstrip("\n").split("\n")
    rules = [i for i, line in enumerate(lines) if is_rule(line)]
    if len(rules) < 2:
        return None
    top, bottom = rules[-2], rules[-1]
    box = lines[top + 1:bottom]
    if not box or not box[0].startswith("❯"):
        return None
    box[0] = box[0][1:]
    return "\n".join(line[2:] if line.startswith("  ") else line.lstrip() for line in box).strip()


def is_busy(screen: str) -> bool:
    return BUSY in "\n".join(screen.rstrip().split("\n")[-3:])


def is_idle(screen: str) -> bool:
    return FOOTER in screen and not is_busy(screen) and prompt_box(screen) is not None


# ----------------------------------------------------------------------------
# The live rig
# ----------------------------------------------------------------------------

class Live:
    def __init__(self, binary: Path, tmp: Path, trust: bool = True):
        self.binary = binary
        self.home = tmp / "home"
        self.cwd = tmp / "repo"
        self.cwd.mkdir(parents=True)
        git = ["git", "-C", str(self.cwd)]
        subprocess.run(git + ["init", "-q", "-b", "main"], check=True)
        subprocess.run(git + ["config", "user.email", "raw@test.invalid"], check=True)
        subprocess.run(git + ["config", "user.name", "Raw Test"], check=True)
        subprocess.run(git + ["config", "commit.gpgsign", "false"], check=True)
        self.api_key = cs.DEFAULT_API_KEY
        cs.prepare_home(self.home, self.cwd, self.api_key, trust=trust)
        self.mock = MockAnthropic().start()
        self.session_id = cs.new_session_id()
        self.env = cs.claude_env(self.home, self.mock.port, self.api_key,
                                 CLAUDE_CODE_MAX_RETRIES=str(MAX_RETRIES))
        self.tmux = Tmux()
        self.save_dir = Path(os.environ["AGENTS_SAVE_SCREENS"]) if os.environ.get(
            "AGENTS_SAVE_SCREENS") else None
        self.saved = 0
        self.timings: dict[str, float] = {}

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.tmux.start(cs.claude_argv(self.binary, session_id=self.session_id), self.cwd, self.env)

    def stop(self) -> None:
        try:
            self.tmux.kill()
        finally:
            self.mock.stop()

    def screen(self) -> str:
        return self.tmux.capture()

    def wait(self, what: str, pred, timeout: float = 20.0, interval: float = 0.1) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if pred(screen):
                return screen
            time.sleep(interval)
        self.tmux.note_pids()
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; screen:\n{screen}\n"
                             f"mock requests: {[(r['kind'], r['answer']) for r in self.mock.requests()]}")

    def wait_idle(self, what: str, extra=lambda s: True, timeout: float = 20.0) -> str:
        """Idle, and the same screen on two looks in a row."""
        last = None

        def pred(screen: str) -> bool:
            nonlocal last
            ok = is_idle(screen) and extra(screen)
            stable = ok and screen == last
            last = screen if ok else None
            return stable

        return self.wait(what, pred, timeout, interval=0.15)

    def save(self, name: str, screen: str) -> None:
        self.saved += 1
        if self.save_dir is not None:
            self.save_dir.mkdir(parents=True, exist_ok=True)
            (self.save_dir / f"{self.saved:02d}-{name}.txt").write_text(screen, encoding="utf-8")

    def answer_dialog(self, selected: str) -> None:
        """Down then Enter, safely. A dialog that has just appeared can be drawn
        again from scratch (the trust dialog is, about 0.5 s in), which resets
        the selection and loses keys: let it settle first, check that Down
        moved the selection, and check again just before Enter -- Enter on
        ``No, exit`` ends Claude Code."""
        time.sleep(1.0)
        for _ in range(3):
            if selected not in self.screen():
                self.tmux.keys("Down")
            try:
                self.wait(f"{selected!r} selected", lambda s: selected in s, timeout=1.5)
            except AssertionError:
                continue
            time.sleep(0.3)
            if selected in self.screen():
                self.tmux.keys("Enter")
                self.wait("the dialog to go away", lambda s: selected not in s, timeout=10)
                return
        raise AssertionError(f"could not select {selected!r}; screen:\n{self.screen()}")

    def type_text(self, text: str) -> str:
        """Type ``text`` (literally) and wait until the input box shows it."""
        self.tmux.keys(text, literal=True)
        return self.wait(f"typed text {text!r} in the input box",
                         lambda s: prompt_box(s) == text, timeout=10)

    def submit(self, count_before: int) -> None:
        """Press Enter as its own command; press again if the CLI did not take it."""
        for _ in range(3):
            self.tmux.keys("Enter")
            if self.mock.wait_for(lambda m: len(m.main_requests()) > count_before, timeout=5):
                return
        raise AssertionError("Enter did not submit; screen:\n" + self.screen())

    def say(self, text: str) -> None:
        before = len(self.mock.main_requests())
        self.type_text(text)
        self.submit(before)

    def commits(self) -> list[str]:
        out = subprocess.run(["git", "-C", str(self.cwd), "log", "--format=%s"],
                             capture_output=True, text=True)
        return out.stdout.split() if out.returncode == 0 else []

    def transcript(self) -> Path:
        return cs.transcript_path(self.home, self.cwd, self.session_id)

    def check_usage(self) -> dict[str, int]:
        """Transcript usage (de-duplicated by message.id, largest kept) equals
        what the mock served to main turns; polls while the CLI flushes."""
        want = self.mock.served_usage_total("main")
        got: dict[str, int] = {}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.transcript().exists():
                got = cs.usage_total(cs.transcript_usage(self.transcript()))
                if got == want:
                    break
            time.sleep(0.2)
        assert self.transcript().exists(), f"no transcript at {self.transcript()}"
        per_msg_t = cs.transcript_usage(self.transcript())
        per_msg_m = self.mock.served_usage("main")
        assert per_msg_t == per_msg_m, (per_msg_t, per_msg_m)
        assert got == want
        return got


@pytest.fixture(scope="module")
def claude_binary() -> Path:
    if sys.platform != "linux":
        pytest.skip("LIVE CLAUDE CODE TEST SKIPPED: Linux only")
    if subprocess.run(["which", "tmux"], capture_output=True).returncode != 0:
        msg = "LIVE CLAUDE CODE TEST SKIPPED: tmux is not installed"
        warnings.warn(msg)
        pytest.skip(msg)
    try:
        return install_claude.ensure_claude(quiet=True)
    except install_claude.InstallError as exc:
        msg = f"LIVE CLAUDE CODE TEST SKIPPED: cannot install the pinned Claude Code CLI: {exc}"
        warnings.warn(msg)
        pytest.skip(msg)


@pytest.fixture(scope="module")
def live(claude_binary: Path, tmp_path_factory: pytest.TempPathFactory):
    rig = Live(claude_binary, tmp_path_factory.mktemp("claude-raw"))
    try:
        yield rig
    finally:
        rig.stop()
        if rig.timings:
            print(f"\nclaude-raw timings: {rig.timings}", file=sys.stderr)


# ----------------------------------------------------------------------------
# The scenario: one CLI session, steps in order
# ----------------------------------------------------------------------------

def test_startup_dialog_then_idle(live: Live):
    live.start()
    screen = live.wait("the bypass-permissions dialog",
                       lambda s: "Bypass Permissions mode" in s and "Yes, I accept" in s)
    live.timings["dialog"] = round(time.monotonic() - live.t0, 2)
    assert "❯ No, exit" in screen
    live.save("bypass-dialog", screen)
    live.answer_dialog("❯ Yes, I accept")
    screen = live.wait_idle("the fresh idle prompt", lambda s: "Claude Code v2.1.330" in s)
    live.timings["idle"] = round(time.monotonic() - live.t0, 2)
    assert prompt_box(screen) == ""
    live.save("idle-fresh", screen)
    assert live.mock.main_requests() == []  # nothing sent to the model before a prompt


def test_text_reaches_the_model_verbatim(live: Live):
    text = "verbatim check: \"double\" 'single' $HOME `tick` & | ; <tag> ~ 100% ümlaut ✓ end"
    live.say(text)
    screen = live.wait_idle("the ack on screen", lambda s: "ack: verbatim check" in s)
    live.save("idle-after-turn", screen)
    assert live.mock.typed_texts()[-1] == text
    assert live.mock.user_texts()[-1].endswith("\n\n" + text)
    body = live.mock.main_requests()[-1]["body"]
    assert body["stream"] is True and {t["name"] for t in body["tools"]} >= {"Bash"}
    assert live.mock.main_requests()[-1]["headers"]["x-claude-code-session-id"] == live.session_id


def test_slow_turn_shows_busy(live: Live):
    gate = live.mock.hold("slow answer arrived")
    live.say("please go slow")
    screen = live.wait("the busy footer", is_busy)
    live.save("busy-waiting-for-model", screen)
    assert re.search(r"^[✻✳✽✶✢·*] \S+…", screen, re.M), screen  # the spinner line
    time.sleep(0.5)
    assert is_busy(live.screen())  # still busy while the model says nothing
    gate.set()
    live.wait_idle("the slow answer", lambda s: "slow answer arrived" in s)


def test_bash_tool_use_runs_in_cwd(live: Live):
    before = live.commits()
    live.mock.tool_use("sleep 2 && git commit -q --allow-empty -m x", "Commit an empty change",
                       then="committed it.")
    live.say("make an empty commit")
    screen = live.wait("the tool running", lambda s: is_busy(s) and "$ sleep 2 && git commit" in s)
    live.tmux.note_pids()
    live.save("busy-running-tool", screen)
    screen = live.wait_idle("the reply after the tool", lambda s: "committed it." in s)
    live.save("idle-after-tool", screen)
    assert live.commits() == ["x", *before]
    results = live.mock.tool_results()
    assert results and results[-1]["tool_use_id"].startswith("toolu_mock_")
    assert results[-1].get("is_error") is False


def test_rate_limit_retries_then_gives_up(live: Live):
    before = len(live.mock.main_requests())
    live.mock.error(429, times=MAX_RETRIES + 1, retry_after=None)
    live.say("LIMIT now")
    screen = live.wait("the 429 retry line",
                       lambda s: re.search(r"429 Rate limited · retrying in \d+s · attempt \d+/"
                                           + str(MAX_RETRIES), s) is not None and is_busy(s),
                       timeout=30)
    live.save("api-429-retrying", screen)
    give_up = 10 + 2.5 * sum(min(0.5 * 2 ** i, 32) for i in range(MAX_RETRIES))
    screen = live.wait_idle("the 429 error",
                            lambda s: "API Error: Request rejected (429) · Rate limited" in s,
                            timeout=give_up)
    live.save("api-429-gave-up", screen)
    assert prompt_box(screen) == "Resend your message to try again"  # a placeholder
    assert len(live.mock.main_requests()) - before == MAX_RETRIES + 1
    assert live.mock.pending() == 0


def test_typed_text_waits_for_enter(live: Live):
    screen = live.type_text("typed but not submitted")
    time.sleep(0.5)
    screen = live.screen()
    assert prompt_box(screen) == "typed but not submitted" and not is_busy(screen)
    live.save("typed-not-submitted", screen)
    before = len(live.mock.main_requests())
    live.submit(before)
    live.wait_idle("its ack", lambda s: "ack: typed but not submitted" in s)
    assert live.mock.typed_texts()[-1] == "typed but not submitted"


def test_multiline_paste_is_delivered_verbatim(live: Live):
    text = "line one\n  line two, indented\nline three: $x `y`\nline four"
    live.tmux.paste(text)
    screen = live.wait("the paste placeholder",
                       lambda s: (prompt_box(s) or "").startswith("[Pasted text #1 +3 lines]"))
    assert not is_busy(screen)
    live.save("multiline-pasted-not-submitted", screen)
    time.sleep(0.3)
    before = len(live.mock.main_requests())
    assert before == len(live.mock.main_requests())  # nothing sent by the paste itself
    live.submit(before)
    screen = live.wait_idle("the ack of the paste", lambda s: "<pasted_content" in s)
    live.save("idle-after-paste", screen)
    delivered = live.mock.user_texts()[-1]
    assert text in delivered, delivered
    typed = live.mock.typed_texts()[-1]
    # v2.1.330 wraps it as <pasted_content id="xxxx">\n...\n</pasted_content id="xxxx">
    assert re.fullmatch(r'\s*<pasted_content id="(\w+)">\n' + re.escape(text)
                        + r'\n</pasted_content id="\1">\s*', typed), typed


def test_transcript_usage_equals_served(live: Live):
    got = live.check_usage()
    # Every main reply this scenario served (errors are not messages).
    assert got["messages"] == len(live.mock.served("main")) >= 5
    lines = list(cs.read_jsonl(live.transcript()))
    assistants = [o for o in lines if o.get("type") == "assistant"]
    assert all(o["message"]["id"].startswith("msg_mock_") for o in assistants
               if o["message"].get("model") != "<synthetic>")
    # This version writes both the server's request id and a ref to its api-request line.
    assert any(o.get("requestRef") for o in assistants)
    assert live.tmux.pane_pids()  # the CLI is still running


def test_untrusted_folder_asks_first(claude_binary: Path, tmp_path: Path):
    """Without the trust entry: the trust question, then the bypass warning."""
    rig = Live(claude_binary, tmp_path, trust=False)
    try:
        rig.start()
        screen = rig.wait("the trust dialog", lambda s: "Yes, I trust this folder" in s)
        assert "Quick safety check" in screen and "❯ No, exit" in screen
        rig.answer_dialog("❯ Yes, I trust this folder")
        rig.wait("the bypass-permissions dialog", lambda s: "Yes, I accept" in s)
        rig.answer_dialog("❯ Yes, I accept")
        rig.wait_idle("the idle prompt", lambda s: "Claude Code v2.1.330" in s)
        data = json.loads((rig.home / ".claude.json").read_text())
        assert data["projects"][str(rig.cwd.resolve())]["hasTrustDialogAccepted"] is True
    finally:
        rig.stop()
