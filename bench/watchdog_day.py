#!/usr/bin/env python3
"""Bench: the watchdog through one simulated day, for 1, 10 and 50 agents.

The real Watchdog runs against the simulation harness of the tests (tests/sim.py:
a fake clock, a fake tmux with Claude-like agents that work, idle, crash now and
then and get woken), at the default signal_interval of 15 s: 5 760 ticks a day.
The real StateStore (atomic, fsync'd) is used. Prints per agent count:

  - ticks run and the wall time they took; the median CPU time of one tick;
  - tmux calls per quiet tick (what a real tick would spawn as processes);
  - the process's RSS after the day and its peak (the watchdog's memory; the harness's own
    records are dropped every tick, so it is not counted).

Each count runs in a fresh child process so the RSS figures do not mix.
Usage: python3 bench/watchdog_day.py [N ...]      (default: 1 10 50)
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def forget_harness_records(world) -> None:
    """The harness logs everything for the tests' invariants; a bench of the watchdog's memory
    must not count that, so only what a live fake agent needs is kept."""
    world.actions.clear()
    world.tick_times.clear()
    world.tmux.log.clear()
    world.tmux.kills.clear()
    world.tmux.limit_log.clear()
    for name, lives in world.tmux.incarnations.items():
        del lives[:-1]
    live_panes = {agent.pane_id for agent in world.tmux.sessions.values()}
    for pane_id in [pane_id for pane_id in world.tmux.by_pane if pane_id not in live_panes]:
        del world.tmux.by_pane[pane_id]
    for agent in world.tmux.sessions.values():
        for record in (agent.received, agent.typed, agent.keys, agent.work_log, agent.markers):
            record.clear()
        del agent.history[:-60]


def one_day(count: int) -> None:
    import importlib.util
    import types

    spec = importlib.util.spec_from_file_location("agents", REPO / "agents.py")
    ag = importlib.util.module_from_spec(spec)
    sys.modules["agents"] = ag
    spec.loader.exec_module(ag)
    # The harness imports agents.py through the tests' conftest, which would pull in pytest (6 MB):
    # hand it the module directly, so the RSS below is the watchdog's (plus the small harness).
    sys.modules["conftest"] = types.SimpleNamespace(agents=ag)
    sys.path.insert(0, str(REPO / "tests"))
    import sim  # the tests' harness: fake clock, fake tmux, fake agents

    with tempfile.TemporaryDirectory(prefix="agents-bench-day-") as temp:
        specs = [sim.agent_spec(f"a{n:02d}", wake=3600 if n % 3 == 0 else None) for n in range(count)]
        config = sim.config_text(specs, watchdog={"signal_interval": 15}, loop=False)
        world = sim.Sim(Path(temp), config, seed=count)
        world.store = ag.StateStore(Path(temp) / ".agents" / "state")  # the real, fsync'd store
        world.watchdog = world._new_watchdog()
        world.up()
        cpu_times, quiet_calls = [], []

        started = time.perf_counter()
        day_end = world.now + 86400
        while world.next_tick <= day_end:
            calls_before = world.tmux.calls
            cpu_before = time.process_time()
            world._fire_until(world.next_tick)
            world.clock.advance_to(world.next_tick)
            began = world.now
            actions = world.tick()
            cpu_times.append(time.process_time() - cpu_before)
            if not actions:
                quiet_calls.append(world.tmux.calls - calls_before)
            world.next_tick = began + world.interval
            forget_harness_records(world)
        wall = time.perf_counter() - started
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        now_kb = int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmRSS:")))
        print(f"{count:>3} agents: {len(cpu_times)} ticks of a simulated day in {wall:5.1f} s wall | "
              f"tick CPU median {statistics.median(cpu_times) * 1000:5.2f} ms, max {max(cpu_times) * 1000:6.1f} ms | "
              f"tmux calls per quiet tick: {max(quiet_calls) if quiet_calls else '-'} | "
              f"RSS at the end {now_kb / 1024:5.1f} MB (peak {peak_kb / 1024:5.1f} MB)", flush=True)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        one_day(int(sys.argv[2]))
        return
    counts = [int(arg) for arg in sys.argv[1:]] or [1, 10, 50]
    print(f"python {sys.version.split()[0]}; signal_interval 15 s; one simulated day per row")
    for count in counts:
        subprocess.run([sys.executable, __file__, "--one", str(count)], check=True)


if __name__ == "__main__":
    main()
