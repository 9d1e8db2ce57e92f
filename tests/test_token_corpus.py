"""A small generated Claude Code corpus with known totals (bench/claude_corpus.py).

The generator writes, besides the transcripts, expected.json: the totals counted by
ccusage's rules (its docstring lists them). agent-log.py --totals must give the same,
and so must `agents.py tokens --scan --json`.
ccusage itself is checked against expected.json by bench/tokens.py, not here: the
unit tests install nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
GENERATOR = REPO / "bench" / "claude_corpus.py"
FIELDS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


def generate(out: Path, *flags: str) -> dict:
    proc = subprocess.run([sys.executable, str(GENERATOR), str(out), "--size", "0.5", "--seed", "11", *flags],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads((out / "expected.json").read_text())


def agent_log_totals(*paths: Path) -> list[dict]:
    """Every TOTAL line of agent-log.py --totals as {field: value}, the grand total last."""
    proc = subprocess.run([sys.executable, str(REPO / "agent-log.py"), "--totals", *map(str, paths)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    names = dict(zip(("in", "out", "cache_creation", "cache_read"), FIELDS))
    rows = []
    for line in proc.stdout.splitlines():
        words = dict(w.split("=", 1) for w in line.split() if "=" in w)
        rows.append({ours: int(words[theirs]) for theirs, ours in names.items()})
    return rows


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("corpus")
    return out, generate(out)


def test_generator_is_deterministic(tmp_path, corpus):
    out, expected = corpus
    again = generate(tmp_path)
    assert again["total"] == expected["total"]
    a = sorted(p.relative_to(out) for p in (out / "projects").rglob("*.jsonl"))
    b = sorted(p.relative_to(tmp_path) for p in (tmp_path / "projects").rglob("*.jsonl"))
    assert a == b
    assert all((out / p).read_bytes() == (tmp_path / p).read_bytes() for p in a)


def test_corpus_holds_every_trap(corpus):
    """The small corpus still has each thing a reader can get wrong."""
    out, expected = corpus
    features = expected["generator"]["features"]
    for name in ("sub-agent files", "<synthetic> lines", "files with a torn last line",
                 "responses with requestId only", "responses with requestId and requestRef",
                 "responses with requestRef only", "tool results"):
        assert features.get(name, 0) > 0, name
    assert features.get("resumed sessions", 0) + features.get("forked sessions", 0) > 0
    assert expected["rules_agree"]  # the default corpus: ccusage's rules and SPEC §7's give the same
    assert 200_000 < expected["generator"]["bytes"] < 1_500_000
    torn = [p for p in (out / "projects").rglob("*.jsonl") if not p.read_bytes().endswith(b"\n")]
    assert torn


def test_agent_log_totals_equal_expected(corpus):
    out, expected = corpus
    assert agent_log_totals(out / "projects")[-1] == expected["total"]


def test_agent_log_totals_per_session_equal_expected(corpus):
    """A session's totals: its file plus its sub-agent files, read with the rest of the
    corpus (copies in resumed sessions count where ccusage counts them: the first file)."""
    out, expected = corpus
    files = sorted((p for p in (out / "projects").rglob("*.jsonl")), key=str)
    rows = agent_log_totals(*files)[:len(files)]
    sessions: dict[str, dict] = {}
    for path, row in zip(files, rows):
        session = path.parent.parent.name if path.parent.name == "subagents" else path.stem
        into = sessions.setdefault(session, dict.fromkeys(FIELDS, 0))
        for name in FIELDS:
            into[name] += row[name]
    assert {s: r for s, r in sessions.items() if any(r.values())} == expected["sessions"]


def test_tokens_scan_equals_expected(corpus, tmp_path):
    out, expected = corpus
    proc = subprocess.run([sys.executable, str(REPO / "agents.py"), "tokens", "--scan", str(out / "projects"),
                           "--json"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    total = json.loads(proc.stdout)["total"]
    names = dict(zip(("input", "output", "cache_creation", "cache_read"), FIELDS))
    assert {ours: total[theirs] for theirs, ours in names.items()} == expected["total"]
