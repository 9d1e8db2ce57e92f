"""The tmux layer against a real tmux server on a private socket."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from conftest import agents as ag, wait_for

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

ARGV_PRINTER = [sys.executable, "-c", "import json, os, sys, time; "
                "print(json.dumps({'argv': sys.argv[1:], 'cwd': os.getcwd(), 'x': os.environ.get('X_TEST')})); "
                "time.sleep(60)"]


@pytest.fixture
def tmux(socket_name):
    return ag.Tmux(socket_name)


def output_json(tmux: ag.Tmux, session: str) -> dict:
    def parsed():
        pane = tmux.list_panes().get(session)
        if pane is None:
            return None
        for line in tmux.capture_many([pane.pane_id])[pane.pane_id]:
            if line.startswith("{"):
                return json.loads(line)
        return None
    return wait_for(parsed, message=f"output of {session}")


def test_new_session_runs_argv_without_a_shell(tmux, tmp_path):
    tricky = ["a b", "$(touch pwned)", "`id`", ";", "'q'", "*", "{}", "end;", "back\\;", "kill-server"]
    tmux.new_session("s1", [*ARGV_PRINTER, *tricky], tmp_path, {**os.environ, "X_TEST": "v a l"}, "owner-1",
                     tmp_path / "env")
    seen = output_json(tmux, "s1")
    assert seen == {"argv": tricky, "cwd": str(tmp_path), "x": "v a l"}
    assert not (tmp_path / "pwned").exists()
    assert list((tmp_path / "env").iterdir()) == []  # the private env file was consumed


def test_session_options(tmux, tmp_path):
    tmux.new_session("s1", ARGV_PRINTER, tmp_path, dict(os.environ), "owner-1", tmp_path / "env", width=132,
                     height=43)
    pane = tmux.list_panes()["s1"]
    assert (pane.owner, pane.width, pane.height) == ("owner-1", 132, 43)
    shown = tmux.run(["display-message", "-p", "-t", pane.pane_id, "#{history_limit} #{remain-on-exit}"]).stdout
    assert shown.split() == ["50000", "on"]
    assert len(tmux.run(["list-windows", "-t", "=s1"]).stdout.splitlines()) == 1  # placeholder window gone


def test_environment_never_reaches_the_server_command_line(tmux, tmp_path):
    tmux.new_session("s1", ARGV_PRINTER, tmp_path, {**os.environ, "X_TEST": "secret-sk-ant-123"}, "o",
                     tmp_path / "env")
    assert output_json(tmux, "s1")["x"] == "secret-sk-ant-123"
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if tmux.socket.encode() in cmdline:
            assert b"secret-sk-ant-123" not in cmdline


def test_list_and_capture_are_one_call_each_for_many_panes(tmux, tmp_path):
    for n in range(6):
        tmux.new_session(f"s{n}", ARGV_PRINTER, tmp_path, dict(os.environ), "o", tmp_path / "env")
    tmux.calls = 0
    panes = tmux.list_panes()
    screens = tmux.capture_many([pane.pane_id for pane in panes.values()])
    assert tmux.calls == 2
    assert len(screens) == 6 and all(isinstance(lines, list) for lines in screens.values())


def test_capture_many_survives_a_vanished_pane(tmux, tmp_path):
    tmux.new_session("s1", ARGV_PRINTER, tmp_path, dict(os.environ), "o", tmp_path / "env")
    pane = tmux.list_panes()["s1"]
    screens = tmux.capture_many(["%9999", pane.pane_id])
    assert pane.pane_id in screens and "%9999" not in screens


def test_exact_targets(tmux, tmp_path):
    tmux.new_session("abc", ARGV_PRINTER, tmp_path, dict(os.environ), "o", tmp_path / "env")
    assert tmux.kill_session("ab") is False  # a bare "-t ab" would have matched "abc"
    assert "abc" in tmux.list_panes()


def test_dead_pane_status_is_collected(tmux, tmp_path):
    """tmux 3.3a sometimes misses a child's exit while a client polls; reap() makes it collect it."""
    cfg_dir = tmp_path / "cfg"
    cfg_dir.mkdir()
    (cfg_dir / "agents.toml").write_text(
        f'tmux_socket = "{tmux.socket}"\n[[service]]\nname = "quick"\n'
        f'command = ["{sys.executable}", "-c", "import sys, time; time.sleep(0.4); sys.exit(5)"]\n')
    cfg = ag.Loader(cfg_dir / "agents.toml").load()
    statuses = []
    for attempt in range(6):
        ag.Team(cfg, tmux).launch(cfg.services[0], {"units": {}}, "test", time.time())
        deadline = time.time() + 1.2
        while time.time() < deadline:  # poll while it exits: the condition that loses the SIGCHLD
            tmux.list_panes()
            time.sleep(0.1)
        seen = ag.observe(cfg, tmux, time.time())["quick"]
        statuses.append(seen.pane.dead_status if seen.pane else "gone")
    assert statuses == [5] * 6


def test_send_text_keeps_a_trailing_semicolon(tmux, tmp_path):
    log = tmp_path / "keys.log"
    reader = [sys.executable, "-c", "import os, sys, tty; tty.setraw(0); f = open(sys.argv[1], 'ab')\n"
              "while True:\n    f.write(os.read(0, 4096)); f.flush()", str(log)]
    tmux.new_session("r", reader, tmp_path, dict(os.environ), "o", tmp_path / "env")
    pane = wait_for(lambda: tmux.list_panes().get("r"), message="reader")
    time.sleep(0.3)
    for text in ("a;", "b;;", ";", "c\\;", "-t x"):
        tmux.send_text(pane.pane_id, text)
        tmux.send_keys(pane.pane_id, "Enter")
    wait_for(lambda: log.exists() and log.read_bytes().count(b"\r") == 5, message="all keys")
    assert log.read_bytes() == b"a;\rb;;\r;\rc\\;\r-t x\r"


def test_paste_keeps_newlines_as_one_bracketed_paste(tmux, tmp_path):
    log = tmp_path / "paste.log"
    reader = [sys.executable, "-c", "import os, sys, tty; tty.setraw(0); sys.stdout.write('\\x1b[?2004h'); "
              "sys.stdout.flush(); f = open(sys.argv[1], 'ab')\nwhile True:\n    f.write(os.read(0, 4096)); f.flush()",
              str(log)]
    tmux.new_session("r", reader, tmp_path, dict(os.environ), "o", tmp_path / "env")
    pane = wait_for(lambda: tmux.list_panes().get("r"), message="reader")
    time.sleep(0.3)
    tmux.paste(pane.pane_id, "one\ntwo $(x)\nthree")
    wait_for(lambda: log.exists() and b"\x1b[201~" in log.read_bytes(), message="paste end")
    assert log.read_bytes() == b"\x1b[200~one\ntwo $(x)\nthree\x1b[201~"
    assert tmux.run(["list-buffers"], check=False).stdout.strip() == ""  # the buffer was deleted


def test_folder_names_are_not_tmux_formats(tmux, tmp_path):
    """tmux expands formats in -c: a folder named '#(cmd)' must not run cmd."""
    folder = tmp_path / "x#(touch PWNED)#{session_name}"
    folder.mkdir()
    tmux.new_session("s1", ARGV_PRINTER, folder, dict(os.environ), "o", tmp_path / "env")
    assert output_json(tmux, "s1")["cwd"] == str(folder)
    assert not any(path.name == "PWNED" for path in tmp_path.rglob("PWNED"))
    assert not (Path.home() / "PWNED").exists()


def test_a_broken_tmux_is_an_error_not_an_empty_team(tmp_path, monkeypatch):
    """A tmux that cannot talk to its server must not read as 'every agent is dead'."""
    fake = tmp_path / "bin" / "tmux"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'protocol version mismatch (client 8, server 7)' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    with pytest.raises(ag.RuntimeFailure, match="protocol version mismatch"):
        ag.Tmux("whatever").list_panes()
    fake.write_text("#!/bin/sh\necho 'no server running on /tmp/tmux-0/x' >&2\nexit 1\n")
    assert ag.Tmux("whatever").list_panes() == {}


def test_killed_by_a_signal_reads_as_128_plus_signal(tmux, tmp_path):
    tmux.new_session("s1", ARGV_PRINTER, tmp_path, dict(os.environ), "o", tmp_path / "env")
    pane = wait_for(lambda: tmux.list_panes().get("s1"), message="pane")
    os.kill(pane.pid, 9)

    def dead_with_status() -> ag.Pane | None:
        found = tmux.list_panes()["s1"]
        if found.dead and found.dead_status is None:
            tmux.reap()  # tmux 3.3a may miss the SIGCHLD under load (CI saw it): what observe() does then
        return found if found.dead and found.dead_status is not None else None

    dead = wait_for(dead_with_status, message="dead pane with a status")
    assert dead.dead_status == 137
