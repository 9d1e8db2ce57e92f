"""agent-log.py: what a user sees when rendering transcripts.

The fixtures are in tests/fixtures/transcripts/:

- ``claude-code-2.1.330/projects/-home-dev-repo/``: two sessions of the real
  Claude Code 2.1.330 CLI against tests/live/mock_anthropic.py (a text turn, a
  Bash call with ANSI output, a Read of a PNG, a background sub-agent, a 429 it
  gave up on, /compact; a response written as two lines; a thinking block),
  trimmed (bulky bookkeeping records shortened, repeats dropped) and with the
  temporary paths replaced by /home/dev. The second session's ids were renamed
  (msg_mockb_…) because both mock runs numbered their messages from 1.
- ``codex-0.169.0/sessions/…``: a real ``codex exec`` rollout of Codex CLI
  0.169.0 against a small mock of the Responses API, trimmed the same way.
- ``gemini-cli-0.61.0/tmp/repo/chats/…``: a real Gemini CLI 0.61 chat (a
  kickoff, a shell call written first without and then with its tool call,
  a resume that re-lists the messages and appends a second header).
- synthetic edge cases, one concern each: ``small.jsonl`` (every role once),
  ``dedup-growing.jsonl`` (the simulated agent's lines: same message.id and
  requestId, growing usage), ``dedup-requestref.jsonl`` (2.1.x requestRef
  keys), ``resumed/`` (a resumed session copying old lines), ``sidechain-old/``
  (an older version's sub-agent file), ``noise.jsonl`` (wrappers, commands,
  images, carriage returns), ``malformed.jsonl``, ``codex-repeated.jsonl`` (a
  rollout re-emitting unchanged token totals), ``codex-sub.jsonl`` and
  ``gemini-shapes.jsonl`` (Gemini messages without an id, a second header).

Totals of the real transcripts were cross-checked with ccusage 20.0.24 on the
same files (``ccusage session --json`` and ``ccusage codex session --json``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TOOL = REPO / "agent-log.py"
FIXTURES = REPO / "tests" / "fixtures" / "transcripts"
REAL_CLAUDE = FIXTURES / "claude-code-2.1.330" / "projects" / "-home-dev-repo"
REAL_SESSION = REAL_CLAUDE / "a5e40b92-f994-4fe2-bda2-46b052396dd4.jsonl"
REAL_SUBAGENT = REAL_CLAUDE / "a5e40b92-f994-4fe2-bda2-46b052396dd4" / "subagents" / "agent-ae28203a805312fa4.jsonl"
REAL_SESSION_2 = REAL_CLAUDE / "0c56a509-0a17-4400-ba5d-5b744f456501.jsonl"
REAL_CODEX = next((FIXTURES / "codex-0.169.0").rglob("rollout-*.jsonl"))
REAL_GEMINI = FIXTURES / "gemini-cli-0.61.0" / "tmp" / "repo" / "chats" / "session-2026-12-07T23-03-60ae4081.jsonl"


def load_tool():
    spec = importlib.util.spec_from_file_location("agent_log", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules["agent_log"] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


alog = load_tool()

ROLES = ("USER", "ASSIST", "THINK", "TOOL>", "TOOL<", "SYS", "COMPACT", "USAGE", "TOTAL")
# The fixed 17-character start of every line: time, space, role padded to 7, space.
PREFIX = re.compile(r"^(\d\d:\d\d:\d\d|--:--:--) (USER   |ASSIST |THINK  |TOOL>  |TOOL<  |SYS    |COMPACT|USAGE  |TOTAL  ) ")


def run(*args: str | Path) -> tuple[int, list[str], str]:
    """agent-log.py in this process: (exit code, stdout lines, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = alog.main([str(arg) for arg in args])
    return code, out.getvalue().splitlines(), err.getvalue()


def render(*args: str | Path) -> list[str]:
    code, lines, err = run("--utc", *args)
    assert code == 0, err
    return lines


def totals(lines: list[str]) -> dict[str, str]:
    """TOTAL lines by what they total (a file name, or "all N files")."""
    found = {}
    for line in lines:
        match = re.match(r"^\S+ TOTAL   (.*) \((.*)\)$", line)
        if match:
            found[match.group(2)] = match.group(1)
    return found


def with_role(lines: list[str], role: str) -> list[str]:
    return [line for line in lines if line[9:16].rstrip() == role]


# ----------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------

SMALL = """\
--:--:-- SYS     file {path}
03:04:01 SYS     date 2026-01-02 (UTC)
03:04:01 SYS     session 11111111-2222-3333-4444-555555555555 (claude-code 2.1.330) cwd /home/dev/repo
03:04:01 USER    Fix the bug in parse()
03:04:02 THINK   Run the tests first.
03:04:02 ASSIST  I'll run the tests.
03:04:03 TOOL>   Bash (toolu_1) $ pytest -q
03:04:03 TOOL>     description: Run tests
03:04:03 USAGE   in=100 out=30 cache_creation=10 cache_read=1000
03:04:04 TOOL<   (toolu_1) ERROR FAILED test_parse
03:04:04 TOOL<     line 2
03:04:04 TOOL<     line 3
03:04:04 TOOL<     line 4
03:04:04 TOOL<     line 5
03:04:04 TOOL<     (+3 lines)
03:04:05 USER    Here is a screenshot:
03:04:05 USER    [image: image/png, 2.0 KB]
03:04:06 ASSIST  Fixed.
03:04:06 ASSIST    All tests pass.
03:04:06 USAGE   in=5 out=20 cache_creation=0 cache_read=1200
03:04:07 ASSIST  [sub:a1b2c3] sub-agent result
03:04:07 USAGE   [sub:a1b2c3] in=7 out=3 cache_creation=0 cache_read=0
03:04:08 SYS     API Error: Request rejected (429) · Rate limited
03:04:09 SYS     conversation compacted (auto, 150000 → 3000 tokens)
03:04:09 COMPACT This session is being continued from a previous conversation.
03:04:09 COMPACT{blank}
03:04:09 COMPACT   Summary: parse() was fixed.
03:04:10 SYS     turn took 8.5s
03:04:10 TOTAL   in=112 out=53 cache_creation=10 cache_read=2200 total=2375 responses=3 (small.jsonl)"""


def test_small_fixture_renders_line_by_line():
    """Every role once: reminder and ANSI stripped from the prompt, one response
    in three lines (thinking, text, tool call) with one USAGE line after it,
    tool output cut, an image as a note, a sidechain tagged, the <synthetic>
    API error without usage, a compaction, and the malformed and unknown lines
    skipped."""
    path = FIXTURES / "small.jsonl"
    assert render("--max-lines", "5", path) == SMALL.format(path=path, blank=" ").split("\n")


REAL_OPENING = """\
22:57:57 SYS     session a5e40b92-f994-4fe2-bda2-46b052396dd4 (claude-code 2.1.330) cwd /home/dev/repo
22:57:57 USER    hello there
22:57:58 ASSIST  ack: hello there
22:57:58 USAGE   in=1001 out=51 cache_creation=300 cache_read=2000
22:57:58 SYS     turn took 0.4s
22:57:59 USER    print some lines
22:57:59 TOOL>   Bash (toolu_mock_2) $ printf '\\033[31mred\\033[0m\\n'; seq 1 30
22:57:59 TOOL>     description: Print things
22:57:59 USAGE   in=1002 out=52 cache_creation=300 cache_read=4000
22:57:59 TOOL<   (toolu_mock_2) red
22:57:59 TOOL<     1"""


def test_real_claude_code_transcript():
    """The real 2.1.330 session: its bookkeeping lines (attachments with
    system reminders, api-request records, snapshots, modes) vanish, the
    conversation remains, in order."""
    lines = render(REAL_SESSION)
    assert lines[2:13] == REAL_OPENING.split("\n")
    text = "\n".join(lines)
    for expected in (
        "22:57:59 TOOL>   Read (toolu_mock_4) file_path: /home/dev/repo/dot.png",
        "22:58:00 TOOL<   (toolu_mock_4) [image: image/png, 0.1 KB]",
        "22:58:00 TOOL>   Agent (toolu_mock_6) description: Count files",
        '22:58:01 SYS     task notification: Agent "Count files" finished',
        "22:58:02 SYS     API Error: Request rejected (429) · Rate limited",
        "22:58:03 SYS     conversation compacted (manual, 19382 → 2991 tokens)",
        "22:58:02 COMPACT   Summary: the user said hello, printed lines, looked at an image.",
        "22:58:02 USER    /compact",
        "22:58:03 SYS     Compacted (ctrl+o to see full summary)",
        "22:58:05 USER    after compaction",
    ):
        assert expected in lines, expected
    for noise in ("\x1b", "<system-reminder>", "Primary working directory", "gitStatus", "iVBORw0KGgo",
                  "local-command-caveat", "<command-name>"):
        assert noise not in text, noise


def test_real_thinking_and_two_line_response():
    """2.1.330 writes a response's blocks as separate lines with the same
    message.id: the blocks stay together and one USAGE line follows them."""
    lines = render(REAL_SESSION_2)
    start = lines.index("22:58:37 ASSIST  Let me run it.")
    assert lines[start:start + 4] == [
        "22:58:37 ASSIST  Let me run it.",
        "22:58:37 TOOL>   Bash (toolu_mockb_1) $ echo two-blocks",
        "22:58:37 TOOL>     description: Echo",
        "22:58:37 USAGE   in=1001 out=51 cache_creation=300 cache_read=2000",
    ]
    start = lines.index("22:58:39 THINK   The user wants a greeting.")
    assert lines[start:start + 4] == [
        "22:58:39 THINK   The user wants a greeting.",
        "22:58:39 THINK     Keep it short.",
        "22:58:39 ASSIST  Hello after thinking.",
        "22:58:39 USAGE   in=1003 out=53 cache_creation=300 cache_read=6000",
    ]


REAL_CODEX_TEXT = """\
22:59:51 SYS     session 01a20aa3-1b57-71f2-9323-c52887429134 (codex 0.169.0, exec) cwd /home/dev/repo
22:59:51 SYS     model gpt-mock
22:59:51 USER    say hello and run a command
22:59:51 THINK   **Planning**
22:59:51 THINK{blank}
22:59:51 THINK     I will run a command.
22:59:51 TOOL>   exec_command (call_mock_1) $ printf 'one\\ntwo\\n'
22:59:51 TOOL<   (call_mock_1) Chunk ID: f59bc8
22:59:51 TOOL<     Wall time: 0.0000 seconds
22:59:51 TOOL<     Process exited with code 0
22:59:51 TOOL<     Original token count: 2
22:59:51 TOOL<     Output:
22:59:51 TOOL<     one
22:59:51 TOOL<     two
22:59:51 USAGE   in=511 out=41 cache_creation=0 cache_read=500
22:59:51 ASSIST  The command printed two lines.
22:59:51 USAGE   in=1011 out=42 cache_creation=0 cache_read=1000
22:59:51 SYS     turn took 0.4s
22:59:51 TOTAL   in=1522 out=83 cache_creation=0 cache_read=1500 total=3105 responses=2 ({name})"""


def test_real_codex_rollout():
    """Codex 0.169.0: the developer and environment-context messages are
    injected context (hidden); the event_msg and item_completed copies of the
    conversation are not printed twice."""
    lines = render(REAL_CODEX)
    assert lines[2:] == REAL_CODEX_TEXT.format(name=REAL_CODEX.name, blank="   ").split("\n")


REAL_GEMINI_TEXT = """\
23:03:33 SYS     session 60ae4081-0b31-495c-a17f-675ded3f5622 (gemini-cli, main)
23:03:37 USER    You are main: reply "ready" & don't run $(anything) or `this`; wait for work.
23:03:39 SYS     model gemini-3.1-pro-preview
23:03:39 ASSIST  kickoff answered: ready
23:03:39 USAGE   in=982 out=62 cache_creation=0 cache_read=20
23:03:42 USER    make an empty commit
23:03:42 TOOL>   run_shell_command (run_shell_command__run_shell_command_1796684622081_0) $ git commit --allow-empty -m from-gemini-live
23:03:42 TOOL>     description: mock command
23:03:42 USAGE   in=964 out=64 cache_creation=0 cache_read=40
23:03:42 TOOL<   (run_shell_command__run_shell_command_1796684622081_0) Output: [main 53eb9b1] from-gemini-live
23:03:42 TOOL<     Process Group PGID: 3475
23:03:42 ASSIST  committed it.
23:03:42 USAGE   in=955 out=65 cache_creation=0 cache_read=50
23:03:45 USER    this will be rate limited
23:03:49 ASSIST  answered after the 429s
23:03:49 USAGE   in=937 out=67 cache_creation=0 cache_read=70
23:03:50 USER    and now the quota
23:03:51 ASSIST  answered after keep trying
23:03:51 USAGE   in=919 out=69 cache_creation=0 cache_read=90
23:03:56 SYS     session 60ae4081-0b31-495c-a17f-675ded3f5622 (gemini-cli, main) resumed
23:03:58 USER    You were restarted after restart (at 23:03); your conversation is as you left it. Carry on where you left off.
23:03:58 ASSIST  ack: You were restarted after restart (at 23:03); your conversati
23:03:58 USAGE   in=901 out=71 cache_creation=0 cache_read=110
23:03:58 TOTAL   in=5658 out=398 cache_creation=0 cache_read=380 total=6436 responses=6 ({name})"""


def test_real_gemini_chat():
    """Gemini CLI 0.61 writes a message again when it changes and re-lists the
    messages on resume: each part is printed once (the shell call, written
    without and then with its tool call, once; its result, repeated in the next
    user message, once), one USAGE line per message id, the <session_context>
    it injects hidden, the $set bookkeeping skipped."""
    lines = render(REAL_GEMINI)
    assert lines[2:] == REAL_GEMINI_TEXT.format(name=REAL_GEMINI.name).split("\n")
    assert "23:03:37 USER    You are main: reply \"ready\" & don't run $(anything) or `this`; wait for work." in lines
    assert "23:03:39 ASSIST  kickoff answered: ready" in lines
    assert len([line for line in with_role(lines, "TOOL>") if "run_shell_command (" in line]) == 1
    assert len([line for line in with_role(lines, "TOOL<") if "(run_shell_command__" in line]) == 1
    assert len(with_role(lines, "USAGE")) == 6
    assert not any("session_context" in line or "Workspace Directories" in line for line in lines)


NOISE = """\
03:04:01 USER    /model opus
03:04:01 SYS     Set model to opus
03:04:02 USER    ! ls
03:04:03 TOOL>   Read (toolu_n1) file_path: /repo/a.py
03:04:03 USAGE   in=1 out=1 cache_creation=0 cache_read=0
03:04:04 TOOL<   (toolu_n1) 1\tprint('hi')
03:04:05 TOOL<   (toolu_n2) logo: [image: image/png, 2.0 KB] end
03:04:05 TOOL<     progress 100%
03:04:06 SYS     Request interrupted by user"""


def test_wrapper_noise_commands_and_inline_images():
    lines = render(FIXTURES / "noise.jsonl")
    assert lines[3:-1] == NOISE.split("\n")


CODEX_SYNTHETIC = """\
03:04:01 SYS     session 0199aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee (codex 0.46.0, cli) cwd /home/dev/repo
03:04:01 SYS     model gpt-5-codex
03:04:01 USER    list the files
03:04:02 THINK   **Listing files**
03:04:02 TOOL>   shell (call_1) $ bash -lc 'ls -1'
03:04:02 TOOL>     workdir: /home/dev/repo
03:04:02 USAGE   in=800 out=50 cache_creation=0 cache_read=200
03:04:03 TOOL<   (call_1) a.py
03:04:03 TOOL<     b.py
03:04:04 ASSIST  Two files: a.py and b.py.
03:04:04 USAGE   in=500 out=30 cache_creation=0 cache_read=1000
03:04:05 TOOL>   apply_patch (call_2) *** Begin Patch
03:04:05 TOOL>     *** Add File: c.py
03:04:05 TOOL>     +print(1)
03:04:05 TOOL>     *** End Patch
03:04:05 TOOL<   (call_2) Success. Updated the following files:
03:04:05 TOOL<     A c.py
03:04:06 COMPACT The user asked for the file list; a.py and b.py exist; c.py was added.
03:04:06 SYS     conversation compacted
03:04:07 USAGE   in=300 out=10 cache_creation=0 cache_read=1200
03:04:07 SYS     turn took 6.0s
03:04:08 TOTAL   in=1600 out=90 cache_creation=0 cache_read=2400 total=4090 responses=3 (codex-repeated.jsonl)"""


def test_codex_rollout_with_repeated_token_counts():
    """Seven token_count rows, one with no info and three repeating the totals
    before them: three USAGE lines, each the advance of the totals; in= is the
    uncached part of the input."""
    lines = render(FIXTURES / "codex-repeated.jsonl")
    assert lines[2:] == CODEX_SYNTHETIC.split("\n")


ALL_FIXTURES = sorted(str(p.relative_to(FIXTURES)) for p in FIXTURES.rglob("*.jsonl"))


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_every_line_has_the_prefix(name: str, debug: bool):
    """grep-ability: whatever the input, every output line starts with the time
    and a padded role, sub-agent lines carry their tag, nothing is blank."""
    code, lines, err = run(*(["--debug"] if debug else []), FIXTURES / name)
    assert code == 0, err
    assert lines
    for line in lines:
        assert PREFIX.match(line), repr(line)
        assert "\x1b" not in line and "\r" not in line
        assert line[17:] == line[17:].rstrip()  # nothing trails the text (a blank line is the prefix alone)


def test_grep_finds_whole_blocks():
    """Continuation lines repeat the prefix: grepping a role finds all of a
    multi-line block, grepping '[sub:' finds exactly the sub-agent's lines."""
    lines = render(FIXTURES / "small.jsonl")
    assert [line[17:] for line in with_role(lines, "ASSIST") if "[sub:" not in line] == [
        "I'll run the tests.", "Fixed.", "  All tests pass."]
    lines = render(REAL_CLAUDE)
    sub = [line for line in lines if "[sub:" in line]
    assert sub and all("[sub:ae28203a805312fa4]" in line for line in sub)
    assert any(line.endswith("ASSIST  [sub:ae28203a805312fa4] the helper says one file.") for line in sub)
    assert not any("the helper says one file." in line for line in lines if "[sub:" not in line and "ASSIST" in line)


@pytest.mark.parametrize("max_lines, shown, marker", [
    (None, 20, "(+11 lines)"),  # the default
    ("5", 5, "(+26 lines)"),
    ("0", 31, None),  # 0 keeps everything
])
def test_max_lines_cuts_tool_output(max_lines, shown, marker):
    """The real Bash result has 31 lines (a red 'red', then 1..30)."""
    lines = render(*(["--max-lines", max_lines] if max_lines else []), REAL_SESSION)
    tool_lines = with_role(lines, "TOOL<")
    start = next(n for n, line in enumerate(tool_lines) if "(toolu_mock_2)" in line)
    end = next(n for n, line in enumerate(tool_lines) if n > start and not line[17:].startswith("  "))
    result = tool_lines[start:end]
    body = [line for line in result if "lines)" not in line]
    assert len(body) == shown
    assert body[0].endswith("(toolu_mock_2) red") and body[-1].endswith(f"  {shown - 1}")
    assert (result[-1][17:] == "  " + marker) if marker else all("lines)" not in line for line in result)


def test_times_are_local_unless_utc():
    env = {**os.environ, "TZ": "Asia/Kolkata"}  # UTC+5:30, no daylight saving
    local = subprocess.run([sys.executable, str(TOOL), str(FIXTURES / "small.jsonl")], env=env,
                           capture_output=True, text=True, timeout=30)
    utc = subprocess.run([sys.executable, str(TOOL), "--utc", str(FIXTURES / "small.jsonl")], env=env,
                         capture_output=True, text=True, timeout=30)
    assert "08:34:01 USER    Fix the bug in parse()" in local.stdout.splitlines()
    assert "08:34:01 SYS     date 2026-01-02" in local.stdout.splitlines()
    assert "03:04:01 USER    Fix the bug in parse()" in utc.stdout.splitlines()


def test_debug_shows_what_is_skipped():
    _, plain, _ = run("--utc", FIXTURES / "malformed.jsonl")
    _, debug, _ = run("--utc", "--debug", FIXTURES / "malformed.jsonl")
    skipped = [line[17:] for line in debug if line[17:].startswith("? ")]
    assert skipped == ["? malformed line 1", "? line 2 is not an object", "? line 3 is not an object",
                       "? assistant", "? user block mystery_block", "? assistant block future_block",
                       "? system", "? (no type)", "? malformed line 12"]
    assert [line for line in debug if not line[17:].startswith(("? ", "date "))] == [
        line for line in plain if not line[17:].startswith("date ")]
    _, small, _ = run("--utc", "--debug", FIXTURES / "small.jsonl")
    assert "--:--:-- SYS     ? permission-mode" in small
    assert "03:04:10 SYS     ? brand-new-thing" in small
    assert "--:--:-- SYS     ? malformed line 13" in small


# ----------------------------------------------------------------------------
# Usage: one line per API response, totals after de-duplication
# ----------------------------------------------------------------------------

USAGE_TABLE = [
    # (fixture, what the TOTAL line totals, expected figures)
    ("small.jsonl", "small.jsonl",
     "in=112 out=53 cache_creation=10 cache_read=2200 total=2375 responses=3"),
    ("dedup-growing.jsonl", "dedup-growing.jsonl",  # output 1 then 30 per response: 30 counted
     "in=240 out=60 cache_creation=100 cache_read=400 total=800 responses=2"),
    ("dedup-requestref.jsonl", "dedup-requestref.jsonl",  # three equal lines once; 8 then 9: 9
     "in=30 out=14 cache_creation=100 cache_read=300 total=444 responses=2"),
    ("resumed", "99999999-2222-3333-4444-555555555555.jsonl",  # the copied responses are not counted again
     "in=40 out=4 cache_creation=0 cache_read=0 total=44 responses=1"),
    ("resumed", "all 2 files",
     "in=70 out=7 cache_creation=0 cache_read=0 total=77 responses=3"),
    ("sidechain-old", "agent-1a2b3c.jsonl",
     "in=30 out=6 cache_creation=0 cache_read=0 total=36 responses=1"),
    ("malformed.jsonl", "malformed.jsonl",  # "12" as a string counts; usage "lots" does not
     "in=12 out=0 cache_creation=0 cache_read=0 total=12 responses=1"),
    ("codex-repeated.jsonl", "codex-repeated.jsonl",
     "in=1600 out=90 cache_creation=0 cache_read=2400 total=4090 responses=3"),
    # A message without an id counts by its time, one with neither not at all; a second header (another
    # session id) and a $set listing m1 again change nothing: m1 (62/15/40), the timed one, m2.
    ("gemini-shapes.jsonl", "gemini-shapes.jsonl",
     "in=132 out=22 cache_creation=0 cache_read=40 total=194 responses=3"),
    # Real Claude Code 2.1.330: equal to ccusage 20.0.24 on the same files
    # (in=10057 out=557 cache_creation=3000 cache_read=114000 total=127614 for the
    # main session and its sub-agent); the sub-agent's total is the
    # <subagent_tokens>17366</subagent_tokens> Claude Code itself reports.
    ("claude-code-2.1.330/projects/-home-dev-repo/a5e40b92-f994-4fe2-bda2-46b052396dd4.jsonl",
     "a5e40b92-f994-4fe2-bda2-46b052396dd4.jsonl",
     "in=9049 out=499 cache_creation=2700 cache_read=98000 total=110248 responses=9"),
    ("claude-code-2.1.330/projects/-home-dev-repo/a5e40b92-f994-4fe2-bda2-46b052396dd4",
     "agent-ae28203a805312fa4.jsonl",
     "in=1008 out=58 cache_creation=300 cache_read=16000 total=17366 responses=1"),
    ("claude-code-2.1.330", "all 3 files",
     "in=13063 out=713 cache_creation=3900 cache_read=126000 total=143676 responses=13"),
    # Real Codex 0.169.0: equal to ccusage 20.0.24 (`ccusage codex session`)
    # and to the rollout's own final total_token_usage (3105).
    ("codex-0.169.0", REAL_CODEX.name,
     "in=1522 out=83 cache_creation=0 cache_read=1500 total=3105 responses=2"),
    # Real Gemini CLI 0.61: input 6038, output 338, cached 380, thoughts 60, tool 0 over six
    # message ids (one written twice, all re-listed on resume): in = input - cached + tool,
    # out = output + thoughts, cache_read = cached.
    ("gemini-cli-0.61.0", REAL_GEMINI.name,
     "in=5658 out=398 cache_creation=0 cache_read=380 total=6436 responses=6"),
]


@pytest.mark.parametrize("fixture, label, expected", USAGE_TABLE, ids=[f"{f}:{l}" for f, l, _ in USAGE_TABLE])
def test_usage_totals_after_deduplication(fixture: str, label: str, expected: str):
    assert totals(render(FIXTURES / fixture))[label] == expected


def test_usage_totals_equal_the_sum_of_usage_lines():
    lines = render(FIXTURES)
    summed = dict.fromkeys(("in", "out", "cache_creation", "cache_read"), 0)
    for line in with_role(lines, "USAGE"):
        for key, value in re.findall(r"(\w+)=(\d+)", line):
            summed[key] += int(value)
    grand = totals(lines)[f"all {len(ALL_FIXTURES)} files"]
    assert grand.startswith(" ".join(f"{k}={v}" for k, v in summed.items()) + " ")


def test_one_usage_line_per_api_response():
    """In the real transcript: one USAGE line per distinct message id, none for
    the <synthetic> error line."""
    ids = set()
    for raw in REAL_SESSION.read_text(encoding="utf-8").splitlines():
        obj = json.loads(raw)
        message = obj.get("message") or {}
        if obj.get("type") == "assistant" and message.get("model") != "<synthetic>":
            ids.add(message["id"])
    assert len(ids) == 9
    assert len(with_role(render(REAL_SESSION), "USAGE")) == len(ids)
    assert len(with_role(render(REAL_SESSION_2), "USAGE")) == 3  # 5 assistant lines, 3 responses


def test_usage_key_prefers_request_id_then_request_ref():
    reader = alog.ClaudeReader(Path("x.jsonl"))
    line = {"type": "assistant", "message": {"id": "m", "content": [], "usage": {"input_tokens": 1}}}
    keys = [event.usage_key for event in reader.read({**line, "requestId": "r", "requestRef": "f"})
            + reader.read({**line, "requestRef": "f"}) + reader.read(line) if event.usage]
    assert keys == [("claude", "m", "r"), ("claude", "m", "f"), ("claude", "m", "")]


def test_a_response_read_in_two_goes_is_counted_once():
    """Following can print a response's usage before its last line arrives
    (older versions write blocks seconds apart): the growth is printed and
    counted as more for the same response, a later copy not at all."""
    ledger, file_totals, key = alog.Ledger(), alog.Totals(), ("claude", "msg", "req")

    def offer(output: int) -> list[str]:
        event = alog.Event("USAGE", usage=alog.Usage(10, output, 5, 100), usage_key=key, response=key)
        return [e.text for e in ledger.offer(event, file_totals, 0)]

    assert offer(1) == [] and offer(3) == []  # held back while the response goes on
    assert [e.text for e in ledger.flush(0, file_totals)] == ["in=10 out=3 cache_creation=5 cache_read=100"]
    assert offer(30) == ["in=0 out=27 cache_creation=0 cache_read=0 (more for a response counted above)"]
    assert offer(30) == [] and ledger.flush(0, file_totals) == []
    assert file_totals.text() == "in=10 out=30 cache_creation=5 cache_read=100 total=145 responses=1"


def test_a_file_that_shrinks_is_read_again(tmp_path: Path):
    path = tmp_path / "s.jsonl"
    path.write_text(claude_line("s", "first", "m1", tmp_path) + claude_line("s", "second", "m2", tmp_path))
    transcript = alog.Transcript(path, 0)
    assert [e.text for e in transcript.read_new(final=False)[0] if e.role == "ASSIST"] == ["first", "second"]
    path.write_text(claude_line("s", "rewritten", "m3", tmp_path))
    events, error = transcript.read_new(final=False)
    assert error is None
    assert [e.text for e in events if e.role in ("SYS", "ASSIST")][:1] == [f"{path} shrank: reading it again from the start"]
    assert [e.text for e in events if e.role == "ASSIST"] == ["rewritten"]
    path.unlink()
    assert transcript.read_new(final=False) == ([], f"{path}: No such file or directory")


def test_a_gemini_chat_rewritten_into_a_new_file_is_read_again_printing_only_what_is_new(tmp_path: Path):
    """Gemini CLI rewrites a chat whole (a temporary file renamed over it), longer than before: the
    new inode is noticed even though the file grew, and the messages already shown are not again."""
    path = tmp_path / "session-2026-01-01T00-00-s1.jsonl"
    header = {"sessionId": "s1", "projectHash": "h", "startTime": "2026-01-01T00:00:00Z", "kind": "main"}

    def answer(mid: str, text: str) -> dict:
        return {"id": mid, "timestamp": "2026-01-01T00:00:01Z", "type": "gemini", "content": text,
                "tokens": {"input": 10, "output": 1}}

    path.write_text("".join(json.dumps(row) + "\n" for row in (header, answer("g1", "first"))))
    transcript = alog.Transcript(path, 0)
    assert [e.text for e in transcript.read_new(final=False)[0] if e.role == "ASSIST"] == ["first"]
    rewritten = tmp_path / "rewrite.tmp"
    rewritten.write_text("".join(json.dumps(row) + "\n" for row in (header, answer("g1", "first"),
                                                                      answer("g2", "second"))))
    rewritten.replace(path)
    events, error = transcript.read_new(final=False)
    assert error is None
    assert [e.text for e in events if e.role == "SYS"][:1] == [f"{path} was replaced: reading it again from the start"]
    assert [e.text for e in events if e.role == "ASSIST"] == ["second"]


# ----------------------------------------------------------------------------
# --agent NAME --config FILE
# ----------------------------------------------------------------------------

def gemini_chat(session: str, text: str, mid: str, kind: str = "main", second: int = 1) -> str:
    """A Gemini CLI chat: its header, a prompt, and the answer written twice (as the CLI rewrites a message)."""
    stamp = f"2026-01-02T03:04:{second:02d}.000Z"
    answer = {"id": mid, "timestamp": stamp, "type": "gemini", "content": text, "model": "sim-1",
              "tokens": {"input": 10, "output": 2, "cached": 0, "thoughts": 0, "tool": 0, "total": 12}}
    return "\n".join(json.dumps(obj) for obj in (
        {"sessionId": session, "projectHash": "ab12", "startTime": stamp, "lastUpdated": stamp, "kind": kind},
        {"id": "u" + mid, "timestamp": stamp, "type": "user", "content": [{"text": f"to {text}"}]},
        answer, {"$set": {"lastUpdated": stamp}}, answer,
    )) + "\n"


def claude_line(session: str, text: str, mid: str, cwd: Path, second: int = 1) -> str:
    stamp = f"2026-01-02T03:04:{second:02d}.000Z"
    return "\n".join(json.dumps(obj) for obj in (
        {"type": "user", "sessionId": session, "cwd": str(cwd), "version": "sim-1", "timestamp": stamp,
         "message": {"role": "user", "content": f"to {text}"}},
        {"type": "assistant", "sessionId": session, "cwd": str(cwd), "timestamp": stamp, "requestId": "r" + mid,
         "message": {"id": mid, "role": "assistant", "model": "sim-1", "content": [{"type": "text", "text": text}],
                     "usage": {"input_tokens": 10, "output_tokens": 2}}},
    )) + "\n"


@pytest.fixture
def team(tmp_path: Path) -> Path:
    """A config with agents in a subfolder cwd, their transcripts where the
    backend's env puts them, and the session ids agents.py would have recorded."""
    root = tmp_path / "team"
    work = root / "work"
    work.mkdir(parents=True)
    (root / "agents.toml").write_text("""\
state_dir = "state"

[backend.sim]
preset = "claude"
command = ["python3", "simagent.py"]
env = { CLAUDE_CONFIG_DIR = ".claude-data" }

[backend.cx]
preset = "codex"
env = { CODEX_HOME = "~/codex-home" }

[backend.gm]
preset = "gemini"
env = { GEMINI_CLI_HOME = "~/gemini-home" }

[defaults]
backend = "sim"
cwd = "work"

[[agent]]
name = "builder"

[[agent]]
name = "reviewer"

[[agent]]
name = "plain"
backend = "claude"
env = { HOME = "HOMEDIR" }

[[agent]]
name = "coder"
backend = "cx"
env = { HOME = "HOMEDIR" }

[[agent]]
name = "fresh"

[[agent]]
name = "bash"
backend = "shell"

[[agent]]
name = "gem"
backend = "gm"
env = { HOME = "HOMEDIR" }

[[agent]]
name = "gemfresh"
backend = "gemini"
env = { HOME = "HOMEDIR" }
""".replace("HOMEDIR", str(tmp_path / "home")))
    state = {"units": {"builder": {"session_ids": ["sid-a", "sid-c"], "lifecycle": "running"},
                       "reviewer": {"session_ids": ["sid-b"]},
                       "plain": {"session_ids": ["sid-p"]},
                       "gem": {"session_ids": [GEM_SESSION]}}}
    (root / "state").mkdir()
    (root / "state" / "state.json").write_text(json.dumps(state))
    project = work / ".claude-data" / "projects" / re.sub(r"[^A-Za-z0-9]", "-", str(work.resolve()))
    (project / "sid-a" / "subagents").mkdir(parents=True)
    (project / "sid-a.jsonl").write_text(claude_line("sid-a", "builder one", "m1", work, 1))
    (project / "sid-a" / "subagents" / "agent-x1.jsonl").write_text(
        claude_line("sid-a", "builder helper", "m2", work, 2).replace('"sessionId"', '"isSidechain": true, "agentId": "x1", "sessionId"'))
    (project / "sid-b.jsonl").write_text(claude_line("sid-b", "reviewer one", "m3", work, 3))
    (project / "sid-c.jsonl").write_text(claude_line("sid-c", "builder two", "m4", work, 4))
    (project / "sid-other.jsonl").write_text(claude_line("sid-other", "someone else", "m5", work, 5))
    home_project = tmp_path / "home" / ".claude" / "projects" / re.sub(r"[^A-Za-z0-9]", "-", str(work.resolve()))
    home_project.mkdir(parents=True)
    (home_project / "sid-p.jsonl").write_text(claude_line("sid-p", "plain one", "m6", work, 6))
    day = tmp_path / "home" / "codex-home" / "sessions" / "2026" / "01" / "02"
    day.mkdir(parents=True)
    for name, cwd, text in (("rollout-2026-01-02T03-04-05-aaaa.jsonl", work.resolve(), "codex here"),
                            ("rollout-2026-01-02T03-05-05-bbbb.jsonl", tmp_path / "elsewhere", "codex elsewhere")):
        (day / name).write_text("\n".join(json.dumps(obj) for obj in (
            {"timestamp": "2026-01-02T03:04:05Z", "type": "session_meta", "payload": {"id": name, "cwd": str(cwd)}},
            {"timestamp": "2026-01-02T03:04:06Z", "type": "response_item",
             "payload": {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}},
        )) + "\n")
    # Gemini: $GEMINI_CLI_HOME/.gemini; a chat whose name has the same 8 characters but whose
    # header names another session is not the agent's.
    chats = tmp_path / "home" / "gemini-home" / ".gemini" / "tmp" / "work" / "chats"
    (chats / GEM_SESSION).mkdir(parents=True)
    (chats / f"session-2026-01-02T03-04-{GEM_SESSION[:8]}.jsonl").write_text(gemini_chat(GEM_SESSION, "gemini one", "g1"))
    (chats / f"session-2026-01-02T03-09-{GEM_SESSION[:8]}.jsonl").write_text(
        gemini_chat(GEM_SESSION[:8] + "-9999-9999-9999-999999999999", "not the agent's", "g2", second=9))
    (chats / GEM_SESSION / "5b6c7d8e-aaaa-bbbb-cccc-dddddddddddd.jsonl").write_text(
        gemini_chat("5b6c7d8e-aaaa-bbbb-cccc-dddddddddddd", "gemini helper", "g3", kind="subagent", second=2))
    return root / "agents.toml"


GEM_SESSION = "6a7b8c9d-1111-2222-3333-444444444444"


AGENT_TABLE = [
    # (agent, files read in order, answers shown)
    ("builder", ["sid-a.jsonl", "agent-x1.jsonl", "sid-c.jsonl"], ["builder one", "[sub:x1] builder helper", "builder two"]),
    ("reviewer", ["sid-b.jsonl"], ["reviewer one"]),
    ("plain", ["sid-p.jsonl"], ["plain one"]),  # no CLAUDE_CONFIG_DIR: $HOME/.claude
    ("coder", ["rollout-2026-01-02T03-04-05-aaaa.jsonl"], ["codex here"]),  # Codex: rollouts of its cwd
    # Gemini: the chat whose header names the recorded id, then its sub-agents' chats
    ("gem", [f"session-2026-01-02T03-04-{GEM_SESSION[:8]}.jsonl", "5b6c7d8e-aaaa-bbbb-cccc-dddddddddddd.jsonl"],
     ["gemini one", "[sub:5b6c7d8e] gemini helper"]),
]


@pytest.mark.parametrize("agent, files, answers", AGENT_TABLE, ids=[row[0] for row in AGENT_TABLE])
def test_agent_config_finds_the_agents_transcripts(team: Path, agent: str, files: list[str], answers: list[str]):
    code, lines, err = run("--utc", "--agent", agent, "--config", team)
    assert code == 0, err
    assert [Path(line.split(" file ", 1)[1]).name for line in lines if " SYS     file " in line] == files
    assert [line[17:] for line in with_role(lines, "ASSIST")] == answers


def test_agent_config_from_the_environment(team: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AGENTS_CONFIG", str(team))
    code, lines, _ = run("--utc", "--agent", "reviewer")
    assert code == 0 and "03:04:03 ASSIST  reviewer one" in lines


@pytest.mark.parametrize("args, code, message", [
    (["--agent", "nobody"], 2,
     "no [[agent]] named 'nobody' (agents: builder, reviewer, plain, coder, fresh, bash, gem, gemfresh)"),
    (["--agent", "fresh"], 1, "no session ids recorded for agent 'fresh'"),
    (["--agent", "gemfresh"], 1, "no session ids recorded for agent 'gemfresh'"),
    (["--agent", "bash"], 2, "keeps no transcripts"),
])
def test_agent_config_errors(team: Path, args: list[str], code: int, message: str):
    got, lines, err = run(*args, "--config", team)
    assert (got, lines) == (code, []) and message in err


def test_agent_config_unreadable(tmp_path: Path):
    bad = tmp_path / "agents.toml"
    bad.write_text("[[agent]\nname=")
    code, _, err = run("--agent", "x", "--config", bad)
    assert code == 2 and "not valid TOML" in err
    code, _, err = run("--agent", "x", "--config", tmp_path / "missing.toml")
    assert code == 2 and "cannot read the config" in err


# ----------------------------------------------------------------------------
# Following (-f), as a user runs it: a subprocess, files growing under it
# ----------------------------------------------------------------------------

class Follower:
    """agent-log.py -f in a subprocess, its output read line by line in a thread."""

    def __init__(self, *args: str | Path):
        self.proc = subprocess.Popen([sys.executable, str(TOOL), "--utc", "-f", "--interval", "0.1",
                                      *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 10.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.seen.append(self.lines.get(timeout=0.1))
            except queue.Empty:
                continue
            if text in self.seen[-1]:
                return self.seen
        raise AssertionError(f"no {text!r} within {timeout}s; got:\n" + "\n".join(self.seen))

    def stop(self) -> tuple[int, list[str]]:
        """SIGTERM, as a supervisor or `timeout` would send; the totals come last."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=10)
        time.sleep(0.05)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return code, self.seen


def test_follow_prints_appended_lines_and_new_files(tmp_path: Path):
    lines = (FIXTURES / "dedup-growing.jsonl").read_text().splitlines(keepends=True)
    folder = tmp_path / "projects"
    folder.mkdir()
    session = folder / "s.jsonl"
    session.write_text("".join(lines[:3]))
    follower = Follower(folder)
    try:
        follower.wait_for("ASSIST  ack: hello")
        # A line arrives in two writes: nothing is printed from the torn half.
        with open(session, "a") as handle:
            handle.write(lines[3][:20])
            handle.flush()
            time.sleep(0.5)
            handle.write(lines[3][20:] + "".join(lines[4:]))
        follower.wait_for("ASSIST  ack: again")
        (folder / "later.jsonl").write_text(claude_line("s2", "from a new file", "m9", tmp_path, 9))
        follower.wait_for("ASSIST  from a new file")
    finally:
        code, seen = follower.stop()
    assert code == 0
    assert all(PREFIX.match(line) for line in seen), seen
    assert [line[17:] for line in with_role(seen, "USER")] == ["hello", "again", "to from a new file"]
    assert len(with_role(seen, "USAGE")) == 3  # each response once, however it was read
    assert totals(seen) == {
        "s.jsonl": "in=240 out=60 cache_creation=100 cache_read=400 total=800 responses=2",
        "later.jsonl": "in=10 out=2 cache_creation=0 cache_read=0 total=12 responses=1",
        "all 2 files": "in=250 out=62 cache_creation=100 cache_read=400 total=812 responses=3",
    }


def test_follow_an_agent_picks_up_a_new_session(team: Path):
    """A restarted agent gets a new session id in state.json: -f finds its file."""
    follower = Follower("--agent", "reviewer", "--config", team)
    try:
        follower.wait_for("ASSIST  reviewer one")
        state_path = team.parent / "state" / "state.json"
        state = json.loads(state_path.read_text())
        state["units"]["reviewer"]["session_ids"].append("sid-d")
        work = team.parent / "work"
        project = work / ".claude-data" / "projects" / re.sub(r"[^A-Za-z0-9]", "-", str(work.resolve()))
        (project / "sid-d.jsonl").write_text(claude_line("sid-d", "reviewer again", "m7", work, 7))
        state_path.write_text(json.dumps(state))
        follower.wait_for("ASSIST  reviewer again")
    finally:
        code, _ = follower.stop()
    assert code == 0


# ----------------------------------------------------------------------------
# The command line
# ----------------------------------------------------------------------------

def test_help_documents_every_option_with_examples():
    result = subprocess.run([sys.executable, str(TOOL), "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    for needle in ("--agent NAME", "--config FILE", "-f, --follow", "--interval SECONDS", "--max-lines N",
                   "--utc", "--totals", "--debug", "examples:", "exit codes:", "HH:MM:SS ROLE    [sub:AGENT] text",
                   "requestRef", "<synthetic>", "token_count", "state.json", *ROLES):
        assert needle in result.stdout, needle
    assert os.access(TOOL, os.X_OK) and TOOL.read_text().startswith("#!/usr/bin/env python3\n")


@pytest.mark.parametrize("args, code, message", [
    ([], 2, "name transcript files or folders"),
    (["/nonexistent/session.jsonl"], 1, "no such file or folder"),
    (["--config", "agents.toml", "x.jsonl"], 2, "--config goes with --agent"),
    (["--max-lines", "-1", "x.jsonl"], 2, "--max-lines must be 0 or more"),
])
def test_command_line_errors(args: list[str], code: int, message: str):
    result = subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=30)
    assert result.returncode == code and message in result.stderr and result.stdout == ""


def test_empty_folder_is_a_runtime_failure(tmp_path: Path):
    code, lines, err = run(tmp_path)
    assert (code, lines) == (1, []) and "no transcripts found" in err


def test_totals_only():
    assert render("--totals", REAL_CLAUDE) == [
        "22:58:39 TOTAL   in=3006 out=156 cache_creation=900 cache_read=12000 total=16062 responses=3 "
        "(0c56a509-0a17-4400-ba5d-5b744f456501.jsonl)",
        "22:58:05 TOTAL   in=9049 out=499 cache_creation=2700 cache_read=98000 total=110248 responses=9 "
        "(a5e40b92-f994-4fe2-bda2-46b052396dd4.jsonl)",
        "22:58:00 TOTAL   in=1008 out=58 cache_creation=300 cache_read=16000 total=17366 responses=1 "
        "(agent-ae28203a805312fa4.jsonl)",
        "22:58:39 TOTAL   in=13063 out=713 cache_creation=3900 cache_read=126000 total=143676 responses=13 (all 3 files)",
    ]


def test_a_closed_pipe_ends_quietly(tmp_path: Path):
    """`agent-log.py … | head -1`: the reader goes away, the tool stops without a traceback."""
    big = tmp_path / "big.jsonl"
    big.write_text("".join(claude_line("s", f"answer {n}", f"m{n}", tmp_path) for n in range(3000)))
    producer = subprocess.Popen([sys.executable, str(TOOL), str(big)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    first = producer.stdout.readline()
    producer.stdout.close()  # output is far beyond a pipe's buffer: the next writes fail
    _, err = producer.communicate(timeout=30)
    assert first.startswith("--:--:-- SYS     file ")
    assert producer.returncode == 0 and "Traceback" not in err and "Error" not in err


def test_totals_skip_lines_without_usage_yet_print_what_the_full_read_prints():
    """--totals decodes only the Claude lines that carry usage; its TOTAL lines (figures and
    times) are those of the full read (--debug reads every line)."""
    quick = render("--totals", FIXTURES.parent)
    full = [line for line in render("--totals", "--debug", FIXTURES.parent) if " TOTAL " in line]
    assert quick == full
    assert len(quick) > 10 and quick[-1].split()[1] == "TOTAL" and "responses=" in quick[-1]
