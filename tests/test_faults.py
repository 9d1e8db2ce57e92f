"""Faults: nothing lost, nothing killed by mistake.

One test (or one table of cases) per item of the fault list: a deleted tmux socket, a launch
cut short, damaged state, values that would hang or spin the watchdog, hostile input, `check`
OK meaning `up` works, and the small things a script meets. Then the two fuzzers: bad configs
(each one line, exit 2, nothing started, fast) with the property that a config `check` accepts
is one `up` starts, and random damage to state.json while a simulated team runs.

Every test that touches tmux uses a private server (the ``project`` fixture) and cleans up;
processes are ended by pid only.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import sim as S
from conftest import AGENTS_PY, Project, marked_pids, remove_socket_file, wait_for
from conftest import agents as ag

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
HOUR = 3600.0

# A REPL the tests can read: prints "> ", writes every line it gets to got.log, answers "ok".
REPL = """\
import sys, os
log = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "got.log"), "a")
while True:
    sys.stdout.write("> "); sys.stdout.flush()
    line = sys.stdin.readline()
    if not line:
        break
    log.write(line); log.flush()
    print("ok")
"""

REPL_BACKEND = r"""
[backend.repl]
preset = "shell"
command = ["{python}", "{root}/repl.py"]
idle = ['^>\s?(?P<input>.*)$']
submit_delay = 0.1
"""


def repl_project(project: Project, body: str) -> Project:
    (project.root / "repl.py").write_text(REPL)
    project.write(REPL_BACKEND.format(python=sys.executable, root=project.root) + textwrap.dedent(body))
    return project


def socket_file(name: str) -> Path:
    return Path(os.environ.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}" / name


def one_short_error(result: subprocess.CompletedProcess, limit: int = 3) -> list[str]:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, (result.returncode, result.stdout[-500:], result.stderr[-500:])
    assert "Traceback" not in result.stderr, result.stderr
    assert 1 <= len(lines) <= limit, result.stderr
    assert all(len(line) <= 320 for line in lines), [len(line) for line in lines]
    return lines


def end_watchdogs_of(project: Project) -> None:
    """Every watchdog process of this project's config (a second one is the bug being tested), by pid."""
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(project.config).encode() in argv and b"watchdog" in argv:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


# =============================================================================================
# 1. A deleted tmux socket never costs the team
# =============================================================================================


@needs_tmux
def test_deleted_socket_up_restart_down_refuse_and_status_says_unreachable(project):
    project.write('[[service]]\nname = "web"\ncommand = "sleep 300"\n[[service]]\nname = "worker"\n'
                  'command = "sleep 301"\n')
    assert project.run("up", "--no-watchdog").returncode == 0
    pids = marked_pids(project.config)
    server = next(ag.tmux_server_of(pid) for pid in pids if ag.tmux_server_of(pid))
    socket_file(project.socket).unlink()  # what a /tmp cleaner does
    try:
        status = project.run("status")
        assert status.returncode == 0
        assert "tmux server unreachable" in status.stdout and f"kill -USR1 {server}" in status.stdout
        rows = json.loads(project.run("status", "--json").stdout)["services"]
        assert [row["state"] for row in rows] == ["unreachable (tmux server)"] * 2  # not "dead"
        for command in (["up", "--no-watchdog"], ["restart", "web"], ["down"]):
            result = project.run(*command)
            assert result.returncode == 1, (command, result.stdout, result.stderr)
            assert result.stderr.count("\n") == 1 and "tmux server unreachable" in result.stderr, result.stderr
        assert not socket_file(project.socket).exists()  # no second server was started
        assert all(ag.pid_alive(pid) for pid in pids)  # and nothing of the team was ended
    finally:
        os.kill(server, signal.SIGUSR1)  # the recovery the message names: the server makes its socket again
        wait_for(lambda: socket_file(project.socket).exists(), timeout=5, message="socket recreated")
    assert sorted(project.sessions()) == ["t-web", "t-worker"]
    assert project.run("down").returncode == 0


# =============================================================================================
# 2. A launch is a transaction
# =============================================================================================


class Killed(BaseException):
    """A kill -9 in the middle of an act: nothing after it runs, no except clause sees it."""


@needs_tmux
@pytest.mark.parametrize("where", ["after new-session", "before new-session"])
def test_launch_killed_midway_gets_its_kickoff_exactly_once(project, where):
    repl_project(project, '[[agent]]\nname = "a"\nbackend = "repl"\nwatch = "heal"\nprompt = "KICKOFF-LINE"\n')
    cfg = ag.load_config(str(project.config))

    class DyingTmux(ag.Tmux):
        def new_session(self, *args, **kwargs):
            if where == "after new-session":
                super().new_session(*args, **kwargs)
            raise Killed()

    team = ag.Team(cfg, tmux=DyingTmux(cfg.tmux_socket))
    with pytest.raises(Killed):
        team.bring_up(cfg.units(), "up")
    got = project.root / "got.log"

    def tick_until_delivered():
        project.run("watchdog", "--once")
        return got.exists() and "KICKOFF-LINE" in got.read_text()

    wait_for(tick_until_delivered, timeout=20, interval=0.3, message="the kickoff delivered")
    for _ in range(3):
        project.run("watchdog", "--once")
    assert got.read_text().count("KICKOFF-LINE") == 1
    assert project.states()["a"].startswith("idle")
    up = project.run("up", "--no-watchdog")
    assert "already running" in up.stdout and got.read_text().count("KICKOFF-LINE") == 1


# =============================================================================================
# 3. Damaged state is repaired and reported, never silently reset
# =============================================================================================

DAMAGE = {
    "garbage": b"\x00\x01garbage{{{",
    "empty": b"",
    "list": b"[]",
    "null": b"null",
    "units null": b'{"units": null}',
    "record a number": b'{"units": {"alpha": 5, "beta": 5}}',
    "bad started_at": b'{"units": {"alpha": {"lifecycle": "running", "started_at": "yesterday"}}}',
    "huge since": b'{"units": {"alpha": {"lifecycle": "running", "since": 1e300}}}',
    "nan": b'{"units": {"alpha": {"lifecycle": "running", "backoff_until": NaN, "since": Infinity}}}',
    "xff byte": b'{"units": {"alpha": {"lifecycle": "running\xff"}}}',
    "deep nesting": b'{"units": ' + b"[" * 100000 + b"]" * 100000 + b"}",
    "bad lifecycle": b'{"units": {"alpha": {"lifecycle": "zombie"}, "beta": {"lifecycle": ["running"]}}}',
    "wrong inner shapes": b'{"units": {"alpha": {"lifecycle": "running", "restart_times": ["x"], "limit": {"until": "soon"},'
                          b' "pings": [5], "waiting": {"text": 1}}}, "loop": {"seen": 5, "current": 3}}',
}


def real_store_sim(tmp_path: Path, names=("alpha", "beta"), seed: int = 0) -> S.Sim:
    """A simulated team whose state lives in a real StateStore (a real file) under tmp_path."""
    sim = S.Sim(tmp_path, S.config_text([S.agent_spec(name) for name in names], loop=False,
                                        watchdog={"signal_interval": 60}), seed=seed)
    sim.store = ag.StateStore(tmp_path / ".agents" / "state")
    sim.watchdog = sim._new_watchdog()
    sim.up()
    return sim


@pytest.mark.parametrize("case", list(DAMAGE), ids=list(DAMAGE))
def test_damaged_state_is_repaired_reported_and_a_dead_agent_is_healed(tmp_path, case):
    sim = real_store_sim(tmp_path)
    sim.run(HOUR)
    assert {sim.record(name).lifecycle for name in ("alpha", "beta")} == {"running"}
    starts_before = len(sim.starts("alpha"))
    sim.crash("alpha")
    sim.store.path.write_bytes(DAMAGE[case])
    if case not in ("bad started_at", "huge since", "nan", "wrong inner shapes"):
        sim.store.good_path.unlink()  # the worst case: no last good copy either, rebuilt from tmux alone
    sim.run(10 * 60)  # ten ticks
    assert len(sim.starts("alpha")) == starts_before + 1, "the dead agent was healed"
    assert sim.agent("alpha").alive and sim.agent("beta").alive
    repairs = sim.events("state-repaired")
    assert repairs and all(str(sim.store.path) in event["reason"] for event in repairs), repairs
    assert not sim.events("tick-failed") and not sim.events("check-failed") and not sim.events("act-failed")
    text = sim.store.path.read_text()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} written"))  # strict JSON again
    assert sim.record("beta").lifecycle == "running"


def test_unreadable_state_falls_back_to_the_last_good_copy(tmp_path):
    sim = real_store_sim(tmp_path)
    sim.crash("alpha")
    sim.run(2 * HOUR)
    restarts = sim.record("alpha").restarts
    assert restarts >= 1
    sim.store.path.write_text('{"units": {"alpha": {"restarts": ')  # truncated mid-write by a full disk
    sim.tick()
    assert sim.record("alpha").restarts == restarts  # the memory survived: not a fresh start
    repairs = [event["reason"] for event in sim.events("state-repaired")]
    assert any("state.last-good.json" in reason and "moved to state.broken-" in reason for reason in repairs), repairs
    assert list(sim.store.dir.glob("state.broken-*"))


def test_a_reader_warns_and_leaves_the_repair_to_the_writer(tmp_path, capsys):
    store = ag.StateStore(tmp_path)
    store.path.write_text('{"units": {"alpha": 5}}')
    state = store.load()
    assert state["units"]["alpha"].lifecycle == "stopped"
    assert f"warning: {store.path}" in capsys.readouterr().err
    assert store.path.read_text() == '{"units": {"alpha": 5}}'  # a reader writes nothing


def test_every_record_field_is_validated():
    import dataclasses

    for cls in (ag.UnitRecord, ag.LoopRecord):
        for spec in dataclasses.fields(cls):
            assert str(spec.type) in ag.FIELD_SHAPES, (cls.__name__, spec.name)
    with pytest.raises(ValueError):
        ag.StateStore(Path("/nonexistent")).save({"units": {"a": ag.UnitRecord(since=float("nan"))}})


def test_deleted_state_dir_is_noticed_and_recreated(tmp_path):
    sim = real_store_sim(tmp_path)
    sim.run(HOUR)
    sim.crash("beta")
    crashed, starts_before = sim.now, len(sim.starts("beta"))
    shutil.rmtree(sim.store.dir)
    sim.run(10 * 60)
    assert sim.store.path.exists()
    assert any("vanished" in event["reason"] for event in sim.events("state-repaired"))
    assert sim.agent("beta").alive and len(sim.starts("beta")) > starts_before
    assert sim.starts("beta")[starts_before] - crashed <= 3 * 60  # healed within three ticks
    assert {sim.record(name).lifecycle for name in ("alpha", "beta")} <= {"running", "starting"}


@needs_tmux
def test_a_second_watchdog_is_never_started_while_the_first_runs(project):
    project.write('[watchdog]\nsignal_interval = 0.5\n[[service]]\nname = "web"\ncommand = "sleep 300"\n')
    try:
        second_watchdog_is_refused(project)
    finally:
        end_watchdogs_of(project)


def second_watchdog_is_refused(project: Project) -> None:
    first = project.run("up")
    assert first.returncode == 0 and "watchdog: started" in first.stdout, first.stdout + first.stderr
    pid = project.watchdog_pid()
    state_dir = project.root / ".agents" / "state"
    shutil.rmtree(state_dir)  # lock file and pid file with it
    again = project.run("up")
    assert f"watchdog: already running (pid {pid})" in again.stdout, again.stdout + again.stderr
    wait_for(lambda: (state_dir / "watchdog.pid").exists(), timeout=10, message="the pid file written again")
    assert project.watchdog_pid() == pid
    second = project.run("watchdog", timeout=10)  # by hand, in the foreground: refused by the new lock
    assert second.returncode == 1 and "a watchdog already runs" in second.stderr
    cfg = ag.load_config(str(project.config))
    assert ag.watchdog_processes(cfg) == [pid]
    assert any("watchdog.lock" in event["reason"] for event in project.events("state-repaired"))


# =============================================================================================
# 4. No value can hang or spin the watchdog
# =============================================================================================

SPINNING_VALUES = [
    ("[watchdog]\nsignal_interval = 1e300\n", "[watchdog] signal_interval: must be at most"),
    ("[watchdog]\nbackoff_base = nan\n", "[watchdog] backoff_base: must be a finite number"),
    ("[watchdog]\nstall_idle = inf\n", "[watchdog] stall_idle: must be a finite number"),
    ("[watchdog]\nlimit_margin = -inf\n", "[watchdog] limit_margin: must be a finite number"),
    ("[watchdog]\ncrash_loop_restarts = 100000\n", "[watchdog] crash_loop_restarts: must be from 1 to 100"),
    ('[backend.shell]\nbusy = ["(a+)+$"]\n', "[backend.shell] busy: regex '(a+)+$' has a repeat inside a repeat"),
    ('[backend.shell]\nidle = ["^(\\\\w+\\\\s?)*$"]\n', "[backend.shell] idle: regex"),
    ('[backend.shell]\ndialog_keys = { "(a{1,3})+x" = "Enter" }\n', "[backend.shell] dialog_keys: regex"),
]


@pytest.mark.parametrize("body,expected", SPINNING_VALUES, ids=[v[1].split(":")[0] for v in SPINNING_VALUES])
def test_values_that_would_hang_or_spin_are_refused_at_load(project, body, expected):
    project.write('[[service]]\nname = "web"\ncommand = "sleep 300"\n' + body)
    began = time.monotonic()
    result = project.run("check", timeout=10)
    assert time.monotonic() - began < 8  # a spinning regex would take minutes; a loaded machine, a second or two
    assert any(expected in line for line in one_short_error(result)), result.stderr


def test_classifier_lines_are_bounded():
    """An ambiguous pattern the load check lets through costs at most what a bounded line costs."""
    backend = ag.Backend(name="x", busy=["^a*a*!$"])  # quadratic in the line's length
    pane = ag.Pane("s", "%1", 1, False, None, 0.0, 0.0, False, "", 200, 50)
    screen = ag.read_screen(backend, pane, ["a" * 100000 + "?"], 0.0)
    assert max(len(line) for line in screen.lines) <= 500


# =============================================================================================
# 5. Every bad input is one line and exit 2
# =============================================================================================

SERVICE = '[[service]]\nname = "web"\ncommand = "sleep 300"\n'


def hostile_inputs(root: Path) -> dict[str, tuple[bytes | None, str]]:
    """case → (config bytes, or None when the case makes the config itself), text the error holds."""
    (root / "binary.bin").write_bytes(bytes(range(256)) * 4)
    (root / "huge.md").write_bytes(b"x" * (1024 * 1024 + 10))  # over MAX_PROMPT_FILE
    fifo = root / "prompt.fifo"
    if not fifo.exists():
        os.mkfifo(fifo)
    agent = '[[agent]]\nname = "a"\nbackend = "shell"\n'
    return {
        "preset a list": (b'[backend.x]\npreset = []\n' + SERVICE.encode(), "[backend.x] preset: expected a preset name"),
        "@/dev/zero": ((agent + 'prompt = "@/dev/zero"\n').encode(), "is not a regular file"),
        "@fifo": ((agent + f'prompt = "@{fifo}"\n').encode(), "is not a regular file"),
        "@binary": ((agent + 'prompt = "@binary.bin"\n').encode(), "not UTF-8 text"),
        "@huge": ((agent + 'prompt = "@huge.md"\n').encode(), "bytes; at most"),
        "NUL in cwd": ((agent + 'cwd = "a\\u0000b"\n').encode(), "'a' cwd: holds a NUL byte"),
        "NUL in state_dir": (b'state_dir = "s\\u0000"\n' + SERVICE.encode(), "state_dir: holds a NUL byte"),
        "NUL in args": ((agent + 'args = ["x\\u0000"]\n').encode(), "'a' args: holds a NUL byte"),
        "NUL in env": ((agent + 'env = { K = "x\\u0000" }\n').encode(), "'a' env: K: holds a NUL byte"),
        "3000 levels": (b"x = " + b"[" * 3000 + b"]" * 3000 + b"\n", "nested too deeply"),
        "non-UTF-8": (b'session_prefix = "\xff\xfe"\n' + SERVICE.encode(), "not UTF-8 text (byte 0xff at line"),
        "empty": (b"", "nothing to run"),
        "comments only": (b"# agents\n# nothing here yet\n", "nothing to run"),
        "symlink loop": (None, "cannot read"),
        "a FIFO": (None, "is not a regular file"),
        "long value in the error": ((agent + 'kind = "' + "y" * 5000 + '"\n').encode(),
                                    "[[agent]] 'a' kind: must be one of loop, persistent, task"),
    }


@pytest.fixture
def hostile(tmp_path):
    return hostile_inputs(tmp_path)


HOSTILE_CASES = ["preset a list", "@/dev/zero", "@fifo", "@binary", "@huge", "NUL in cwd", "NUL in state_dir",
                 "NUL in args", "NUL in env", "3000 levels", "non-UTF-8", "empty", "comments only", "symlink loop",
                 "a FIFO", "long value in the error"]


@pytest.mark.parametrize("case", HOSTILE_CASES)
def test_every_bad_input_is_one_short_line_and_exit_2(project, hostile, case):
    body, expected = hostile[case]
    project.config.unlink(missing_ok=True)
    if case == "symlink loop":
        os.symlink(project.root / "loop-b", project.config)
        os.symlink(project.config, project.root / "loop-b")
    elif case == "a FIFO":
        os.mkfifo(project.config)
    else:
        project.config.write_bytes(f'tmux_socket = "{project.socket}"\n'.encode() + body if case not in
                                   ("empty", "comments only", "3000 levels", "non-UTF-8") else body)
    try:
        for command in ("check", "up"):
            began = time.monotonic()
            result = project.run(command, timeout=20)
            assert time.monotonic() - began < 8, (command, "took too long: it hangs on this input")
            lines = one_short_error(result)
            assert any(expected in line for line in lines), (case, lines)
        assert not socket_file(project.socket).exists() and project.sessions() == []
        assert not (project.root / ".agents" / "state" / "watchdog.pid").exists()
    finally:
        end_watchdogs_of(project)  # the old `up` started one for an empty config


# =============================================================================================
# 6. `check` OK means `up` works
# =============================================================================================


def test_check_refuses_what_up_could_not_do(project):
    (project.root / "a-file").write_text("")
    cases = [
        (f'[[service]]\nname = "{"n" * 65}"\ncommand = "sleep 1"\n', "name: is 65 characters long; at most 64"),
        ('session_prefix = "' + "p" * 65 + '"\n' + SERVICE, "session_prefix: is 65 characters long"),
        ('state_dir = "a-file/state"\n' + SERVICE, "state_dir: 'a-file/state' is not a folder"),
        ('log_dir = "a-file"\n' + SERVICE, "log_dir: 'a-file' is not a folder"),
    ]
    for body, expected in cases:
        project.config.write_text(body)
        assert any(expected in line for line in one_short_error(project.run("check"))), body
    project.config.write_text(f'tmux_socket = "{"s" * 120}"\n' + SERVICE)
    assert any("the socket path" in line for line in one_short_error(project.run("check")))


@needs_tmux
def test_up_failing_part_way_leaves_nothing_unwatched(project, monkeypatch, capsys):
    project.write('[watchdog]\nsignal_interval = 0.5\nbackoff_base = 1\n[[service]]\nname = "one"\ncommand = "sleep 300"\n'
                  '[[service]]\nname = "two"\ncommand = "sleep 301"\n')
    real = ag.Tmux.new_session
    calls = []

    def fail_second(self, name, *args, **kwargs):
        calls.append(name)
        if len(calls) == 2:
            raise ag.RuntimeFailure("tmux new-session failed: server exited unexpectedly")
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(ag.Tmux, "new_session", fail_second)
    monkeypatch.setenv("HOME", str(project.home))
    code = ag.main(["--config", str(project.config), "up"])
    err = capsys.readouterr().err
    assert code == 1
    assert "`up` failed part-way" in err and "running now: one (the watchdog looks after them)" in err, err
    wait_for(lambda: project.watchdog_pid() and ag.pid_alive(project.watchdog_pid()), timeout=10,
             message="the watchdog")
    wait_for(lambda: sorted(project.sessions()) == ["t-one", "t-two"], timeout=20,
             message="the watchdog starts the one that failed")


# =============================================================================================
# 7. Small things a script meets
# =============================================================================================


def test_a_closed_pipe_exits_0_quietly(project):
    project.write(SERVICE)
    logs = project.root / ".agents" / "logs"
    logs.mkdir(parents=True)
    line = json.dumps({"time": "2026-01-01T00:00:00+00:00", "kind": "note", "agent": "web", "reason": "x" * 100})
    (logs / "events.jsonl").write_text((line + "\n") * 20000)
    for args in (["events"], ["events", "--json"], ["logs", "watchdog", "-n", "20000"]):
        (logs / "watchdog.log").write_text(("y" * 100 + "\n") * 20000)
        process = subprocess.Popen([sys.executable, str(AGENTS_PY), "--config", str(project.config), *args],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=project.env())
        process.stdout.readline()
        process.stdout.close()  # `| head -1`
        err = process.stderr.read().decode()
        assert process.wait(timeout=20) == 0, (args, err)
        assert err == "", (args, err)


@pytest.mark.parametrize("edit,expected", [
    (b'session_prefix = "\xff"\n', "not UTF-8 text"),
    (b"x = " + b"[" * 3000 + b"]" * 3000 + b"\n", "nested too deeply"),
    (b"", "nothing to run"),
], ids=["bad bytes", "deep nesting", "emptied"])
def test_a_bad_live_edit_is_a_config_error_event(tmp_path, edit, expected):
    sim = real_store_sim(tmp_path)
    sim.run(HOUR)
    sim.config_path.write_bytes(edit)
    sim.run(5 * 60)
    errors = sim.events("config-error")
    assert len(errors) == 1 and expected in errors[0]["reason"], errors
    assert "changed while the team runs" not in errors[0]["reason"]
    assert not sim.events("tick-failed") and not sim.events("config-removed")
    sim.crash("alpha")  # the last good config stays in force
    sim.run(10 * 60)
    assert sim.agent("alpha").alive


@needs_tmux
def test_watchdog_out_rotates_like_the_other_logs(project):
    project.write(SERVICE)
    out = project.root / ".agents" / "logs" / "watchdog.out"
    out.parent.mkdir(parents=True)
    with open(out, "wb") as handle:
        handle.truncate(ag.EventLog.ROTATE_AT + 1)
    result = project.run("up")
    assert result.returncode == 0, result.stderr
    assert (out.parent / "watchdog.out.1").stat().st_size == ag.EventLog.ROTATE_AT + 1
    assert out.stat().st_size < 1024 * 1024


# =============================================================================================
# The config fuzzer
# =============================================================================================

GOOD_BASE = {
    "watchdog": {"signal_interval": 15, "stall_idle": 900},
    "backend.repl": {"preset": "shell", "command": ["python3", "repl.py"]},
    "agent": {"name": "a", "backend": "repl"},
    "service": {"name": "web", "command": "sleep 300"},
}
NUMBERS = {  # [watchdog] keys and the number each must not be
    "signal_interval": [0, 0.01, 3601, 1e300], "heavy_interval": [0, 1e9], "stall_idle": [0, 1e12],
    "stall_grace": [-1, 1e12], "hung_busy": [-1], "limit_fallback_wait": [0, 1e10], "limit_margin": [-5, 1e10],
    "backoff_base": [-1, 1e6], "backoff_max": [-1, 1e7], "crash_loop_restarts": [0, 101, 1.5],
    "crash_loop_window": [0, 1e10],
}
WRONG_TYPES = ['"x"', "[]", "{}", "true", "nan", "inf", "-inf", "+nan", "1979-05-27T07:32:00Z"]
BAD_PATTERNS = ["(a+)+$", "(a*)*b", "(\\\\w+\\\\s?)+$", "(x|y+)*z", "(a{1,3})+!", "((a+)?)+", "(a+){1,9}",
                "(", "[z-a]", "a{2,1}", "x" * 1100, "(?P<input", "\\\\"]
BAD_NAMES = ['""', '"my agent"', '"a.b"', '"' + "n" * 65 + '"', '"a\\u0000"', "5", "[]", '"é"', '"a/b"', '"a:b"']
BAD_TEXT = ['"a\\u0000b"', "5", "[]", "{}", "true"]
BACKEND_KEYS = ["busy", "idle", "dialog", "limit", "rate_limit", "placeholders", "self_resume", "manual_limit"]


def render(tables: dict[str, dict[str, str]], top: dict[str, str]) -> str:
    out = [f"{key} = {value}" for key, value in top.items()]
    for header, table in tables.items():
        bracket = f"[[{header}]]" if header in ("agent", "service") else f"[{header}]"
        out.append(bracket)
        out += [f"{key} = {value}" for key, value in table.items()]
    return "\n".join(out) + "\n"


def toml(value) -> str:
    return S.toml_value(value)


def bad_configs(seed: int, count: int) -> list[tuple[str, bytes]]:
    """``count`` configs, each with one (sometimes two) things wrong: types, ranges, NaN/inf, names,
    bytes, nesting, paths, patterns."""
    rng = random.Random(seed)
    cases: list[tuple[str, bytes]] = []

    def base() -> tuple[dict, dict]:
        tables = {header: {key: toml(value) for key, value in table.items()} for header, table in GOOD_BASE.items()}
        return tables, {}

    makers = []

    def number():
        tables, top = base()
        key = rng.choice(list(NUMBERS))
        value = rng.choice(NUMBERS[key] + WRONG_TYPES)
        tables["watchdog"][key] = value if isinstance(value, str) else repr(value).replace("inf", "inf")
        return f"[watchdog] {key} = {tables['watchdog'][key][:20]}", render(tables, top)
    makers.append(number)

    def wake():
        tables, top = base()
        tables["agent"]["wake"] = "{ interval = %s }" % rng.choice(["0", "nan", "inf", "1e12", '"hourly"', "-3"])
        return "wake " + tables["agent"]["wake"], render(tables, top)
    makers.append(wake)

    def pattern():
        tables, top = base()
        key = rng.choice(BACKEND_KEYS)
        value = rng.choice(BAD_PATTERNS)
        tables["backend.repl"][key] = f'["{value}"]' if rng.random() < 0.5 else f'"{value}"'
        return f"[backend.repl] {key} = {value[:20]}", render(tables, top)
    makers.append(pattern)

    def dialog_keys():
        tables, top = base()
        tables["backend.repl"]["dialog_keys"] = '{ "%s" = "Enter" }' % rng.choice(BAD_PATTERNS[:8])
        return "dialog_keys", render(tables, top)
    makers.append(dialog_keys)

    def backend_value():
        tables, top = base()
        key, value = rng.choice([("preset", "[]"), ("preset", '"clade"'), ("preset", "5"), ("submit_key", '""'),
                                 ("submit_key", '"Enter C-m"'), ("submit_delay", "nan"), ("submit_delay", "100"),
                                 ("screen_lines", "0"), ("screen_lines", "100000"), ("ready_timeout", "inf"),
                                 ("command", "[]"), ("command", '""'), ("command", '["a\\u0000"]'),
                                 ("command", '"unclosed \\"quote"'), ("transcripts", '"json"'), ("env", "[]"),
                                 ("env", '{ "1X" = "y" }'), ("env", '{ K = "\\u0000" }'), ("resume", "[]"),
                                 ("sumbit_key", '"Enter"')])
        tables["backend.repl"][key] = value
        return f"[backend.repl] {key} = {value}", render(tables, top)
    makers.append(backend_value)

    def agent_value():
        tables, top = base()
        key, value = rng.choice([("name", rng.choice(BAD_NAMES)), ("session", rng.choice(BAD_NAMES[1:])),
                                 ("kind", '"lop"'), ("kind", "5"), ("backend", '"nope"'), ("backend", "[]"),
                                 ("cwd", rng.choice(BAD_TEXT)), ("cwd", '"missing-folder"'),
                                 ("prompt", rng.choice(BAD_TEXT[1:])), ("prompt", '"@missing.md"'),
                                 ("prompt", '"@/dev/zero"'), ("prompt", '"@/dev/null/x"'), ("prompt", '"@."'),
                                 ("args", '["x\\u0000"]'), ("args", '"x"'), ("args", "[1]"), ("env", '{ A = [1] }'),
                                 ("watch", '"always"'), ("wake", "5"), ("promt", '"x"')])
        tables["agent"][key] = value
        return f"[[agent]] {key} = {value[:30]}", render(tables, top)
    makers.append(agent_value)

    def service_value():
        tables, top = base()
        key, value = rng.choice([("name", rng.choice(BAD_NAMES)), ("name", '"a"'), ("command", "[]"),
                                 ("command", "5"), ("cwd", '"a\\u0000"'), ("watch", '"heal+"'), ("env", "5")])
        tables["service"][key] = value
        return f"[[service]] {key} = {value[:30]}", render(tables, top)
    makers.append(service_value)

    def top_value():
        tables, top = base()
        key, value = rng.choice([("session_prefix", '"' + "p" * rng.randint(65, 300) + '"'),
                                 ("session_prefix", "5"), ("session_prefix", '"\\u0000"'),
                                 ("tmux_socket", '"' + "s" * rng.randint(100, 200) + '"'),
                                 ("tmux_socket", '"a b"'), ("tmux_socket", "[]"), ("state_dir", '"a-file"'),
                                 ("state_dir", '"a-file/x"'), ("log_dir", '"a-file"'), ("state_dir", "5"),
                                 ("log_dir", '"\\u0000"'), ("sesion_prefix", '"x"'), ("agent", "5"),
                                 ("service", '"x"'), ("backend", "[]"), ("defaults", "[]"), ("watchdog", "5")])
        top[key] = value
        if key in ("agent", "service", "backend", "watchdog"):
            tables.pop(key if key != "backend" else "backend.repl")
            if key == "backend":
                tables["agent"]["backend"] = '"shell"'
        return f"{key} = {value[:30]}", render(tables, top)
    makers.append(top_value)

    def loop_value():
        tables, top = base()
        tables["loop"] = {rng.choice(["phases", "repo", "done_nudge", "branch"]):
                          rng.choice(['[{ id = "p1" }, { id = "p1" }]', '"missing-repo"', "5", '[{ id = "" }]',
                                      '[{ id = "p 1" }]', '[{ id = "p1", kickoff = "@missing" }]', "[5]"])}
        tables["loop.handoff"] = {"claim_pattern": toml(rng.choice(BAD_PATTERNS[:6]))} if rng.random() < 0.3 else {}
        return "[loop]", render(tables, top).replace('repo = "."', 'repo = "missing-repo"')
    makers.append(loop_value)

    def raw_bytes():
        choice = rng.randrange(7)
        depth = rng.randint(1000, 5000)
        return "bytes", [b'x = "\xff\xfe"\n', b"\x00\x00\x00", b"x = " + b"[" * depth + b"]" * depth + b"\n",
                         b"a = { b = " * 1200 + b"1" + b" }" * 1200 + b"\n", b"",
                         b"# only a comment\n\n", b"[[agent]\nname = 'x'\n"][choice]
    makers.append(raw_bytes)

    while len(cases) < count:
        label, body = rng.choice(makers)()
        data = body if isinstance(body, bytes) else body.encode()
        cases.append((label, data))
    return cases


# agents.py's own main(), imported from its cached bytecode: compiling the 6,000-line file took half of
# each run's time, and 360 runs are a minute of CI. What runs is the same code as `python3 agents.py`.
MAIN_FROM_PYC = (f"import sys; sys.path.insert(0, {str(AGENTS_PY.parent)!r}); sys.argv[0] = {str(AGENTS_PY)!r}; "
                 "import agents; sys.exit(agents.main())")


def run_bad_config(root: Path, socket: str, number: int, label: str, data: bytes,
                   commands=("check",)) -> list[tuple[str, float, str]]:
    """Run ``commands`` on one bad config in its own folder; returns (command, seconds, problem or "")."""
    folder = root / f"c{number:04d}"
    folder.mkdir()
    (folder / "a-file").write_text("")
    (folder / "repl.py").write_text(REPL)
    config = folder / "agents.toml"
    header = b"" if label == "bytes" or b"tmux_socket" in data else f'tmux_socket = "{socket}"\n'.encode()
    config.write_bytes(header + data)
    out = []
    for command in commands:
        env = {**os.environ, "HOME": str(folder)}
        env.pop("TMUX", None)
        began = time.monotonic()
        result = subprocess.run([sys.executable, "-c", MAIN_FROM_PYC, "--config", str(config), command],
                                capture_output=True, text=True, timeout=30, env=env, cwd=folder)
        took = time.monotonic() - began
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        problem = ""
        if result.returncode != 2:
            problem = f"exit {result.returncode}"
        elif "Traceback" in result.stderr:
            problem = "traceback"
        elif not 1 <= len(lines) <= 3:
            problem = f"{len(lines)} lines"
        elif any(len(line) > 320 for line in lines):
            problem = "a long line"
        elif took >= 20:  # a hang (a FIFO read, a lock waited on), not a speed check
            problem = f"{took:.1f}s"
        elif socket_file(socket).exists():
            problem = "a tmux server started"
        out.append((command, took, problem and f"{label!r} {command}: {problem}: {result.stderr[-300:]}"))
    return out


def test_config_fuzzer_every_bad_config_is_one_short_line_and_exit_2(tmp_path):
    socket = f"agt-fuzz-{os.getpid()}-{secrets.token_hex(3)}"
    cases = bad_configs(seed=9, count=320)
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(
                lambda item: run_bad_config(tmp_path, socket, item[0], *item[1],
                                            commands=("check", "up") if item[0] % 8 == 0 else ("check",)),
                enumerate(cases)))
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)
        remove_socket_file(socket)
    runs = [run for result in results for run in result]
    problems = [problem for _, _, problem in runs if problem]
    times = sorted(took for _, took, _ in runs)
    print(f"config fuzzer: {len(cases)} configs, {len(runs)} runs, median {statistics.median(times):.2f}s, "
          f"max {times[-1]:.2f}s; {len(problems)} problems")
    assert len(cases) >= 300
    assert not problems, problems[:5]


def good_config(rng: random.Random, socket: str, root: Path) -> str:
    """A random config that should be valid: edge values of the ranges, long names, both kinds of unit."""
    name = rng.choice(["a", "agent_" + "x" * rng.randint(0, 57), "B-2"])[:64]
    prefix = rng.choice(["t-", "", "p" * rng.randint(1, 64)])
    watchdog = {"signal_interval": rng.choice([0.05, 1, 3600]), "backoff_base": rng.choice([0, 30, 86400]),
                "crash_loop_restarts": rng.choice([1, 100]), "stall_idle": rng.choice([1, 900, 3e7])}
    text = [f'tmux_socket = "{socket}"', f'session_prefix = "{prefix}"', "[watchdog]"]
    text += [f"{key} = {value!r}" for key, value in watchdog.items()]
    text += [REPL_BACKEND.format(python=sys.executable, root=root),
             "busy = ['^(\\\\w+ ){0,3}working$', '(?>a+)+x']",
             "[[agent]]", f'name = "{name}"', 'backend = "repl"', f'prompt = "hello {rng.randint(0, 9)}"',
             f"wake = {{ interval = {rng.choice([1, 3600])} }}",
             "[[service]]", f'name = "s{rng.randint(0, 9)}"', f"command = ['sleep', '{rng.randint(100, 300)}']"]
    return "\n".join(text) + "\n"


@needs_tmux
def test_property_a_config_check_accepts_is_one_up_starts(tmp_path):
    rng = random.Random(4)
    for number in range(4):
        (tmp_path / f"p{number}").mkdir()
        project = Project(tmp_path / f"p{number}", f"agt-{os.getpid()}-{secrets.token_hex(3)}")
        (project.root / "repl.py").write_text(REPL)
        try:
            project.config.write_text(good_config(rng, project.socket, project.root))
            check = project.run("check")
            assert check.returncode == 0, project.config.read_text() + check.stderr
            up = project.run("up", "--no-watchdog")
            assert up.returncode == 0, project.config.read_text() + up.stdout + up.stderr
            cfg = ag.load_config(str(project.config))
            assert sorted(project.sessions()) == sorted(unit.session for unit in cfg.units())
            assert "hello" in (project.root / "got.log").read_text()
            assert project.run("down").returncode == 0
        finally:
            project.cleanup()


# =============================================================================================
# The state fuzzer
# =============================================================================================


WRONG_FIELD_VALUES = {  # a record field → values it must never hold
    "lifecycle": ["zombie", 5, None], "since": [1e300, -1, "x", None, True], "started_at": [1e300, "x", [1]],
    "backoff_until": [-5, {"a": 1}], "restarts": [-1, 1.5, "x", True], "restart_times": [[None], ["x"], 5],
    "limit": [{"until": "x"}, 5, []], "pings": [[5], [{"key": 1}], "x"], "waiting": [{"seen": "x", "text": "t"}, 5],
    "session_ids": [[5], "x"], "reported": [{"a": [1]}, 5], "nudged": [{"p1": "x"}, []],
}


def corrupt(rng: random.Random, store: ag.StateStore) -> str:
    """One random damage to the state file (or its folder); returns what it was."""
    text = store.path.read_bytes() if store.path.exists() else b"{}"
    kind = rng.choice(["truncate", "garbage", "shape", "field", "nan", "bytes", "nesting", "delete", "rmdir"])
    if kind == "truncate":
        store.path.write_bytes(text[:rng.randrange(max(1, len(text)))])
    elif kind == "garbage":
        store.path.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randint(0, 300))))
    elif kind == "shape":
        store.path.write_text(rng.choice(["[]", "null", "5", '"x"', '{"units": null}', '{"units": []}',
                                          '{"units": {"alpha": 5, "beta": []}}', '{"loop": 5}']))
    elif kind == "field":
        data = json.loads(text)
        name = rng.choice(list(data.get("units", {})) or ["alpha"])
        field_name = rng.choice(list(WRONG_FIELD_VALUES))
        data.setdefault("units", {}).setdefault(name, {})[field_name] = rng.choice(WRONG_FIELD_VALUES[field_name])
        store.path.write_text(json.dumps(data))
    elif kind == "nan":
        damaged = text.replace(b'"since": ', b'"since": NaN, "x": ', 1)
        store.path.write_bytes(damaged if damaged != text else b'{"units": {"alpha": {"since": NaN}}}')
    elif kind == "bytes":
        position = rng.randrange(max(1, len(text)))
        store.path.write_bytes(text[:position] + b"\xff" + text[position + 1:])
    elif kind == "nesting":
        depth = rng.randint(2000, 50000)
        store.path.write_bytes(b'{"units": ' + b"[" * depth + b"]" * depth + b"}")
    elif kind == "delete":
        store.path.unlink(missing_ok=True)
    else:
        shutil.rmtree(store.dir)
    return kind


def test_state_fuzzer_damage_while_a_team_runs(tmp_path):
    rng = random.Random(11)
    sim = real_store_sim(tmp_path, names=("alpha", "beta", "gamma"), seed=11)
    sim.run(HOUR)
    tried = held = 0
    for round_number in range(60):
        victim = rng.choice(["alpha", "beta", "gamma", None])
        if victim and sim.agent(victim).alive:
            sim.crash(victim)  # damage and a death together: the worst moment for a lost record
        repairs_before = len(sim.events("state-repaired"))
        kind = corrupt(rng, sim.store)
        tried += 1
        for _ in range(2):  # within two ticks every unit is supervised again
            sim.tick()
            sim.clock.advance_to(sim.now + sim.interval)
        supervised = {name: sim.record(name).lifecycle for name in ("alpha", "beta", "gamma")}
        assert set(supervised.values()) <= {"running", "starting", "backoff"}, (round_number, kind, supervised)
        assert len(sim.events("state-repaired")) > repairs_before, (round_number, kind)
        sim.next_tick = sim.now
        sim.run(rng.choice([60, 300, 900]))
        held += 1
    sim.run(HOUR)
    assert all(sim.agent(name).alive for name in ("alpha", "beta", "gamma"))
    assert not sim.events("tick-failed") and not sim.events("check-failed") and not sim.events("act-failed")
    print(f"state fuzzer: {tried} corruptions tried, {held} held")
