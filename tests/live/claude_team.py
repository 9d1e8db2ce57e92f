"""Shared rig for the live tests that run the REAL Claude Code CLI under agents.py.

Used by test_claude_live.py (one ``up`` per module, many scenarios) and
test_claude_heal_live.py (a team healed by the watchdog). Standard library
and pytest only::

    binary = require_binary()                  # the pinned CLI, or a loud skip (a failure when required)
    team = ClaudeTeam(binary, tmp_path, "heal")
    team.project.write(team.backend_toml() + agent and watchdog tables)
    team.run("up"); team.ready(); team.send("hello")
    ...
    team.cleanup()                             # watchdog, tmux server, socket file, marked processes, mock

The sandbox HOME is the project's HOME, prepared as REAL-AGENTS.md says
(onboarding done, key approved, repo trusted); the bypass-permissions warning
is left for the ``claude`` preset to answer. The backend is the built-in
``claude`` preset with only ``command`` pointed at the pinned binary and the
sandbox env (``claude_sandbox.claude_env``): no pattern is overridden.

Env knobs:
  AGENTS_TEST_CLAUDE=PATH       the pinned binary (tests/run sets it); else install_claude.ensure_claude()
  AGENTS_REQUIRE_REAL_CLI=1     fail instead of skipping when the CLI cannot be had
  AGENTS_LIVE_MAX_RETRIES=N     CLAUDE_CODE_MAX_RETRIES for the CLI (default 4)
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import claude_sandbox as cs  # noqa: E402
import install_claude  # noqa: E402
from conftest import REPO, Project  # noqa: E402
from conftest import agents as ag  # noqa: E402
from mock_anthropic import MockAnthropic  # noqa: E402

MAX_RETRIES = int(os.environ.get("AGENTS_LIVE_MAX_RETRIES") or 4)
REQUIRED = os.environ.get("AGENTS_REQUIRE_REAL_CLI") == "1"
SKIP = "REAL CLAUDE CODE SKIPPED"
AGENT_LOG = REPO / "agent-log.py"


# ----------------------------------------------------------------------------
# The binary, or a loud skip
# ----------------------------------------------------------------------------

def find_binary() -> tuple[Path | None, str]:
    """The pinned CLI and "", or None and why it cannot be had."""
    if not sys.platform.startswith("linux"):
        return None, f"Linux only, not {sys.platform}"
    if shutil.which("tmux") is None:
        return None, "tmux is not installed"
    given = os.environ.get("AGENTS_TEST_CLAUDE")
    if given:
        path = Path(given)
        if path.is_file() and os.access(path, os.X_OK):
            return path, ""
        return None, f"AGENTS_TEST_CLAUDE={given} is not an executable file"
    try:
        return install_claude.ensure_claude(quiet=True), ""
    except install_claude.InstallError as exc:
        return None, f"cannot install the pinned Claude Code CLI: {exc}"


def require_binary() -> Path:
    """The pinned CLI; else skip loudly ("REAL CLAUDE CODE SKIPPED …"), or fail
    when AGENTS_REQUIRE_REAL_CLI=1."""
    binary, why = find_binary()
    if binary is None:
        message = f"{SKIP}: {why}"
        if REQUIRED:
            pytest.fail(f"AGENTS_REQUIRE_REAL_CLI=1 but {message}", pytrace=False)
        warnings.warn(message)
        print(f"\n!!! {message}", file=sys.stderr)
        pytest.skip(message)
    return binary


# ----------------------------------------------------------------------------
# Config text and repos
# ----------------------------------------------------------------------------

def toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def toml_env(env: dict[str, str]) -> str:
    return "{ " + ", ".join(f"{key} = {toml_str(value)}" for key, value in env.items()) + " }"


def git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30)


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    for key, value in (("user.email", "live@test.invalid"), ("user.name", "Live Test"), ("commit.gpgsign", "false")):
        git(path, "config", key, value)
    git(path, "commit", "-q", "--allow-empty", "-m", "root")
    return path


# ----------------------------------------------------------------------------
# The project and the team
# ----------------------------------------------------------------------------

class LiveProject(Project):
    """A Project whose agents.py runs see nothing of the caller's Claude setup.

    Project.env() points CLAUDE_CONFIG_DIR at the sandbox; that, and any
    ANTHROPIC_*/CLAUDE*/proxy variable of the caller, would be passed on to the
    agent by agents.py (it starts agents with its own environment plus the
    backend's env). The backend's env is the only source of the sandbox settings.
    """

    def env(self) -> dict[str, str]:
        env = super().env()
        return {key: value for key, value in env.items()
                if key not in cs._SCRUB_NAMES and not key.startswith(cs._SCRUB_PREFIXES)}


class ClaudeTeam:
    """One project on a private tmux socket, one sandbox HOME, one mock model,
    and the agents.py command line to drive them. Agents are named ``t-NAME``
    sessions; ``repo`` is a git repo trusted in the sandbox HOME."""

    def __init__(self, binary: Path, root: Path, tag: str) -> None:
        self.binary = binary
        self.root = root
        self.project = LiveProject(root, f"agt-{tag}-{os.getpid()}-{secrets.token_hex(3)}")
        self.home = self.project.home  # the sandbox HOME is the project's HOME
        self.repo = make_repo(root / "repo")
        self.api_key = cs.DEFAULT_API_KEY
        cs.prepare_home(self.home, self.repo, self.api_key)  # trusted; the bypass warning stays
        self.mock = MockAnthropic().start()

    # -- config --

    def sandbox_env(self, home: Path | None = None, port: int | None = None) -> dict[str, str]:
        """What claude_env() adds for the sandbox (not the caller's environment)."""
        return cs.claude_env(home or self.home, port or self.mock.port, self.api_key, base={},
                             CLAUDE_CODE_MAX_RETRIES=str(MAX_RETRIES))

    def command(self) -> list[str]:
        """The claude preset's command with the program pointed at the pinned binary."""
        command = [str(self.binary), *ag.BACKEND_PRESETS["claude"]["command"][1:]]
        assert "--dangerously-skip-permissions" in command
        return command

    def backend_toml(self, name: str = "claude", extra: str = "") -> str:
        """A ``[backend.NAME]`` table: the claude preset, the pinned binary, the sandbox env."""
        preset = "" if name == "claude" else 'preset = "claude"\n'
        return (f"[backend.{name}]\n{preset}command = {json.dumps(self.command())}\n"
                f"env = {toml_env(self.sandbox_env())}\n{extra}")

    # -- looking --

    def run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return self.project.run(*args, timeout=timeout)

    def row(self, name: str = "main") -> dict:
        return next(r for r in self.project.status()["agents"] if r["name"] == name)

    def state(self, name: str = "main") -> str:
        return self.row(name)["state"]

    def screen(self, name: str = "main") -> str:
        return self.project.capture(f"t-{name}")

    def keys(self, name: str, *keys: str) -> None:
        """A human at the terminal (raw tmux, not agents.py)."""
        self.project.tmux("send-keys", "-t", f"=t-{name}:", *keys)

    def wait(self, what: str, predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.2,
             name: str = "main"):
        """Poll ``predicate()`` until truthy and return its value; fail with the state and screen."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout}s waiting for {what}; status: {self.describe(name)}; "
                            f"screen:\n{self.screen(name)}")
            time.sleep(interval)

    def describe(self, name: str = "main") -> str:
        try:
            return repr(self.state(name))
        except Exception as exc:  # noqa: BLE001 - only for a failure message
            return f"unreadable ({exc})"

    def ready(self, name: str = "main", timeout: float = 60.0) -> str:
        """Wait until status reads the agent ready for input (idle, or after a given-up API error) twice in a row."""
        last = None

        def settled() -> bool:
            nonlocal last
            state = self.state(name)
            ok = state == "idle" or state.startswith("limited (API rate limit)")
            stable = ok and state == last
            last = state if ok else None
            return stable

        self.wait(f"{name} ready for input", settled, timeout=timeout, interval=0.3, name=name)
        return last or ""

    def send(self, text: str, name: str = "main") -> subprocess.CompletedProcess:
        return self.run("send", name, text, timeout=120)

    # -- transcripts --

    def transcripts(self, cwd: Path | None = None) -> list[Path]:
        """Every transcript file of the agent's project folder (sub-agents included)."""
        return cs.project_transcripts(self.home, cwd or self.repo)

    def agent_log_totals(self, *args: str) -> dict[str, int]:
        """agent-log.py --totals over ``args``; the grand total (or the only file's) as
        {input, output, cache_creation, cache_read, messages}."""
        result = subprocess.run([sys.executable, str(AGENT_LOG), "--totals", *args], capture_output=True,
                                text=True, timeout=60, env=self.project.env(), cwd=self.project.root)
        assert result.returncode == 0, result.stdout + result.stderr
        lines = [line for line in result.stdout.splitlines() if " TOTAL " in line]
        assert lines, result.stdout + result.stderr
        found = re.search(r"in=(\d+) out=(\d+) cache_creation=(\d+) cache_read=(\d+) total=\d+ responses=(\d+)",
                          lines[-1])
        assert found, lines[-1]
        keys = ("input", "output", "cache_creation", "cache_read", "messages")
        return dict(zip(keys, map(int, found.groups())))

    # -- the end --

    def cleanup(self) -> None:
        """Watchdog, tmux server, socket file, every process marked for the config, the mock."""
        try:
            self.project.cleanup()
        finally:
            self.mock.stop()
