#!/usr/bin/env python3
"""Bench: `up` and `status` with many simulated agents, and one watchdog tick.

Starts N simulated agents (examples/simagent.py) on a private tmux server in a
temporary folder and prints:

  - the wall time of `agents.py up --no-watchdog` for the team;
  - the wall time of `agents.py status` as a whole process (median of several runs);
  - how many tmux processes one `status` spawns (counted in-process);
  - one watchdog signal tick: wall time (median) and subprocesses spawned.

Usage: python3 bench/team.py [--loop] [N ...]        (default: 10 50)

With --loop the team also has a [loop] over a local bare remote (a phase plan and
hand-off), so each tick fetches and reads the remote branch: the tick's git
processes are counted too.
Everything it starts is stopped again, even on failure.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
AGENTS_PY = REPO / "agents.py"
SIMAGENT = REPO / "examples" / "simagent.py"


def load_agents():
    spec = importlib.util.spec_from_file_location("agents", AGENTS_PY)
    module = importlib.util.module_from_spec(spec)
    sys.modules["agents"] = module
    spec.loader.exec_module(module)
    return module


class SpawnCounter:
    """Counts the processes spawned through subprocess (tmux, git, anything), by program name."""

    def __init__(self):
        self.counts: dict[str, int] = {}
        self._original = subprocess.Popen.__init__

    def __enter__(self):
        counter = self

        def counting_init(popen, args, *rest, **kwargs):
            program = Path(args[0] if isinstance(args, (list, tuple)) else str(args).split()[0]).name
            counter.counts[program] = counter.counts.get(program, 0) + 1
            counter._original(popen, args, *rest, **kwargs)

        subprocess.Popen.__init__ = counting_init
        return self

    def __exit__(self, *exc):
        subprocess.Popen.__init__ = self._original


def make_work_repo(folder: Path) -> None:
    """A bare remote with one commit, and the clone the watchdog reads (folder/watch)."""
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(folder / "remote.git")], check=True)
    subprocess.run(["git", "clone", "-q", str(folder / "remote.git"), str(folder / "watch")], check=True,
                   capture_output=True)
    (folder / "watch" / "PLAN.md").write_text("p1: g1\n")
    subprocess.run([*git, "-C", str(folder / "watch"), "add", "PLAN.md"], check=True)
    subprocess.run([*git, "-C", str(folder / "watch"), "commit", "-q", "-m", "plan"], check=True)
    subprocess.run(["git", "-C", str(folder / "watch"), "push", "-q", "origin", "HEAD:main"], check=True,
                   capture_output=True)


LOOP = '''
[loop]
repo = "watch"
phases = [{ id = "p1" }, { id = "p2" }]
[loop.handoff]
claim_pings = "a00"
review_pings = "a01"
inboxes = [{ file = "TO-A00.md", ping = "a00" }]
'''


def write_config(folder: Path, socket: str, count: int, loop: bool = False) -> Path:
    agents = "\n".join(f'[[agent]]\nname = "a{n:02d}"\n' for n in range(count))
    config = folder / "agents.toml"
    config.write_text(f'''tmux_socket = "{socket}"
session_prefix = "bench-"
[backend.sim]
preset = "claude"
command = ["{sys.executable}", "{SIMAGENT}", "--work", "0.5"]
submit_delay = 0.1
env = {{ CLAUDE_CONFIG_DIR = ".agents/sim-claude" }}
[defaults]
backend = "sim"
prompt = "Hello {{name}}."
{agents}{LOOP if loop else ""}''')
    return config


def timed(argv: list[str], env: dict) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, env=env)
    return time.perf_counter() - started, result


def bench(count: int, loop: bool = False) -> None:
    ag = load_agents()
    socket = f"bench-{os.getpid()}-{count}"
    with tempfile.TemporaryDirectory(prefix="agents-bench-") as temp:
        folder = Path(temp)
        if loop:
            make_work_repo(folder)
        config = write_config(folder, socket, count, loop)
        env = {**os.environ, "HOME": str(folder)}
        env.pop("TMUX", None)
        cli = [sys.executable, str(AGENTS_PY), "--config", str(config)]
        try:
            up_time, result = timed([*cli, "up", "--no-watchdog"], env)
            if result.returncode != 0:
                print(result.stdout, result.stderr)
                raise SystemExit(f"up failed for {count} agents")
            time.sleep(1.5)  # let the kickoffs' work finish
            status_times = [timed([*cli, "status"], env)[0] for _ in range(7)]
            cfg = ag.Loader(config).load()
            tmux = ag.Tmux(cfg.tmux_socket)
            with SpawnCounter() as spawned:
                ag.status_rows(cfg, ag.Team(cfg, tmux), time.time())
            status_spawns = dict(spawned.counts)

            os.environ["HOME"] = str(folder)
            watchdog = ag.Watchdog(config, tmux=tmux)
            watchdog.tick()  # warm: first sight of everything
            tick_times, tick_spawns = [], []
            for _ in range(9):
                with SpawnCounter() as spawned:
                    began = time.perf_counter()
                    actions = watchdog.tick()
                    tick_times.append(time.perf_counter() - began)
                tick_spawns.append(dict(spawned.counts))
                assert not actions, f"a quiet team should need no action, got {actions}"
            print(f"{count:>3} agents: up {up_time:5.2f} s | status {statistics.median(status_times) * 1000:6.0f} ms "
                  f"(median of 7, min {min(status_times) * 1000:.0f}, max {max(status_times) * 1000:.0f}), "
                  f"spawns {status_spawns} | tick {statistics.median(tick_times) * 1000:6.1f} ms "
                  f"(median of 9), spawns {max(tick_spawns, key=lambda c: sum(c.values()))}"
                  + (" [with a [loop]: fetch + reads of the remote branch]" if loop else ""))
        finally:
            subprocess.run([*cli, "down"], capture_output=True, env=env)
            subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)
            Path(os.environ.get("TMUX_TMPDIR") or "/tmp", f"tmux-{os.getuid()}", socket).unlink(missing_ok=True)


def main() -> None:
    loop = "--loop" in sys.argv[1:]
    counts = [int(arg) for arg in sys.argv[1:] if arg != "--loop"] or [10, 50]
    print(f"python {sys.version.split()[0]}, {subprocess.run(['tmux', '-V'], capture_output=True, text=True).stdout.strip()}, "
          f"{os.cpu_count()} cpu(s)")
    for count in counts:
        bench(count, loop)


if __name__ == "__main__":
    main()
