#!/usr/bin/env python3
"""Sandbox helpers for running the real Codex CLI against mock_openai. Standard library only::

    home = prepare_codex_home(tmp / "codex-home", mock.base_url, trusted=[repo])   # config.toml
    env = codex_env(tmp / "home", home)          # HOME, CODEX_HOME, MOCK_API_KEY, TERM, LANG
    rollouts(home)                                # CODEX_HOME/sessions/YYYY/MM/DD/rollout-*.jsonl
    sandbox_pids(home)                            # every process whose CODEX_HOME is this one

Facts checked against the real CLI 0.171.0 (tests/live/test_codex_live.py, the fixtures in
tests/fixtures/screens/codex-0.171.0-live/):

- A custom provider with ``wire_api = "responses"`` sends every turn as a streamed
  ``POST {base_url}/responses`` with ``tools`` (its shell tool is ``exec_command`` {cmd}), plus a
  tool-less title request whose ``text.format`` is a JSON schema ``{"title": string}``.
- Without ``[projects."<cwd>"] trust_level = "trusted"`` it first asks ``Trust this folder?`` with
  ``› 1. Trust and continue`` selected; Enter trusts and writes that table into config.toml.
- Without ``--no-daemon`` it starts ``CODEX_HOME/packages/app-server-daemon/…/codex app-server
  --listen unix:// --managed-daemon`` and a ``codex app-server daemon pid-update-loop``, both
  reparented to init, both with the CLI's environment (so agents.py's AGENTS_PY_UNIT marker too).
- Rollouts record only the main turns' usage (``token_count`` events), not the title request.
- No flag sets the session id. The rollout (``rollout-<time>-<id>.jsonl``, first line ``session_meta``
  with ``payload.id``) appears only with the first turn, not at start. ``codex [flags] resume <id>``
  reopens it offline (the old turns on screen and in the next request) and appends to the same file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from conftest import cmdline, pids_with_env  # noqa: F401 - the tests call <sandbox>.cmdline

API_KEY_VAR = "MOCK_API_KEY"
# Variables of the caller's environment that must not reach the sandboxed CLI.
SCRUB_PREFIXES = ("OPENAI_", "CODEX_", "AZURE_OPENAI")


def toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def prepare_codex_home(home: Path, base_url: str, trusted: list[Path] = (), model: str = "gpt-5-codex") -> Path:
    """CODEX_HOME with a config.toml whose only provider is the mock."""
    home.mkdir(parents=True, exist_ok=True)
    lines = [f"model = {toml_str(model)}", 'model_provider = "mock"', "",
             "[model_providers.mock]", 'name = "Mock"', f"base_url = {toml_str(base_url)}",
             'wire_api = "responses"', f"env_key = {toml_str(API_KEY_VAR)}", ""]
    for folder in trusted:
        lines += [f"[projects.{toml_str(str(Path(folder).resolve()))}]", 'trust_level = "trusted"', ""]
    (home / "config.toml").write_text("\n".join(lines), encoding="utf-8")
    return home


def codex_env(home: Path, codex_home: Path) -> dict[str, str]:
    """What the backend's env adds for the sandbox."""
    return {"HOME": str(home), "CODEX_HOME": str(codex_home), API_KEY_VAR: "sk-mock-codex",
            "NO_PROXY": "127.0.0.1,localhost", "TERM": os.environ.get("TERM") or "xterm-256color",
            "LANG": os.environ.get("LANG") or "C.UTF-8"}


def rollouts(codex_home: Path) -> list[Path]:
    sessions = codex_home / "sessions"
    return sorted(sessions.rglob("rollout-*.jsonl")) if sessions.is_dir() else []


def session_meta(path: Path) -> dict:
    with open(path, encoding="utf-8") as handle:
        first = json.loads(handle.readline())
    return first.get("payload") or {} if first.get("type") == "session_meta" else {}


def sandbox_pids(codex_home: Path) -> list[int]:
    """Live processes whose environment names this CODEX_HOME (the CLI, its daemon, its tools)."""
    return pids_with_env("CODEX_HOME", codex_home)
