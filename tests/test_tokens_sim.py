"""Token records and the budget breaker in simulation: a loop team on a fake tmux, clock and remote,
whose Claude-format transcripts the test writes as it goes; the watchdog's token log must hold
exactly what the transcripts gained between the phase's (or gate's) start and end, however often
the watchdog is killed in between."""

from __future__ import annotations

import json
import random

import pytest

from conftest import agents as ag
from conftest import OpencodeStore, held_open
from sim import HOUR, Behaviour, Sim, agent_spec, config_text

MINUTE = 60.0
HANDOFF = {"claim_pings": ["rev"], "review_pings": "builder"}

pytestmark = pytest.mark.usefixtures("pinned_utc")


def quick(purpose: str, text: str, rng: random.Random) -> float:
    return 60.0


def team(tmp_path, loop_extra: str = "", **watchdog) -> Sim:
    env = {"CLAUDE_CONFIG_DIR": ".claude-sim"}
    specs = [agent_spec("builder", kind="loop", env=env), agent_spec("rev", kind="loop", env=env)]
    settings = {"signal_interval": 15, "stall_idle": 6 * HOUR, "heavy_interval": 120, **watchdog}
    text = config_text(specs, watchdog=settings, phases=("p1", "p2"), handoff=HANDOFF)
    text = text.replace("[loop]\n", f"[loop]\n{loop_extra}\n", 1)
    sim = Sim(tmp_path, text, behaviours={spec["name"]: Behaviour(work=quick) for spec in specs})
    sim.up()
    sim.run(5 * MINUTE)
    return sim


class Transcripts:
    """Writes usage into each agent's current session file, as Claude Code would."""

    def __init__(self, sim: Sim):
        self.sim, self.count = sim, 0

    def use(self, name: str, input_tokens: int, output_tokens: int, cache_read: int = 0) -> None:
        record = self.sim.record(name)
        folder = self.sim.root / ".claude-sim" / "projects" / ag.project_slug(self.sim.root.resolve())
        folder.mkdir(parents=True, exist_ok=True)
        self.count += 1
        line = {"type": "assistant", "sessionId": record.session_ids[-1], "requestId": f"req_{self.count}",
                "message": {"id": f"msg_{self.count}", "model": "claude-sonnet-4-5", "content": [],
                            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                                      "cache_read_input_tokens": cache_read}}}
        with open(folder / f"{record.session_ids[-1]}.jsonl", "a") as handle:
            for _ in range(2):  # one response is written once per content block: it counts once
                handle.write(json.dumps(line) + "\n")


def records(sim: Sim) -> list[dict]:
    path = sim.root / ".agents" / "logs" / "token-log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def totals(record: dict) -> dict[str, int]:
    return {name: figures["total"] for name, figures in record["agents"].items()}


@pytest.mark.parametrize("restarts", [0, 10])
def test_phase_and_gate_records_hold_what_the_transcripts_gained_across_watchdog_kills(tmp_path, restarts):
    sim = team(tmp_path)
    write = Transcripts(sim)

    def kill_now_and_then(count: int) -> None:
        for moment in range(count):
            sim.after(30 + moment * 37, sim.restart_watchdog, "watchdog kill -9")

    write.use("builder", 100, 10)  # before any claim: the phase's, in no gate
    sim.run(3 * MINUTE)
    sim.git.push("claim(g1): the parser")
    sim.run(2 * MINUTE)
    write.use("rev", 200, 20)
    write.use("builder", 300, 30)
    kill_now_and_then(restarts // 2)
    sim.run(10 * MINUTE)
    sim.git.push("claim(feat: g2): the writer")  # a leading feat: in the label is dropped
    sim.run(2 * MINUTE)
    write.use("builder", 50, 5, cache_read=1000)
    kill_now_and_then(restarts - restarts // 2)
    sim.run(10 * MINUTE)
    sim.git.push("status(p1): done", {"STATUS-p1.md": "## DONE\n"})
    sim.run(5 * MINUTE)
    write.use("builder", 7, 1)  # the next phase's
    sim.run(5 * MINUTE)
    rows = records(sim)
    assert [row["phase_id"] for row in rows] == ["p1:g1", "p1:g2", "p1"]
    gate1, gate2, phase = rows
    assert totals(gate1) == {"rev": 220, "builder": 330}
    assert totals(gate2) == {"builder": 1055}
    assert totals(phase) == {"builder": 110 + 330 + 1055, "rev": 220}
    assert phase["total"] == {"input": 650, "output": 65, "cache_creation": 0, "cache_read": 1000, "total": 1715}
    assert phase["duration_s"] > 0 and phase["started"] < phase["ended"]
    assert len(sim.watchdog_restarts) == restarts


def test_tokens_command_lists_the_records_with_totals(tmp_path, capsys):
    sim = team(tmp_path)
    Transcripts(sim).use("builder", 100, 10)
    sim.run(3 * MINUTE)
    sim.git.push("status(p1): done", {"STATUS-p1.md": "## DONE\n"})
    sim.run(3 * MINUTE)
    assert ag.main(["--config", str(sim.config_path), "tokens", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [row["phase_id"] for row in out["rows"]] == ["p1"] and out["total"]["total"] == 110
    assert out["rows"][0]["models"] == {"claude-sonnet-4-5": {"input": 100, "output": 10, "cache_creation": 0,
                                                              "cache_read": 0, "total": 110}}
    assert ag.main(["--config", str(sim.config_path), "tokens", "--cost", "--json"]) == 0
    priced = json.loads(capsys.readouterr().out)
    assert priced["total"]["cost_usd"] == pytest.approx((100 * 3 + 10 * 15) / 1e6, abs=1e-4)  # Sonnet 4.x rates
    assert priced["rows"][0]["unpriced"] == []


def test_a_phase_over_budget_pauses_its_loop_agents_until_the_budget_is_raised(tmp_path):
    sim = team(tmp_path, loop_extra="phase_budget = 1000")
    write = Transcripts(sim)
    write.use("builder", 900, 50)
    sim.run(5 * MINUTE)
    assert not sim.events("budget-pause")
    write.use("builder", 100, 10, cache_read=50000)  # 1060 counted (cache reads are not, by default)
    sim.run(3 * MINUTE)
    (pause,) = sim.events("budget-pause")
    assert "phase p1 has used 1,060 tokens, over its phase_budget of 1,000" in pause["reason"]
    interrupted = {e["agent"] for e in sim.events("interrupt")}
    assert interrupted == {"builder", "rev"}
    assert [k for t, k, _ in sim.agent("builder").keys if k == "Escape"]
    agents, _ = ag.status_rows(sim.cfg, sim.watchdog.team, sim.now)
    assert {row["state"] for row in agents} == {"paused: over budget"}
    paused_at = sim.now
    sim.git.push("claim(g1): more work")  # would ping the reviewer
    sim.crash("rev")  # would be healed
    sim.run(HOUR)
    assert not [m for name in ("builder", "rev") for m in sim.received(name) if m.t > paused_at]
    assert [e for e in sim.events("start", "rev")] == sim.events("start", "rev")[:1]  # not healed
    assert len(sim.events("budget-pause")) == 1  # said once
    sim.write_config(sim.config_path.read_text().replace("phase_budget = 1000", "phase_budget = 5000"))
    sim.run(15 * MINUTE)
    assert sim.events("budget-ok")
    assert len(sim.events("start", "rev")) == 2  # the dead reviewer is healed
    assert sim.received("rev", "ping")  # and gets the ping that waited


def test_tokens_shows_the_phase_and_gate_in_flight(tmp_path):
    sim = team(tmp_path)
    write = Transcripts(sim)
    write.use("builder", 100, 10)
    sim.git.push("claim(g1): the parser")
    sim.run(2 * MINUTE)
    write.use("rev", 40, 4)
    sim.run(3 * MINUTE)
    rows = ag.in_flight_rows(sim.cfg, sim.store.load(), sim.now)  # what `tokens` adds to the log's rows
    assert [(row["phase_id"], row["total"]["total"], row.get("in_flight")) for row in rows] == \
        [("p1:g1", 44, True), ("p1", 154, True)]
    assert {name: figures["total"] for name, figures in rows[1]["agents"].items()} == {"builder": 110, "rev": 44}


def holding(path, sim: Sim, name: str):
    """A real process with agent ``name``'s marker holding ``path`` open, as Codex's CLI holds its rollout."""
    return held_open(path, ag.unit_marker(sim.cfg, sim.cfg.unit(name)))


def codex_like(tmp_path, specs: list[dict], home, **backend) -> Sim:
    """The sim's agents with Codex's transcripts (CODEX_HOME ``home``) and ``backend`` keys."""
    text = config_text(specs, watchdog={"signal_interval": 15, "stall_idle": 6 * HOUR}, loop=False)
    keys = "".join(f"{key} = {json.dumps(value)}\n" for key, value in backend.items())
    text = text.replace("[backend.claude]\n", f'[backend.claude]\ntranscripts = "codex"\n{keys}'
                                              f'env = {{ CODEX_HOME = "{home}" }}\n', 1)
    return Sim(tmp_path, text, behaviours={spec["name"]: Behaviour(work=quick) for spec in specs})


def rollout_path(home, session: str):
    return home / "sessions" / "2026" / "12" / "07" / f"rollout-2026-12-07T10-00-00-{session}.jsonl"


def test_a_short_codex_run_in_a_shared_folder_is_recorded_for_its_agent_without_a_token_read(tmp_path):
    """Two Codex-transcript agents in one folder, no token logging (nothing reads transcripts): the
    watchdog still looks every few seconds which rollout each one's CLI holds open — a real
    process with the agent's marker here, gone after 30 s — and records it as that agent's session."""
    home = tmp_path / "codex-home"
    sim = codex_like(tmp_path, [agent_spec("builder"), agent_spec("adversary")], home)
    assert ag.sharers(sim.cfg, "codex") == {"builder": ["builder", "adversary"], "adversary": ["builder", "adversary"]}
    sim.up()
    sim.run(MINUTE)
    session = "00000001-1b57-71f2-9323-c52887429134"
    with holding(rollout_path(home, session), sim, "adversary"):
        sim.run(30)  # a run far shorter than heavy_interval
    (event,) = sim.events("transcript", "adversary")
    assert f"Codex session {session} is adversary's" in event["reason"], event
    assert sim.record("adversary").session_ids[-1] == session
    assert session not in sim.record("builder").session_ids and sim.events("transcript", "builder") == []


def test_a_healed_codex_agent_resumes_the_rollout_its_cli_held_and_a_fresh_life_never_an_older_one(tmp_path):
    """Codex picks its own session id: the watchdog learns it from the rollout the CLI holds open,
    and a heal resumes into it (``resume <id>``, a resume note, not the kickoff). After a fresh
    start (a reboot), a death before the new rollout is seen starts fresh again: never back into
    the conversation of an older life."""
    home = tmp_path / "codex-home"
    sim = codex_like(tmp_path, [agent_spec("main", watch="heal")], home, session_id_flag="",
                     resume_args=["resume", "{session_id}"])
    sim.up()
    sim.run(MINUTE)  # the kickoff taken: a conversation
    session = "00000002-1b57-71f2-9323-c52887429134"
    with holding(rollout_path(home, session), sim, "main"):
        sim.run(30)
    assert sim.record("main").life_session == session
    sim.crash("main")
    sim.run(5 * MINUTE)
    start = sim.events("start", "main")[-1]
    assert start["argv"].endswith(f"resume {session}") and start["resumed"] == session, start
    assert [m.purpose for m in sim.received("main")][-1] == "resume-note"
    assert len(sim.received("main", "kickoff")) == 1
    with sim.store.transaction() as state:  # a fresh start (a stall reboot does this): a new rollout to come
        sim.watchdog.team.launch(sim.cfg.unit("main"), state, "rebooted fresh", sim.now)
    sim.run(MINUTE)  # its kickoff taken; its CLI not seen holding a rollout yet
    assert len(sim.received("main", "kickoff")) == 2 and sim.record("main").life_session == ""
    sim.crash("main")
    sim.run(5 * MINUTE)
    start = sim.events("start", "main")[-1]
    assert "resume" not in start["argv"] and not start.get("resumed"), start
    assert len(sim.received("main", "kickoff")) == 3  # fresh, with its kickoff


def test_a_restart_before_the_watchdogs_first_look_still_resumes_the_rollout_its_cli_holds(tmp_path):
    """`restart` looks at what the CLI holds open just before ending it: a conversation the
    watchdog's 10-second look has not seen yet is still the one resumed."""
    home = tmp_path / "codex-home"
    sim = codex_like(tmp_path, [agent_spec("main", watch="heal")], home, session_id_flag="",
                     resume_args=["resume", "{session_id}"])
    sim.up()
    sim.run(MINUTE)
    session = "00000003-1b57-71f2-9323-c52887429134"
    with holding(rollout_path(home, session), sim, "main"):
        assert sim.record("main").life_session == ""  # not seen yet
        sim.operator_restart("main")
    (event,) = sim.events("transcript", "main")
    assert f"Codex session {session} is main's" in event["reason"], event
    start = sim.events("start", "main")[-1]
    assert start["argv"].endswith(f"resume {session}") and start["resumed"] == session, start
    sim.run(MINUTE)
    assert [m.purpose for m in sim.received("main")][-1] == "resume-note"


def opencode_like(tmp_path, specs: list[dict]) -> tuple[Sim, OpencodeStore]:
    """The sim's agents with opencode's store (XDG_DATA_HOME ``tmp_path/data``) and its resume."""
    data = tmp_path / "data"
    text = config_text(specs, watchdog={"signal_interval": 15, "stall_idle": 6 * HOUR}, loop=False)
    text = text.replace("[backend.claude]\n", '[backend.claude]\ntranscripts = "opencode"\nsession_id_flag = ""\n'
                                              'resume_args = ["--session", "{session_id}"]\n'
                                              f'env = {{ XDG_DATA_HOME = "{data}" }}\n', 1)
    sim = Sim(tmp_path, text, behaviours={spec["name"]: Behaviour(work=quick) for spec in specs})
    return sim, OpencodeStore(data / "opencode" / "opencode.db")


def test_the_opencode_session_a_life_began_is_recorded_and_a_heal_resumes_it(tmp_path):
    """opencode picks its own session id and keeps it in its store: the watchdog finds the session
    begun in the agent's folder since this life started (not an older one, not another folder's),
    records it and its sub-agent's, and a heal resumes it with ``--session <id>``. A sub-agent is
    never a life's conversation: after a fresh start, an old session's sub-agent is billed to
    the agent, and the session the new life begins is the one a heal resumes."""
    sim, store = opencode_like(tmp_path, [agent_spec("main", watch="heal")])
    folder = sim.cfg.unit("main").folder
    store.session("ses_older", folder, sim.now - HOUR)  # a session from before this life
    sim.up()
    sim.run(MINUTE)  # the kickoff taken: a conversation
    store.session("ses_elsewhere", tmp_path / "other", sim.now)
    store.session("ses_main", folder, sim.now)
    store.session("ses_sub", tmp_path / "other", sim.now + 1, parent="ses_main")  # its task tool's sub-agent
    sim.run(30)
    (event,) = sim.events("transcript", "main")
    assert event["reason"] == "opencode session ses_main is main's: it began in main's folder; opencode sub-agent " \
                              "session ses_sub is main's: one of its sessions started it", event
    record = sim.record("main")
    assert record.life_session == "ses_main" and record.session_ids[-2:] == ["ses_main", "ses_sub"], record
    assert "ses_older" not in record.session_ids and "ses_elsewhere" not in record.session_ids
    sim.crash("main")
    sim.run(5 * MINUTE)
    start = sim.events("start", "main")[-1]
    assert start["argv"].endswith("--session ses_main") and start["resumed"] == "ses_main", start
    assert [m.purpose for m in sim.received("main")][-1] == "resume-note"
    assert sim.record("main").life_session == "ses_main"  # the resumed life continues that session
    with sim.store.transaction() as state:  # a fresh start (a stall reboot does this)
        sim.watchdog.team.launch(sim.cfg.unit("main"), state, "rebooted fresh", sim.now)
    store.session("ses_late_sub", folder, sim.now, parent="ses_main")  # the old session's last sub-agent
    sim.run(30)
    assert "ses_late_sub" in sim.record("main").session_ids and sim.record("main").life_session == ""
    store.session("ses_new", folder, sim.now)
    sim.run(30)
    assert sim.record("main").life_session == "ses_new"
    sim.crash("main")
    sim.run(5 * MINUTE)
    assert sim.events("start", "main")[-1]["argv"].endswith("--session ses_new")


def test_a_stopped_opencode_agent_claims_no_session_begun_after_it_stopped(tmp_path):
    """After `down NAME`, an opencode run in its folder (someone working by hand) is not the
    agent's: not billed to it, and never the conversation a later `restart` resumes."""
    sim, store = opencode_like(tmp_path, [agent_spec("main", watch="heal")])
    folder = sim.cfg.unit("main").folder
    sim.up()
    sim.run(MINUTE)
    with sim.store.transaction() as state:  # what `down main` does while the watchdog runs on
        ag.transition(ag.record_of(state, "main"), "stopped", "down", sim.now, None, "main")
        sim.watchdog.team.stop(sim.cfg.unit("main"))
    sim.run(HOUR)
    store.session("ses_by_hand", folder, sim.now)
    sim.run(MINUTE)
    assert sim.events("transcript", "main") == [] and "ses_by_hand" not in sim.record("main").session_ids
    sim.operator_restart("main")
    start = sim.events("start", "main")[-1]
    assert "--session" not in start["argv"], start


def test_opencode_agents_sharing_a_folder_bill_the_first_and_heal_fresh(tmp_path):
    """Two opencode agents in one folder and one store: whose session is whose cannot be told.
    A session there is billed to the first of them (counted once) and neither resumes it."""
    sim, store = opencode_like(tmp_path, [agent_spec("builder", watch="heal"), agent_spec("adversary", watch="heal")])
    assert ag.sharers(sim.cfg, "opencode")["adversary"] == ["builder", "adversary"]
    sim.up()
    sim.run(MINUTE)
    store.session("ses_one", sim.cfg.unit("adversary").folder, sim.now)
    sim.run(30)
    (event,) = sim.events("transcript", "builder")
    assert "shared with adversary: billed here, never resumed" in event["reason"], event
    assert "ses_one" in sim.record("builder").session_ids and "ses_one" not in sim.record("adversary").session_ids
    assert sim.record("builder").life_session == "" == sim.record("adversary").life_session
    for name in ("builder", "adversary"):
        sim.crash(name)
        sim.run(5 * MINUTE)
        start = sim.events("start", name)[-1]
        assert "--session" not in start["argv"] and not start.get("resumed"), start


def test_a_restart_before_the_first_look_still_resumes_the_opencode_session(tmp_path):
    """`restart` looks in the store just before ending the CLI."""
    sim, store = opencode_like(tmp_path, [agent_spec("main", watch="heal")])
    sim.up()
    sim.run(MINUTE)
    store.session("ses_new", sim.cfg.unit("main").folder, sim.now)
    assert sim.record("main").life_session == ""  # not seen yet
    sim.operator_restart("main")
    start = sim.events("start", "main")[-1]
    assert start["argv"].endswith("--session ses_new") and start["resumed"] == "ses_new", start
