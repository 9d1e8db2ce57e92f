#!/usr/bin/env python3
"""Install the pinned ccusage (its native build) for the token benchmarks, outside the repo.

The same pattern as tests/live/install_claude.py: copies ``ccusage/package.json``
and ``ccusage/package-lock.json`` (beside this file) into a cache folder and runs
``npm install --no-audit --no-fund --ignore-scripts`` there (``install``, not
``ci``: the lock holds only the native packages the registry had, and ``ci``
refuses a lock that lacks any optional dependency). ccusage 20.x ships a
native binary per platform as an optional dependency
(``@ccusage/ccusage-linux-x64``); we run that binary directly, not the JS
wrapper, so node's start-up is not part of any timing.

Cache folder: ``$AGENTS_BENCH_CACHE/ccusage-<version>`` if set, else
``${XDG_CACHE_HOME:-~/.cache}/agents-py/ccusage-<version>``.

Idempotent: skips npm when the binary is there and ``--version`` matches.
Prints the binary's path on stdout; exits non-zero with a message on stderr
when npm is missing or the install fails. As a module: ``ensure_ccusage()``
returns the path or raises ``InstallError``.

Why 20.0.24 and not the newest: 20.0.26 is on the registry, but its native
packages are not (``@ccusage/ccusage-linux-x64@20.0.26`` is a 404 here), and the
issue's reference figures were measured with 20.0.24.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent / "ccusage"
PACKAGE = "ccusage"


class InstallError(RuntimeError):
    """ccusage could not be installed (npm missing, npm failed, no native build)."""


def pinned_version() -> str:
    data = json.loads((HERE / "package.json").read_text(encoding="utf-8"))
    return data["dependencies"][PACKAGE]


def cache_dir(version: str | None = None) -> Path:
    version = version or pinned_version()
    base = os.environ.get("AGENTS_BENCH_CACHE")
    if base:
        return Path(base).expanduser() / f"ccusage-{version}"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "agents-py" / f"ccusage-{version}"


def platform_package() -> str:
    """The npm package holding the native binary for this machine."""
    system = {"linux": "linux", "darwin": "darwin", "win32": "win32"}.get(sys.platform)
    machine = platform.machine().lower()
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(machine)
    if system is None or arch is None:
        raise InstallError(f"no ccusage native build for {sys.platform}/{machine}")
    return f"@ccusage/ccusage-{system}-{arch}"


def binary_path(root: Path | None = None) -> Path:
    root = root or cache_dir()
    return root / "node_modules" / platform_package() / "bin" / "ccusage"


def binary_version(binary: Path) -> str | None:
    """The version the binary reports (``ccusage 20.0.24`` → ``20.0.24``), or None."""
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    words = out.stdout.strip().split()
    return words[-1] if words else None


def ensure_ccusage(quiet: bool = False) -> Path:
    """Install (if needed) and return the path of the pinned native binary."""
    version = pinned_version()
    root = cache_dir(version)
    binary = binary_path(root)
    if binary.exists() and binary_version(binary) == version:
        return binary
    npm = shutil.which("npm")
    if npm is None:
        raise InstallError(f"npm not found on PATH: cannot install {PACKAGE}@{version}")
    root.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(HERE / name, root / name)
    argv = [npm, "install", "--no-audit", "--no-fund", "--ignore-scripts", "--no-save"]
    if not quiet:
        print(f"installing {PACKAGE}@{version} into {root} ...", file=sys.stderr)
    try:
        proc = subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired as exc:
        raise InstallError(f"npm install timed out in {root}") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise InstallError(f"npm install failed in {root} (exit {proc.returncode}):\n{tail}")
    if not binary.exists():
        raise InstallError(f"npm install succeeded but {binary} is missing (no native build for this machine?)")
    binary.chmod(binary.stat().st_mode | 0o111)
    got = binary_version(binary)
    if got != version:
        raise InstallError(f"{binary} --version reports {got!r}, expected {version!r}")
    return binary


def main() -> int:
    try:
        path = ensure_ccusage()
    except InstallError as exc:
        print(f"install_ccusage: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
