"""Live: the REAL Claude Code CLI drives the whole loop — claim, review, DONE, advance, heal, tokens.

A Builder and an Adversary (both ``kind = "loop"``, as in examples/builder-adversary), each the
pinned CLI on the built-in ``claude`` preset (only ``command`` and the sandbox env set, as
claude_team does), each in its own clone of a local bare remote, under agents.py's watchdog
(private tmux socket, ``signal_interval = 1``). Each agent talks to its own mock model (two
MockAnthropic instances on two ports; the agent's ``env`` points ``ANTHROPIC_BASE_URL`` at its
own), so what each mock saw is what that agent was sent, whatever the order of their turns
(the second mock tags its ids ``msg_mockrev_<n>``: message ids must not collide, or the token
reader, which counts each id once, would rightly drop one agent's usage).
The mocks answer with Bash ``tool_use`` blocks, so the CLI itself does the git work:

  p1  builder kickoff → commits ``claim(g1): …`` and pushes → the watchdog pings the adversary
      (its mock sees ``New on origin/main — pull, then act on each: <sha> claim(g1)…``) → the
      adversary commits ``review(g1): PASS`` and pushes → the builder is pinged with the review →
      it pushes ``STATUS-p1.md`` with ``## DONE`` → event ``advance``, ``phase show`` says p2, both
      agents restarted fresh with the p2 kickoff (new session ids).
  p2  the builder's CLI is SIGKILLed (its pid read from its tmux pane) → healed with
      ``--resume <id>`` (start event ``resumed=``), its next request carries the p2 turns and the
      one-line resume note, not the kickoff → it pushes ``STATUS-p2.md`` with ``## DONE`` →
      ``sequence-complete`` and ``SEQUENCE-COMPLETE``.
  tokens  the phase records (p1, p2) in token-log.jsonl, their gate record (p1:g1) and
      ``agents.py tokens --json`` / ``tokens --scan <projects dir> --json`` equal exactly the
      usage the two mocks served.

The turn that answers a DONE push's tool_result is held by the mock (never served) so that the
advance's restart, which kills the agent, cannot cut off a served answer before the CLI wrote it
to its transcript: every served message is in a transcript, and the equality is exact.

Skipped loudly without the CLI unless ``AGENTS_REQUIRE_REAL_CLI=1`` (see claude_team.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import claude_sandbox as cs  # noqa: E402
from claude_team import ClaudeTeam, require_binary, toml_env, toml_str  # noqa: E402
from conftest import agents as ag  # noqa: E402
from mock_anthropic import MockAnthropic, SYSTEM_REMINDER_OPEN, Turn, typed_text  # noqa: E402

ROLE = "You are {name} of a two-agent team."
KICKOFF = "Phase {phase} begins: work on it, then write {done_marker} in {status_file}."
WAIT = 120.0  # any one step on a busy 2-core machine; a healthy one takes a few seconds
GIT_ID = ("-c", "user.name=Live Agent", "-c", "user.email=agent@test.invalid", "-c", "commit.gpgsign=false")


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(["git", *GIT_ID, "-C", str(cwd), *args], capture_output=True, text=True, timeout=30,
                            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stderr}"
    return result.stdout.strip()


def shell_push(subject: str, path: str, text: str) -> str:
    """A Bash command line that writes ``path``, commits it as ``subject`` and pushes (run by the CLI)."""
    return (f"git pull -q --rebase origin main && printf '%s\\n' {json.dumps(text)} > {path} && git add {path} "
            f"&& git commit -q -m {json.dumps(subject)} && git push -q origin HEAD:main && git log -1 --format=%H")


class LoopTeam(ClaudeTeam):
    """The bare remote, the watchdog's clone, the builder's and the adversary's clones, two mocks."""

    def __init__(self, binary: Path, root: Path) -> None:
        super().__init__(binary, root, "loop")
        self.mocks = {"builder": self.mock, "adversary": MockAnthropic(tag="mockrev").start()}
        self.remote = root / "remote.git"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(self.remote)], check=True)
        git(self.repo, "remote", "add", "origin", str(self.remote))
        git(self.repo, "push", "-q", "origin", "HEAD:main")
        self.clones = {}
        for name in ("watch", "builder", "adversary"):
            clone = root / name
            subprocess.run(["git", "clone", "-q", "-b", "main", str(self.remote), str(clone)], check=True,
                           capture_output=True)
            for key, value in (("user.email", f"{name}@test.invalid"), ("user.name", name),
                               ("commit.gpgsign", "false")):
                git(clone, "config", key, value)
            self.clones[name] = clone
        # Both clones trusted in the one sandbox HOME (onboarding done, key approved).
        data = cs.claude_json(self.clones["builder"], self.api_key)
        data["projects"].update(cs.claude_json(self.clones["adversary"], self.api_key)["projects"])
        (self.home / ".claude.json").write_text(json.dumps(data, indent=2) + "\n")

    def write_config(self) -> None:
        adversary_env = {"ANTHROPIC_BASE_URL": f"http://127.0.0.1:{self.mocks['adversary'].port}"}
        self.project.write(f"""
[watchdog]
signal_interval = 1
heavy_interval = 2
backoff_base = 1
backoff_max = 8
stall_idle = 3600
stall_grace = 3600

{self.backend_toml()}
[defaults]
kind = "loop"

[[agent]]
name = "builder"
cwd = "builder"
prompt = {toml_str(ROLE)}

[[agent]]
name = "adversary"
cwd = "adversary"
prompt = {toml_str(ROLE)}
env = {toml_env(adversary_env)}

[loop]
repo = "watch"
phases = [
  {{ id = "p1", kickoff = {toml_str(KICKOFF)} }},
  {{ id = "p2", kickoff = {toml_str(KICKOFF)} }},
]

[loop.handoff]
claim_pings = "adversary"
review_pings = "builder"
""")

    # -- looking --

    def typed(self, name: str) -> list[str]:
        return self.mocks[name].typed_texts()

    def wait_typed(self, name: str, needle: str, after: int = 0) -> tuple[int, str]:
        """The first message typed at ``name`` (index ``after`` or later) that contains ``needle``."""
        def found():
            return next(((i, t) for i, t in enumerate(self.typed(name)) if i >= after and needle in t), None)
        return self.wait(f"{needle!r} at {name}'s model", found, timeout=WAIT, interval=0.5, name=name)

    def pane_cli_pid(self, name: str) -> int:
        """The pid of the agent's CLI, from its tmux pane (the pane's process or a child running the binary)."""
        out = self.project.tmux("list-panes", "-t", f"=t-{name}:", "-F", "#{pane_pid}").stdout.split()
        assert len(out) == 1, out
        want = os.path.realpath(self.binary)
        todo = [int(out[0])]
        while todo:
            pid = todo.pop(0)
            try:
                if os.path.realpath(f"/proc/{pid}/exe") == want:
                    return pid
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                continue
            todo += [int(child) for child in children]
        pytest.fail(f"no {want} under pane pid {out[0]} of t-{name}")

    def phase_show(self) -> dict:
        result = self.run("phase", "show", "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        return json.loads(result.stdout)

    def served_total(self) -> dict[str, int]:
        total = {"input": 0, "output": 0, "cache_creation": 0, "cache_read": 0}
        for mock in self.mocks.values():
            for key, value in mock.served_usage_total(kind=None).items():
                if key in total:
                    total[key] += value
        return {**total, "total": sum(total.values())}

    def cleanup(self) -> None:
        try:
            super().cleanup()
        finally:
            self.mocks["adversary"].stop()


def figures_sum(rows: list[dict]) -> dict[str, int]:
    keys = ("input", "output", "cache_creation", "cache_read", "total")
    return {key: sum(row[key] for row in rows) for key in keys}


@pytest.fixture
def team(tmp_path):
    binary = require_binary()
    team = LoopTeam(binary, tmp_path)
    try:
        yield team
    finally:
        team.cleanup()


def test_real_claude_code_drives_claim_review_done_advance_heal_and_tokens(team):
    builder, adversary = team.mocks["builder"], team.mocks["adversary"]
    held = threading.Event()  # never set while the test runs: the answers after a DONE push stay unserved
    # The builder: p1 kickoff → claim; the review ping → DONE (held after); p2 kickoff → a text turn;
    # the resume note → p2 DONE (held after).
    # The claim waits until the watchdog took its baseline (a claim already in the baseline pings nobody).
    baseline_taken = threading.Event()
    builder.tool_use(shell_push("claim(g1): the parser is ready", "parser.txt", "parser v1"),
                     then="Claimed g1; waiting for the review.", gate=baseline_taken)
    builder.tool_use(shell_push("status(p1): done", "STATUS-p1.md", "# p1\n## DONE"), then=Turn(gate=held))
    builder.reply("p2 under way.")
    builder.tool_use(shell_push("status(p2): done", "STATUS-p2.md", "# p2\n## DONE"), then=Turn(gate=held))
    # The adversary: p1 kickoff → a text turn; the claim ping → review(g1): PASS; p2 kickoff → a text turn.
    adversary.reply("Ready to review.")
    adversary.tool_use(shell_push("review(g1): PASS", "REVIEW-g1.md", "g1: PASS"), then="Reviewed g1: PASS.")
    adversary.reply("Ready for p2.")

    team.write_config()
    up = team.run("up")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "watchdog: started" in up.stdout, up.stdout
    team.wait("the hand-off baseline", lambda: team.project.events("handoff-baseline"), timeout=WAIT)
    baseline_taken.set()

    # 1-2. The builder's kickoff makes it claim; the watchdog pings the adversary with the claim.
    team.wait_typed("builder", "Phase p1 begins")
    team.wait_typed("adversary", "Phase p1 begins")
    claim = team.wait("the claim on the remote", lambda: next(
        (line.split()[0] for line in git(team.clones["watch"], "log", "--format=%H %s", "origin/main").splitlines()
         if "claim(g1)" in line) if not git(team.clones["watch"], "fetch", "-q") else None, None), timeout=WAIT)
    _, ping = team.wait_typed("adversary", claim[:7])
    assert ping.startswith("New on origin/main — pull, then act on each: ") and "claim(g1)" in ping, ping
    assert not [t for t in team.typed("builder") if claim[:7] in t]
    assert team.wait("the ping event", lambda: [e for e in team.project.events("ping", "adversary")
                                                if claim[:7] in e["reason"] or claim[:7] in json.dumps(e)] or
                     team.project.events("ping", "adversary"), timeout=WAIT)

    # 3. The adversary's review lands; the builder is pinged with it.
    _, review_ping = team.wait_typed("builder", "review(g1): PASS")
    assert review_ping.startswith("New on origin/main — pull, then act on each: "), review_ping
    assert not [t for t in team.typed("adversary") if "review(g1)" in t]

    # 4. The builder pushes the DONE status: advance to p2, both restarted fresh with the p2 kickoff.
    advance = team.wait("the advance", lambda: team.project.events("advance"), timeout=WAIT)[0]
    assert "phase p1 done" in advance["reason"] and "phase p2 begins" in advance["reason"], advance
    plan = team.phase_show()
    assert plan["current"] == "p2" and plan["complete"] is False, plan
    assert [p["done"] for p in plan["phases"]] == [True, False], plan
    for name in ("builder", "adversary"):
        _, kickoff = team.wait_typed(name, "Phase p2 begins")
        assert ROLE.replace("{name}", name) in kickoff and "STATUS-p2.md" in kickoff, kickoff
        starts = team.wait(f"{name}'s p2 start", lambda: team.project.events("start", name)[1:], timeout=WAIT)
        assert not starts[0].get("resumed") and "--resume" not in starts[0]["argv"].split(), starts[0]
        assert starts[0]["session_id"] != team.project.events("start", name)[0]["session_id"]
    team.wait("builder's p2 answer", lambda: "p2 under way." in team.screen("builder"), timeout=WAIT, name="builder")
    team.ready("builder", timeout=WAIT)
    team.ready("adversary", timeout=WAIT)

    # 5. SIGKILL the builder's CLI (its pid from its tmux pane): healed into the same conversation.
    session_id = team.row("builder")["session_ids"][-1]
    pid = team.pane_cli_pid("builder")
    requests_before, typed_before = len(builder.main_requests()), len(team.typed("builder"))
    os.kill(pid, signal.SIGKILL)
    team.wait(f"pid {pid} gone", lambda: not ag.pid_alive(pid), timeout=30)
    start = team.wait("the heal", lambda: team.project.events("start", "builder")[2:], timeout=WAIT)[0]
    assert start.get("resumed") == session_id, start
    assert f"--resume {session_id}" in start["argv"], start["argv"]
    team.wait("the healed builder at its model", lambda: len(builder.main_requests()) > requests_before,
              timeout=WAIT)
    body = builder.main_requests()[requests_before]["body"]
    said = [(m["role"], m["content"] if isinstance(m["content"], str) else "\n".join(
        b.get("text", "") for b in m["content"] if isinstance(b, dict) and b.get("type") == "text"
        and not b.get("text", "").lstrip().startswith(SYSTEM_REMINDER_OPEN))) for m in body["messages"]]
    assert any(role == "user" and "Phase p2 begins" in text for role, text in said), said
    assert any(role == "assistant" and "p2 under way." in text for role, text in said), said
    assert not any("Phase p1 begins" in text for _, text in said), said  # p2's conversation, not p1's
    assert typed_text(body["messages"][-1]).startswith("You were restarted"), said[-1]
    assert not team.project.events("resume-failed"), team.project.events("resume-failed")

    # The note made it push the p2 DONE: the sequence completes.
    team.wait("sequence-complete", lambda: team.project.events("sequence-complete"), timeout=WAIT)
    team.wait("SEQUENCE-COMPLETE", lambda: (team.root / ".agents" / "logs" / "SEQUENCE-COMPLETE").exists(),
              timeout=30)
    after = team.typed("builder")[typed_before:]
    assert len(after) == 1 and after[0].startswith("You were restarted"), after  # the note, not the kickoff
    plan = team.phase_show()
    assert plan["complete"] is True and [p["done"] for p in plan["phases"]] == [True, True], plan

    # 6. Tokens: the phase records equal exactly what the two mocks served, the gate record is within p1.
    served = team.served_total()
    log = team.root / ".agents" / "logs" / "token-log.jsonl"
    team.wait("the p2 record", lambda: log.exists() and '"phase_id": "p2"' in log.read_text(), timeout=WAIT)
    rows = {row["phase_id"]: row for row in map(json.loads, log.read_text().splitlines())}
    assert set(rows) == {"p1:g1", "p1", "p2"}, list(rows)
    phases = [rows["p1"]["total"], rows["p2"]["total"]]
    assert figures_sum(phases) == served, (phases, served)
    for pid_ in ("p1", "p2"):
        per_agent = list(rows[pid_]["agents"].values())
        assert figures_sum(per_agent) == {k: rows[pid_]["total"][k] for k in served}, rows[pid_]
    assert set(rows["p1"]["agents"]) == {"builder", "adversary"}, rows["p1"]
    gate = rows["p1:g1"]["total"]
    assert 0 < gate["total"] <= rows["p1"]["total"]["total"], (gate, rows["p1"])
    listed = json.loads(team.run("tokens", "--json").stdout)
    assert {k: listed["total"][k] for k in served} == served, listed
    scan = team.run("tokens", "--scan", str(cs.projects_dir(team.home)), "--json")
    assert scan.returncode == 0, scan.stdout + scan.stderr
    assert {k: json.loads(scan.stdout)["total"][k] for k in served} == served, scan.stdout
    # Every transcript the runs wrote (one per session id, the resumed one appended to).
    files = sorted(p.relative_to(cs.projects_dir(team.home)) for p in cs.projects_dir(team.home).rglob("*.jsonl"))
    print(f"\ntranscripts: {[str(f) for f in files]}\nserved: {served}")
    ids = {*team.row("builder")["session_ids"], *team.row("adversary")["session_ids"]}
    assert {f.stem for f in files} == ids, (files, ids)
