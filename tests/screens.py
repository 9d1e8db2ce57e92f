"""Real screens of one CLI version (tests/fixtures/screens/<cli>-<version>-live/), read with a built-in preset.

Each folder holds one plain-text capture per screen and a README.md whose table names, per file,
the state the preset must read: ``| 01-name | what is on screen | state (kind) … |``; "(Enter)"
in that cell means the preset answers the dialog with Enter.
"""

from __future__ import annotations

import re
from pathlib import Path

from conftest import agents as ag


class Screens:
    def __init__(self, folder: Path, preset: str, now: float):
        self.folder, self.preset, self.now = folder, preset, now

    def backend(self):
        return ag.Loader(Path("/nonexistent/agents.toml")).load_backends({})[self.preset]

    def pane(self):
        return ag.Pane(session="s", pane_id="%1", pid=1, dead=False, dead_status=None, activity=self.now,
                       created=self.now, in_mode=False, owner="", width=120, height=40)

    def classify(self, lines: list[str], now: float | None = None):
        return ag.read_screen(self.backend(), self.pane(), lines, self.now if now is None else now)

    def fixture(self, name: str) -> list[str]:
        return (self.folder / name).read_text(encoding="utf-8").split("\n")

    def table(self) -> list[tuple[str, str, str, str]]:
        """(file, state, limit kind, keys) per row of the README table."""
        rows = []
        for line in (self.folder / "README.md").read_text(encoding="utf-8").splitlines():
            if re.match(r"^\| `?\d\d-", line):
                cells = [cell.strip().strip("`") for cell in line.split("|")]
                state = cells[3].split()[0].strip("`*,")
                kind = re.search(r"\((usage|rate|retrying|manual)\)", cells[3])
                keys = "Enter" if "(Enter)" in cells[3] else ""
                name = cells[1] if cells[1].endswith(".txt") else cells[1] + ".txt"
                rows.append((name, state, kind.group(1) if kind else "", keys))
        return rows
