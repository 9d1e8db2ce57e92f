#!/usr/bin/env python3
"""The pinned Claude Code CLI for the live tests: ``clis.py``'s install, named for Claude.

``ensure_claude()`` returns the native binary's path (installing it into the
cache folder first if needed) or raises ``InstallError``. Run as a script it
prints the path. The pin is ``tests/live/pins/claude-code/package.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import clis  # noqa: E402
from clis import InstallError  # noqa: E402,F401  (re-exported for the tests)

NAME = "claude-code"


def pinned_version() -> str:
    return clis.pinned_version(NAME)


def ensure_claude(quiet: bool = False) -> Path:
    return clis.ensure(NAME, quiet=quiet)


if __name__ == "__main__":
    sys.exit(clis.main([NAME]))
