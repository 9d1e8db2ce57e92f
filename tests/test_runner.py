"""tests/run without the real CLIs: it says loudly what it skips, and AGENTS_REQUIRE_REAL_CLI=1 fails.

Each run gets a PATH of its own (python3, tmux, git and the shell tools tests/run uses, but no
node or npm) and an empty CLI cache with pip pointed at no index, so nothing can be installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ("bash", "env", "tmux", "git", "tr", "head", "dirname", "uname", "ldd", "getconf")


def bare_run(tmp_path: Path, *args: str, require: bool = False) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "python3").unlink(missing_ok=True)
    (bin_dir / "python3").symlink_to(sys.executable)
    for tool in TOOLS:
        found = shutil.which(tool)
        if found and not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(found)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path / "home"), "LANG": "C.UTF-8",
           "AGENTS_TEST_CACHE": str(tmp_path / "cache"), "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    if require:
        env["AGENTS_REQUIRE_REAL_CLI"] = "1"
    return subprocess.run(["bash", str(ROOT / "tests" / "run"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_without_node_or_packages_the_runner_says_what_it_skips(tmp_path):
    run = bare_run(tmp_path, "tests/live/test_codex_live.py", "-q", "-rs")
    assert run.returncode == 0, run.stdout + run.stderr
    assert ("!!! node/npm not found: the real Claude Code, Codex, Gemini CLI and opencode smokes will be SKIPPED"
            in run.stderr), run.stderr
    assert "!!! some real CLIs could not be installed (above): their live smokes will be SKIPPED" in run.stderr
    assert "aider" in run.stderr  # the one it tried (pip, no node needed) and could not install
    assert "REAL CODEX SKIPPED" in run.stdout, run.stdout
    assert " passed" not in run.stdout.splitlines()[-1], run.stdout


def test_with_agents_require_real_cli_a_missing_cli_fails(tmp_path):
    run = bare_run(tmp_path, "tests/live/test_codex_live.py", "-q", require=True)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "tests/run: AGENTS_REQUIRE_REAL_CLI=1 but node/npm are missing" in run.stderr, run.stderr
    assert "passed" not in run.stdout and "skipped" not in run.stdout  # nothing ran
