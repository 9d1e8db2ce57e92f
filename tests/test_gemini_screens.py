"""The gemini preset over real Gemini CLI 0.61.0 screens (tests/fixtures/screens/gemini-cli-0.61.0-live/).

Runs without the CLI. The fixture README's table names the state each screen must read as.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from conftest import agents as ag
from screens import Screens

FOLDER = Path(__file__).parent / "fixtures" / "screens" / "gemini-cli-0.61.0-live"
NOW = dt.datetime(2026, 12, 7, 15, 26, tzinfo=dt.timezone.utc).timestamp()  # when 14 was captured (machine in UTC)


SCREENS = Screens(FOLDER, "gemini", NOW)
backend, pane, classify, fixture = SCREENS.backend, SCREENS.pane, SCREENS.classify, SCREENS.fixture
ROWS = SCREENS.table()


def test_the_table_covers_every_fixture():
    assert len(ROWS) >= 18
    assert {row[0] for row in ROWS} == {path.name for path in FOLDER.glob("*.txt")}


@pytest.mark.parametrize("name,state,kind,keys", ROWS, ids=[row[0] for row in ROWS])
def test_real_gemini_screens(name, state, kind, keys):
    screen = classify(fixture(name))
    assert (screen.state, screen.limit_kind) == (state, kind), screen
    answer = ag.dialog_answer(backend(), screen) if screen.state == "dialog" else None
    assert answer == ([keys] if keys else None), (name, answer)


def test_usage_limit_reset_is_parsed():
    """'Access resets at 5:25 PM UTC.' is the box's second line; no reset printed at 13."""
    assert classify(fixture("14-usage-limit-resets.txt")).reset_at == dt.datetime(
        2026, 12, 7, 17, 25, tzinfo=dt.timezone.utc).timestamp()
    assert classify(fixture("13-usage-limit-daily.txt")).reset_at is None


def test_unsent_input_and_placeholders():
    assert classify(fixture("07-typed-not-submitted.txt")).input_text == "hello there"
    assert classify(fixture("18-shell-mode-typed.txt")).input_text == "ls"
    assert classify(fixture("06-idle-fresh.txt")).input_text == ""


FOOTER = ["", "                                     ? for shortcuts", "─" * 120, " YOLO Ctrl+Y",
          " *   Type your message or @path/to/file",
          " workspace (/directory)                     sandbox                  /model",
          " /repo                                      no sandbox                 Auto"]


@pytest.mark.parametrize("quoted", [
    "✦ The busy line reads \"⠴ Thinking... (esc to cancel, 3s)\" while it works,",
    "  ⠴ Thinking... (esc to cancel, 3s) is what an indented reply line may say",
    "  │ Usage limit reached for all Pro models. │ is the quota box",
    "  │ Do you trust the files in this folder? │ is the trust box",
    "✦ Usage limit reached for all Pro models.",
])
def test_an_agent_quoting_the_screens_is_idle(quoted):
    """Reply text (after ✦, or indented under it) never counts as a busy line, a limit or a dialog."""
    lines = [" > explain the screens", "✦ Here is what I found:", quoted, *FOOTER]
    assert classify(lines).state == "idle", classify(lines)


def test_an_echoed_prompt_quoting_the_busy_line_is_idle():
    lines = [" > why does it say ⠴ Thinking... (esc to cancel, 3s)", "✦ ack", *FOOTER]
    assert classify(lines).state == "idle"


def test_the_trust_box_is_not_answered_while_the_cli_restarts():
    b = backend()
    assert ag.dialog_answer(b, classify(fixture("01-trust-dialog.txt"))) == ["Enter"]
    assert ag.dialog_answer(b, classify(fixture("02-trust-restarting.txt"))) is None


def test_the_auth_boxes_are_answered_only_with_the_key_from_the_environment():
    b = backend()
    choice = [line.replace("● 2. Use Gemini API Key", "● 1. Sign in with Google ").replace(
        "    1. Sign in with Google", "    2. Use Gemini API Key  ") for line in fixture("04-auth-choice.txt")]
    assert classify(choice).state == "dialog"
    assert ag.dialog_answer(b, classify(choice)) is None  # Google sign-in selected: never Enter
    no_key = [line for line in fixture("05-api-key-dialog.txt") if "Existing API key detected" not in line]
    assert classify(no_key).state == "dialog"
    assert ag.dialog_answer(b, classify(no_key)) is None  # an empty key box is a human's


def test_a_tool_approval_box_is_a_dialog_never_answered():
    screen = classify(fixture("19-tool-approval.txt"))
    assert screen.state == "dialog" and "Allow execution of" in screen.detail, screen
    assert ag.dialog_answer(backend(), screen) is None
