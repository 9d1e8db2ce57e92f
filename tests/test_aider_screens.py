"""The aider preset over real aider 0.86.2 screens (tests/fixtures/screens/aider-0.86.2-live/).

Runs without the CLI. The fixture README's table names the state each screen must read as.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import agents as ag
from screens import Screens

FOLDER = Path(__file__).parent / "fixtures" / "screens" / "aider-0.86.2-live"
NOW = 1796656000.0


SCREENS = Screens(FOLDER, "aider", NOW)
backend, pane, classify, fixture = SCREENS.backend, SCREENS.pane, SCREENS.classify, SCREENS.fixture
ROWS = [row[:3] for row in SCREENS.table()]


def test_the_table_covers_every_fixture():
    assert len(ROWS) >= 11
    assert {row[0] for row in ROWS} == {path.name for path in FOLDER.glob("*.txt")}


@pytest.mark.parametrize("name,state,kind", ROWS, ids=[row[0] for row in ROWS])
def test_real_aider_screens(name, state, kind):
    screen = classify(fixture(name))
    assert (screen.state, screen.limit_kind) == (state, kind), screen


def test_input_read_from_the_prompt_line():
    assert classify(fixture("02-idle-first-prompt.txt")).input_text == ""
    assert classify(fixture("10-typed-not-submitted.txt")).input_text == "typed not sent"
    # The echoed line looks typed until the spinner shows: `send` holds a second message then, never types it in.
    assert classify(fixture("03-echoed-before-spinner.txt")).input_text == "hello there"


def test_gitignore_question_is_answered_yes():
    screen = classify(fixture("11-gitignore-question.txt"))
    assert ag.dialog_answer(backend(), screen) == ["y", "Enter"]


def test_gave_up_banner_names_the_error():
    screen = classify(fixture("09-429-gave-up.txt"))
    assert "litellm.RateLimitError" in screen.detail and screen.reset_at is None


def test_between_two_retries_the_screen_reads_busy_not_limited():
    """A CI run read 'limited (API rate limit)' once in aider's own retries: the spinner had been
    wiped and the next not yet drawn. A screen that ends in a banner line is aider still at work."""
    retrying = [line for line in fixture("08-429-retrying-16s.txt") if line.strip()]
    assert "Waiting for" in retrying[-1]
    for cut in (1, 2, 3):  # the spinner gone; then before "Retrying in"; then before the provider line
        assert classify(retrying[:-cut]).state == "busy", retrying[-cut - 1]
    assert classify(fixture("09-429-gave-up.txt")).state == "limited"  # the prompt drawn again: the give-up


def test_a_reply_heading_is_no_spinner():
    base = fixture("05-idle-after-answer.txt")
    cut = max(i for i, line in enumerate(base) if line.startswith("Tokens:"))
    for heading in ("## Plan", "== Results", "#= odd", "██ block art"):
        lines = base[:cut] + [heading, "Some text."] + base[cut:]
        assert classify(lines).state == "idle", heading


def test_an_answered_question_is_no_dialog():
    lines = fixture("02-idle-first-prompt.txt")
    cut = max(i for i, line in enumerate(lines) if line.startswith(">"))
    lines = lines[:cut] + ["Add .aider* to .gitignore (recommended)? (Y)es/(N)o [Yes]: y"] + lines[cut:]
    assert classify(lines).state == "idle"


def test_a_rate_limit_quoted_in_a_reply_is_not_a_banner():
    lines = fixture("05-idle-after-answer.txt")
    cut = max(i for i, line in enumerate(lines) if line.startswith("Tokens:"))
    lines = lines[:cut] + ["The log says: litellm.RateLimitError happened yesterday."] + lines[cut:]
    assert classify(lines).state == "idle"
