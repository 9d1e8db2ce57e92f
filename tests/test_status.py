"""`status` tells the watchdog's truth: limit and backoff times as decided, a state column that is
never cut, restart counts that agree with the events, and only state words the README lists."""

from __future__ import annotations

import contextlib
import io
import re

import pytest

import sim as S
from conftest import agents as ag
from sim import HOUR, START, Behaviour, agent_spec, config_text, work

pytestmark = pytest.mark.usefixtures("pinned_utc")

NOW = START + 7 * HOUR  # 07:00 UTC


def config(tmp_path) -> ag.Config:
    path = tmp_path / "agents.toml"
    path.write_text(config_text([agent_spec("a")], loop=False))
    return ag.Loader(path).load()


def look(cfg: ag.Config, screen: ag.Screen, dead: bool = False) -> ag.Seen:
    pane = ag.Pane(session="sim-a", pane_id="%1", pid=10, dead=dead, dead_status=1 if dead else None,
                   activity=NOW - 30, created=NOW - 600, in_mode=False, owner=cfg.owner, width=200, height=50)
    return ag.Seen(cfg.agent("a"), pane, screen)


def test_limit_time_is_the_watchdogs_decision_not_the_banner_read_again(tmp_path):
    """A "resets in 1m" banner re-read on each call would drift (07:06, 07:07, …); the watchdog
    decided once to resume at reset + margin, and that is what status says every time."""
    cfg = config(tmp_path)
    record = ag.UnitRecord(lifecycle="running", limit={"kind": "usage", "until": NOW + 8 * 60, "since": NOW})
    words = []
    for later in (0, 60, 120, 180):
        banner = ag.Screen("limited", "You've hit your limit · resets in 1m", limit_kind="usage",
                           reset_at=NOW + later + 60)
        words.append(ag.status_of(cfg, look(cfg, banner), record, NOW + later)[0])
    assert words == ["limited until 07:08", "limited until 07:08", "limited until 07:08", "limited until 07:08"]
    close = ag.status_of(cfg, look(cfg, banner), record, NOW + 8 * 60 - 45)[0]
    assert close == "limited, resumes in 45s"


def test_backoff_under_two_minutes_is_shown_in_seconds(tmp_path):
    cfg = config(tmp_path)
    dead = ag.Screen("dead", "exited with status 1")
    soon = ag.UnitRecord(lifecycle="backoff", backoff_until=NOW + 25, reason="exited with status 1; restart in 25s")
    assert ag.status_of(cfg, look(cfg, dead, dead=True), soon, NOW)[0] == "backoff 25s"
    later = ag.UnitRecord(lifecycle="backoff", backoff_until=NOW + 11 * 60)
    assert ag.status_of(cfg, look(cfg, dead, dead=True), later, NOW)[0] == "backoff until 07:11"


def test_the_state_column_is_never_cut(tmp_path):
    rows = [{"name": "builder", "kind": "persistent", "backend": "claude", "state": "limited (CLI retrying by itself)",
             "uptime_s": 60, "restarts": 0, "last_activity": None},
            {"name": "a-very-long-agent-name", "kind": "loop", "backend": "claude-opus-4", "state": "idle",
             "uptime_s": 5, "restarts": 12, "last_activity": None}]
    header, first, second = ag.status_table(rows, NOW)
    assert "limited (CLI retrying by itself)" in first and "a-very-long-agent-name" in second
    assert "claude-opus-4" in second
    for line in (first, second):  # the columns still line up under their headings
        assert line[header.index("UPTIME"):].split()[0] in ("1m", "5s")
        assert line[header.index("RESTARTS"):].split()[0] in ("0", "12")


def test_restart_numbers_in_events_agree_with_the_restart_count(tmp_path):
    sim = S.Sim(tmp_path, config_text([agent_spec("a", watch="heal+stall")], watchdog={"signal_interval": 10},
                                      loop=False), behaviours={"a": Behaviour(work=work(600))})
    sim.up()
    for moment in (300, 1200, 2400):
        sim.at(START + moment, lambda: sim.crash("a", status=1))
    sim.at(START + 3000, lambda: sim.operator_restart("a"))
    sim.run(2 * HOUR)  # idle from the last start: a stall reboot too
    reasons = [e["reason"] for e in sim.events("start", "a")[1:]]
    numbers = [int(re.search(r"restart #(\d+)", reason).group(1)) for reason in reasons]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 5, reasons
    assert any(r.startswith("heal: restart #1 ") for r in reasons) and any(r.startswith("stalled") for r in reasons)
    agents, _ = ag.status_rows(sim.cfg, sim.watchdog.team, sim.now)
    line = ag.status_table(agents, sim.now)[1]
    assert agents[0]["restarts"] == numbers[-1] and f" {numbers[-1]}  " in line


def test_every_state_word_is_in_the_readme_and_in_status_help():
    readme = (ag.Path(ag.__file__).parent / "README.md").read_text()
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        ag.main(["status", "--help"])
    for word in ag.STATE_WORDS:
        assert f"`{word}`" in readme, word
        assert word in out.getvalue(), word


def word_pattern(word: str) -> re.Pattern:
    """A STATE_WORDS entry as a pattern: its sample time and duration stand for any."""
    pattern = re.escape(word)
    pattern = re.sub(r"\d\d:\d\d", r"\\d\\d:\\d\\d", pattern)
    pattern = re.sub(r"(?<![\d:])\d+[smhd](?![\w:])", r"\\d+[smhd](?:\\d+[smhd])?", pattern)
    pattern = pattern.replace("…", ".*")
    return re.compile(pattern + r"\Z")


def test_status_only_ever_shows_listed_words_over_a_day_of_faults(tmp_path):
    """Every state `status` printed, tick by tick through a day of crashes, hangs, limits and
    dialogs, is one the README lists (times and durations aside)."""
    sim, _ = S.long_run(tmp_path, seed=5, days=1)
    patterns = [word_pattern(word) for word in ag.STATE_WORDS]
    seen: set[str] = set()

    def collect(sim: S.Sim) -> None:
        if len(sim.tick_times) % 10 == 0:
            agents, _ = ag.status_rows(sim.cfg, sim.watchdog.team, sim.now)
            seen.update(row["state"] for row in agents)

    sim.run(24 * HOUR, each_tick=collect)
    unlisted = sorted(word for word in seen if not any(p.match(word) for p in patterns))
    assert not unlisted, unlisted
    shapes = {word.split(" (")[0].split()[0] for word in seen}
    assert {"busy", "idle", "backoff", "limited", "dialog"} <= shapes, seen


def test_every_event_kind_written_is_listed_for_events_kind():
    source = (ag.Path(ag.__file__).parent / "agents.py").read_text()
    written = set(re.findall(r'emit\("([a-z-]+)"', source)) | set(re.findall(r'report_failure\("([a-z-]+)"', source))
    written |= set(re.findall(r'purpose="([a-z-]+)"', source)) - {"heal", "phase"}  # these mark a start, not an event
    written |= set(ag.SEND_PRIORITY) | {"send"}
    assert len(written) > 30
    assert sorted(written - set(ag.EVENT_KINDS)) == []
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert ag.main(["--config", str(ag.Path(ag.__file__).parent / "agents.example.toml"), "events", "--kind"]) == 0
    assert "resume-failed" in out.getvalue() and "needs-you" in out.getvalue()
