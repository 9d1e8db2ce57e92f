"""Tests of simagent's --role builder / --role adversary hand-off logic, without tmux.

The role logic is plain functions of a git clone (``builder_turn``, ``adversary_turn``), so these
tests call them on real repositories in tmp_path: a bare remote seeded with PLAN.md and two
clones, one per role. Nothing here touches the network or the user's git identity.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

SIMAGENT = pathlib.Path(__file__).resolve().parent.parent / "examples" / "simagent.py"

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def load_simagent():
    spec = importlib.util.spec_from_file_location("simagent_roles_under_test", SIMAGENT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


sim = load_simagent()

# Git must not read the user's config (hooks path, signing, templates) nor prompt.
GIT_ENV = {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"}


@pytest.fixture(autouse=True)
def isolated_git(monkeypatch):
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)
    for key in ("GIT_DIR", "GIT_WORK_TREE", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL",
                "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(sim.time, "sleep", lambda seconds: None)  # retries need no real wait


def run(cwd, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@sim", *args],
                          cwd=cwd, capture_output=True, text=True, check=True, timeout=30)
    return done.stdout


class Team:
    """A bare remote seeded with PLAN.md, a builder clone and an adversary clone."""

    def __init__(self, root: pathlib.Path, plan: str):
        self.root = root
        self.remote = root / "remote.git"
        run(root, "init", "-q", "--bare", "-b", "main", str(self.remote))
        seed = root / "seed"
        run(root, "clone", "-q", str(self.remote), str(seed))
        (seed / "PLAN.md").write_text(plan, encoding="utf-8")
        (seed / ".gitignore").write_text(".simagent/\n", encoding="utf-8")
        run(seed, "add", "PLAN.md", ".gitignore")
        run(seed, "commit", "-q", "-m", "plan")
        run(seed, "push", "-q", "origin", "HEAD:main")
        self.builder = self.clone("builder")
        self.adversary = self.clone("adversary")

    def clone(self, name: str) -> str:
        path = self.root / name
        run(self.root, "clone", "-q", "-b", "main", str(self.remote), str(path))
        return str(path)

    def build(self, phase: str, subdir: str = "") -> str:
        return sim.builder_turn(self.builder, phase, "builder", subdir).did

    def review(self) -> str:
        return sim.adversary_turn(self.adversary, "adversary").did

    def subjects(self) -> list[str]:
        """Commit subjects on the remote's main, oldest first."""
        return run(self.root, "--git-dir", str(self.remote), "log", "--reverse",
                   "--format=%s", "main").splitlines()

    def show(self, path: str) -> str:
        return run(self.root, "--git-dir", str(self.remote), "show", f"main:{path}")


def test_plan_parsing(tmp_path):
    (tmp_path / "PLAN.md").write_text("# plan\np1: a b!\n\np2:  c  d\nnot a phase line\n")
    plan = sim.read_plan(str(tmp_path))
    assert list(plan) == ["p1", "p2"]
    assert plan["p1"] == [sim.Gate("a", False), sim.Gate("b", True)]
    assert [gate.label for gate in plan["p2"]] == ["c", "d"]


def test_claim_review_next_claim_until_done(tmp_path):
    team = Team(tmp_path, "p1: g1 g2\np2: g3\n")
    assert team.build("p1") == "claim g1"
    assert team.build("p1") == "wait g1"            # a claim waits for its review
    assert team.review() == "review g1 PASS"
    assert team.review() == "nothing"
    assert team.build("p1") == "claim g2"
    assert team.review() == "review g2 PASS"
    assert team.build("p1") == "done p1"
    assert team.build("p1") == "nothing"             # the status is written only once
    assert team.subjects()[1:] == [
        "claim(g1): attempt 1", "review(g1): PASS", "claim(g2): attempt 1",
        "review(g2): PASS", "status(p1): done"]
    status = team.show("STATUS-p1.md")
    assert status.splitlines()[0] == "## DONE"
    assert "- g1: PASS" in status and "- g2: PASS" in status
    assert "PASS" in team.show("reviews/g2.md")
    # The next phase starts from its own gates.
    assert team.build("p2") == "claim g3"


def test_bang_gate_fails_once_and_is_claimed_again(tmp_path):
    team = Team(tmp_path, "p1: g1!\n")
    assert team.build("p1") == "claim g1"
    assert team.review() == "review g1 FAIL"
    assert team.build("p1") == "claim g1"            # claimed again after the FAIL
    assert team.review() == "review g1 PASS"         # only the first claim is failed
    assert team.build("p1") == "done p1"
    assert team.subjects()[1:] == [
        "claim(g1): attempt 1", "review(g1): FAIL", "claim(g1): attempt 2",
        "review(g1): PASS", "status(p1): done"]
    first, second = (run(tmp_path / "builder", "log", "--format=%H", "-n1", f"HEAD~{n}")
                     for n in (3, 1))
    assert first != second


def test_two_pending_claims_are_reviewed_in_one_turn(tmp_path):
    # Two phases' builders (two clones) each claim one gate before the adversary looks.
    team = Team(tmp_path, "p1: a\np2: b!\n")
    other = team.clone("builder2")
    assert team.build("p1") == "claim a"
    assert sim.builder_turn(other, "p2", "builder2").did == "claim b"
    assert team.review() == "review a PASS; review b FAIL"
    assert team.subjects()[-2:] == ["review(a): PASS", "review(b): FAIL"]
    assert team.review() == "nothing"


def test_push_race_is_retried(tmp_path, monkeypatch):
    """Clone B's push is rejected because clone A pushes between B's pull and B's push (a
    pre-push hook in B does it, once): B pulls --rebase again and gets through."""
    team = Team(tmp_path, "p1: g1\n")
    assert team.build("p1") == "claim g1"            # the adversary now has work
    hook = pathlib.Path(team.adversary) / ".git" / "hooks" / "pre-push"
    fired = tmp_path / "hook-fired"
    hook.write_text(
        "#!/bin/sh\n"
        f"[ -e '{fired}' ] && exit 0\n"
        f": > '{fired}'\n"
        f"cd '{team.builder}' || exit 1\n"
        "unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE\n"
        "echo race > race.txt && git add race.txt\n"
        "git -c user.name=racer -c user.email=racer@sim commit -q -m 'race: builder pushes first'\n"
        "git push -q origin HEAD:main\n"
        "exit 0\n")
    hook.chmod(0o755)
    rejections = []
    original_push = sim.push

    def counting_push(repo, name, rng=None):
        rejections.append(original_push(repo, name, rng))
        return rejections[-1]

    monkeypatch.setattr(sim, "push", counting_push)
    assert team.review() == "review g1 PASS"
    assert fired.exists()
    assert rejections == [1]                         # one rejected push, then success
    subjects = team.subjects()
    assert subjects[-2:] == ["race: builder pushes first", "review(g1): PASS"]
    assert team.build("p1") == "done p1"


def test_unpushed_commit_of_an_earlier_turn_is_pushed_first(tmp_path):
    team = Team(tmp_path, "p1: g1\n")
    sim.commit_file(team.builder, "builder", "work/g1.txt", "x\n", "claim(g1): offline")
    assert team.build("p1") == "wait g1"             # it saw its own claim once pushed
    assert team.subjects()[-1] == "claim(g1): offline"


def test_inbox_is_read_and_consumed(tmp_path):
    team = Team(tmp_path, "p1: g1\n")
    seed = team.clone("human")
    os.makedirs(os.path.join(seed, "team"))
    pathlib.Path(seed, "team", "TO-BUILDER.md").write_text("Please also add docs.\n")
    run(seed, "add", "team/TO-BUILDER.md")
    run(seed, "commit", "-q", "-m", "note for the builder")
    run(seed, "push", "-q", "origin", "HEAD:main")
    result = sim.builder_turn(team.builder, "p1", "builder", "team")
    assert result.did == "inbox; claim g1"
    assert any("Please also add docs." in line for line in result.lines)
    assert "inbox: consumed TO-BUILDER.md" in team.subjects()
    assert not os.path.exists(os.path.join(team.builder, "team", "TO-BUILDER.md"))
    # Status files go into the subdir too.
    team.review()
    assert team.build("p1", subdir="team") == "done p1"
    assert team.show("team/STATUS-p1.md").startswith("## DONE\n")


def test_role_remembers_the_phase_and_reports_git_errors(tmp_path):
    team = Team(tmp_path, "p1: g1\np2: g2\n")
    role = sim.Role("builder", "builder", team.builder, None, "")
    assert role.turn("hello, no phase here").did == "nothing"
    assert role.turn("You are builder.\n\nPhase p1 starts now.").did == "claim g1"
    state_file = pathlib.Path(team.builder, ".simagent", "builder-role.json")
    assert json.loads(state_file.read_text())["phase"] == "p1"
    # A restart (a new Role) remembers the phase; a message naming another phase wins.
    again = sim.Role("builder", "builder", team.builder, None, "")
    assert again.phase == "p1"
    assert again.turn("ping: a review landed").did == "wait g1"
    assert again.turn("Phase p2 starts now.").did == "claim g2"
    assert sim.Role("builder", "builder", team.builder, "p1", "").phase == "p1"   # --phase
    # A broken remote is reported as an error result, not raised.
    run(team.builder, "remote", "set-url", "origin", str(tmp_path / "missing.git"))
    result = again.turn("Phase p2")
    assert result.did == "error"
    assert "git" in result.lines[-1]


def test_phase_mentioned():
    assert sim.phase_mentioned("Phase p1 starts now.") == "p1"
    assert sim.phase_mentioned("the phase's gates; Phase p2-b is next") == "p2-b"
    assert sim.phase_mentioned("Phases are long") is None
    assert sim.phase_mentioned("no phase") is None
