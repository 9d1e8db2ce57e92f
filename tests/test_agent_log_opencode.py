"""agent-log.py on opencode's store: what a user sees.

The fixture, ``opencode-1.18.33/opencode.sql``, is the real CLI's session,
message and part tables after ``opencode run --auto 'write a file'`` (one bash
call) and ``opencode run --session <id> 'carry on'`` against
tests/live/mock_opencode.py. Each test builds a store from it in a temporary
folder and adds rows as opencode would: a message row rewritten as it grows, a
part row rewritten as its tool runs. Following is tested in a subprocess (-f) and
poll by poll in this process, on a fake clock (Polling): what each poll prints,
what it fetched, what it keeps.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_agent_log import FIXTURES, PREFIX, TOOL, Follower, alog, render, run, totals, with_role

OPENCODE_SQL = FIXTURES / "opencode-1.18.33" / "opencode.sql"
SESSION = "ses_dacd8634cffeo7JHGDsy7uOB4H"  # the fixture's one session
FIXTURE_TOTAL = "in=2619 out=159 cache_creation=0 cache_read=390 total=3168 responses=3"
LATER = 1796695000000  # an hour after the fixture's session (ms, as opencode writes times): all of it is quiet
SLACK = alog.OPENCODE_SLACK_MS


def make_store(path: Path, wal: bool = False, rows: bool = True) -> Path:
    """opencode.db at ``path``, from the fixture (``wal``: in WAL mode, as the CLI keeps it;
    ``rows``: False for its tables only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sql = OPENCODE_SQL.read_text()
    if not rows:
        sql = "\n".join(line for line in sql.splitlines() if not line.startswith("INSERT"))
    with contextlib.closing(sqlite3.connect(path)) as db:
        if wal:
            db.execute("pragma journal_mode=wal")
        db.executescript(sql)
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
    store = make_store(tmp_path / "opencode.db", rows=False)
    T = 1796688000000  # 2026-12-08 00:00:00 UTC, in ms as opencode writes times
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
    """The CLI holding its store locked for longer than a read waits (a second, not much more)."""
    store = make_store(tmp_path / "opencode.db")  # a rollback journal: a writer's lock keeps readers out
    with contextlib.closing(sqlite3.connect(store, isolation_level=None)) as writer:
        writer.execute("begin exclusive")
        started = time.monotonic()
        code, lines, err = run(store)
        waited = time.monotonic() - started
    assert (code, lines) == (1, [])
    assert waited < 3, waited
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
cwd = "elsewhere"
"""


@pytest.fixture
def team(tmp_path: Path) -> Path:
    """Two agents sharing one store ($XDG_DATA_HOME = ~/data) and a folder, a third with the
    default data folder ($HOME/.local/share), a fourth in a folder of its own, and the session
    ids agents.py would have recorded (an older agents.py recorded the second sharer's too).
    Session ids are chosen to sort against their age, as opencode's do."""
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


def test_agent_sharing_a_folder_and_a_store_is_told_where_its_sessions_are(team: Path):
    """agents.py records the sessions begun in a folder that opencode agents share under the
    first of them (in agents.toml's order), and never resumes them: the second's --agent says so."""
    state_path = team.parent / "state" / "state.json"
    state = json.loads(state_path.read_text())
    del state["units"]["reviewer"]
    state_path.write_text(json.dumps(state))
    code, lines, err = run("--agent", "reviewer", "--config", team)
    assert (code, lines) == (1, [])
    assert err == (f"agent-log.py: agent 'reviewer' shares its folder and opencode's store with 'builder': "
                   f"agents.py records every session begun there under 'builder', the first of them in "
                   f"{team} (--agent builder shows their work)\n")


# ----------------------------------------------------------------------------
# Following (-f): rows added and rewritten under a running agent-log.py
# ----------------------------------------------------------------------------

def test_follow_prints_what_is_new_once(tmp_path: Path):
    """A new prompt; an answer whose tool call runs, then completes; its text streamed, then
    done; its message rewritten with grown figures and then finished: each printed once, the
    usage only when final, with the final figures. (The unfinished answer is rewritten well within
    OPENCODE_SLACK_MS of its last change, as the CLI does: it is not taken for abandoned.)"""
    store = make_store(tmp_path / "opencode.db", wal=True)

    def stamp() -> int:
        return int(time.time() * 1000)

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
        put_message(store, "msg_9a", SESSION, now + 1, {**answer, "tokens": tokens(300, 20)}, updated=stamp())
        # Another prompt: had the unfinished answer's usage been held back to print, it would come out now.
        put_message(store, "msg_9v", SESSION, now + 7, {"role": "user", "time": {"created": now + 7}})
        put_part(store, "prt_9v", "msg_9v", SESSION, now + 7, {"type": "text", "text": "fourth prompt"})
        seen = follower.wait_for("USER    fourth prompt")
        assert len(with_role(seen, "USAGE")) == 3
        put_message(store, "msg_9a", SESSION, now + 1, {
            **answer, "tokens": tokens(500, 40, reasoning=2, read=7, write=3), "finish": "stop",
            "time": {"created": now + 1, "completed": now + 8}}, updated=stamp())
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


# ----------------------------------------------------------------------------
# Following, poll by poll: the run loop's reads of a store in this process, on a fake clock
# ----------------------------------------------------------------------------

class Polling:
    """What agent-log.py -f does at each --interval, one poll per call, in this process: the
    store's clock is fake (ms, as opencode's times), and each poll's usage is settled, as a
    quiet file's is."""

    def __init__(self, store: Path, now: int = LATER):
        self.path, self.now = store, now
        self.out = io.StringIO()
        options = alog.Options(utc=True)
        self.run = alog.Run(alog.Printer(self.out, options), options, alog.Sources(lambda: [store]))
        self.store = self.run.transcript(store)
        self.store.clock = lambda: self.now / 1000

    def poll(self, at: int | None = None) -> list[str]:
        """The lines one poll printed (at ``at`` on the fake clock), without their time."""
        self.now = at or self.now
        start = len(self.out.getvalue())
        self.run.pump(self.path, final=False)
        self.run.settle(self.store)
        assert not self.run.errors
        lines = [line[9:] for line in self.out.getvalue()[start:].splitlines()]
        return [line for line in lines if not line.startswith("SYS     date ")]

    def kept(self) -> int:
        """Messages the store's reading keeps (each with its parts and what was printed of them)."""
        return sum(len(session.messages) for session in self.store.known.values())


def answer(at: int, **fields) -> dict:
    return {"role": "assistant", "modelID": "mock-model", "providerID": "mock", "time": {"created": at}, **fields}


def test_an_answer_never_finished_is_printed_once_a_newer_message_follows(tmp_path: Path):
    """A turn killed mid-answer leaves its message without finish or time.completed, its text
    without an end. While it is the session's last message it may still go on (a tool call can run
    for minutes); once a newer message is in the session and it has not changed for
    OPENCODE_SLACK_MS, it is printed as a one-off read prints it, and no longer read."""
    store = make_store(tmp_path / "opencode.db", wal=True)
    polling = Polling(store)
    assert "ASSIST  resumed answer" in polling.poll()
    put_message(store, "msg_k", SESSION, LATER, answer(LATER, tokens=tokens(50, 5)))
    put_part(store, "prt_k1", "msg_k", SESSION, LATER, {"type": "text", "text": "half an answer",
                                                        "time": {"start": LATER}})
    put_part(store, "prt_k2", "msg_k", SESSION, LATER + 1, {"type": "tool", "tool": "bash", "callID": "call_k",
                                                            "state": {"status": "pending", "input": {}}})
    assert polling.poll(LATER + 100) == []
    assert polling.poll(LATER + 5 * SLACK) == []  # quiet, but nothing came after it
    restart = LATER + 5 * SLACK
    put_message(store, "msg_n", SESSION, restart, {"role": "user", "time": {"created": restart}})
    put_part(store, "prt_n", "msg_n", SESSION, restart, {"type": "text", "text": "after the restart"})
    killed = ["ASSIST  half an answer", "TOOL>   bash (call_k)", "USAGE   in=50 out=5 cache_creation=0 cache_read=0"]
    assert polling.poll(restart + 100) == killed + ["USER    after the restart"]
    assert [line[9:] for line in render(store)[-5:-1]] == killed + ["USER    after the restart"]  # as a one-off read
    assert polling.poll(restart + 2 * SLACK) == []
    assert not polling.store.known[SESSION].open and polling.kept() == 1  # only the newest message


def test_a_final_answers_figures_that_grow_after_are_counted(tmp_path: Path):
    """An answer final by its finish (a step's) has its tokens rewritten a few seconds later: -f
    counts what they grew by, as agents.py and a one-off read count its last figures."""
    store = make_store(tmp_path / "opencode.db", wal=True)
    polling = Polling(store)
    polling.poll()
    put_message(store, "msg_g", SESSION, LATER, answer(LATER, tokens=tokens(100, 10), finish="tool-calls"))
    assert polling.poll(LATER + 100) == ["USAGE   in=100 out=10 cache_creation=0 cache_read=0"]
    put_message(store, "msg_g", SESSION, LATER, answer(LATER, tokens=tokens(300, 30), finish="stop",
                                                       time={"created": LATER, "completed": LATER + 3000}),
                updated=LATER + 3000)
    assert polling.poll(LATER + 3100) == [
        "USAGE   in=200 out=20 cache_creation=0 cache_read=0 (more for a response counted above)"]
    polling.run.totals()
    assert totals(polling.out.getvalue().splitlines()) == totals(render(store)) == {
        "opencode.db": "in=2919 out=189 cache_creation=0 cache_read=390 total=3498 responses=4"}


def test_an_answer_final_by_its_finish_alone_is_printed_whole(tmp_path: Path):
    """finish set, time.completed not (yet): the answer is final, its text (never ended) and its
    USAGE print at once."""
    store = make_store(tmp_path / "opencode.db", wal=True)
    polling = Polling(store)
    polling.poll()
    put_message(store, "msg_f", SESSION, LATER, answer(LATER, tokens=tokens(7, 1), finish="stop"))
    put_part(store, "prt_f", "msg_f", SESSION, LATER, {"type": "text", "text": "done", "time": {"start": LATER}})
    assert polling.poll(LATER + 100) == ["ASSIST  done", "USAGE   in=7 out=1 cache_creation=0 cache_read=0"]


def test_rows_committed_out_of_the_order_of_their_times_are_read(tmp_path: Path):
    """A message created before one already read, and a part changed before one already read, are
    committed after them (each row is a statement of its own): reads start OPENCODE_SLACK_MS
    before what they already have, and see them."""
    store = make_store(tmp_path / "opencode.db", wal=True)
    polling = Polling(store)
    polling.poll()
    exchange(store, SESSION, LATER, "first prompt", "first answer", tokens(1, 1), "o1")
    assert "ASSIST  first answer" in polling.poll(LATER + 500)
    late = LATER - SLACK // 2
    put_message(store, "msg_late", SESSION, late, {"role": "user", "time": {"created": late}})
    put_part(store, "prt_late", "msg_late", SESSION, late, {"type": "text", "text": "a prompt committed late"})
    assert polling.poll(LATER + 600) == ["USER    a prompt committed late"]
    put_part(store, "prt_o1a2", "msg_o1a", SESSION, LATER + 12, {"type": "text", "text": "a part committed late",
                                                                 "time": {"start": LATER + 12, "end": LATER + 13}})
    assert polling.poll(LATER + 700) == ["ASSIST  a part committed late"]


def quiet_sessions(store: Path, count: int, exchanges: int) -> None:
    """``count`` sessions of ``exchanges`` prompts and answers a minute apart, hours before LATER."""
    for number in range(count):
        session, start = f"ses_quiet{number:02}", LATER - 10 * 3600_000 + number * 3600_000
        add_session(store, session, start)
        for turn in range(exchanges):
            exchange(store, session, start + turn * 60_000, f"prompt {turn}", f"answer {turn}", tokens(1, 1),
                     f"q{number:02}{turn:02}")


def test_an_idle_poll_reads_only_what_may_have_changed(tmp_path: Path):
    """A poll scans the session rows and the rows added since the last; it reads a session's
    messages only if it is new, its row moved, a row was added to it, or a message of it is open;
    and those since its oldest open message (less the slack). What is kept of a closed message
    behind that is dropped."""
    store = make_store(tmp_path / "opencode.db", rows=False)
    quiet_sessions(store, 8, 10)
    add_session(store, "ses_active", LATER - 3600_000)
    for turn in range(10):
        exchange(store, "ses_active", LATER - 3600_000 + turn * 60_000, "old", "old answer", tokens(1, 1),
                 f"a{turn:02}")
    put_message(store, "msg_open", "ses_active", LATER - 1000, answer(LATER - 1000))  # still streaming
    put_part(store, "prt_open", "msg_open", "ses_active", LATER - 1000,
             {"type": "text", "text": "streami", "time": {"start": LATER - 1000}}, updated=LATER - 500)
    polling = Polling(store)
    assert sum(line.startswith("ASSIST") for line in polling.poll()) == 8 * 10 + 10
    # Of each quiet session its last prompt and answer (within the slack of its newest message: a
    # row committed late is told from them); of ses_active its open message.
    assert polling.kept() == 8 * 2 + 1
    assert len(polling.store.reader.shown.things) == 8 * 3  # what was printed of those: 2 parts, a USAGE
    assert polling.poll(LATER + 100) == []
    # 9 session rows, the 2 largest rowids; of ses_active alone, its open message and the part that
    # changed within the slack. Nothing of the quiet sessions, nor of ses_active's old messages.
    assert polling.store.fetched == 9 + 2 + 1 + 1
    write(store, "update part set data = ?, time_updated = ? where id = 'prt_open'",
          json.dumps({"type": "text", "text": "streamed", "time": {"start": LATER - 1000, "end": LATER + 200}}),
          LATER + 200)
    put_message(store, "msg_open", "ses_active", LATER - 1000, answer(LATER - 1000, finish="stop", tokens=tokens(4, 2)),
                updated=LATER + 300)
    exchange(store, "ses_quiet03", LATER + 400, "woken", "awake", tokens(1, 1), "w")
    assert polling.poll(LATER + 500) == [  # (sessions oldest first)
        "USER    woken", "ASSIST  awake", "USAGE   in=1 out=1 cache_creation=0 cache_read=0",
        "ASSIST  streamed", "USAGE   in=4 out=2 cache_creation=0 cache_read=0"]
    assert polling.poll(LATER + 3 * SLACK) == []
    assert polling.poll(LATER + 3 * SLACK + 100) == [] and polling.store.fetched == 9 + 2
    assert polling.kept() == 8 * 2 + 1


def test_rows_deleted_at_the_end_free_rowids_and_every_session_is_read_again(tmp_path: Path):
    """SQLite numbers a new row one past the largest rowid: once the last rows are deleted (a
    reverted turn), a new row takes a rowid read before. A largest rowid lower than the last
    read's makes every session read again: the new row is not missed."""
    store = make_store(tmp_path / "opencode.db", rows=False)
    quiet_sessions(store, 2, 3)
    polling = Polling(store)
    polling.poll()
    write(store, "delete from part where message_id in ('msg_q0102a', 'msg_q0102u')")
    write(store, "delete from message where id in ('msg_q0102a', 'msg_q0102u')")
    put_message(store, "msg_new", "ses_quiet00", LATER, {"role": "user", "time": {"created": LATER}})
    put_part(store, "prt_new", "msg_new", "ses_quiet00", LATER, {"type": "text", "text": "on a reused rowid"})
    assert polling.poll(LATER + 100) == ["USER    on a reused rowid"]


def test_a_read_is_one_snapshot(tmp_path: Path):
    """A row the CLI commits while a read goes on is not in that read, but in the next one."""
    store = make_store(tmp_path / "opencode.db", wal=True)
    polling = Polling(store)
    polling.poll()
    fetch = polling.store._fetch

    def commit_after_the_first_query(*args):
        rows = fetch(*args)
        if polling.store.fetched == len(rows):  # the read's first query
            exchange(store, SESSION, LATER, "meanwhile", "written meanwhile", tokens(1, 1), "m")
        return rows

    polling.store._fetch = commit_after_the_first_query
    exchange(store, SESSION, LATER - 100, "before", "written before", tokens(1, 1), "b")
    assert [line for line in polling.poll(LATER + 100) if "ASSIST" in line] == ["ASSIST  written before"]
    polling.store._fetch = fetch
    assert [line for line in polling.poll(LATER + 200) if "ASSIST" in line] == ["ASSIST  written meanwhile"]


# ----------------------------------------------------------------------------
# Odd rows, and how the store is opened
# ----------------------------------------------------------------------------

def test_debug_tells_of_a_message_that_is_no_object_and_one_not_understood(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch):
    """Either is skipped (said so under --debug) and the rest of the store is read."""
    store = make_store(tmp_path / "opencode.db")
    write(store, "insert into message values ('msg_list', ?, ?, ?, '[1, 2]')", SESSION, LATER, LATER)
    put_message(store, "msg_odd", SESSION, LATER + 1, answer(LATER + 1, providerID="odd", finish="stop"))
    model = alog.OpencodeReader._model

    def odd_model(self, session: str, message: dict, when):
        if message.get("providerID") == "odd":
            raise TypeError("a shape nobody expected")
        return model(self, session, message, when)

    monkeypatch.setattr(alog.OpencodeReader, "_model", odd_model)
    notes = ["SYS     ? message msg_list is not a JSON object",
             "SYS     ? message msg_odd not understood (a shape nobody expected)"]
    debug = [line[9:] for line in render("--debug", store)]
    assert [line for line in debug if "? message" in line] == notes
    assert f"TOTAL   {FIXTURE_TOTAL} (opencode.db)" in debug
    assert not any("? message" in line for line in render(store))


def test_a_count_too_large_for_an_integer_counts_nothing(tmp_path: Path):
    """1e999 is read as infinity: no traceback, no tokens (as agents.py counts it)."""
    store = make_store(tmp_path / "opencode.db")
    write(store, "update message set data = replace(data, '\"input\":882', '\"input\":1e999')")
    assert totals(render(store)) == {"opencode.db": "in=1737 out=159 cache_creation=0 cache_read=390 "
                                                    "total=2286 responses=3"}
    assert alog.as_int(float("inf")) == alog.as_int(float("nan")) == 0


def test_the_store_is_opened_read_only(tmp_path: Path):
    """A CLI killed with rows committed to opencode.db-wal only: reading them neither checkpoints
    them into opencode.db nor removes the WAL, as a connection that may write would on closing."""
    source = tmp_path / "live" / "opencode.db"
    source.parent.mkdir()
    with contextlib.closing(sqlite3.connect(source)) as db:
        db.execute("pragma journal_mode=wal")
        db.execute("pragma wal_autocheckpoint=0")
        db.executescript(OPENCODE_SQL.read_text())
        db.commit()
        store = tmp_path / "opencode.db"
        shutil.copy(source, store)
        shutil.copy(source.with_name("opencode.db-wal"), tmp_path / "opencode.db-wal")
    before = store.read_bytes(), (tmp_path / "opencode.db-wal").read_bytes()
    assert totals(render(store)) == {"opencode.db": FIXTURE_TOTAL}
    assert (store.read_bytes(), (tmp_path / "opencode.db-wal").read_bytes()) == before
