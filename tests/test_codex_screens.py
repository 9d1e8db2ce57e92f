"""The codex preset over real Codex CLI 0.171.0 screens (tests/fixtures/screens/codex-0.171.0-live/).

Runs without the CLI. The fixture README's table names the state each screen must read as.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from conftest import agents as ag
from screens import Screens

FOLDER = Path(__file__).parent / "fixtures" / "screens" / "codex-0.171.0-live"
NOW = dt.datetime(2026, 12, 2, 21, 15, tzinfo=dt.timezone.utc).timestamp()  # when 09 was captured (machine in UTC)


SCREENS = Screens(FOLDER, "codex", NOW)
backend, pane, classify, fixture = SCREENS.backend, SCREENS.pane, SCREENS.classify, SCREENS.fixture
ROWS = [row[:3] for row in SCREENS.table()]


def test_the_table_covers_every_fixture():
    assert len(ROWS) >= 14
    assert {row[0] for row in ROWS} == {path.name for path in FOLDER.glob("*.txt")}


@pytest.mark.parametrize("name,state,kind", ROWS, ids=[row[0] for row in ROWS])
def test_real_codex_screens(name, state, kind):
    screen = classify(fixture(name))
    assert (screen.state, screen.limit_kind) == (state, kind), screen


def test_trust_question_is_answered_enter_and_approval_never():
    b = backend()
    assert ag.dialog_answer(b, classify(fixture("01-trust-dialog.txt"))) == ["Enter"]
    assert ag.dialog_answer(b, classify(fixture("13-approval.txt"))) is None  # a command approval is a human's
    assert ag.dialog_answer(b, classify(fixture("14-warnings-panel.txt"))) is None


def test_usage_limit_reset_is_parsed():
    """'… or try again at Dec 3rd, 2026 12:25 AM.' wraps onto the banner's second line."""
    screen = classify(fixture("09-usage-limit.txt"))
    expected = dt.datetime(2026, 12, 3, 0, 25, tzinfo=ag.system_local_zone()).timestamp()
    assert screen.reset_at == expected


def test_unsent_input_and_placeholder():
    assert classify(fixture("10-typed-not-submitted.txt")).input_text == "typed not sent"
    assert classify(fixture("02-idle-fresh.txt")).input_text == ""  # "Ask Codex to do anything" is a placeholder


FOOTER = ["", "› Ask Codex to do anything", "", "  gpt-5-codex default · /repo · Mock session",
          "  ← for agents · ? for shortcuts"]


@pytest.mark.parametrize("quoted", [
    "• The footer says \"(3s • esc to interrupt)\" while it works, and",
    "• Reconnecting... waiting for network is shown when the server is gone",
    "  The limit banner reads \"You’ve hit your usage limit\" in Codex,",
    "  the trust screen ends with enter continue · esc back",
])
def test_an_agent_quoting_the_banners_is_idle(quoted):
    """Reply text (indented under the bullet) never counts as a banner, a busy line or a dialog."""
    lines = ["› explain the screens", "", "• Here is what I found:", quoted, "", "  Worked for 2s • 21:13", *FOOTER]
    screen = classify(lines)
    assert screen.state == "idle", screen


def test_banner_followed_by_an_echoed_message_is_history():
    lines = ["› limit please", "■ You’ve hit your usage limit. … try again at 3:23 PM.", "", "› continue", "",
             "• ack: continue", "", "  Worked for 1s • 21:13", *FOOTER]
    assert classify(lines).state == "idle"
