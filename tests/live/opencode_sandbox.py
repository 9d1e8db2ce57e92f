#!/usr/bin/env python3
"""Sandbox helpers for running the real opencode CLI against mock_opencode. Standard library only::

    home = prepare_opencode_home(tmp / "home", mock.base_url)   # XDG_CONFIG_HOME/opencode/opencode.json
    env = opencode_env(home)                 # HOME, XDG_* dirs, OPENCODE_DISABLE_*, npm registry blocked
    assistant_messages(home)                 # the assistant rows of XDG_DATA_HOME/opencode/opencode.db
    sandbox_pids(home)                       # every process whose XDG_DATA_HOME is this sandbox's

Facts checked against the real CLI 1.18.33 (tests/live/test_opencode_live.py, the fixtures in
tests/fixtures/screens/opencode-1.18.33-live/):

- A provider with ``"npm": "@ai-sdk/openai-compatible"`` and ``options.baseURL`` works offline: that
  package is bundled in the binary. Every turn is a streamed ``POST {baseURL}/chat/completions`` with
  ``tools``; the session title is a tool-less completion of the ``small_model``.
- ``OPENCODE_DISABLE_MODELS_FETCH=1`` keeps it from fetching models.dev; ``OPENCODE_DISABLE_AUTOUPDATE=1``
  from checking for updates. At start it runs an npm install of ``@opencode-ai/plugin`` into the config
  dir (``XDG_CONFIG_HOME/opencode/node_modules``) in the background; ``npm_config_registry`` pointed at a
  closed local port makes that fail quietly (the TUI does not wait for it).
- No trust, auth or onboarding dialog: the first screen is the input box. Permissions the config sets to
  ``ask`` show ``△ Permission required`` unless ``--auto`` is given.
- It is one process (no server or daemon is left when its tmux session dies).
- Sessions, messages and token usage live in SQLite, ``XDG_DATA_HOME/opencode/opencode.db`` (table
  ``message``, JSON ``data`` with ``tokens {input, output, reasoning, cache {read, write}}``; ``input``
  excludes the cached part). Logs in ``XDG_DATA_HOME/opencode/log/``.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from conftest import cmdline, pids_with_env  # noqa: F401 - the tests call <sandbox>.cmdline

from mock_opencode import opencode_config

# Variables of the caller's environment that must not reach the sandboxed CLI.
SCRUB_PREFIXES = ("OPENCODE", "OPENAI_", "ANTHROPIC_", "XDG_", "npm_config_", "NPM_CONFIG_")
CLOSED_REGISTRY = "http://127.0.0.1:9/"  # the discard port: nothing listens, so npm fails at once


def prepare_opencode_home(home: Path, base_url: str, **config: object) -> Path:
    """A sandbox HOME whose opencode.json has the mock as its only provider (extra top-level keys merged)."""
    folder = home / ".config" / "opencode"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "opencode.json").write_text(json.dumps({**opencode_config(base_url), **config}, indent=2),
                                          encoding="utf-8")
    return home


def opencode_env(home: Path) -> dict[str, str]:
    """What the backend's env adds for the sandbox."""
    return {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "XDG_DATA_HOME": str(home / ".local/share"),
            "XDG_CACHE_HOME": str(home / ".cache"), "XDG_STATE_HOME": str(home / ".local/state"),
            "OPENCODE_DISABLE_MODELS_FETCH": "1", "OPENCODE_DISABLE_AUTOUPDATE": "1",
            "OPENCODE_DISABLE_LSP_DOWNLOAD": "1", "npm_config_registry": CLOSED_REGISTRY,
            "NO_PROXY": "127.0.0.1,localhost", "TERM": os.environ.get("TERM") or "xterm-256color",
            "LANG": os.environ.get("LANG") or "C.UTF-8"}


def database(home: Path) -> Path:
    return home / ".local" / "share" / "opencode" / "opencode.db"


def assistant_messages(home: Path) -> list[dict]:
    """The assistant messages opencode stored, oldest first (their JSON ``data``)."""
    path = database(home)
    if not path.exists():
        return []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute("select data from message order by time_created").fetchall()
    messages = [json.loads(row[0]) for row in rows]
    return [m for m in messages if m.get("role") == "assistant"]


def sandbox_pids(home: Path) -> list[int]:
    """Live processes whose environment names this sandbox's XDG_DATA_HOME (the CLI and its tools)."""
    return pids_with_env("XDG_DATA_HOME", home / ".local/share")
