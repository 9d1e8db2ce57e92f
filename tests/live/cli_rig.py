"""What every real-CLI live test module (Codex, Gemini CLI, opencode, aider) shares.

Each module brings one agent team ``up`` once (its ``rig`` fixture) and reads it through
agents.py's own commands: ``status --json`` for the state, ``tmux capture-pane`` for the
screen. ``CliRig`` is that reading; ``timed`` (an autouse fixture: import it into the
module) and ``report_wall_times`` print each scenario's wall time after the module.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import pytest


class CliRig:
    """One module's team. Subclasses set ``self.project`` (a claude_team.LiveProject) in __init__."""

    RUN_TIMEOUT = 180.0
    READY_TIMEOUT = 60.0
    POLL = 0.3

    def __init__(self, terminal) -> None:
        self.terminal = terminal  # pytest's terminal reporter, for the wall-time report
        self.timings: dict[str, float] = {}
        self.facts: dict[str, object] = {}

    def run(self, *args: str, timeout: float | None = None):
        return self.project.run(*args, timeout=timeout or self.RUN_TIMEOUT)

    def row(self, name: str = "main") -> dict:
        return next(r for r in self.project.status()["agents"] if r["name"] == name)

    def state(self, name: str = "main") -> str:
        return self.row(name)["state"]

    def screen(self, name: str = "main") -> str:
        return self.project.capture(f"t-{name}")

    def send(self, text: str, name: str = "main"):
        return self.run("send", name, text, timeout=120)

    def wait(self, what: str, predicate, timeout: float = 30.0, interval: float | None = None, name: str = "main"):
        """Poll ``predicate()`` until truthy and return its value; fail with the state and the screen."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                state = None
                with contextlib.suppress(Exception):
                    state = self.state(name)
                pytest.fail(f"timed out after {timeout}s waiting for {what}; state {state!r}; "
                            f"screen:\n{self.screen(name)}")
            time.sleep(interval or self.POLL)

    def ready(self, name: str = "main", timeout: float | None = None) -> str:
        """Idle (or limited, after a given-up or limit answer) twice in a row; returns that state."""
        last = None

        def settled() -> bool:
            nonlocal last
            state = self.state(name)
            ok = state == "idle" or state.startswith("limited")
            stable = ok and state == last
            last = state if ok else None
            return stable

        self.wait(f"{name} ready", settled, timeout=timeout or self.READY_TIMEOUT, name=name)
        return last or ""


def up_with_held_kickoff(rig: CliRig, label: str, ready_timeout: float = 30.0) -> None:
    """``up --no-watchdog main`` while the mock holds the kickoff's answer: ``facts`` keep what ``up``
    printed, four states read while held, and the state once released; ``timings[label]`` the whole."""
    started = time.monotonic()
    gate = rig.mock.hold("kickoff answered: ready")
    rig.facts["up"] = rig.run("up", "--no-watchdog", "main")
    rig.facts["up_returned_after"] = round(time.monotonic() - started, 2)
    held = []
    for _ in range(4):
        held.append(rig.state())
        time.sleep(0.25)
    rig.facts["held_states"] = held
    gate.set()
    try:
        rig.facts["after_state"] = rig.ready(timeout=ready_timeout)
    except BaseException as exc:  # noqa: BLE001 - the module's test a reports it
        rig.facts["after_state"] = f"not ready: {exc}"
    rig.timings[label] = round(time.monotonic() - started, 2)


def report_wall_times(rig: CliRig, request, title: str, extra: list[str] = (), skip_in_total: str = "") -> None:
    """Print ``title wall times (s):`` and each scenario's seconds after the module (and write them to
    $AGENTS_LIVE_TIMINGS if set); ``skip_in_total``: a timing name part that the total leaves out."""
    total = sum(secs for name, secs in rig.timings.items() if not (skip_in_total and skip_in_total in name))
    lines = [f"{title} wall times (s):", *(f"  {secs:7.2f}  {name}" for name, secs in rig.timings.items()),
             f"  {total:7.2f}  total", *extra]
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if rig.terminal is not None:
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            rig.terminal.write_line("")
            for line in lines:
                rig.terminal.write_line(line)
    if os.environ.get("AGENTS_LIVE_TIMINGS"):
        Path(os.environ["AGENTS_LIVE_TIMINGS"]).write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(autouse=True)
def timed(request):
    """Each test's wall time, kept on the module's rig for the report."""
    started = time.monotonic()
    yield
    rig = request.node.funcargs.get("rig")
    if rig is not None:
        rig.timings[request.node.name] = round(time.monotonic() - started, 2)
