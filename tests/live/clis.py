#!/usr/bin/env python3
"""Install the pinned real agent CLIs for the live tests, outside the repo.

The pins live in one place, ``tests/live/pins/``: one folder per CLI, holding
an npm ``package.json`` + ``package-lock.json`` (Claude Code, Codex, Gemini
CLI, opencode) or a pip ``requirements.txt`` (aider). ``tests/live/drift.py``
moves them to the newest releases.

Each CLI goes into its own cache folder,
``${AGENTS_TEST_CACHE:-${XDG_CACHE_HOME:-~/.cache}/agents-py}/<cli>-<version>``:
npm packages with ``npm install --ignore-scripts`` (their native binaries run
directly; no install script is needed), aider into a venv with pip. An install
is skipped when the binary is there and reports the pinned version.

    python3 tests/live/clis.py [CLI ...]     install (all by default); prints CLI=PATH per CLI
                                             installed, one line on stderr per CLI that could not be

As a module: ``clis.ensure("codex")`` returns the binary's path or raises
``InstallError``; ``clis.env_var("codex")`` is the variable tests/run sets to
that path (``AGENTS_TEST_CODEX``).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
PINS = HERE / "pins"


class InstallError(RuntimeError):
    """The CLI could not be installed (npm or pip missing or failing, wrong platform)."""


def _arch() -> str:
    if not sys.platform.startswith("linux"):
        raise InstallError(f"live tests support Linux only, not {sys.platform}")
    machine = platform.machine().lower()
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(machine)
    if arch is None:
        raise InstallError(f"no native build for architecture {machine!r}")
    return arch


def _musl() -> str:
    # glibc builds report ("glibc", version); musl (Alpine) reports ("", "").
    return "" if platform.libc_ver()[0] == "glibc" else "-musl"


def _claude_binary(root: Path) -> Path:
    return root / "node_modules" / f"@anthropic-ai/claude-code-linux-{_arch()}{_musl()}" / "claude"


def _npm_bin(name: str) -> Callable[[Path], Path]:
    return lambda root: root / "node_modules" / ".bin" / name


@dataclass(frozen=True)
class Cli:
    name: str                         # folder under pins/, and the cache folder's stem
    package: str                      # npm package or PyPI distribution
    binary: Callable[[Path], Path]    # the binary, given the install folder
    manager: str = "npm"              # "npm" or "pip"
    pins_dir: Path | None = None      # where its pins are, if not pins/<name>

    @property
    def pins(self) -> Path:
        return self.pins_dir or PINS / self.name


CLIS: dict[str, Cli] = {cli.name: cli for cli in (
    Cli("claude-code", "@anthropic-ai/claude-code", _claude_binary),
    Cli("codex", "@openai/codex", _npm_bin("codex")),
    Cli("gemini-cli", "@google/gemini-cli", _npm_bin("gemini")),
    Cli("opencode", "opencode-ai", lambda root: root / "node_modules" / f"opencode-linux-{_arch()}{_musl()}" / "bin" / "opencode"),
    Cli("aider", "aider-chat", lambda root: root / "venv" / "bin" / "aider", manager="pip"),
)}


def env_var(name: str) -> str:
    """The variable that names the installed binary: AGENTS_TEST_CLAUDE, AGENTS_TEST_CODEX, …"""
    return "AGENTS_TEST_" + name.split("-")[0].upper()


def pinned_version(name: str) -> str:
    cli = CLIS[name]
    if cli.manager == "npm":
        data = json.loads((cli.pins / "package.json").read_text(encoding="utf-8"))
        return data["dependencies"][cli.package]
    for line in (cli.pins / "requirements.txt").read_text(encoding="utf-8").splitlines():
        package, _, version = line.partition("==")
        if package.strip() == cli.package:
            return version.strip()
    raise InstallError(f"{cli.pins / 'requirements.txt'} does not pin {cli.package}")


def cache_root() -> Path:
    given = os.environ.get("AGENTS_TEST_CACHE")
    if given:
        return Path(given).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "agents-py"


def install_dir(name: str) -> Path:
    return cache_root() / f"{name}-{pinned_version(name)}"


def binary_path(name: str) -> Path:
    return CLIS[name].binary(install_dir(name))


def binary_version(binary: Path) -> str:
    """What ``binary --version`` prints (stdout and stderr), or "" when it does not run."""
    env = {**os.environ, "DISABLE_AUTOUPDATER": "1", "NO_COLOR": "1", "CI": "1"}
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                             timeout=120, env=env, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return ""
    return (out.stdout + out.stderr).strip() if out.returncode == 0 else ""


def _run(argv: list[str], cwd: Path, what: str) -> None:
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=1200,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise InstallError(f"{what} timed out in {cwd}") from exc
    except OSError as exc:
        raise InstallError(f"{what} could not run: {exc}") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise InstallError(f"{what} failed in {cwd} (exit {proc.returncode}):\n{tail}")


def _install_npm(cli: Cli, root: Path) -> None:
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise InstallError(f"node/npm not found on PATH: cannot install {cli.package}")
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(cli.pins / name, root / name)
    # `npm install` with the lock, not `npm ci`: npm 11 writes locks without some
    # packages' optional platform builds (opencode-ai's), which `npm ci` then refuses.
    _run([npm, "install", "--no-audit", "--no-fund", "--ignore-scripts", "--no-save"], root,
         f"npm install {cli.package}")


def _install_pip(cli: Cli, root: Path) -> None:
    venv = root / "venv"
    if not (venv / "bin" / "python").exists():
        _run([sys.executable, "-m", "venv", str(venv)], root, "python3 -m venv")
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
          "-r", str(cli.pins / "requirements.txt")], root, f"pip install {cli.package}")


def ensure(name: str, quiet: bool = False) -> Path:
    """Install the pinned CLI if needed; the path of its binary."""
    cli = CLIS[name]
    version = pinned_version(name)
    root = install_dir(name)
    binary = cli.binary(root)
    if binary.exists() and version in binary_version(binary):
        return binary
    root.mkdir(parents=True, exist_ok=True)
    if not quiet:
        print(f"installing {cli.package}@{version} into {root} ...", file=sys.stderr)
    (_install_npm if cli.manager == "npm" else _install_pip)(cli, root)
    if not binary.exists():
        raise InstallError(f"{cli.package} installed but {binary} is missing")
    binary.chmod(binary.stat().st_mode | 0o111)
    got = binary_version(binary)
    if version not in got:
        raise InstallError(f"{binary} --version says {got!r}, expected {version}")
    return binary


def require(name: str) -> Path:
    """For a live test: the binary tests/run installed (AGENTS_TEST_<CLI>), else an install
    here; when neither works, a loud skip, or a failure under AGENTS_REQUIRE_REAL_CLI=1."""
    import pytest

    given = os.environ.get(env_var(name))
    if given:
        if Path(given).is_file() and os.access(given, os.X_OK):
            return Path(given)
        why = f"{env_var(name)}={given} is not an executable file"
    else:
        try:
            return ensure(name, quiet=True)
        except InstallError as exc:
            why = f"cannot install the pinned {CLIS[name].package}: {exc}"
    if os.environ.get("AGENTS_REQUIRE_REAL_CLI") == "1":
        pytest.fail(f"AGENTS_REQUIRE_REAL_CLI=1 but {why}")
    pytest.skip(f"REAL {name.upper()} SKIPPED: {why}")


def main(argv: list[str]) -> int:
    names = argv or list(CLIS)
    unknown = [name for name in names if name not in CLIS]
    if unknown:
        print(f"clis.py: unknown CLI {unknown[0]!r}; known: {', '.join(CLIS)}", file=sys.stderr)
        return 2
    results: dict[str, Path | InstallError] = {}

    def one(name: str) -> None:
        try:
            results[name] = ensure(name)
        except InstallError as exc:
            results[name] = exc

    threads = [threading.Thread(target=one, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name in names:
        got = results[name]
        if isinstance(got, Path):
            print(f"{name}={got}")
        else:
            print(f"clis.py: {name}: {got}", file=sys.stderr)
    return 0 if all(isinstance(got, Path) for got in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
