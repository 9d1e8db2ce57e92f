"""Token accounting: the reader in agents.py and its twin in agent-log.py agree on every
transcript fixture, and the reader's rules hold (dedupe with the largest figures, torn lines,
files that shrink or are replaced, Codex totals that repeat)."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys

import pytest

from conftest import agents as ag
from conftest import OpencodeStore, held_open

FIXTURES = ag.Path(__file__).parent / "fixtures" / "transcripts"
AGENT_LOG = ag.Path(ag.__file__).parent / "agent-log.py"
TOTAL = re.compile(r"in=(\d+) out=(\d+) cache_creation=(\d+) cache_read=(\d+) total=(\d+)")


def agent_log_total(path) -> list[int]:
    out = subprocess.run([sys.executable, str(AGENT_LOG), "--totals", str(path)], capture_output=True, text=True,
                         timeout=60).stdout
    return [int(n) for n in TOTAL.findall(out.splitlines()[-1])[0][:4]]


def scan_total(*paths) -> list[int]:
    out = subprocess.run([sys.executable, str(ag.Path(ag.__file__)), "tokens", "--scan", *map(str, paths), "--json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    total = json.loads(out.stdout)["total"]
    assert total["total"] == sum(total[name] for name in ag.TOKEN_FIELDS)
    return [total[name] for name in ag.TOKEN_FIELDS]


@pytest.mark.parametrize("path", sorted(p.relative_to(FIXTURES) for p in FIXTURES.rglob("*.jsonl")) + [ag.Path(".")],
                         ids=str)
def test_tokens_scan_and_agent_log_agree_on_every_fixture(path):
    assert scan_total(FIXTURES / path) == agent_log_total(FIXTURES / path)


def lines(*objects) -> bytes:
    return b"".join(json.dumps(obj).encode() + b"\n" for obj in objects)


def response(message_id: str, output: int, request: str = "req_1", session: str = "s1", **usage) -> dict:
    return {"type": "assistant", "sessionId": session, "requestId": request,
            "message": {"id": message_id, "model": "claude-sonnet-4-5",
                        "usage": {"input_tokens": 10, "output_tokens": output, **usage}}}


def test_one_response_counts_once_with_its_largest_figures_across_files(tmp_path):
    ledger = ag.TokenLedger()
    first = tmp_path / "a.jsonl"
    first.write_bytes(lines(response("msg_1", 5), response("msg_1", 9), response("msg_2", 3)))
    ag.read_transcript(first, ag.TokenCursor(), ledger)
    copy = tmp_path / "b.jsonl"  # a resumed session's copy of the history, then one new response
    copy.write_bytes(lines(response("msg_1", 9, session="s2"), response("msg_3", 1, session="s2")))
    ag.read_transcript(copy, ag.TokenCursor(), ledger)
    assert ag.split_models(ledger.totals)[0] == {"s1": [20, 12, 0, 0], "s2": [10, 1, 0, 0]}


def test_a_week_of_responses_keeps_the_book_small_and_still_counts_each_once(tmp_path):
    """70,000 responses (a week of a busy agent): the book on disk stays under 20 bytes a response (~11 for each settled one),
    a copy of a long-settled response still counts nothing — before and after the book is saved
    and read back — and a recent response's later, larger line still adds its difference."""
    book = ag.TokenBook(tmp_path / "tokens.json")
    count = 70_000
    for n in range(count):
        book.ledger.count(f"claude:msg_01{n:022d}:req_011C{n:020d}", [10, 1, 0, 0], "builder", "claude-sonnet-4-5")
    assert len(book.ledger.seen) <= ag.TokenLedger.WINDOW
    assert book.ledger.count("claude:msg_01" + "0" * 22 + ":req_011C" + "0" * 20, [10, 1, 0, 0], "builder") == [0] * 4
    book.dirty = True
    book.save(now=1.0, force=True)
    size = book.path.stat().st_size
    assert size < 20 * count, size  # ~11 bytes a settled response, plus the window; every figure kept: ~75
    again = ag.TokenBook(book.path)
    assert again.ledger.totals == book.ledger.totals == {"builder": [10 * count, count, 0, 0],
                                                         "builder\tclaude-sonnet-4-5": [10 * count, count, 0, 0]}
    assert again.ledger.count(f"claude:msg_01{5:022d}:req_011C{5:020d}", [10, 1, 0, 0], "builder") == [0] * 4
    newest = f"claude:msg_01{count - 1:022d}:req_011C{count - 1:020d}"
    assert again.ledger.count(newest, [10, 4, 0, 0], "builder") == [0, 3, 0, 0]  # its next block, grown
    assert again.ledger.count("claude:msg_new:req_new", [7, 1, 0, 0], "builder") == [7, 1, 0, 0]


def test_an_older_book_keeping_every_figure_is_settled_when_read(tmp_path, capsys):
    """A tokens.json written before digests were kept (every response's figures) is read as it
    was, its old responses settled; a damaged digest field is reported and every transcript read
    again, never silently dropped."""
    path = tmp_path / "tokens.json"
    seen = {f"claude:m{n}:r{n}": [1, 1, 0, 0] for n in range(ag.TokenLedger.WINDOW + 500)}
    path.write_text(json.dumps({"cursors": {}, "seen": seen, "totals": {"a": [len(seen), len(seen), 0, 0]}}))
    book = ag.TokenBook(path)
    assert len(book.ledger.seen) == ag.TokenLedger.WINDOW and len(book.ledger.settled) == 500 and book.dirty
    assert book.ledger.count("claude:m0:r0", [1, 1, 0, 0], "a") == [0] * 4
    assert book.ledger.count(f"claude:m{len(seen) - 1}:r{len(seen) - 1}", [1, 2, 0, 0], "a") == [0, 1, 0, 0]
    path.write_text(json.dumps({"cursors": {}, "seen": {}, "settled": "not base64!", "totals": {}}))
    damaged = ag.TokenBook(path)
    assert damaged.ledger.totals == {} and damaged.cursors == {}
    assert "tokens.json: unreadable" in capsys.readouterr().err


def test_a_book_from_before_gemini_keeps_its_cursors(tmp_path, capsys):
    """Cursors once kept the format as a flag (``"codex": true/false/null``): read as it was, no
    transcript read again."""
    path = tmp_path / "tokens.json"
    old = {"offset": 10, "inode": 7, "codex_totals": {}, "session": "s", "model": "", "tail": ""}
    path.write_text(json.dumps({"cursors": {"a": {**old, "codex": True}, "b": {**old, "codex": False},
                                            "c": {**old, "codex": None}}, "seen": {}, "totals": {}}))
    book = ag.TokenBook(path)
    assert {key: (cursor.format, cursor.offset) for key, cursor in book.cursors.items()} == \
        {"a": ("codex", 10), "b": ("claude", 10), "c": ("", 10)}
    assert capsys.readouterr().err == ""


def test_a_gemini_agents_chats_are_found_by_its_session_ids_and_counted_once(tmp_path):
    """Gemini CLI writes tmp/<project>/chats/session-<time>-<id8>.jsonl (a resume may open a second
    file with the same id) and its sub-agents' chats under chats/<id>/; a message written again as
    it grows (its tool calls), or re-listed by a ``$set``, counts once."""
    home = tmp_path / "gemini-home"
    config = tmp_path / "agents.toml"
    config.write_text(f'[backend.gemini]\nenv = {{ GEMINI_CLI_HOME = "{home}" }}\n'
                      '[[agent]]\nname = "main"\nbackend = "gemini"\ncwd = "."\n')
    cfg = ag.load_config(str(config))
    mine, other = "60ae4081-0b31-495c-a17f-675ded3f5622", "60ae4081-ffff-495c-a17f-675ded3f5622"  # same 8 first
    chats = home / ".gemini" / "tmp" / "work" / "chats"
    (chats / mine).mkdir(parents=True)

    def chat(path, session: str, *messages: dict) -> None:
        header = {"sessionId": session, "projectHash": "abc", "startTime": "t", "lastUpdated": "t", "kind": "main"}
        path.write_bytes(lines(header, *messages))

    def answer(mid: str, tokens: dict, **more) -> dict:
        return {"id": mid, "type": "gemini", "content": "x", "model": "gemini-3.1-pro-preview", "tokens": tokens, **more}

    first = {"input": 1000, "output": 50, "cached": 200, "thoughts": 10, "tool": 5, "total": 1065}
    chat(chats / f"session-2026-12-07T10-00-{mine[:8]}.jsonl", mine, {"id": "u1", "type": "user", "content": "hi"},
         answer("g1", first), answer("g1", first, toolCalls=[{"name": "run_shell_command"}]),
         {"$set": {"messages": [answer("g1", first)]}})
    chat(chats / f"session-2026-12-07T11-00-{mine[:8]}.jsonl", mine, answer("g2", {"input": 10, "output": 1}))
    chat(chats / mine / "sub-1.jsonl", "sub-1", answer("s1", {"input": 7, "output": 2, "cached": 3}))
    chat(chats / f"session-2026-12-07T12-00-{other[:8]}.jsonl", other, answer("g9", {"input": 999, "output": 99}))
    record = ag.UnitRecord(session_ids=[mine])
    found = ag.agent_transcripts(cfg, cfg.unit("main"), record)
    assert [path.name for path in found] == [f"session-2026-12-07T10-00-{mine[:8]}.jsonl",
                                              f"session-2026-12-07T11-00-{mine[:8]}.jsonl", "sub-1.jsonl"]
    figures = ag.TokenBook(tmp_path / "tokens.json").read(cfg, {"units": {"main": record}})
    assert figures["main"] == [1000 - 200 + 5 + 10 + 4, 50 + 10 + 1 + 2, 0, 200 + 3]


def test_a_torn_last_line_waits_for_the_rest_and_counts_once(tmp_path):
    ledger, path = ag.TokenLedger(), tmp_path / "s.jsonl"
    whole = lines(response("msg_1", 5), response("msg_2", 7))
    path.write_bytes(whole[:-20])
    cursor = ag.read_transcript(path, ag.TokenCursor(), ledger)
    assert ag.split_models(ledger.totals)[0]["s1"] == [10, 5, 0, 0] and cursor.offset == whole.index(b"\n") + 1
    path.write_bytes(whole)
    cursor = ag.read_transcript(path, cursor, ledger)
    assert ag.split_models(ledger.totals)[0]["s1"] == [20, 12, 0, 0] and cursor.offset == len(whole)
    assert ag.read_transcript(path, cursor, ledger) == cursor  # nothing new: nothing read


def test_a_replaced_or_shrunk_file_is_read_again_without_counting_twice(tmp_path):
    ledger, path = ag.TokenLedger(), tmp_path / "s.jsonl"
    path.write_bytes(lines(response("msg_1", 5), response("msg_2", 7)))
    cursor = ag.read_transcript(path, ag.TokenCursor(), ledger)
    replacement = tmp_path / "new.jsonl"
    replacement.write_bytes(lines(response("msg_1", 5), response("msg_3", 1)))
    replacement.replace(path)  # a new inode, a shorter file
    cursor = ag.read_transcript(path, cursor, ledger)
    assert ag.split_models(ledger.totals)[0]["s1"] == [30, 13, 0, 0] and cursor.offset == path.stat().st_size
    path.unlink()
    assert ag.read_transcript(path, cursor, ledger) == cursor  # gone: left as it was


def test_a_file_cut_short_and_regrown_past_the_cursor_is_read_again(tmp_path):
    """Same inode, a size past the cursor, but other bytes before it: read from the start (the
    responses already counted count nothing), not from the middle of some line."""
    ledger, path = ag.TokenLedger(), tmp_path / "s.jsonl"
    path.write_bytes(lines(response("msg_1", 5), response("msg_2", 7)))
    cursor = ag.read_transcript(path, ag.TokenCursor(), ledger)
    inode = path.stat().st_ino
    with open(path, "r+b") as handle:  # rewritten in place: one response kept, two new, longer
        handle.truncate(0)
        handle.write(lines(response("msg_1", 5), response("msg_3", 11, request="req_3333"),
                           response("msg_4", 13, request="req_4444")))
    assert path.stat().st_ino == inode and path.stat().st_size > cursor.offset
    cursor = ag.read_transcript(path, cursor, ledger)
    assert ag.split_models(ledger.totals)[0]["s1"] == [40, 5 + 7 + 11 + 13, 0, 0]
    assert cursor.offset == path.stat().st_size
    with open(path, "ab") as handle:  # a plain append afterwards: only the new line is read
        handle.write(lines(response("msg_5", 1)))
    assert ag.split_models(ledger.totals)[0]["s1"] == [40, 36, 0, 0]
    ag.read_transcript(path, cursor, ledger)
    assert ag.split_models(ledger.totals)[0]["s1"] == [50, 37, 0, 0]


def test_synthetic_lines_and_garbage_count_nothing(tmp_path):
    ledger, path = ag.TokenLedger(), tmp_path / "s.jsonl"
    synthetic = response("msg_x", 50)
    synthetic["message"]["model"] = "<synthetic>"
    path.write_bytes(b'not json "usage"\n[1, "usage"]\n' + lines(synthetic, {"type": "user", "usage": 5},
                                                                     response("msg_1", 2)))
    ag.read_transcript(path, ag.TokenCursor(), ledger)
    assert ag.split_models(ledger.totals)[0] == {"s1": [10, 2, 0, 0]}


def test_codex_rows_whose_totals_did_not_advance_are_skipped(tmp_path):
    def row(when: str, total: dict) -> dict:
        return {"timestamp": when, "type": "event_msg",
                "payload": {"type": "token_count", "info": {"total_token_usage": total, "last_token_usage": total}}}
    path = tmp_path / "rollout.jsonl"
    path.write_bytes(lines({"timestamp": "t0", "type": "session_meta", "payload": {"id": "cx1", "cwd": "/w"}},
                           row("t1", {"input_tokens": 100, "cached_input_tokens": 40, "output_tokens": 10}),
                           row("t2", {"input_tokens": 100, "cached_input_tokens": 40, "output_tokens": 10}),
                           row("t3", {"input_tokens": 250, "cached_input_tokens": 140, "output_tokens": 30})))
    ledger = ag.TokenLedger()
    ag.read_transcript(path, ag.TokenCursor(), ledger)
    assert ag.split_models(ledger.totals)[0] == {"cx1": [110, 30, 0, 140]}  # input excludes the cached part


def test_cost_prices_each_model_by_its_longest_prefix_and_never_guesses(tmp_path):
    path = tmp_path / "s.jsonl"
    opus, mystery = response("msg_1", 1_000_000), response("msg_2", 500)
    opus["message"]["model"] = "claude-opus-4-5-20251101"  # $25 per million output, $5 per million input
    mystery["message"]["model"] = "claude-mystery-9"
    opus["message"]["usage"]["input_tokens"] = 200_000
    path.write_bytes(lines(opus, mystery))
    out = subprocess.run([sys.executable, str(ag.Path(ag.__file__)), "tokens", "--scan", str(path), "--cost", "--json"],
                         capture_output=True, text=True, timeout=60)
    total = json.loads(out.stdout)["total"]
    assert total["cost_usd"] == pytest.approx(25.0 + 1.0) and total["unpriced"] == ["claude-mystery-9"]
    assert total["prices_dated"] == ag.PRICES_DATED
    config = tmp_path / "agents.toml"  # [pricing] comes first, and may price a model the table does not know
    config.write_text('[pricing]\n"claude-mystery" = { output = 2000 }\n"claude-opus-4-5" = { input = 1, output = 1 }\n'
                      '[[service]]\nname = "x"\ncommand = "sleep 1"\n')
    out = subprocess.run([sys.executable, str(ag.Path(ag.__file__)), "--config", str(config), "tokens", "--scan",
                          str(path), "--cost", "--json"], capture_output=True, text=True, timeout=60)
    total = json.loads(out.stdout)["total"]
    assert total["cost_usd"] == pytest.approx(1.2 + 1.0) and total["unpriced"] == []
    config.write_text('[pricing]\n"claude-x" = { output = "lots" }\n[[service]]\nname = "x"\ncommand = "sleep 1"\n')
    bad = subprocess.run([sys.executable, str(ag.Path(ag.__file__)), "--config", str(config), "check"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "[pricing] claude-x.output: expected dollars per million tokens" in bad.stderr


def test_codex_agents_sharing_a_cwd_each_count_only_the_rollouts_their_cli_holds(tmp_path):
    """Two Codex agents in one folder (the example config's layout): each rollout counts for the
    agent whose process holds it open — a real process with the agent's marker here, as the CLI
    keeps its rollout open — never for both; a rollout nobody was seen to hold counts once, for
    the first of them; the owners are recorded as session ids (an event each) and still decide
    once the processes are gone."""
    work, home = tmp_path / "work", tmp_path / "codex-home"
    work.mkdir()
    config = tmp_path / "agents.toml"
    config.write_text(f'[watchdog]\nlog_tokens = true\n[backend.codex]\nenv = {{ CODEX_HOME = "{home}" }}\n'
                      '[[agent]]\nname = "builder"\nbackend = "codex"\ncwd = "work"\n'
                      '[[agent]]\nname = "adversary"\nbackend = "codex"\ncwd = "work"\n')
    cfg = ag.load_config(str(config))
    assert ag.sharers(cfg, "codex") == {"builder": ["builder", "adversary"], "adversary": ["builder", "adversary"]}
    day = home / "sessions" / "2026" / "12" / "07"
    day.mkdir(parents=True)

    def rollout(session: str, output: int) -> ag.Path:
        path = day / f"rollout-2026-12-07T10-00-00-{session}.jsonl"
        path.write_bytes(lines({"timestamp": "t0", "type": "session_meta", "payload": {"id": session, "cwd": str(work)}},
                               {"timestamp": "t1", "type": "event_msg", "payload": {"type": "token_count", "info": {
                                   "total_token_usage": {"input_tokens": 100, "output_tokens": output}}}}))
        return path

    mine, theirs, orphan = (f"0000000{n}-1b57-71f2-9323-c52887429134" for n in (1, 2, 3))
    paths = {session: rollout(session, output) for session, output in ((mine, 1), (theirs, 2), (orphan, 3))}
    state = {"units": {}}
    with contextlib.ExitStack() as holders:
        # The adversary also reads the builder's rollout (a `tail -f`): only a writer owns one.
        for name, session, mode in (("builder", mine, "a"), ("adversary", theirs, "a"), ("adversary", mine, "r")):
            holders.enter_context(held_open(paths[session], ag.unit_marker(cfg, cfg.unit(name)), mode))
        book = ag.TokenBook(tmp_path / "tokens.json")
        figures = book.read(cfg, state)
        assert book.held == {"builder": {mine}, "adversary": {theirs}}
        assert figures["builder"] == [100 + 100, 1 + 3, 0, 0]  # its own, and the one nobody holds
        assert figures["adversary"] == [100, 2, 0, 0]
        world = ag.World()
        world.held = {name: ag.Sighting(sorted(sessions)) for name, sessions in book.held.items()}
        actions = ag.check_transcripts(cfg, state, world, 0.0)
        assert [(a.unit, a.purpose, a.memory["session_ids"]) for a in actions] == \
            [("adversary", "transcript", [theirs]), ("builder", "transcript", [mine])]
        assert "its CLI holds the rollout open" in actions[0].reason
    for action in actions:
        ag.remember(ag.record_of(state, action.unit), action.memory)
    fresh = ag.TokenBook(tmp_path / "tokens-again.json")  # nothing held now: the recorded ids decide
    figures = fresh.read(cfg, state)
    assert fresh.held == {} and figures["builder"] == [200, 4, 0, 0] and figures["adversary"] == [100, 2, 0, 0]
    (tmp_path / ".agents" / "state").mkdir(parents=True)  # agent-log.py --agent takes the same files
    (tmp_path / ".agents" / "state" / "state.json").write_text(json.dumps(
        {"units": {name: {"session_ids": ag.record_of(state, name).session_ids} for name in ("builder", "adversary")}}))
    for name in ("builder", "adversary"):
        out = subprocess.run([sys.executable, str(AGENT_LOG), "--totals", "--agent", name, "--config", str(config)],
                             capture_output=True, text=True, timeout=60)
        assert [int(n) for n in TOTAL.findall(out.stdout.splitlines()[-1])[0][:4]] == figures[name], out


def test_an_opencode_agents_messages_are_counted_once_as_they_grow_and_a_bad_store_is_reported(tmp_path):
    """opencode rewrites a message in its store as it grows: it counts once, with its last figures
    (output includes the reasoning opencode keeps apart). Only the agent's sessions count — those
    recorded, and one begun in its folder this life that the watchdog has not recorded yet — while
    opencode holds a write open; a reloaded book goes on from its cursors; a store that cannot be
    read is a problem named for the agent while another agent's store is still read."""
    import sqlite3

    work, data, other = tmp_path / "work", tmp_path / "data", tmp_path / "data-side"
    work.mkdir()
    config = tmp_path / "agents.toml"
    config.write_text(f'[watchdog]\nlog_tokens = true\n[backend.opencode]\nenv = {{ XDG_DATA_HOME = "{data}" }}\n'
                      '[[agent]]\nname = "main"\nbackend = "opencode"\ncwd = "work"\n'
                      f'[[agent]]\nname = "side"\nbackend = "opencode"\ncwd = "work"\n'
                      f'env = {{ XDG_DATA_HOME = "{other}" }}\n')
    cfg = ag.load_config(str(config))
    assert cfg.backends["opencode"].transcripts == "opencode" and ag.transcript_home(cfg, cfg.unit("main")) == data / "opencode"
    store, side = OpencodeStore(data / "opencode" / "opencode.db"), OpencodeStore(other / "opencode" / "opencode.db")
    for session in ("ses_a", "ses_b", "ses_other"):
        store.session(session, tmp_path / "elsewhere", 100.0)
    growing = store.answer("ses_a", 100.0, 1000, 10)
    store.answer("ses_b", 100.5, 500, 5, cache_read=50, reasoning=7)
    store.answer("ses_other", 100.5, 9999, 9999)  # nobody's
    side.session("ses_side", work, 100.0)
    side.answer("ses_side", 100.0, 3, 1)
    state = {"units": {"main": ag.UnitRecord(session_ids=["ses_a", "ses_b"], started_at=200.0, lifecycle="running"),
                       "side": ag.UnitRecord(session_ids=["ses_side"], started_at=100.0, lifecycle="running")}}
    book = ag.TokenBook(tmp_path / "tokens.json")
    with contextlib.closing(sqlite3.connect(store.path)) as writer:  # opencode in the middle of a write
        writer.execute("insert into message (id, session_id, time_created, time_updated, data) "
                       "values ('msg_open', 'ses_a', 1, 1, '{}')")
        assert book.read(cfg, state)["main"] == [1500, 22, 0, 50] and book.problems == []
    store.answer("ses_a", 100.0, 1000, 40, message=growing)  # the same message grown, in the same ms
    store.answer("ses_a", 101.0, 700, 3)
    store.session("ses_new", work, 200.0)  # begun this life, not recorded yet: counted now
    store.answer("ses_new", 201.0, 100, 1)
    assert book.read(cfg, state)["main"] == [2300, 56, 0, 50]
    book.save(0.0, force=True)
    again = ag.TokenBook(tmp_path / "tokens.json")
    assert again.cursors == book.cursors and f"{store.path}#ses_new" in again.cursors
    assert again.read(cfg, state)["main"] == [2300, 56, 0, 50] and again.problems == []
    store.path.write_bytes(b"not a database, " * 64)
    side.answer("ses_side", 300.0, 4, 2)
    figures = again.read(cfg, state)
    assert figures["main"] == [2300, 56, 0, 50] and figures["side"] == [7, 3, 0, 0]  # what was counted stays
    assert len(again.problems) == 2 and all("opencode.db" in problem for problem in again.problems), again.problems
    assert again.problems[1].startswith("reading main's opencode sessions: "), again.problems


def test_an_opencode_session_whose_row_has_not_moved_is_not_queried(tmp_path):
    """opencode adds a message's tokens to its session's row: a session quiet since well before
    its last message read has nothing new, and its messages are not queried again; one that
    moved is."""
    import sqlite3

    data = tmp_path / "data"
    config = tmp_path / "agents.toml"
    config.write_text(f'[backend.opencode]\nenv = {{ XDG_DATA_HOME = "{data}" }}\n'
                      '[[agent]]\nname = "main"\nbackend = "opencode"\n')
    cfg = ag.load_config(str(config))
    store = OpencodeStore(data / "opencode" / "opencode.db")
    for session in ("ses_old", "ses_live"):
        store.session(session, tmp_path, 100.0)
    store.answer("ses_old", 100.0, 10, 1)
    store.answer("ses_live", 100.0, 20, 2)
    state = {"units": {"main": ag.UnitRecord(session_ids=["ses_old", "ses_live"])}}
    book = ag.TokenBook(tmp_path / "tokens.json")
    assert book.read(cfg, state)["main"] == [30, 3, 0, 0]
    store.answer("ses_live", 1000.0, 5, 1)  # 15 minutes on: ses_live moved, ses_old did not
    queried = []
    connect = sqlite3.connect

    def counting(*args, **kwargs):
        db = connect(*args, **kwargs)
        db.set_trace_callback(lambda sql: queried.append(sql) if sql.startswith("select id, time_updated, data") else None)
        return db

    import unittest.mock

    with unittest.mock.patch.object(sqlite3, "connect", counting):
        assert book.read(cfg, state)["main"] == [35, 4, 0, 0]
    assert len(queried) == 1 and "'ses_live'" in queried[0], queried


def test_tokens_scan_reads_an_opencode_store_per_session(tmp_path):
    """The fixture is the store real opencode 1.18.33 wrote: a bash tool call's turn and a resumed
    turn in one session (the title request's usage is not stored by opencode)."""
    store = OpencodeStore(tmp_path / "data" / "opencode" / "opencode.db", rows=True)
    out = subprocess.run([sys.executable, str(ag.Path(ag.__file__)), "tokens", "--scan", str(tmp_path / "data"),
                          "--json"], capture_output=True, text=True, timeout=60)
    (row,) = json.loads(out.stdout)["rows"]
    assert (row["name"], row["files"]) == ("ses_dacd8634cffeo7JHGDsy7uOB4H", 1)
    assert scan_total(store.path) == [2619, 159, 0, 390]  # 3 answers: 882+873+864 in, 52+53+54 out, 120+130+140 read
    assert agent_log_total(store.path) == [2619, 159, 0, 390]
    (tmp_path / "data" / "notes.db").write_bytes(b"not a database, " * 64)
    out = subprocess.run([sys.executable, str(ag.Path(ag.__file__)), "tokens", "--scan", str(tmp_path / "data" / "notes.db")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "notes.db" in out.stderr and "not counted" in out.stderr, out


@pytest.mark.parametrize("kind", ["claude", "codex", "gemini"])
def test_a_line_nested_past_the_recursion_limit_counts_nothing_and_the_rest_still_counts(tmp_path, kind):
    """json.loads raises RecursionError, not ValueError, on a value nested 100,000 deep: such a
    line is skipped like any undecodable one, by both readers, never a traceback."""
    deep = "[" * 100_000 + "]" * 100_000
    good = {"claude": response("msg_1", 7),
            "codex": {"timestamp": "t1", "type": "event_msg", "payload": {"type": "token_count", "info": {
                "total_token_usage": {"input_tokens": 100, "output_tokens": 7}}}},
            "gemini": {"type": "gemini", "id": "m1", "tokens": {"input": 100, "output": 7}}}[kind]
    first = {"codex": {"timestamp": "t0", "type": "session_meta", "payload": {"id": "s1", "cwd": "/x"}},
             "gemini": {"sessionId": "s1", "projectHash": "h"}}.get(kind)
    bad = {"claude": f'{{"type": "assistant", "usage": {deep}}}', "codex": f'{{"payload": {deep}, "token_count": 1}}',
           "gemini": f'{{"tokens": {deep}}}'}[kind]
    path = tmp_path / "t.jsonl"
    path.write_bytes((lines(first) if first else b"") + bad.encode() + b"\n" + lines(good))
    assert scan_total(path)[1] == 7 and agent_log_total(path)[1] == 7
