#!/usr/bin/env python3
"""Install the pinned Claude Code CLI for the live tests, outside the repo.

Copies ``package.json`` and ``package-lock.json`` (beside this file) into a
cache folder and runs ``npm ci --no-audit --no-fund --ignore-scripts`` there.
Install scripts are not needed: the package ships a native binary per
platform, which runs directly (the JS wrapper wants node 22, the binary
wants nothing).

Cache folder: ``$AGENTS_TEST_CACHE`` if set, else
``${XDG_CACHE_HOME:-~/.cache}/agents-py/claude-code-<version>``.

Idempotent: skips npm when the binary is there and ``--version`` matches.
Prints the binary's path on stdout; exits non-zero with a message on stderr
when npm is missing or the install fails.

Usable as a module too: ``install_claude.ensure_claude()`` returns the path
or raises ``InstallError``.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = "@anthropic-ai/claude-code"


class InstallError(RuntimeError):
    """The CLI could not be installed (npm missing, npm failed, wrong arch)."""


def pinned_version() -> str:
    data = json.loads((HERE / "package.json").read_text(encoding="utf-8"))
    return data["dependencies"][PACKAGE]


def cache_dir(version: str | None = None) -> Path:
    version = version or pinned_version()
    env = os.environ.get("AGENTS_TEST_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "agents-py" / f"claude-code-{version}"


def platform_package() -> str:
    """The npm package holding the native binary for this machine."""
    if not sys.platform.startswith("linux"):
        raise InstallError(f"live tests support Linux only, not {sys.platform}")
    machine = platform.machine().lower()
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(machine)
    if arch is None:
        raise InstallError(f"no Claude Code native binary for architecture {machine!r}")
    # glibc builds report ("glibc", version); musl (Alpine) reports ("", "").
    musl = platform.libc_ver()[0] != "glibc"
    return f"{PACKAGE}-linux-{arch}{'-musl' if musl else ''}"


def binary_path(root: Path | None = None) -> Path:
    root = root or cache_dir()
    return root / "node_modules" / platform_package() / "claude"


def binary_version(binary: Path) -> str | None:
    """The version the binary reports, or None when it does not run."""
    try:
        out = subprocess.run(
            [str(binary), "--version"],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "DISABLE_AUTOUPDATER": "1"},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    words = out.stdout.strip().split()
    return words[0] if words else None


def ensure_claude(quiet: bool = False) -> Path:
    """Install (if needed) and return the path of the pinned native binary."""
    version = pinned_version()
    root = cache_dir(version)
    binary = binary_path(root)
    if binary.exists() and binary_version(binary) == version:
        return binary
    npm = shutil.which("npm")
    if npm is None:
        raise InstallError("npm not found on PATH: cannot install "
                           f"{PACKAGE}@{version} for the live tests")
    root.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(HERE / name, root / name)
    argv = [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"]
    if not quiet:
        print(f"installing {PACKAGE}@{version} into {root} ...", file=sys.stderr)
    try:
        proc = subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired as exc:
        raise InstallError(f"npm ci timed out in {root}") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise InstallError(f"npm ci failed in {root} (exit {proc.returncode}):\n{tail}")
    if not binary.exists():
        raise InstallError(f"npm ci succeeded but {binary} is missing")
    binary.chmod(binary.stat().st_mode | 0o111)
    got = binary_version(binary)
    if got != version:
        raise InstallError(f"{binary} --version reports {got!r}, expected {version!r}")
    return binary


def main() -> int:
    try:
        path = ensure_claude()
    except InstallError as exc:
        print(f"install_claude: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
