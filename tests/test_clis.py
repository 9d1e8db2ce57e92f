"""The real CLIs' pins (tests/live/pins/) and the drift script's pin moving, without the network."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "live"))

import clis  # noqa: E402
import drift  # noqa: E402


def test_every_cli_is_pinned_in_one_place():
    assert set(clis.CLIS) == {"claude-code", "codex", "gemini-cli", "opencode", "aider"}
    for name, cli in clis.CLIS.items():
        assert cli.pins.parent == clis.PINS
        assert re.fullmatch(r"\d+\.\d+\.\d+", clis.pinned_version(name)), name
        if cli.manager == "npm":
            lock = json.loads((cli.pins / "package-lock.json").read_text())
            assert lock["packages"][f"node_modules/{cli.package}"]["version"] == clis.pinned_version(name)


def test_env_vars_are_the_ones_tests_run_exports():
    run = (clis.HERE.parent / "run").read_text()
    assert 'AGENTS_TEST_$(tr \'[:lower:]\' \'[:upper:]\' <<<"${cli%%-*}")' in run
    assert [clis.env_var(name) for name in clis.CLIS] == [
        "AGENTS_TEST_CLAUDE", "AGENTS_TEST_CODEX", "AGENTS_TEST_GEMINI", "AGENTS_TEST_OPENCODE", "AGENTS_TEST_AIDER"]
    assert all(f" {name}" in run or f"({name}" in run for name in clis.CLIS)


def test_drift_moves_a_pip_pin_and_keeps_the_other_lines(tmp_path):
    pins = tmp_path / "aider"
    shutil.copytree(clis.CLIS["aider"].pins, pins)
    (pins / "requirements.txt").write_text("# pinned\naider-chat==0.86.2\n")
    drift.move_pin(clis.Cli("aider", "aider-chat", clis.CLIS["aider"].binary, manager="pip", pins_dir=pins), "0.90.1")
    assert (pins / "requirements.txt").read_text() == "# pinned\naider-chat==0.90.1\n"
