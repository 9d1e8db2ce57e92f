"""The opencode preset over real opencode 1.18.33 screens (tests/fixtures/screens/opencode-1.18.33-live/).

Runs without the CLI. The fixture README's table names the state each screen must read as.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from conftest import agents as ag
from screens import Screens

FOLDER = Path(__file__).parent / "fixtures" / "screens" / "opencode-1.18.33-live"
NOW = dt.datetime(2026, 12, 7, 15, 29, tzinfo=dt.timezone.utc).timestamp()  # about when 12 was captured


SCREENS = Screens(FOLDER, "opencode", NOW)
backend, pane, classify, fixture = SCREENS.backend, SCREENS.pane, SCREENS.classify, SCREENS.fixture
ROWS = [row[:3] for row in SCREENS.table()]


def test_the_table_covers_every_fixture():
    assert len(ROWS) >= 17
    assert {row[0] for row in ROWS} == {path.name for path in FOLDER.glob("*.txt")}


@pytest.mark.parametrize("name,state,kind", ROWS, ids=[row[0] for row in ROWS])
def test_real_opencode_screens(name, state, kind):
    screen = classify(fixture(name))
    assert (screen.state, screen.limit_kind) == (state, kind), screen


def test_no_screen_reports_unsent_input():
    """The box's edge and footer below the prompt line are no typed text; typed text is not read at all."""
    for name, _, _ in ROWS:
        assert classify(fixture(name)).input_text == "", name


def test_permission_dialog_is_never_answered():
    assert ag.dialog_answer(backend(), classify(fixture("16-permission-required.txt"))) is None


def test_usage_limit_reset_is_parsed():
    """'It will reset in 2 hours 5 minutes' → now + 2 h 5 min."""
    screen = classify(fixture("12-go-usage-limit-waiting.txt"))
    assert screen.reset_at == NOW + 2 * 3600 + 5 * 60


BOX = ["  ┃", "  ┃", "  ┃", "  ┃  Build auto · Mock Model Mock", "  ╹" + "▀" * 60,
       "   /repo                                           1.1K (1%)  ctrl+p commands"]


@pytest.mark.parametrize("quoted", [
    "     The footer reads ⬝⬝⬝■■■■■  esc interrupt while it works, and",
    "     Rate limit reached for gpt-5 … is what the API says, then",
    "     △ Permission required is the title of the dialog",
    "     ■■ usage limit reached. It will reset in 2 hours is the footer",
])
def test_an_agent_quoting_the_banners_is_idle(quoted):
    """Reply text (indented, no border) never counts as a banner, a busy line or a dialog."""
    lines = ["  ┃", "  ┃  explain the screens", "  ┃", "", quoted, "", "     ▣  Build · Mock Model · 2.1s", "", *BOX]
    assert classify(lines).state == "idle"


def test_error_block_followed_by_a_finished_turn_is_history():
    lines = ["  ┃", "  ┃  Rate limit reached for mock-model", "  ┃", "", "     ▣  Build · Mock Model", "",
             "  ┃", "  ┃  go on", "  ┃", "", "     ack: go on", "", "     ▣  Build · Mock Model · 803ms", "", *BOX]
    assert classify(lines).state == "idle"
    assert classify(lines[:6] + BOX).state == "limited"


class ScriptedSender(ag.Sender):
    """A Sender whose looks are given screens (the last one repeats); its clock is simulated."""

    def __init__(self, tmp_path, screens):
        import sim

        super().__init__(tmux=None, lock_dir=tmp_path, clock=sim.FakeClock())
        self.screens = list(screens)

    def look(self, session, backend):
        lines = self.screens.pop(0) if len(self.screens) > 1 else self.screens[0]
        return pane(), ag.read_screen(backend, pane(), lines, NOW)


def test_a_submitted_message_is_seen_to_land_though_the_box_shows_no_typed_text(tmp_path):
    """opencode's prompt pattern yields no typed text, so only "busy" proved a landing; on a loaded
    machine a message sent while an old error block read limited was pressed four times and failed."""
    typed = fixture("07-typed-not-submitted.txt")
    at = next(i for i, line in enumerate(typed) if line.strip() == "┃  typed after a turn")
    assert classify(typed).state == "idle" and classify(typed).input_text == ""
    # Enter taken: the message is history now, an empty box drawn below it
    taken = typed[:at + 1] + ["", "  ┃", "  ┃", *typed[at + 1:]]
    before = classify(typed)
    landed = ScriptedSender(tmp_path, [taken])._watch_landing("s", backend(), before, "idle", "typed after a turn")
    assert landed == "new output below the submitted line"
    # Enter lost: nothing changes, nothing is believed
    lost = ScriptedSender(tmp_path, [typed])._watch_landing("s", backend(), before, "idle", "typed after a turn")
    assert lost == ""
