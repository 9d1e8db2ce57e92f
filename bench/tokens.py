#!/usr/bin/env python3
"""Bench: token accounting on one Claude Code corpus — ccusage, agents.py, agent-log.py, claude-code-log.

Usage: python3 bench/tokens.py [--corpus DIR | --size MB --seed N] [--runs N]
                               [--no-claude-code-log] [--incremental]

On the same files (a corpus from bench/claude_corpus.py, generated into a temporary
folder unless --corpus names one that holds projects/ and expected.json) it runs:

  ccusage            the pinned native build (bench/install_ccusage.py):
                     CLAUDE_CONFIG_DIR=DIR ccusage claude session --json --offline
                     (HOME is an empty folder, so no other agent's logs are read)
  agents.py tokens   python agents.py tokens --scan DIR/projects --json; skipped with a
                     line saying so while agents.py has no `tokens` command
  agent-log --totals python agent-log.py --totals DIR/projects
  agent-log render   python agent-log.py DIR/projects > /dev/null (the full text)
  claude-code-log    (PyPI, pinned, in a venv under ${XDG_CACHE_HOME:-~/.cache}/agents-py/)
                     convert DIR/projects --all-projects --no-cache -f md -o TMP; a time
                     beside agent-log's rendering. --no-claude-code-log skips it

and prints, per tool: the best of --runs wall times (each run a fresh process), MB/s,
the ratio to ccusage, peak memory (ru_maxrss of the tool's process tree), and whether
its totals equal expected.json and ccusage's. Python runs with the bare interpreter
(sys.executable), not a pyenv shim that adds ~0.1 s per start.

--incremental: a ~1 GB corpus (--size defaults to 1000 then), read the way the
watchdog reads (a cursor per file); 1 MB of new responses appended to one file, the
second read timed, and its totals checked against expected.json plus what was appended.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import claude_corpus  # noqa: E402
import install_ccusage  # noqa: E402

CLAUDE_CODE_LOG = "claude-code-log==1.7.0"
FIELDS = claude_corpus.FIELDS
CCUSAGE_FIELDS = dict(zip(("inputTokens", "outputTokens", "cacheCreationTokens", "cacheReadTokens"), FIELDS))
SPEC_FIELDS = dict(zip(("input", "output", "cache_creation", "cache_read"), FIELDS))
AGENT_LOG_FIELDS = dict(zip(("in", "out", "cache_creation", "cache_read"), FIELDS))

# Runs argv in a child, times it there and reports its process tree's peak memory:
# the wrapper's own start-up is outside the timing, and RUSAGE_CHILDREN of a fresh
# wrapper holds only this tool.
WRAPPER = r"""
import json, resource, subprocess, sys, time
argv, out = json.loads(sys.argv[1]), sys.argv[2]
with open(out, "wb") as fh:
    start = time.perf_counter()
    rc = subprocess.run(argv, stdout=fh, stderr=subprocess.PIPE).returncode
    seconds = time.perf_counter() - start
print(json.dumps({"rc": rc, "seconds": seconds, "maxrss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def measure(argv: list[str], env: dict | None = None, cwd: Path | None = None) -> tuple[dict, str]:
    """One run: {'rc', 'seconds', 'maxrss_kb'} and the tool's stdout."""
    with tempfile.NamedTemporaryFile(prefix="bench-tokens-", delete=False) as tmp:
        out = tmp.name
    try:
        proc = subprocess.run([sys.executable, "-c", WRAPPER, json.dumps(argv), out],
                              capture_output=True, text=True, env=env, cwd=cwd)
        meta = json.loads(proc.stdout)
        return meta, Path(out).read_text(encoding="utf-8", errors="replace")
    finally:
        os.unlink(out)


def best_of(runs: int, argv: list[str], **kw) -> tuple[dict, str]:
    results = [measure(argv, **kw) for _ in range(runs)]
    meta, text = min(results, key=lambda r: r[0]["seconds"])
    meta["maxrss_kb"] = max(r[0]["maxrss_kb"] for r in results)
    return meta, text


# -- reading each tool's totals --

def ccusage_totals(text: str) -> dict:
    totals = json.loads(text)["totals"]
    return {ours: totals[theirs] for theirs, ours in CCUSAGE_FIELDS.items()}


def agents_totals(text: str) -> dict:
    total = json.loads(text)["total"]
    return {ours: total[theirs] for theirs, ours in SPEC_FIELDS.items()}


def agent_log_totals(text: str) -> dict:
    """The grand TOTAL line (or the only one, for a single file)."""
    lines = [line for line in text.splitlines() if " TOTAL " in line]
    words = dict(word.split("=", 1) for word in lines[-1].split() if "=" in word)
    return {ours: int(words[theirs]) for theirs, ours in AGENT_LOG_FIELDS.items()}


def has_tokens_command() -> bool:
    """Whether agents.py has `tokens --scan` yet (its help exits 0 and names --scan)."""
    proc = subprocess.run([sys.executable, str(REPO / "agents.py"), "tokens", "--help"],
                          capture_output=True, text=True)
    return proc.returncode == 0 and "--scan" in proc.stdout


def ensure_claude_code_log() -> Path | None:
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    venv = Path(xdg) / "agents-py" / CLAUDE_CODE_LOG.replace("==", "-")
    binary = venv / "bin" / "claude-code-log"
    if binary.exists():
        return binary
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", CLAUDE_CODE_LOG], check=True,
                       capture_output=True, timeout=900)
    except (subprocess.SubprocessError, OSError) as error:
        print(f"claude-code-log: could not install {CLAUDE_CODE_LOG} into {venv} ({error})", file=sys.stderr)
        return None
    return binary if binary.exists() else None


# -- the table --

def corpus_bytes(corpus: Path) -> int:
    return sum(p.stat().st_size for p in (corpus / "projects").rglob("*.jsonl"))


def row(name: str, meta: dict | None, size: int, base: float | None, totals: dict | None,
        expected: dict, reference: dict | None, note: str = "") -> str:
    if meta is None:
        return f"{name:20} {'-':>8} {'-':>8} {'-':>7} {'-':>8}  {note}"
    seconds = meta["seconds"]
    ratio = f"{seconds / base:.2f}x" if base else "-"
    if meta["rc"] != 0:
        note = f"exit {meta['rc']} " + note
    agree = ""
    if totals is not None:
        agree = f"expected: {'yes' if totals == expected else 'NO'}"
        if reference is not None:
            agree += f"  ccusage: {'yes' if totals == reference else 'NO'}"
    return (f"{name:20} {seconds:7.2f}s {size / 1e6 / seconds:7.0f}  {ratio:>7} {meta['maxrss_kb'] / 1024:6.0f}MB"
            f"  {agree}{'  ' + note if note else ''}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--corpus", type=Path, help="a corpus folder (projects/ and expected.json) to reuse")
    parser.add_argument("--size", type=float, help="MB of corpus to generate (default 200; 1000 with --incremental)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3, help="runs per tool; the fastest is shown (default 3)")
    parser.add_argument("--no-claude-code-log", action="store_true")
    parser.add_argument("--incremental", action="store_true", help="time a read after 1 MB is appended")
    args = parser.parse_args(argv)

    scratch = Path(tempfile.mkdtemp(prefix="bench-tokens-"))
    try:
        corpus = args.corpus
        if corpus is None:
            corpus = scratch / "corpus"
            size = args.size or (1000 if args.incremental else 200)
            claude_corpus.main([str(corpus), "--size", str(size), "--seed", str(args.seed)])
        expected = json.loads((corpus / "expected.json").read_text())["total"]
        size = corpus_bytes(corpus)
        projects = corpus / "projects"
        print(f"corpus {corpus}: {size / 1e6:.1f} MB; runs per tool: {args.runs} (best shown); "
              f"{os.cpu_count()} CPUs")
        print(f"{'tool':20} {'time':>8} {'MB/s':>8} {'ratio':>7} {'peak':>8}  totals equal")

        home = scratch / "home"
        home.mkdir()
        ccusage = install_ccusage.ensure_ccusage(quiet=True)
        env = {"HOME": str(home), "CLAUDE_CONFIG_DIR": str(corpus), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        meta, text = best_of(args.runs, [str(ccusage), "claude", "session", "--json", "--offline"], env=env)
        reference = ccusage_totals(text) if meta["rc"] == 0 else None
        base = meta["seconds"]
        version = install_ccusage.pinned_version()
        print(row(f"ccusage {version}", meta, size, base, reference, expected, None, "native build"))

        python = [sys.executable]
        tokens = has_tokens_command()
        if tokens:
            meta, text = best_of(args.runs, python + [str(REPO / "agents.py"), "tokens", "--scan", str(projects),
                                                      "--json"], cwd=scratch)
            totals = agents_totals(text) if meta["rc"] == 0 else None
            print(row("agents.py tokens", meta, size, base, totals, expected, reference, "--scan --json, cold"))
        else:
            print(row("agents.py tokens", None, size, base, None, expected, reference,
                      "skipped: agents.py has no `tokens` command yet"))

        meta, text = best_of(args.runs, python + [str(REPO / "agent-log.py"), "--totals", str(projects)])
        totals = agent_log_totals(text) if meta["rc"] == 0 else None
        print(row("agent-log --totals", meta, size, base, totals, expected, reference))
        meta, _ = best_of(args.runs, python + [str(REPO / "agent-log.py"), str(projects)])
        render = meta
        print(row("agent-log render", meta, size, base, None, expected, reference, "full text to a file"))

        if not args.no_claude_code_log:
            binary = ensure_claude_code_log()
            if binary is None:
                print(row("claude-code-log", None, size, base, None, expected, reference, "skipped: not installed"))
            else:
                out = scratch / "ccl"
                copy = scratch / "ccl-in"  # it may write caches beside the files: a copy keeps the corpus clean
                shutil.copytree(projects, copy)
                meta, _ = best_of(1, [str(binary), "convert", str(copy), "--all-projects", "--no-cache",
                                      "-f", "md", "-o", str(out)], cwd=scratch)
                note = f"markdown, 1 run; {meta['seconds'] / render['seconds']:.1f}x agent-log render"
                print(row(CLAUDE_CODE_LOG.replace("==", " "), meta, size, base, None, expected, reference, note))

        if args.incremental:
            incremental(corpus, projects, expected, tokens, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


def incremental(corpus: Path, projects: Path, expected: dict, tokens: bool, scratch: Path) -> None:
    """The watchdog's way of reading: every file once with a cursor (as TokenBook keeps them), then
    1 MB of new responses appended to one file and the second pass timed — a stat per file, and
    only the appended bytes read."""
    import importlib.util
    import resource

    spec = importlib.util.spec_from_file_location("agents_under_bench", REPO / "agents.py")
    agents = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = agents  # dataclasses look their module up
    spec.loader.exec_module(agents)
    files = agents.transcript_files([projects])
    ledger, cursors = agents.TokenLedger(), {}
    began = time.perf_counter()
    for path in files:
        cursors[path] = agents.read_transcript(path, agents.TokenCursor(), ledger, group="all")
    first = time.perf_counter() - began
    target = max((p for p in files if p.read_bytes()[-1:] == b"\n"), key=lambda p: p.stat().st_size)
    session, added = claude_corpus.append_responses(target, 1_000_000, seed=12345)
    began = time.perf_counter()
    for path in files:
        cursor, info = cursors[path], path.stat()
        if info.st_size != cursor.offset or info.st_ino != cursor.inode:
            cursors[path] = agents.read_transcript(path, cursor, ledger, group="all")
    second = time.perf_counter() - began
    grown = {name: expected[name] + added[name] for name in FIELDS}
    totals = dict(zip(FIELDS, ledger.totals["all"]))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"incremental: {len(files)} files, first read {first:.2f}s; after 1 MB appended to {target.name}: "
          f"{second:.3f}s (target < 0.2 s); peak {peak:.0f} MB (this process, corpus reading included); "
          f"totals equal expected + appended: {'yes' if totals == grown else 'NO'}")
    # Put expected.json right for a reused corpus.
    data = json.loads((corpus / "expected.json").read_text())
    data["total"] = grown
    row = data["sessions"].setdefault(session, dict.fromkeys(FIELDS, 0))
    for name in FIELDS:
        row[name] += added[name]
    data.setdefault("appended", []).append({"file": str(target.relative_to(corpus)), **added})
    (corpus / "expected.json").write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
