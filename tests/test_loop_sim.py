"""The loop machine in simulation: hand-off pings and the phase plan over the fake git of ``tests/sim.py``.

A Builder and two reviewers (a list) on a fake tmux, a fake clock and a fake remote branch. Each test
pushes commits at chosen times and asserts what each agent received, and when; the long test runs days
of a scripted Builder/Adversary pair with faults and checks the invariants.
"""

from __future__ import annotations

import copy
import random

import pytest

from conftest import agents as ag
from sim import HOUR, START, Behaviour, Sim, agent_spec, config_text

MINUTE = 60.0
HANDOFF = {"claim_pings": ["rev1", "rev2"], "review_pings": "builder",
           "inboxes": [{"file": "TO-BUILDER.md", "ping": "builder"}]}


pytestmark = pytest.mark.usefixtures("pinned_utc")  # the machine's zone is UTC (conftest)


def quick(purpose: str, text: str, rng: random.Random) -> float:
    return 120.0  # every message is two minutes of work


def team(tmp_path, phases=("p1", "p2"), persistent_wake: float | None = None, **watchdog) -> Sim:
    specs = [agent_spec("builder", kind="loop"), agent_spec("rev1", kind="loop"), agent_spec("rev2", kind="loop")]
    if persistent_wake:
        specs.append(agent_spec("ops", kind="persistent", wake=persistent_wake, watch="heal"))
    settings = {"signal_interval": 15, "stall_idle": 6 * HOUR, **watchdog}
    behaviours = {spec["name"]: Behaviour(work=quick) for spec in specs}
    sim = Sim(tmp_path, config_text(specs, watchdog=settings, phases=phases, handoff=HANDOFF), behaviours=behaviours)
    sim.up()
    sim.run(10 * MINUTE)  # kickoffs delivered and worked off: everyone idle
    return sim


def pings(sim: Sim, name: str) -> list[str]:
    return [message.text for message in sim.received(name, "ping")]


def kickoffs(sim: Sim, name: str) -> list[str]:
    return [message.text for message in sim.received(name, "kickoff")]


def no_failures(sim: Sim) -> None:
    failures = [e for e in sim.events()
                if e["kind"] in ("check-failed", "tick-failed", "act-failed", "observe-failed", "bug")]
    assert not failures, failures[0]


def test_first_look_takes_the_head_as_baseline_and_pings_nobody_for_old_history(tmp_path):
    specs = [agent_spec("builder", kind="loop"), agent_spec("rev1", kind="loop"), agent_spec("rev2", kind="loop")]
    sim = Sim(tmp_path, config_text(specs, watchdog={"signal_interval": 15, "stall_idle": 6 * HOUR},
                                    handoff=HANDOFF), behaviours={s["name"]: Behaviour(work=quick) for s in specs})
    sim.git.push("claim(old): from before the watchdog")
    sim.git.push("review(old): PASS")
    sim.up()
    sim.run(HOUR)
    assert [pings(sim, name) for name in ("builder", "rev1", "rev2")] == [[], [], []]
    assert [e["kind"] for e in sim.events() if e["kind"] == "handoff-baseline"] == ["handoff-baseline"]
    no_failures(sim)


def test_a_claim_pings_every_reviewer_once_and_a_review_pings_the_builder(tmp_path):
    sim = team(tmp_path)
    sim.git.push("claim(g1): parser works", {"src.py": "1"})
    sim.run(30 * MINUTE)
    for reviewer in ("rev1", "rev2"):
        (ping,) = pings(sim, reviewer)
        assert ping.startswith("New on origin/main") and "claim(g1): parser works" in ping
    assert pings(sim, "builder") == []
    sim.git.push("review(g1): PASS")
    sim.run(30 * MINUTE)
    (ping,) = pings(sim, "builder")
    assert "review(g1): PASS" in ping
    assert [len(pings(sim, name)) for name in ("rev1", "rev2")] == [1, 1]
    no_failures(sim)


def test_the_ping_follows_within_one_interval_of_the_push(tmp_path):
    sim = team(tmp_path)
    pushed = sim.now + 1
    sim.at(pushed, lambda: sim.git.push("claim(g1): x"))
    sim.run(5 * MINUTE)
    (message,) = sim.received("rev1", "ping")
    assert message.t - pushed <= sim.interval + 2


def test_ten_claims_in_one_push_are_one_ping_naming_them_all(tmp_path):
    sim = team(tmp_path)
    for n in range(10):
        sim.git.push(f"claim(g{n}): part {n}")
    sim.run(30 * MINUTE)
    for reviewer in ("rev1", "rev2"):
        (ping,) = pings(sim, reviewer)
        assert all(f"claim(g{n}): part {n}" in ping for n in range(10))


def test_a_ping_to_a_busy_agent_waits_and_is_delivered_once_when_it_is_idle(tmp_path):
    sim = team(tmp_path)
    sim.agent("rev1").start_work(sim.now, 40 * MINUTE, "other")  # rev1 is busy for 40 minutes
    sim.git.push("claim(g1): x")
    sim.run(20 * MINUTE)
    assert pings(sim, "rev1") == [] and len(pings(sim, "rev2")) == 1
    sim.run(HOUR)
    (message,) = sim.received("rev1", "ping")
    assert message.state == "idle" and "claim(g1)" in message.text


def test_an_inbox_file_that_appears_or_changes_pings_its_agent(tmp_path):
    sim = team(tmp_path)
    sim.git.push("note for builder", {"TO-BUILDER.md": "please fix the README"})
    sim.run(20 * MINUTE)
    assert len(pings(sim, "builder")) == 1 and "TO-BUILDER.md is new or changed" in pings(sim, "builder")[0]
    sim.git.push("inbox: consumed", {"TO-BUILDER.md": None})
    sim.run(20 * MINUTE)
    assert len(pings(sim, "builder")) == 1  # deleting it pings nobody
    sim.git.push("another note", {"TO-BUILDER.md": "and the tests"})
    sim.run(20 * MINUTE)
    assert len(pings(sim, "builder")) == 2


def test_done_advances_the_phase_and_the_last_done_completes_the_sequence(tmp_path):
    sim = team(tmp_path, persistent_wake=HOUR)
    assert [k.startswith("Phase p1 kickoff") for k in kickoffs(sim, "builder")] == [True]
    sim.git.push("status(p1): done", {"STATUS-p1.md": "## DONE\n"})
    sim.run(20 * MINUTE)
    for name in ("builder", "rev1", "rev2"):
        assert kickoffs(sim, name)[-1] == f"Phase p2 kickoff for {name}: read STATUS-p2.md."
    (advance,) = sim.events("advance")
    assert "phase p1 done" in advance["reason"] and "phase p2 begins" in advance["reason"]
    assert not (sim.cfg.log_dir / "SEQUENCE-COMPLETE").exists()
    sim.git.push("status(p2): done", {"STATUS-p2.md": "## DONE\n"})
    sim.run(20 * MINUTE)
    assert (sim.cfg.log_dir / "SEQUENCE-COMPLETE").exists()
    assert len(sim.events("sequence-complete")) == 1
    wakes_before = len(sim.received("ops", "wake"))
    sim.git.push("claim(late): after the end")
    sim.run(4 * HOUR)
    assert pings(sim, "rev1") == [] and pings(sim, "rev2") == []
    assert len(sim.received("ops", "wake")) >= wakes_before + 3  # persistent wakes go on
    assert len(kickoffs(sim, "builder")) == 2  # no more loop restarts
    no_failures(sim)


def test_no_phase_advances_without_its_marker_and_a_deleted_status_file_does_not_undo_a_phase(tmp_path):
    sim = team(tmp_path, phases=("p1", "p2", "p3"))
    sim.git.push("status: still working", {"STATUS-p1.md": "## IN PROGRESS\n"})
    sim.git.push("status: p2 early", {"STATUS-p2.md": "## DONE\n"})  # not the current phase
    sim.run(HOUR)
    assert sim.events("advance") == []
    sim.git.push("status(p1): done", {"STATUS-p1.md": "## DONE\n"})
    sim.run(20 * MINUTE)
    sim.git.push("oops", {"STATUS-p1.md": None})
    sim.run(20 * MINUTE)
    # p2's marker was pushed before p2 began: it counts once p2 is current, in the tick after
    assert [e["reason"].split(" done")[0] for e in sim.events("advance")] == ["phase p1", "phase p2"]
    assert ag.loop_of(sim.store.load()).current == "p3"


def test_phases_appended_later_resume_the_machine(tmp_path):
    sim = team(tmp_path, phases=("p1",))
    sim.git.push("status(p1): done", {"STATUS-p1.md": "## DONE\n"})
    sim.run(20 * MINUTE)
    assert (sim.cfg.log_dir / "SEQUENCE-COMPLETE").exists()
    specs = [agent_spec("builder", kind="loop"), agent_spec("rev1", kind="loop"), agent_spec("rev2", kind="loop")]
    sim.write_config(config_text(specs, watchdog={"signal_interval": 15, "stall_idle": 6 * HOUR},
                                 phases=("p1", "p2"), handoff=HANDOFF))
    sim.run(20 * MINUTE)
    assert not (sim.cfg.log_dir / "SEQUENCE-COMPLETE").exists()
    assert len(sim.events("phase-resume")) == 1
    assert kickoffs(sim, "builder")[-1].startswith("Phase p2 kickoff")
    sim.git.push("claim(p2g1): x")
    sim.run(20 * MINUTE)
    assert len(pings(sim, "rev1")) == 1


def test_an_unreachable_remote_is_reported_once_retried_with_backoff_and_caught_up(tmp_path):
    sim = team(tmp_path)
    sim.git.down = True
    sim.git.push("claim(g1): pushed while the remote is out of reach")
    calls = sim.git.calls
    sim.run(HOUR)
    assert pings(sim, "rev1") == []
    assert len(sim.events("git-failed")) == 1
    assert sim.git.calls - calls < 30  # backing off to 5 minutes: not once every 15 s tick (240)
    sim.git.down = False
    sim.run(20 * MINUTE)
    assert len(pings(sim, "rev1")) == 1 and len(sim.events("git-ok")) == 1
    no_failures(sim)


def test_a_force_push_does_not_ping_again_what_was_pinged(tmp_path):
    sim = team(tmp_path)
    sim.git.push("claim(g1): x")
    sim.git.push("claim(g2): y")
    sim.run(20 * MINUTE)
    sim.git.force_push(rebase_last=2)
    sim.git.push("claim(g3): z")
    sim.run(20 * MINUTE)
    texts = pings(sim, "rev1")
    assert len(texts) == 2 and "claim(g3)" in texts[1] and "claim(g1)" not in texts[1]
    assert len(sim.events("branch-rewritten")) == 1


def test_a_restarted_watchdog_repeats_no_ping_and_pings_what_landed_while_it_was_down(tmp_path):
    sim = team(tmp_path)
    sim.git.push("claim(g1): x")
    sim.run(20 * MINUTE)
    sim.restart_watchdog()
    sim.git.push("claim(g2): while the watchdog was down")
    sim.restart_watchdog()
    sim.run(20 * MINUTE)
    texts = pings(sim, "rev1")
    assert len(texts) == 2 and "claim(g2)" in texts[1] and "claim(g1)" not in texts[1]


def test_the_loop_checks_are_pure_and_their_order_does_not_matter(tmp_path):
    """check_repo, check_handoff and check_phases only return actions: the state they are given is unchanged,
    and running them in reverse order decides the same."""
    sim = team(tmp_path)
    sim.git.push("claim(g1): x", {"TO-BUILDER.md": "hi"})
    sim.git.push("status(p1): done", {"STATUS-p1.md": "## DONE\n"})
    checks = (ag.check_repo, ag.check_phases, ag.check_handoff)
    with sim.store.transaction() as state:
        world = ag.World(sim.watchdog.team.observe(sim.now))
        world.repo = ag.observe_repo(sim.cfg, sim.git, state, sim.now)
        before = copy.deepcopy(ag.StateStore.plain(state))
        forward = [action for check in checks for action in check(sim.cfg, state, world, sim.now)]
        backward = [action for check in reversed(checks) for action in check(sim.cfg, state, world, sim.now)]
        assert ag.StateStore.plain(state) == before
    key = lambda action: (action.kind, action.unit, action.purpose, action.reason)
    assert sorted(map(key, forward)) == sorted(map(key, backward))
    assert {action.purpose for action in forward} >= {"advance", "ping", "handoff"}


def test_a_phase_set_between_a_ticks_decision_and_its_act_is_not_undone(tmp_path):
    """A tick decides on the loop in one transaction and acts in later ones. A `phase set` landing
    in between (its move of the loop memory; its restarts come after) wins: the advance the tick
    decided, and the restarts for the phase it would have begun, are dropped with an event (applied,
    they would bring back the phase left). The hand-off memory decided in the same tick still
    applies, so a claim pushed with the DONE is not read, and pinged, a second time."""
    sim = team(tmp_path, phases=("p1", "p2", "p3"))
    sim.git.push("claim(g1): the parser")
    sim.git.push("status(p1): done", {"STATUS-p1.md": "## DONE\n"})
    team_ = sim.watchdog.team
    carry_out, landed = team_.carry_out, []

    def phase_set_lands_first(actions, decided, now):
        if any(action.purpose == "advance" for action in actions) and not landed:
            with sim.store.transaction() as state:  # what `agents.py phase set p3` does to the loop
                ag.move_to_phase(sim.cfg, state, "p3", now, None)
            landed.append(now)
        return carry_out(actions, decided, now)

    team_.carry_out = phase_set_lands_first
    sim.run(20 * MINUTE)
    assert landed, "the status file never made a tick decide the advance"
    loop = ag.loop_of(sim.store.load())
    assert (loop.current, loop.done) == ("p3", []), loop
    skipped = [e for e in sim.events("skipped") if "phase p2 begins" in e["reason"]]
    assert {e["agent"] for e in skipped} == {"", "builder", "rev1", "rev2"}, skipped  # the advance, its restarts
    assert all("the phase machine changed meanwhile (current, phase_started" in e["reason"] for e in skipped)
    assert sim.events("advance") == [] and not [k for name in ("builder", "rev1", "rev2")
                                                for k in kickoffs(sim, name) if k.startswith("Phase p2")]
    assert pings(sim, "rev1") == pings(sim, "rev2") and len(pings(sim, "rev1")) == 1, pings(sim, "rev1")
    assert "g1" in pings(sim, "rev1")[0]
    no_failures(sim)


def test_days_of_a_builder_and_adversary_over_faults(tmp_path):
    """A scripted Builder/Adversary pair for 3 simulated days: claims pushed at random moments (some in
    storms), reviews, DONE markers, the remote down for spells, force-pushes, a status file deleted and
    restored, watchdog restarts. Every claim reaches every reviewer exactly once, and phases advance
    exactly when, and only when, the current phase's marker is pushed."""
    phases = tuple(f"p{n}" for n in range(1, 7))
    sim = team(tmp_path, phases=phases)
    rng = random.Random(5)
    claims: list[tuple[float, str]] = []  # (when pushed, subject)
    done_pushed: list[str] = []
    moment, n = sim.now, 0
    end = sim.now + 3 * 24 * HOUR
    while moment < end - 2 * HOUR:
        moment += rng.uniform(5 * MINUTE, 90 * MINUTE)
        roll = rng.random()
        if roll < 0.55:
            batch = 1 if rng.random() < 0.8 else rng.randint(2, 8)
            subjects = []
            for _ in range(batch):
                n += 1
                subjects.append(f"claim(g{n}): gate {n}")
            def push_claims(subjects=subjects):
                for subject in subjects:
                    sim.git.push(subject)
                    claims.append((sim.now, subject))
            sim.at(moment, push_claims, "claims")
        elif roll < 0.7:
            sim.at(moment, lambda: sim.git.push("review(g): PASS"), "review")
        elif roll < 0.8:
            def mark_done():
                current = ag.loop_of(sim.store.load()).current
                if current not in done_pushed:
                    done_pushed.append(current)
                sim.git.push(f"status({current}): done", {f"STATUS-{current}.md": "## DONE\n"})
            sim.at(moment, mark_done, "done")
        elif roll < 0.86:
            sim.at(moment, lambda: setattr(sim.git, "down", True), "remote down")
            sim.at(moment + rng.uniform(1 * MINUTE, 40 * MINUTE), lambda: setattr(sim.git, "down", False), "remote up")
        elif roll < 0.9:
            sim.at(moment, lambda: sim.git.force_push(rebase_last=min(3, len(sim.git.branch) - 1)), "force-push")
        elif roll < 0.95:
            sim.at(moment, sim.restart_watchdog, "watchdog restart")
        else:
            sim.at(moment, lambda: sim.git.push("status gone", {"STATUS-p1.md": None}), "status deleted")
    sim.at(end - HOUR, lambda: setattr(sim.git, "down", False), "remote up for good")
    sim.run(end - sim.now)
    state = sim.store.load()
    loop = ag.loop_of(state)
    # claims pushed after the sequence completed ping nobody; every other reaches each reviewer once
    due = [subject for moment, subject in claims if not loop.complete or moment < loop.completed_at]
    assert len(due) > 40 and len(sim.events("git-failed")) >= 2 and len(sim.events("branch-rewritten")) >= 2
    for reviewer in ("rev1", "rev2"):
        got = [subject for text in pings(sim, reviewer) for _, subject in claims
               if f" {subject};" in text or text.endswith(f" {subject}.")]
        assert len(got) == len(set(got)), "a claim reached a reviewer twice"
        assert sorted(got) == sorted(due), f"{reviewer}: missing {sorted(set(due) - set(got))[:3]}"
    assert loop.done == done_pushed[:len(loop.done)]
    assert loop.done == [p for p in phases if p in done_pushed][:len(loop.done)]
    assert len(sim.events("advance")) + len(sim.events("sequence-complete")) == len(loop.done)
    no_failures(sim)


def test_a_due_wake_pre_empts_a_stall_reboot(tmp_path):
    """An idle agent whose wake falls due in the same tick as its stall reboot gets the wake, not a reboot;
    the wake counts as activity, so the idle clock starts again from it."""
    specs = [agent_spec("ops", kind="persistent", wake=30 * MINUTE, watch="heal+stall")]
    # Ticks every 10 minutes: at 30 minutes the agent has been idle 28 (past stall_idle) and its wake is due.
    sim = Sim(tmp_path, config_text(specs, watchdog={"signal_interval": 600, "stall_idle": 27 * MINUTE,
                                                     "stall_grace": 60}, loop=False),
              behaviours={"ops": Behaviour(work=quick)})
    sim.up()
    sim.run(3 * HOUR)
    wakes = sim.received("ops", "wake")
    assert len(wakes) >= 5
    assert len(sim.starts("ops")) == 1  # never rebooted: every wake came before (or instead of) a stall reboot


def test_every_check_is_pure_and_the_order_of_checks_does_not_change_the_decisions(tmp_path, monkeypatch):
    """Over half a simulated day of the 20-agent world with faults (crashes, hangs, limits, dialogs),
    every tick: each check, given a deep copy of the state, leaves it unchanged; and the checks run in
    reverse order decide exactly the same actions (notes included) as in their own order."""
    import sim as S

    sim, faults = S.long_run(tmp_path, seed=3, days=0.5)
    ticks = [0]

    def probe(sim: Sim) -> None:
        state = sim.store.load()
        world = ag.World(sim.watchdog.team.observe(sim.now))
        world.repo = ag.observe_repo(sim.cfg, sim.git, state, sim.now)
        before = ag.StateStore.plain(state)
        decided = []
        for checks in (ag.WATCHDOG_CHECKS, tuple(reversed(ag.WATCHDOG_CHECKS))):
            copied = copy.deepcopy(state)
            actions = [action for check in checks for action in check(sim.cfg, copied, world, sim.now)]
            assert ag.StateStore.plain(copied) == before, f"a check changed the state at {sim.now - START}"
            decided.append(sorted((a.kind, a.unit, a.purpose, a.reason, a.text, repr(sorted(a.memory.items())))
                                  for a in actions))
        assert decided[0] == decided[1], f"the order of the checks changed the decisions at {sim.now - START}"
        ticks[0] += 1

    sim.run(12 * HOUR, probe)
    assert ticks[0] > 500 and sum(faults.applied.values()) > 10, faults.applied


def test_a_watchdog_killed_while_typing_a_ping_does_not_type_it_again_once_the_agent_took_it(tmp_path):
    """The pings are noted in flight before they are typed; a watchdog killed before it recorded the
    outcome finds the agent busy on the next tick and counts them as taken, not as still due."""
    sim = team(tmp_path)
    sim.git.push("claim(g1): x")
    original = sim.watchdog.team._record_delivery

    def killed_before_recording(action, delivery, state, now):
        if action.purpose != "ping":
            original(action, delivery, state, now)

    sim.watchdog.team._record_delivery = killed_before_recording  # the outcome is never saved
    sim.run(sim.interval)  # the ping is typed; the agent turns busy working on it
    assert len(pings(sim, "rev1")) == 1
    sim.restart_watchdog()
    sim.run(HOUR)
    assert len(pings(sim, "rev1")) == 1 and len(pings(sim, "rev2")) == 1
    assert ag.record_of(sim.store.load(), "rev1").pings == []
