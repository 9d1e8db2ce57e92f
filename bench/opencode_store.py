#!/usr/bin/env python3
"""Bench: reading an opencode agent's tokens from opencode's SQLite store, as the watchdog does.

Usage: python3 bench/opencode_store.py [--sessions N] [--messages M] [--runs R]

Builds a store with opencode 1.18.33's session and message tables (the schema of the fixture
tests/fixtures/transcripts/opencode-1.18.33/opencode.sql) holding N sessions of one agent
(all recorded in its state; agents.py keeps up to 1,000 per agent) with M assistant
messages each, 10 s apart, then times, best of R:

  first read        TokenBook.read from nothing (every message counted once)
  idle read         the next read, nothing changed (the watchdog's usual tick)
  one message grew  the newest message rewritten with more output, its session's row touched
                    (as opencode does), and read
  session look      opencode_sessions: the sessions begun in the agent's folder in this life
                    (the life set as old as the store: every session row is looked at)

and checks the totals equal what was written. Standard library and agents.py only.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "transcripts" / "opencode-1.18.33" / "opencode.sql"
SPACING_MS = 10_000  # between two answers of the agent: each is written over some seconds


def load_agents():
    spec = importlib.util.spec_from_file_location("agents", ROOT / "agents.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["agents"] = module
    spec.loader.exec_module(module)
    return module


def build(store: Path, folder: Path, sessions: int, messages: int, start_ms: int) -> list[str]:
    schema = "\n".join(line for line in FIXTURE.read_text().splitlines() if not line.startswith("INSERT"))
    ids = []
    with contextlib.closing(sqlite3.connect(store)) as db:
        db.executescript(schema)
        for s in range(sessions):
            session = f"ses_{sessions - s:08d}"
            ids.append(session)
            created = start_ms + s * messages * SPACING_MS
            db.execute("insert into session (id, project_id, slug, directory, title, version, time_created, "
                       "time_updated) values (?, 'global', 's', ?, 't', '1.18.33', ?, ?)",
                       (session, str(folder), created, created))
            rows = []
            for m in range(messages):
                data = json.dumps({"role": "assistant", "modelID": "mock-model", "tokens": {
                    "input": 1000, "output": 50, "reasoning": 5, "cache": {"read": 200, "write": 0}}})
                at = start_ms + (s * messages + m) * SPACING_MS
                rows.append((f"msg_{s:06d}_{m:06d}", session, at, at, data))
            db.executemany("insert into message values (?, ?, ?, ?, ?)", rows)
        db.commit()
    return ids


def best(runs: int, action) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    ag = load_agents()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        work, data = root / "work", root / "data"
        work.mkdir()
        (data / "opencode").mkdir(parents=True)
        config = root / "agents.toml"
        config.write_text(f'[backend.opencode]\nenv = {{ XDG_DATA_HOME = "{data}" }}\n'
                          '[[agent]]\nname = "main"\nbackend = "opencode"\ncwd = "work"\n')
        cfg = ag.load_config(str(config))
        store = data / "opencode" / "opencode.db"
        now_ms = int(time.time() * 1000)
        count = args.sessions * args.messages
        built_from = now_ms - count * SPACING_MS - 60_000
        ids = build(store, work.resolve(), args.sessions, args.messages, built_from)
        # A life as long as the store's history: the session look visits every session row.
        state = {"units": {"main": ag.UnitRecord(session_ids=ids, started_at=built_from / 1000, lifecycle="running")}}
        print(f"store: {args.sessions} sessions x {args.messages} messages = {count:,} messages, "
              f"{store.stat().st_size / 1e6:.1f} MB")

        books: list = []

        def first() -> None:
            books.append(ag.TokenBook(root / f"tokens-{len(books)}.json"))
            books[-1].read(cfg, state)

        print(f"first read        {best(args.runs, first) * 1000:8.1f} ms")
        book = books[-1]
        figures = book.read(cfg, state)["main"]
        expected = [1000 * count, 55 * count, 0, 200 * count]
        print(f"idle read         {best(args.runs, lambda: book.read(cfg, state)) * 1000:8.1f} ms")
        grown = [0]
        newest = f"msg_{args.sessions - 1:06d}_{args.messages - 1:06d}"  # a message grows while it is new

        def grow() -> None:
            grown[0] += 1
            data_json = json.dumps({"role": "assistant", "modelID": "mock-model", "tokens": {
                "input": 1000, "output": 50 + grown[0], "reasoning": 5, "cache": {"read": 200, "write": 0}}})
            with contextlib.closing(sqlite3.connect(store)) as db:  # the message and its session's row, as opencode
                db.execute("update message set data = ?, time_updated = ? where id = ?",
                           (data_json, int(time.time() * 1000), newest))
                db.execute("update session set time_updated = ? where id = ?", (int(time.time() * 1000), ids[-1]))
                db.commit()
            book.read(cfg, state)

        print(f"one message grew  {best(args.runs, grow) * 1000:8.1f} ms (the write included)")
        print(f"session look      {best(args.runs, lambda: ag.opencode_sessions(cfg, state, ['main'])) * 1000:8.1f} ms")
        final = book.read(cfg, state)["main"]
        expected_final = [expected[0], expected[1] + grown[0], 0, expected[3]]
        ok = figures == expected and final == expected_final
        print(f"totals            {'equal to what was written' if ok else f'WRONG: {figures} / {final}'}")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
