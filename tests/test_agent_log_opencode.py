"""agent-log.py on opencode's store: what a user sees.

The fixture, ``opencode-1.18.33/opencode.sql``, is the real CLI's session,
message and part tables after ``opencode run --auto 'write a file'`` (one bash
call) and ``opencode run --session <id> 'carry on'`` against
tests/live/mock_opencode.py. Each test builds a store from it in a temporary
folder and adds rows as opencode would: a message row rewritten as it grows, a
part row rewritten as its tool runs.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_agent_log import FIXTURES, PREFIX, TOOL, Follower, render, run, totals, with_role

OPENCODE_SQL = FIXTURES / "opencode-1.18.33" / "opencode.sql"
SESSION = "ses_dacd8634cffeo7JHGDsy7uOB4H"  # the fixture's one session
FIXTURE_TOTAL = "in=2619 out=159 cache_creation=0 cache_read=390 total=3168 responses=3"


def make_store(path: Path, wal: bool = False) -> Path:
    """opencode.db at ``path``, from the fixture (``wal``: in WAL mode, as the CLI keeps it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(path)) as db:
        if wal:
            db.execute("pragma journal_mode=wal")
        db.executescript(OPENCODE_SQL.read_text())
    return path


def write(store: Path, query: str, *parameters) -> None:
    with contextlib.closing(sqlite3.connect(store)) as db:
        db.execute(query, parameters)
        db.commit()


def add_session(store: Path, session: str, created: int, parent: str | None = None, title: str = "t") -> None:
    write(store, "insert into session (id, project_id, parent_id, slug, directory, title, version, time_created, "
                 "time_updated) values (?, 'global', ?, 'slug', '/work', ?, '1.18.33', ?, ?)",
          session, parent, title, created, created)


def put_message(store: Path, message: str, session: str, created: int, data: dict, updated: int = 0) -> None:
    """Add a message row, or rewrite it (a later ``updated``), as opencode does."""
    write(store, "insert into message (id, session_id, time_created, time_updated, data) values (?, ?, ?, ?, ?) "
                 "on conflict(id) do update set time_updated = excluded.time_updated, data = excluded.data",
          message, session, created, updated or created, json.dumps(data))


def put_part(store: Path, part: str, message: str, session: str, created: int, data: dict, updated: int = 0) -> None:
    write(store, "insert into part (id, message_id, session_id, time_created, time_updated, data) "
                 "values (?, ?, ?, ?, ?, ?) "
                 "on conflict(id) do update set time_updated = excluded.time_updated, data = excluded.data",
          part, message, session, created, updated or created, json.dumps(data))


def exchange(store: Path, session: str, at: int, prompt: str, answer: str, tokens: dict, stem: str) -> None:
    """A prompt and a finished answer with its tokens."""
    put_message(store, f"msg_{stem}u", session, at, {"role": "user", "time": {"created": at}})
    put_part(store, f"prt_{stem}u", f"msg_{stem}u", session, at, {"type": "text", "text": prompt})
    put_message(store, f"msg_{stem}a", session, at + 10, {
        "role": "assistant", "modelID": "mock-model", "providerID": "mock", "tokens": tokens, "finish": "stop",
        "time": {"created": at + 10, "completed": at + 20}})
    put_part(store, f"prt_{stem}a", f"msg_{stem}a", session, at + 15,
             {"type": "text", "text": answer, "time": {"start": at + 15, "end": at + 16}})


def tokens(input_tokens: int, output: int, reasoning: int = 0, read: int = 0, write: int = 0) -> dict:
    return {"total": input_tokens + output + reasoning + read + write, "input": input_tokens, "output": output,
            "reasoning": reasoning, "cache": {"read": read, "write": write}}


# ----------------------------------------------------------------------------
# Rendering the real store
# ----------------------------------------------------------------------------

REAL_OPENCODE_TEXT = """\
00:57:14 SYS     session ses_dacd8634cffeo7JHGDsy7uOB4H (opencode 1.18.33) cwd /tmp/ocx/work title Mock session
00:57:15 USER    "write a file"
00:57:15 SYS     model mock/mock-model
00:57:16 TOOL>   bash (call_mock_2) $ echo tool-ran > out.txt
00:57:16 TOOL>     description: Runs the command
00:57:17 TOOL<   (call_mock_2) (no output)
00:57:17 USAGE   in=882 out=52 cache_creation=0 cache_read=120
00:57:17 ASSIST  wrote the file.
00:57:17 USAGE   in=873 out=53 cache_creation=0 cache_read=130
00:57:19 USER    "carry on"
00:57:20 ASSIST  resumed answer
00:57:20 USAGE   in=864 out=54 cache_creation=0 cache_read=140
00:57:20 TOTAL   in=2619 out=159 cache_creation=0 cache_read=390 total=3168 responses=3 (opencode.db)"""


def test_real_opencode_store(tmp_path: Path):
    """opencode 1.18.33: the prompts, the bash call and its result, the answers; one USAGE line
    per assistant message (the step-finish parts repeat the figures: not counted again), the
    step-start, step-finish and patch parts skipped."""
    store = make_store(tmp_path / "opencode.db")
    lines = render(store)
    assert lines[:2] == [f"--:--:-- SYS     file {store}", "00:57:14 SYS     date 2026-12-08 (UTC)"]
    assert lines[2:] == REAL_OPENCODE_TEXT.split("\n")
    text = "\n".join(lines)
    for seen in ("write a file", "carry on", "$ echo tool-ran > out.txt", "wrote the file.", "resumed answer"):
        assert seen in text, seen
    assert len(with_role(lines, "USAGE")) == 3
    assert totals(lines) == {"opencode.db": FIXTURE_TOTAL}
    assert all(PREFIX.match(line) for line in lines)


def test_real_opencode_store_totals_only(tmp_path: Path):
    assert render("--totals", make_store(tmp_path / "opencode.db")) == [
        f"00:57:20 TOTAL   {FIXTURE_TOTAL} (opencode.db)"]


@pytest.mark.parametrize("given", ["opencode/opencode.db", "opencode", "."],
                         ids=["the store", "its folder", "the data folder"])
def test_a_folder_holding_the_store_reads_it(tmp_path: Path, given: str):
    """The store itself, the folder that holds it, or the data folder ($XDG_DATA_HOME) above that."""
    make_store(tmp_path / "opencode" / "opencode.db")
    assert totals(render(tmp_path / given)) == {"opencode.db": FIXTURE_TOTAL}


def test_a_store_under_another_name_is_known_by_its_header(tmp_path: Path):
    store = make_store(tmp_path / "opencode.db")
    copy = tmp_path / "backup-of-the-store"
    shutil.copy(store, copy)
    assert totals(render(copy)) == {"backup-of-the-store": FIXTURE_TOTAL}


SHAPES = """\
00:00:01 SYS     session ses_shapes (opencode 1.18.33) cwd /work title t
00:00:01 USER    look at this
00:00:01 USER    [image: image/png, 0.0 KB]
00:00:02 SYS     model mock/mock-model
00:00:02 THINK   pondering
00:00:02 THINK   [thinking not shown]
00:00:02 SYS     API error (attempt 2): APIError: Rate limited
00:00:03 TOOL>   read (c1) filePath: /nope
00:00:04 TOOL<   (c1) ERROR boom
00:00:05 SYS     APIError: overloaded
00:00:06 SYS     conversation compacted (auto)
00:00:07 COMPACT the summary
00:00:08 USAGE   in=5 out=1 cache_creation=0 cache_read=0
00:00:08 TOTAL   in=5 out=1 cache_creation=0 cache_read=0 total=6 responses=1 (opencode.db)"""


def test_part_shapes(tmp_path: Path):
    """Text the CLI wrote itself (synthetic) is hidden; an image file as a note; reasoning, shown or
    not; a retry; a failed tool; an answer's error; a compaction and its summary; an answer with
    zero tokens adds no USAGE line; an unknown part type is skipped (shown under --debug)."""
    store = tmp_path / "opencode.db"
    T = 1796688000000  # 2026-12-08 00:00:00 UTC, in ms as opencode writes times
    with contextlib.closing(sqlite3.connect(store)) as db:
        db.executescript("\n".join(line for line in OPENCODE_SQL.read_text().splitlines()
                                   if not line.startswith("INSERT")))
    add_session(store, "ses_shapes", T + 1000)
    put_message(store, "msg_1", "ses_shapes", T + 1000, {"role": "user", "time": {"created": T + 1000}})
    put_part(store, "prt_1a", "msg_1", "ses_shapes", T + 1000, {"type": "text", "text": "look at this"})
    put_part(store, "prt_1b", "msg_1", "ses_shapes", T + 1000,
             {"type": "file", "mime": "image/png", "filename": "dot.png", "url": "data:image/png;base64," + "A" * 20})
    put_part(store, "prt_1c", "msg_1", "ses_shapes", T + 1000,
             {"type": "text", "synthetic": True, "text": "Called the Read tool with the following input"})
    put_message(store, "msg_2", "ses_shapes", T + 2000, {
        "role": "assistant", "modelID": "mock-model", "providerID": "mock", "tokens": tokens(0, 0),
        "error": {"name": "APIError", "data": {"message": "overloaded"}},
        "time": {"created": T + 2000, "completed": T + 5000}})
    put_part(store, "prt_2a", "msg_2", "ses_shapes", T + 2000,
             {"type": "reasoning", "text": "pondering", "time": {"start": T + 2000, "end": T + 2001}})
    put_part(store, "prt_2b", "msg_2", "ses_shapes", T + 2000,
             {"type": "reasoning", "text": "", "time": {"start": T + 2000}})  # never ended: its message is final
    put_part(store, "prt_2c", "msg_2", "ses_shapes", T + 2000,
             {"type": "retry", "attempt": 2, "error": {"name": "APIError", "data": {"message": "Rate limited"}}})
    put_part(store, "prt_2d", "msg_2", "ses_shapes", T + 2500, {
        "type": "tool", "tool": "read", "callID": "c1",
        "state": {"status": "error", "input": {"filePath": "/nope"}, "error": "boom",
                  "time": {"start": T + 3000, "end": T + 4000}}})
    put_part(store, "prt_2e", "msg_2", "ses_shapes", T + 2500, {"type": "future-thing"})
    put_message(store, "msg_3", "ses_shapes", T + 6000, {"role": "user", "time": {"created": T + 6000}})
    put_part(store, "prt_3", "msg_3", "ses_shapes", T + 6000, {"type": "compaction", "auto": True})
    put_message(store, "msg_4", "ses_shapes", T + 7000, {
        "role": "assistant", "summary": True, "modelID": "mock-model", "providerID": "mock", "tokens": tokens(5, 1),
        "finish": "stop", "time": {"created": T + 7000, "completed": T + 8000}})
    put_part(store, "prt_4", "msg_4", "ses_shapes", T + 7000, {"type": "text", "text": "the summary"})
    lines = render(store)
    assert lines[2:] == SHAPES.split("\n")
    debug = render("--debug", store)
    assert "00:00:02 SYS     ? part future-thing" in debug and "00:00:01 SYS     ? text written by opencode" in debug


# ----------------------------------------------------------------------------
# A store that cannot be read
# ----------------------------------------------------------------------------

def not_sqlite(path: Path) -> None:
    path.write_text("this is no SQLite file, whatever its name says\n" * 10)


def damaged(path: Path) -> None:
    make_store(path)
    data = bytearray(path.read_bytes())
    data[100:] = b"\xff" * (len(data) - 100)  # the header survives, the pages do not
    path.write_bytes(bytes(data))


def without_tables(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("create table unrelated (x)")


@pytest.mark.parametrize("spoil, reason", [
    (not_sqlite, "file is not a database"),
    (damaged, "malformed"),
    (without_tables, "no such table: session"),
], ids=["not sqlite", "damaged", "no tables"])
def test_an_unreadable_store_is_one_line_and_exit_1(tmp_path: Path, spoil, reason: str):
    store = tmp_path / "opencode.db"
    spoil(store)
    result = subprocess.run([sys.executable, str(TOOL), str(store)], capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.splitlines() == [result.stderr.strip()] and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"agent-log.py: {store}: not readable as opencode's store (")
    assert reason in result.stderr


def test_a_locked_store_is_one_line_and_exit_1(tmp_path: Path):
    """The CLI holding its store locked for longer than a read waits (a second)."""
    store = make_store(tmp_path / "opencode.db")  # a rollback journal: a writer's lock keeps readers out
    with contextlib.closing(sqlite3.connect(store, isolation_level=None)) as writer:
        writer.execute("begin exclusive")
        code, lines, err = run(store)
    assert (code, lines) == (1, [])
    assert err == f"agent-log.py: {store}: not readable as opencode's store (database is locked)\n"


# ----------------------------------------------------------------------------
# --agent NAME: the agent's sessions of the store, and their sub-agents'
# ----------------------------------------------------------------------------

TEAM = """\
state_dir = "state"

[backend.oc]
preset = "opencode"
env = { XDG_DATA_HOME = "~/data" }

[defaults]
cwd = "work"
backend = "oc"
env = { HOME = "HOMEDIR" }

[[agent]]
name = "builder"

[[agent]]
name = "reviewer"

[[agent]]
name = "plain"
backend = "opencode"

[[agent]]
name = "fresh"
"""


@pytest.fixture
def team(tmp_path: Path) -> Path:
    """Two agents sharing one store ($XDG_DATA_HOME = ~/data), a third with the default data
    folder ($HOME/.local/share), and the session ids agents.py would have recorded. Session ids
    are chosen to sort against their age, as opencode's do."""
    root, home = tmp_path / "team", tmp_path / "home"
    (root / "work").mkdir(parents=True)
    (root / "agents.toml").write_text(TEAM.replace("HOMEDIR", str(home)))
    (root / "state").mkdir()
    (root / "state" / "state.json").write_text(json.dumps({"units": {
        "builder": {"session_ids": [SESSION]}, "reviewer": {"session_ids": ["ses_0reviewer"]},
        "plain": {"session_ids": ["ses_plain"]}}}))
    store = make_store(home / "data" / "opencode" / "opencode.db")
    later = 1796691450000
    add_session(store, "ses_0reviewer", later)
    exchange(store, "ses_0reviewer", later, "review this", "reviewer answer", tokens(100, 10), "r1")
    add_session(store, "ses_00000helper1", later + 1000, parent=SESSION)
    exchange(store, "ses_00000helper1", later + 1000, "help out", "helper answer", tokens(20, 2), "h1")
    add_session(store, "ses_00000000deep", later + 2000, parent="ses_00000helper1")
    exchange(store, "ses_00000000deep", later + 2000, "dig", "deep answer", tokens(3, 1), "d1")
    add_session(store, "ses_00stray", later + 3000)
    exchange(store, "ses_00stray", later + 3000, "not recorded", "stray answer", tokens(1, 1), "s1")
    plain = make_store(home / ".local" / "share" / "opencode" / "opencode.db")
    write(plain, "update session set id = 'ses_plain'")
    write(plain, "update message set session_id = 'ses_plain'")
    return root / "agents.toml"


OPENCODE_AGENTS = [
    # (agent, answers shown, its total)
    ("builder", ["wrote the file.", "resumed answer", "[sub:0helper1] helper answer", "[sub:0000deep] deep answer"],
     "in=2642 out=162 cache_creation=0 cache_read=390 total=3194 responses=5"),
    ("reviewer", ["reviewer answer"], "in=100 out=10 cache_creation=0 cache_read=0 total=110 responses=1"),
    ("plain", ["wrote the file.", "resumed answer"], FIXTURE_TOTAL),  # no XDG_DATA_HOME: $HOME/.local/share
]


@pytest.mark.parametrize("agent, answers, total", OPENCODE_AGENTS, ids=[row[0] for row in OPENCODE_AGENTS])
def test_agent_reads_only_its_sessions_and_their_sub_agents(team: Path, agent: str, answers: list[str], total: str):
    code, lines, err = run("--utc", "--agent", agent, "--config", team)
    assert code == 0, err
    assert [line[17:] for line in with_role(lines, "ASSIST")] == answers
    assert totals(lines) == {"opencode.db": total}
    assert not any("stray" in line for line in lines)


def test_agent_sub_agent_sessions_say_whose_they_are(team: Path):
    _, lines, _ = run("--utc", "--agent", "builder", "--config", team)
    headers = [line[17:] for line in lines if " SYS     " in line and "session ses_" in line]
    assert headers == [
        f"session {SESSION} (opencode 1.18.33) cwd /tmp/ocx/work title Mock session",
        f"[sub:0helper1] session ses_00000helper1 (opencode 1.18.33, sub-agent of {SESSION}) cwd /work title t",
        "[sub:0000deep] session ses_00000000deep (opencode 1.18.33, sub-agent of ses_00000helper1) cwd /work title t",
    ]


def test_agent_without_recorded_sessions(team: Path):
    code, lines, err = run("--agent", "fresh", "--config", team)
    assert (code, lines) == (1, []) and "no session ids recorded for agent 'fresh'" in err


# ----------------------------------------------------------------------------
# Following (-f): rows added and rewritten under a running agent-log.py
# ----------------------------------------------------------------------------

def test_follow_prints_what_is_new_once(tmp_path: Path):
    """A new prompt; an answer whose tool call runs, then completes; its text streamed, then
    done; its message rewritten with grown figures and then finished: each printed once, the
    usage only when final, with the final figures."""
    store = make_store(tmp_path / "opencode.db", wal=True)
    follower = Follower(store)
    try:
        follower.wait_for("USAGE   in=864 out=54")
        now = int(time.time() * 1000)
        put_message(store, "msg_9u", SESSION, now, {"role": "user", "time": {"created": now}})
        put_part(store, "prt_9u", "msg_9u", SESSION, now, {"type": "text", "text": "third prompt"})
        answer = {"role": "assistant", "modelID": "mock-model", "providerID": "mock", "tokens": tokens(100, 1),
                  "time": {"created": now + 1}}
        put_message(store, "msg_9a", SESSION, now + 1, answer)
        call = {"type": "tool", "tool": "bash", "callID": "call_9",
                "state": {"status": "running", "input": {"command": "sleep 1"}, "time": {"start": now + 2}}}
        put_part(store, "prt_9b", "msg_9a", SESSION, now + 2, call)
        put_part(store, "prt_9c", "msg_9a", SESSION, now + 3,
                 {"type": "text", "text": "partial te", "time": {"start": now + 3}})
        follower.wait_for("TOOL>   bash (call_9) $ sleep 1")
        call["state"].update(status="completed", output="slept", time={"start": now + 2, "end": now + 4})
        put_part(store, "prt_9b", "msg_9a", SESSION, now + 2, call, updated=now + 4)
        follower.wait_for("TOOL<   (call_9) slept")
        put_part(store, "prt_9c", "msg_9a", SESSION, now + 3,
                 {"type": "text", "text": "all done", "time": {"start": now + 3, "end": now + 5}}, updated=now + 5)
        follower.wait_for("ASSIST  all done")
        put_message(store, "msg_9a", SESSION, now + 1, {**answer, "tokens": tokens(300, 20)}, updated=now + 6)
        # Another prompt: had the unfinished answer's usage been held back to print, it would come out now.
        put_message(store, "msg_9v", SESSION, now + 7, {"role": "user", "time": {"created": now + 7}})
        put_part(store, "prt_9v", "msg_9v", SESSION, now + 7, {"type": "text", "text": "fourth prompt"})
        seen = follower.wait_for("USER    fourth prompt")
        assert len(with_role(seen, "USAGE")) == 3
        put_message(store, "msg_9a", SESSION, now + 1, {
            **answer, "tokens": tokens(500, 40, reasoning=2, read=7, write=3), "finish": "stop",
            "time": {"created": now + 1, "completed": now + 8}}, updated=now + 8)
        follower.wait_for("USAGE   in=500 out=42 cache_creation=3 cache_read=7")
    finally:
        code, seen = follower.stop()
    assert code == 0
    assert all(PREFIX.match(line) for line in seen), seen
    body = [line[17:] for line in seen]
    for once in ("third prompt", "bash (call_9) $ sleep 1", "(call_9) slept", "all done", "fourth prompt"):
        assert body.count(once) == 1, once
    assert not any("partial te" in line for line in seen)
    assert [line[17:] for line in with_role(seen, "USAGE")] == [
        "in=882 out=52 cache_creation=0 cache_read=120", "in=873 out=53 cache_creation=0 cache_read=130",
        "in=864 out=54 cache_creation=0 cache_read=140", "in=500 out=42 cache_creation=3 cache_read=7"]
    assert totals(seen) == {"opencode.db": "in=3119 out=201 cache_creation=3 cache_read=397 total=3720 responses=4"}


def test_follow_an_agent_picks_up_its_new_session(team: Path):
    """A restarted agent records a new session id: -f reads that session of the store too."""
    follower = Follower("--agent", "reviewer", "--config", team)
    try:
        follower.wait_for("ASSIST  reviewer answer")
        store = team.parent.parent / "home" / "data" / "opencode" / "opencode.db"
        now = int(time.time() * 1000)
        add_session(store, "ses_0reviewer2", now)
        exchange(store, "ses_0reviewer2", now, "again", "reviewer again", tokens(5, 5), "r2")
        state_path = team.parent / "state" / "state.json"
        state = json.loads(state_path.read_text())
        state["units"]["reviewer"]["session_ids"].append("ses_0reviewer2")
        state_path.write_text(json.dumps(state))
        follower.wait_for("ASSIST  reviewer again")
    finally:
        code, seen = follower.stop()
    assert code == 0
    assert [line[17:] for line in with_role(seen, "ASSIST")] == ["reviewer answer", "reviewer again"]


def test_help_names_opencode():
    result = subprocess.run([sys.executable, str(TOOL), "--help"], capture_output=True, text=True, timeout=30)
    for needle in ("opencode.db", "opencode sub-agent sessions", "XDG_DATA_HOME", "For an opencode backend"):
        assert needle in result.stdout, needle
