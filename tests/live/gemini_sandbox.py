#!/usr/bin/env python3
"""Sandbox helpers for running the real Gemini CLI against mock_gemini. Standard library only::

    home = prepare_gemini_home(tmp / "home")     # HOME/.gemini/settings.json: no auth chosen, nothing trusted
    env = gemini_env(home, mock.base_url)        # HOME, GEMINI_API_KEY, GOOGLE_GEMINI_BASE_URL, TERM, LANG
    chats(home)                                  # HOME/.gemini/tmp/<project>/chats/session-*.jsonl
    chat_tokens(path)                            # the ``tokens`` of each gemini message, by message id
    sandbox_pids(home)                           # every process whose HOME is this one

Facts checked against the real CLI 0.61.0 (tests/live/test_gemini_live.py, the fixtures in
tests/fixtures/screens/gemini-cli-0.61.0-live/):

- ``GOOGLE_GEMINI_BASE_URL`` (read by the bundled @google/genai SDK) replaces
  ``https://generativelanguage.googleapis.com``; with ``GEMINI_API_KEY`` set it sends
  ``POST <base>/v1beta/models/<model>:streamGenerateContent?alt=sse`` for each turn (model
  ``gemini-3.1-pro-preview`` under the default "Auto" routing, with ``tools``) and first a
  ``:generateContent`` to ``gemini-3.5-flash-lite`` asking for a JSON complexity score (the router).
- In a fresh HOME it asks, in boxes: trust the folder (Enter trusts it, writes
  ``~/.gemini/trustedFolders.json`` and relaunches the CLI), then the auth method (``● 2. Use Gemini
  API Key`` preselected when GEMINI_API_KEY is set; writes ``security.auth.selectedType``), then the
  key (prefilled from GEMINI_API_KEY; stored in ``~/.gemini/gemini-credentials.json`` when no keychain).
- ``gemini.js`` relaunches itself as a child ``node`` process (memory flags), so two processes run.
- Chats: ``~/.gemini/tmp/<project name>/chats/session-<date>T<HH-MM>-<id8>.jsonl``: a header line
  (``sessionId``, ``projectHash``, ``startTime``, ``kind``), then one line per message, and
  ``{"$set": {…}}`` updates (``lastUpdated``; at times the whole ``messages`` list again). A
  ``type: "gemini"`` message has ``tokens`` {input (prompt, cached included), output, cached,
  thoughts, tool, total} and ``model``; the same id is written again when its tool calls land.
- ``--session-id <uuid>`` names the chat; ``--resume <uuid>`` reopens it offline: the old turns go
  with the next request and the new turns are appended to the same file (after a ``$set`` of
  ``sessionId`` and of the whole ``messages`` list). The resumed CLI also opens
  ``session-<now>-<id8>.jsonl``: the same file within the same minute, else a stub holding only the
  header and its context message. Dedupe messages by id when counting tokens.
- The CLI ignores the hangup of its tmux session: both node processes outlive ``kill-session``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from conftest import cmdline, pids_with_env  # noqa: F401 - the tests call <sandbox>.cmdline

API_KEY = "mock-gemini-key"
# Variables of the caller's environment that must not reach the sandboxed CLI.
SCRUB_PREFIXES = ("GEMINI_", "GOOGLE_", "CLOUDSDK_")

SETTINGS = {
    "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
    "privacy": {"usageStatisticsEnabled": False},
    "telemetry": {"enabled": False},
}


def prepare_gemini_home(home: Path) -> Path:
    """A HOME whose ~/.gemini/settings.json turns off updates, usage statistics and telemetry;
    no auth method chosen and no folder trusted (the preset answers those)."""
    folder = home / ".gemini"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "settings.json").write_text(json.dumps(SETTINGS, indent=2) + "\n", encoding="utf-8")
    return home


def gemini_env(home: Path, base_url: str) -> dict[str, str]:
    """What the backend's env adds for the sandbox."""
    return {"HOME": str(home), "GEMINI_API_KEY": API_KEY, "GOOGLE_GEMINI_BASE_URL": base_url,
            "NO_PROXY": "127.0.0.1,localhost", "TERM": "xterm-256color",
            "LANG": os.environ.get("LANG") or "C.UTF-8"}


def chats(home: Path) -> list[Path]:
    tmp = home / ".gemini" / "tmp"
    return sorted(tmp.glob("*/chats/session-*.jsonl")) if tmp.is_dir() else []


def chat_tokens(path: Path) -> dict[str, dict[str, int]]:
    """Message id → tokens of each gemini message (the last line for an id wins)."""
    found: dict[str, dict[str, int]] = {}

    def take(message: dict) -> None:
        if isinstance(message, dict) and message.get("type") == "gemini" and isinstance(message.get("tokens"), dict):
            found[str(message.get("id"))] = message["tokens"]

    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        for message in (row.get("$set") or {}).get("messages") or []:
            take(message)
        take(row)
    return found


def sandbox_pids(home: Path) -> list[int]:
    """Live processes whose environment names this HOME (the CLI, its relaunched child, its tools)."""
    return pids_with_env("HOME", home)
