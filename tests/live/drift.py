#!/usr/bin/env python3
"""Move the real CLIs' pins to their newest releases and run the live smokes on them.

    python3 tests/live/drift.py             pinned and newest version of every CLI, nothing changed
    python3 tests/live/drift.py --move      rewrite the pins (tests/live/pins/), install, run tests/live
    python3 tests/live/drift.py --move codex gemini-cli
                                            only the CLIs named

A new release that changes a screen then fails its live smoke, here, in one command; `git diff
tests/live/pins` shows what moved and `git checkout tests/live/pins` puts the pins back. The newest
versions come from the registries (`npm view PACKAGE version`; PyPI's JSON API for aider), so this
needs the network the tests themselves never use.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import clis  # noqa: E402


def newest(cli: clis.Cli) -> str:
    if cli.manager == "npm":
        npm = shutil.which("npm") or "npm"
        out = subprocess.run([npm, "view", cli.package, "version"], capture_output=True, text=True,
                             timeout=120, check=True)
        return out.stdout.strip().splitlines()[-1]
    with urllib.request.urlopen(f"https://pypi.org/pypi/{cli.package}/json", timeout=60) as answer:
        return json.load(answer)["info"]["version"]


def move_pin(cli: clis.Cli, version: str) -> None:
    """Rewrite the CLI's pin to ``version`` (and, for npm, its lock)."""
    if cli.manager == "npm":
        path = cli.pins / "package.json"
        data = json.loads(path.read_text(encoding="utf-8"))
        data["dependencies"][cli.package] = version
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        npm = shutil.which("npm") or "npm"
        subprocess.run([npm, "install", "--package-lock-only", "--no-audit", "--no-fund", "--ignore-scripts"],
                       cwd=cli.pins, check=True, capture_output=True, timeout=600)
        return
    path = cli.pins / "requirements.txt"
    lines = [f"{cli.package}=={version}" if line.partition("==")[0].strip() == cli.package else line
             for line in path.read_text(encoding="utf-8").splitlines()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--move", action="store_true", help="move the pins, install, and run tests/live")
    parser.add_argument("names", nargs="*", metavar="CLI", help=f"of: {', '.join(clis.CLIS)} (default all)")
    args = parser.parse_args(argv)
    names = args.names or list(clis.CLIS)
    for name in names:
        if name not in clis.CLIS:
            parser.error(f"unknown CLI {name!r}")
    moved = []
    for name in names:
        cli = clis.CLIS[name]
        pinned = clis.pinned_version(name)
        try:
            latest = newest(cli)
        except (OSError, subprocess.SubprocessError, ValueError, KeyError) as exc:
            print(f"{name:12} pinned {pinned:10} newest: cannot tell ({exc})")
            continue
        print(f"{name:12} pinned {pinned:10} newest {latest}" + ("" if latest == pinned else "   <- moves"))
        if args.move and latest != pinned:
            move_pin(cli, latest)
            moved.append(name)
    if not args.move:
        return 0
    if clis.main(names) != 0:
        return 1
    print(f"moved: {', '.join(moved) or 'nothing'}; running the live smokes on them", flush=True)
    env = {**os.environ, "AGENTS_REQUIRE_REAL_CLI": "1"}
    return subprocess.run([str(HERE.parent / "run"), str(HERE)], env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
