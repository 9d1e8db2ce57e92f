"""The loop sleeps until the soonest deadline it holds, not a whole interval: `deadlines` and
`next_tick_at` are pure functions of (config, state, now)."""

from __future__ import annotations

import pytest

from conftest import agents as ag
from sim import HOUR, START, agent_spec, config_text

pytestmark = pytest.mark.usefixtures("pinned_utc")

NOW = START + HOUR


def setup(tmp_path, **watchdog):
    path = tmp_path / "agents.toml"
    path.write_text(config_text([agent_spec("a", wake=600), agent_spec("l", "loop")],
                                watchdog={"signal_interval": 15, **watchdog}))
    cfg = ag.Loader(path).load()
    state = {"units": {"a": ag.UnitRecord(lifecycle="running", started_at=NOW - 60, next_wake=NOW + 500),
                       "l": ag.UnitRecord(lifecycle="running", started_at=NOW - 60, stall_clock_from=NOW - 60)},
             "loop": ag.LoopRecord()}
    return cfg, state


def test_a_backoff_ending_sooner_than_the_interval_brings_the_tick_forward(tmp_path):
    cfg, state = setup(tmp_path)
    state["units"]["a"] = ag.UnitRecord(lifecycle="backoff", backoff_until=NOW + 1, started_at=NOW - 60)
    assert ag.next_tick_at(cfg, state, NOW, NOW) == pytest.approx(NOW + 1.05)


def test_a_limit_reset_and_a_wake_are_deadlines_the_interval_caps_the_rest(tmp_path):
    cfg, state = setup(tmp_path)
    assert ag.next_tick_at(cfg, state, NOW, NOW) == NOW + 15  # nothing due sooner
    state["units"]["a"].limit = {"kind": "usage", "until": NOW + 7, "since": NOW - 100}
    assert ag.next_tick_at(cfg, state, NOW, NOW) == pytest.approx(NOW + 7.05)
    state["units"]["a"].limit = {}
    state["units"]["a"].next_wake = NOW + 3
    assert ag.next_tick_at(cfg, state, NOW, NOW) == pytest.approx(NOW + 3.05)


def test_deadlines_already_past_do_not_make_the_loop_spin(tmp_path):
    """A wake overdue because the agent is busy is no reason to tick again at once."""
    cfg, state = setup(tmp_path)
    state["units"]["a"].next_wake = NOW - 30
    state["units"]["a"].backoff_until = NOW - 5
    assert ag.next_tick_at(cfg, state, NOW, NOW) == NOW + 15


def test_a_starting_agent_is_looked_at_often_only_while_its_prompt_is_expected(tmp_path):
    cfg, state = setup(tmp_path)
    starting = ag.UnitRecord(lifecycle="starting", started_at=NOW - 2, kickoff="go")
    state["units"]["l"] = starting
    assert ag.next_tick_at(cfg, state, NOW, NOW) == pytest.approx(NOW + ag.STARTING_POLL + 0.05)
    for waiting in ({"limit": {"kind": "usage", "until": NOW + 5 * HOUR}, "screen": "limited"},
                    {"reported": {"needs-you": "x"}, "screen": "unknown"},
                    {"reported": {"dialog": "x"}, "screen": "dialog", "screen_since": NOW - 600}):
        state["units"]["l"] = ag.UnitRecord(lifecycle="starting", started_at=NOW - 2, kickoff="go", **waiting)
        assert ag.next_tick_at(cfg, state, NOW, NOW) > NOW + 1, waiting  # not polled twice a second for hours
    state["units"]["l"] = ag.UnitRecord(lifecycle="starting", started_at=NOW - 2 * HOUR, kickoff="go")
    assert ag.next_tick_at(cfg, state, NOW, NOW) == NOW + 15  # long overdue: the regular ticks will do


def test_a_fresh_start_for_a_new_phase_beats_a_heals_resume_in_either_order():
    heal = ag.Action("start", "l", "heal: restart #1 after exited", purpose="heal")
    phase = ag.Action("start", "l", "phase p2 begins: restarted fresh with its kickoff")
    for actions in ([heal, phase], [phase, heal]):
        (kept,) = [a for a in ag.resolve(actions) if a.kind == "start"]
        assert kept is phase
