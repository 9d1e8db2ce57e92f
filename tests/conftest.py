"""Shared fixtures: the agents.py module, private tmux sockets, throwaway projects.

Every test that touches tmux uses its own server (``tmux -L <unique>``) and
kills it in a finalizer, so a failing test leaves no session and never touches
the user's default tmux server. Processes are ended by pid only.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
AGENTS_PY = REPO / "agents.py"
SIMAGENT = REPO / "examples" / "simagent.py"


def load_agents_module():
    spec = importlib.util.spec_from_file_location("agents", AGENTS_PY)
    module = importlib.util.module_from_spec(spec)
    sys.modules["agents"] = module
    spec.loader.exec_module(module)
    return module


agents = load_agents_module()


def pytest_configure(config):
    """A SIGTERM (tests/run stopping its second half, a CI timeout) ends the run like Ctrl-C, so every
    fixture's finalizer still ends its tmux server, mocks and CLI processes."""
    def terminated(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminated)


@pytest.fixture
def ag():
    """The agents.py module."""
    return agents


def remove_socket_file(socket: str) -> None:
    """tmux leaves its socket file behind after kill-server; a test run must not litter /tmp."""
    folder = Path(os.environ.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}"
    try:
        (folder / socket).unlink()
    except OSError:
        pass


def tmux_server_sessions(socket: str) -> list[str]:
    result = subprocess.run(["tmux", "-L", socket, "list-sessions", "-F", "#{session_name}"],
                            capture_output=True, text=True)
    return result.stdout.split() if result.returncode == 0 else []


def marked_pids(config_path: Path) -> list[int]:
    """Processes started for a config (their AGENTS_PY_UNIT marker names its hash)."""
    prefix = hashlib.sha1(str(config_path).encode()).hexdigest()[:12] + ":"
    return agents.processes_marked(prefix, whole_config=True)


def pids_with_env(name: str, value: object) -> list[int]:
    """Live processes whose environment has ``name=value`` (a sandbox's HOME or CODEX_HOME: a CLI,
    what it relaunched and its tools, however they were started); zombies are gone already."""
    wanted = f"{name}={value}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[-1].split()[0] != "Z" and wanted in environ.split(b"\0"):
            found.append(int(entry))
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


@contextlib.contextmanager
def held_open(path: Path, marker: str, mode: str = "a"):
    """A real process with ``AGENTS_PY_UNIT=marker`` holding ``path`` open (for writing with "a", as
    Codex's CLI holds its rollout; "r" reads, as a `tail -f` would); ended on leaving."""
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", f"import sys; f = open(sys.argv[1], {mode!r}); "
                               "print('open', flush=True); sys.stdin.read()", str(path)],
                              env={**os.environ, "AGENTS_PY_UNIT": marker}, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "open\n"
        yield holder
    finally:
        holder.kill()
        holder.wait(timeout=30)


OPENCODE_FIXTURE = REPO / "tests" / "fixtures" / "transcripts" / "opencode-1.18.33" / "opencode.sql"


class OpencodeStore:
    """An opencode store (``opencode.db``) with the real CLI's session, message and part tables
    (from the fixture), rows added as opencode would add them. Times are seconds, stored as ms."""

    def __init__(self, path: Path, rows: bool = False):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        sql = OPENCODE_FIXTURE.read_text()
        if not rows:
            sql = "\n".join(line for line in sql.splitlines() if not line.startswith("INSERT"))
        with contextlib.closing(sqlite3.connect(path)) as db:
            db.execute("pragma journal_mode = wal")  # as opencode keeps it: readers and a writer at once
            db.executescript(sql)
            db.commit()

    def run(self, query: str, *parameters) -> None:
        with contextlib.closing(sqlite3.connect(self.path)) as db:
            db.execute(query, parameters)
            db.commit()

    def session(self, session: str, folder: Path, created: float, parent: str | None = None) -> str:
        self.run("insert into session (id, project_id, parent_id, slug, directory, title, version, time_created, "
                 "time_updated) values (?, 'global', ?, 'slug', ?, 'title', '1.18.33', ?, ?)",
                 session, parent, str(folder), int(created * 1000), int(created * 1000))
        return session

    def answer(self, session: str, at: float, input_tokens: int, output: int, cache_read: int = 0,
               reasoning: int = 0, message: str = "", model: str = "mock-model") -> str:
        """An assistant message with its tokens (``message``: rewrite that one, as it grows)."""
        if not message:
            message = f"msg_{secrets.token_hex(6)}"  # unique in every store, as opencode's are
        data = json.dumps({"role": "assistant", "modelID": model, "providerID": "mock",
                           "tokens": {"input": input_tokens, "output": output, "reasoning": reasoning,
                                      "cache": {"read": cache_read, "write": 0}}})
        self.run("insert into message (id, session_id, time_created, time_updated, data) values (?, ?, ?, ?, ?) "
                 "on conflict(id) do update set time_updated = excluded.time_updated, data = excluded.data",
                 message, session, int(at * 1000), int(at * 1000), data)
        # opencode adds the tokens to its session's row as it records them
        self.run("update session set time_updated = max(time_updated, ?), tokens_input = tokens_input + ? "
                 "where id = ?", int(at * 1000), input_tokens, session)
        return message


def without_table(text: str, name: str) -> str:
    """TOML text with the table ``[name]`` (its header and keys, up to the next header) taken out."""
    kept, skipping = [], False
    for line in text.splitlines(keepends=True):
        header = line.strip()
        if header.startswith("["):
            skipping = header == f"[{name}]"
        if not skipping:
            kept.append(line)
    return "".join(kept)


class Project:
    """A throwaway folder with an agents.toml on a private tmux socket."""

    def __init__(self, root: Path, socket: str):
        self.root = root
        self.socket = socket
        self.config = root / "agents.toml"
        self.home = root / "home"
        self.home.mkdir(exist_ok=True)

    def write(self, body: str) -> Path:
        header = f'tmux_socket = "{self.socket}"\nsession_prefix = "t-"\n'
        self.config.write_text(header + textwrap.dedent(body))
        return self.config

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("TMUX", None)
        env.pop("AGENTS_CONFIG", None)
        env["HOME"] = str(self.home)
        env["CLAUDE_CONFIG_DIR"] = str(self.home / ".claude")
        return env

    def run(self, *args: str, timeout: float = 120, input_text: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(AGENTS_PY), "--config", str(self.config), *args],
                              capture_output=True, text=True, timeout=timeout, env=self.env(), input=input_text,
                              cwd=self.root)

    def watchdog_pid(self) -> int | None:
        import json

        try:
            return json.loads((self.root / ".agents" / "state" / "watchdog.pid").read_text())["pid"]
        except (OSError, ValueError, KeyError):
            return None

    def stop_watchdog(self) -> None:
        """End a watchdog this project started (by its pid, from its own pid file)."""
        pid = self.watchdog_pid()
        if pid and agents.pid_alive(pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                return
            if str(self.config).encode() in cmdline:
                os.kill(pid, signal.SIGKILL)

    def tmux(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True)

    def sessions(self) -> list[str]:
        return tmux_server_sessions(self.socket)

    def capture(self, session: str) -> str:
        return self.tmux("capture-pane", "-p", "-t", f"={session}:").stdout

    # -- the offline demo, copied here --

    def use_demo(self, work: float = 3.0, extra: str = "") -> "Project":
        """The shipped demo config, pointed at this project's private socket and a copy of the simulated agent."""
        import shutil

        shutil.copytree(REPO / "examples" / "demo" / "prompts", self.root / "prompts", dirs_exist_ok=True)
        shutil.copy(SIMAGENT, self.root / "simagent.py")
        # The demo's own [watchdog] table (its README suggests adding one) gives way to the test's.
        text = without_table((REPO / "examples" / "demo" / "agents.toml").read_text(), "watchdog")
        text = text.replace('tmux_socket = "agents-demo"', f'tmux_socket = "{self.socket}"')
        text = text.replace('"../simagent.py", "--work", "4"', f'"{self.root / "simagent.py"}", "--work", "{work}"')
        self.config.write_text(text + extra)
        return self

    def sim_log(self, name: str) -> list[dict]:
        import json

        path = self.root / ".simagent" / f"{name}.log"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def messages(self, name: str) -> list[str]:
        return [entry["text"] for entry in self.sim_log(name) if entry.get("kind") == "message"]

    def status(self) -> dict:
        import json

        result = self.run("status", "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def states(self) -> dict[str, str]:
        return {row["name"]: row["state"] for row in self.status()["agents"]}

    def row(self, name: str) -> dict:
        return next(row for row in [*self.status()["agents"], *self.status()["services"]] if row["name"] == name)

    def events(self, kind: str | None = None, agent: str | None = None) -> list[dict]:
        import json

        path = self.root / ".agents" / "logs" / "events.jsonl"
        if not path.exists():
            return []
        events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [e for e in events if (kind is None or e["kind"] == kind) and (agent is None or e["agent"] == agent)]

    def cleanup(self) -> None:
        self.stop_watchdog()
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)
        remove_socket_file(self.socket)
        leftovers = marked_pids(self.config)
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def socket_name():
    name = f"agt-{os.getpid()}-{secrets.token_hex(3)}"
    yield name
    subprocess.run(["tmux", "-L", name, "kill-server"], capture_output=True)
    remove_socket_file(name)


@pytest.fixture
def project(tmp_path):
    proj = Project(tmp_path, f"agt-{os.getpid()}-{secrets.token_hex(3)}")
    yield proj
    proj.cleanup()


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.1, message: str = "condition"):
    """Poll until ``predicate()`` is truthy; return its value, or fail the test naming ``message``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


@pytest.fixture
def pinned_utc():
    """The machine's zone is UTC for the tests that use it (the simulations) (banners without a zone, ``iso`` in events)."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if before is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = before
    time.tzset()
