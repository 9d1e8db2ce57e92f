"""Delivery verification against a plain REPL that keeps the submitted line on screen and prints its
answer below it without drawing a new prompt (as a CLI does that turns limited, or any line-mode REPL
mid-answer). Such a message landed: `send` must say so (exit 0) and press the submit key once."""

from __future__ import annotations

import json
import sys
import textwrap

from conftest import wait_for

REPL = textwrap.dedent('''\
    import sys
    log = open(sys.argv[1], "a")
    sys.stdout.write("> ")
    sys.stdout.flush()
    for line in sys.stdin:
        log.write(line)
        log.flush()
        # Answer below the submitted line and draw no new prompt: the next line is a usage banner.
        print("working on it")
        print("You've hit your session limit · resets 11pm")
        sys.stdout.flush()
    ''')


def test_output_below_the_submitted_line_means_it_landed(project, tmp_path):
    script = tmp_path / "repl.py"
    script.write_text(REPL)
    received = tmp_path / "received.txt"
    project.write(f'''
        [backend.repl]
        preset = "shell"
        command = [{json.dumps(sys.executable)}, {json.dumps(str(script))}, {json.dumps(str(received))}]
        idle = ['^>(?: (?P<input>.*))?$']
        limit = ["^You've hit your session limit"]
        submit_delay = 0.2

        [[agent]]
        name = "r"
        backend = "repl"
        watch = "none"
        ''')
    result = project.run("up", "--no-watchdog")
    assert result.returncode == 0, result.stdout + result.stderr
    wait_for(lambda: project.run("status", "--json").stdout.count('"idle') >= 1, timeout=15, message="prompt shown")
    sent = project.run("send", "r", "hello repl")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "NOT delivered" not in sent.stdout + sent.stderr
    wait_for(lambda: received.exists() and received.read_text(), timeout=10, message="the REPL got the line")
    assert received.read_text() == "hello repl\n"  # one submit key: no empty lines from extra presses
    events = [json.loads(line) for line in (project.root / ".agents" / "logs" / "events.jsonl").read_text().splitlines()]
    (send,) = [event for event in events if event["kind"] == "send"]
    assert send["presses"] == 1 and ("limited" in send["reason"] or "new output" in send["reason"])
