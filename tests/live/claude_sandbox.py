#!/usr/bin/env python3
"""Sandbox helpers for running the real Claude Code CLI against mock_anthropic.

Standard library only::

    home = tmp / "home"; cwd = tmp / "repo"
    prepare_home(home, cwd, API_KEY)               # onboarding done, key approved, cwd trusted
    env = claude_env(home, mock.port, API_KEY)      # full environment for the CLI
    argv = claude_argv(binary, session_id=sid)      # --dangerously-skip-permissions --session-id
    ...
    transcript_path(home, cwd, sid)                 # $HOME/.claude/projects/<slug>/<sid>.jsonl
    transcript_usage(path)                          # de-duplicated usage per message id
    transcript_usage(*project_transcripts(home, cwd))   # ... across every file of the project

Facts checked against the real CLI 2.1.330 (see tests/live/test_mock_claude_raw.py):

- With this HOME and env it makes no request before the first prompt; with
  ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC`` unset it also sends
  ``HEAD /api/hello`` and a streamed session-title request.
- It retries 429 / 529 by itself: ``CLAUDE_CODE_MAX_RETRIES`` retries
  (default 10, clamped to 15), waits of about 0.5 s * 2^n (+ up to 25 %
  jitter) capped near 32-38 s, so it gives up after about 3 minutes at the
  default; ``retry-after`` is honoured as a minimum up to ~40-60 s, and a
  ``retry-after`` over about a minute makes it give up at once. Pass e.g.
  ``claude_env(..., CLAUDE_CODE_MAX_RETRIES="2")`` to give up in ~2-4 s.
- Transcript assistant lines carry ``requestRef`` (the id of the
  ``api-request`` line written for each attempt) always, and ``requestId``
  only when the server sent a ``request-id`` header. An API error that it
  gave up on is written as a ``<synthetic>`` assistant line with
  ``isApiErrorMessage: true``, ``apiErrorStatus`` and ``apiErrorType``.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path
from typing import Any, Iterator

DEFAULT_API_KEY = "sk-ant-api03-mock-" + "0123456789abcdefghij" * 4 + "-mockAA"

# Variables of the caller's environment that must not leak into the sandbox
# (they would point the CLI at a real account, a proxy, or another config).
_SCRUB_PREFIXES = ("ANTHROPIC_", "CLAUDE", "AWS_", "GOOGLE_", "VERTEX_", "OTEL_", "MCP_")
_SCRUB_NAMES = {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
                "all_proxy", "no_proxy", "TMUX", "TMUX_PANE", "XDG_CONFIG_HOME",
                "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "NODE_OPTIONS"}


def key_suffix(api_key: str) -> str:
    """What ``customApiKeyResponses.approved`` stores: the key's last 20 chars."""
    return api_key[-20:]


def claude_json(cwd: str | os.PathLike[str] | None, api_key: str, trust: bool = True) -> dict[str, Any]:
    """The ``$HOME/.claude.json`` content that skips onboarding, the API key
    question and (when ``trust``) the folder trust question for ``cwd``."""
    data: dict[str, Any] = {
        "hasCompletedOnboarding": True,
        "customApiKeyResponses": {"approved": [key_suffix(api_key)], "rejected": []},
        "projects": {},
    }
    if cwd is not None:
        data["projects"][str(Path(cwd).resolve())] = {"hasTrustDialogAccepted": bool(trust)}
    return data


def prepare_home(home: str | os.PathLike[str], cwd: str | os.PathLike[str] | None,
                 api_key: str = DEFAULT_API_KEY, trust: bool = True) -> Path:
    """Create the sandbox HOME and write ``$HOME/.claude.json``; returns its path."""
    home = Path(home)
    (home / ".claude").mkdir(parents=True, exist_ok=True)
    path = home / ".claude.json"
    path.write_text(json.dumps(claude_json(cwd, api_key, trust), indent=2) + "\n", encoding="utf-8")
    return path


def claude_env(home: str | os.PathLike[str], port: int, api_key: str = DEFAULT_API_KEY,
               base: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
    """The environment for the CLI: the caller's (or ``base``) minus anything
    that would reach a real account, plus the sandbox settings. ``extra``
    overrides or adds variables."""
    src = dict(os.environ if base is None else base)
    env = {k: v for k, v in src.items()
           if k not in _SCRUB_NAMES and not k.startswith(_SCRUB_PREFIXES)}
    env.update({
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{port}",
        "ANTHROPIC_API_KEY": api_key,
        # No telemetry, error reporting, feedback survey or update checks.
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_BUG_COMMAND": "1",
        "CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY": "1",
        # --dangerously-skip-permissions is refused for root without it.
        "IS_SANDBOX": "1",
        # Its temp files (/tmp/claude-<uid>/<project>/..., shell cwd files)
        # go inside the sandbox instead of the machine's /tmp.
        "CLAUDE_CODE_TMPDIR": str(Path(home) / "tmp"),
        # The loopback mock needs no proxy; make sure none is used.
        "NO_PROXY": "127.0.0.1,localhost",
        "TERM": src.get("TERM") or "xterm-256color",
        "LANG": src.get("LANG") or "C.UTF-8",
    })
    env.update(extra)
    Path(env["CLAUDE_CODE_TMPDIR"]).mkdir(parents=True, exist_ok=True)
    return env


def claude_argv(binary: str | os.PathLike[str], *, session_id: str | None = None,
                skip_permissions: bool = True, extra: list[str] | None = None) -> list[str]:
    argv = [str(binary)]
    if skip_permissions:
        argv.append("--dangerously-skip-permissions")
    if session_id:
        argv += ["--session-id", session_id]
    return argv + list(extra or [])


def new_session_id() -> str:
    return str(uuid.uuid4())


def project_slug(cwd: str | os.PathLike[str]) -> str:
    """The projects/ folder name: the absolute cwd with every non-alphanumeric char as ``-``."""
    return re.sub(r"[^A-Za-z0-9]", "-", str(Path(cwd).resolve()))


def projects_dir(home: str | os.PathLike[str]) -> Path:
    return Path(home) / ".claude" / "projects"


def transcript_path(home: str | os.PathLike[str], cwd: str | os.PathLike[str], session_id: str) -> Path:
    """``$HOME/.claude/projects/<slug of cwd>/<session_id>.jsonl``."""
    return projects_dir(home) / project_slug(cwd) / f"{session_id}.jsonl"


def project_transcripts(home: str | os.PathLike[str], cwd: str | os.PathLike[str]) -> list[Path]:
    """Every ``*.jsonl`` of the cwd's projects/ folder, sub-agent files included:
    all a resumed or forked session may have written, whatever its session id."""
    folder = projects_dir(home) / project_slug(cwd)
    return sorted(folder.rglob("*.jsonl")) if folder.is_dir() else []


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Every JSON object line of a transcript; skips blank or broken lines."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                yield obj


def transcript_usage(*paths: str | os.PathLike[str]) -> dict[str, dict[str, int]]:
    """Usage per ``message.id`` across transcript files, each id counted once
    (its largest figures kept); ``<synthetic>`` model lines skipped.
    Values: {input, output, cache_creation, cache_read}."""
    out: dict[str, dict[str, int]] = {}
    for path in paths:
        for obj in read_jsonl(path):
            msg = obj.get("message")
            if obj.get("type") != "assistant" or not isinstance(msg, dict):
                continue
            usage, mid = msg.get("usage"), msg.get("id")
            if not isinstance(usage, dict) or not mid or msg.get("model") == "<synthetic>":
                continue
            row = {"input": int(usage.get("input_tokens") or 0),
                   "output": int(usage.get("output_tokens") or 0),
                   "cache_creation": int(usage.get("cache_creation_input_tokens") or 0),
                   "cache_read": int(usage.get("cache_read_input_tokens") or 0)}
            old = out.get(mid)
            out[mid] = row if old is None else {k: max(old[k], row[k]) for k in row}
    return out


def usage_total(per_message: dict[str, dict[str, int]]) -> dict[str, int]:
    total = {"input": 0, "output": 0, "cache_creation": 0, "cache_read": 0, "messages": 0}
    for row in per_message.values():
        for k in ("input", "output", "cache_creation", "cache_read"):
            total[k] += row[k]
        total["messages"] += 1
    return total
