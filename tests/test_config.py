"""Config: the schema, defaults, presets, and one clear line per bad input."""

from __future__ import annotations

import textwrap

import pytest

from conftest import agents as ag

GOOD = """
[backend.sim]
preset = "claude"
command = ["python3", "sim.py"]

[[agent]]
name = "builder"
backend = "sim"
cwd = "work"
prompt = "build {name}"
"""

# (case, config body, the one error line must contain all of these)
BAD_CONFIGS = [
    ("toml syntax", '[watchdog]\nstall_idle = 12x\n',
     ["agents.toml:", "[watchdog] stall_idle:", "TOML syntax error", "(at line"]),
    ("unknown top-level key", 'sesion_prefix = "x"\n', ["(top level) sesion_prefix: unknown key", "'session_prefix'"]),
    ("unknown key with hint", '[watchdog]\nstall_idel = 5\n',
     ["[watchdog] stall_idel: unknown key (did you mean 'stall_idle'?)"]),
    ("unknown agent key", GOOD + 'promt = "x"\n', ["[[agent]] 'builder' promt: unknown key (did you mean 'prompt'?)"]),
    ("wrong type", '[watchdog]\nsignal_interval = "fast"\n', ["[watchdog] signal_interval: expected a number, got a string"]),
    ("negative number", '[watchdog]\nstall_idle = -1\n', ["[watchdog] stall_idle: must be at least 1"]),
    ("bad kind", GOOD + 'kind = "lop"\n', ["[[agent]] 'builder' kind: must be one of loop, persistent, task", "'loop'"]),
    ("duplicate name", GOOD + '[[agent]]\nname = "builder"\nbackend = "sim"\ncwd = "work"\n',
     ["[[agent]] 'builder' name: duplicate name 'builder'"]),
    ("bad name", '[[agent]]\nname = "my agent"\ncwd = "work"\n', ["[[agent]] 'my agent' name:", "only letters"]),
    ("unknown backend", '[[agent]]\nname = "a"\nbackend = "claud"\ncwd = "work"\n',
     ["[[agent]] 'a' backend: unknown backend 'claud' (did you mean 'claude'?)"]),
    ("unknown preset", '[backend.x]\npreset = "codx"\n', ["[backend.x] preset: unknown preset 'codx' (did you mean 'codex'?)"]),
    ("invalid regex", '[backend.claude]\nbusy = ["(unclosed"]\n', ["[backend.claude] busy: invalid regex '(unclosed'"]),
    ("invalid dialog key rule", '[backend.claude]\ndialog_keys = { "[x" = "Enter" }\n', ["[backend.claude] dialog_keys: invalid regex"]),
    ("missing @file", '[[agent]]\nname = "a"\ncwd = "work"\nprompt = "@prompts/nope.md"\n',
     ["[[agent]] 'a' prompt: cannot read '@prompts/nope.md'"]),
    ("missing cwd", '[[agent]]\nname = "a"\ncwd = "nowhere"\n', ["[[agent]] 'a' cwd: folder 'nowhere' does not exist"]),
    ("unknown handoff agent", GOOD + '[loop]\nphases = [{ id = "p1" }]\n[loop.handoff]\nclaim_pings = ["critic"]\n',
     ["[loop.handoff] claim_pings: unknown agent 'critic'"]),
    ("unknown inbox agent", GOOD + '[loop]\nphases = [{ id = "p1" }]\n[loop.handoff]\ninboxes = [{ file = "TO-X.md", ping = "x" }]\n',
     ["[loop.handoff] inboxes[1] ping: unknown agent 'x'"]),
    ("duplicate phase", GOOD + '[loop]\nphases = [{ id = "p1" }, { id = "p1" }]\n', ["[loop] phases[2] id: duplicate phase id 'p1'"]),
    ("bad claim regex", GOOD + '[loop]\nphases = [{ id = "p1" }]\n[loop.handoff]\nclaim_pattern = "^claim("\n',
     ["[loop.handoff] claim_pattern: invalid regex"]),
    ("wake typo", GOOD + 'wake = { interval = 60, mesage = "hi" }\n', ["[[agent]] 'builder' wake.mesage: unknown key"]),
    ("wake wrong type", GOOD + 'wake = { interval = "hourly" }\n', ["[[agent]] 'builder' wake.interval: expected a number"]),
    ("env wrong type", GOOD + 'env = { A = [1] }\n', ["[[agent]] 'builder' env: A: expected a string"]),
    ("command unsplittable", '[[service]]\nname = "web"\ncommand = "python3 \\"unclosed"\n', ["[[service]] 'web' command: cannot split"]),
    ("service without command", '[[service]]\nname = "web"\n', ["[[service]] 'web' command: missing"]),
    ("service shares agent name", GOOD + '[[service]]\nname = "builder"\ncommand = "sleep 1"\n',
     ["[[service]] 'builder' name: duplicate name 'builder'"]),
    ("defaults with name", '[defaults]\nname = "x"\n', ["[defaults] name: cannot be a default"]),
    ("granularity", '[watchdog]\ntoken_granularity = "turn"\n', ["[watchdog] token_granularity: must be one of gate, phase"]),
]


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "work").mkdir()
    (tmp_path / "prompts").mkdir()
    return tmp_path


def load(folder, body):
    path = folder / "agents.toml"
    path.write_text('tmux_socket = "never-used"\n' + textwrap.dedent(body))
    return ag.Loader(path).load()


@pytest.mark.parametrize("case,body,expected", BAD_CONFIGS, ids=[case for case, _, _ in BAD_CONFIGS])
def test_bad_config_is_one_clear_line(folder, case, body, expected):
    with pytest.raises(ag.ConfigError) as raised:
        load(folder, body)
    lines = raised.value.lines
    matching = [line for line in lines if all(part in line for part in expected)]
    assert matching, f"no error line holds {expected}; got {lines}"
    assert all("\n" not in line for line in lines)
    assert all(line.startswith("agents.toml:") or line.startswith(str(folder)) for line in lines)


@pytest.mark.parametrize("case,body,expected", BAD_CONFIGS[:6] + BAD_CONFIGS[13:15],
                         ids=[case for case, _, _ in BAD_CONFIGS[:6] + BAD_CONFIGS[13:15]])
def test_bad_config_exits_2_and_starts_nothing(project, case, body, expected):
    (project.root / "work").mkdir(exist_ok=True)
    project.write(body)
    for command in (["check"], ["up", "--no-watchdog"], ["status"]):
        result = project.run(*command)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert any(all(part in line for part in expected) for line in result.stderr.splitlines()), result.stderr
        assert "Traceback" not in result.stderr
    assert project.sessions() == []  # the private server never even started


def test_defaults_table_and_presets(folder):
    cfg = load(folder, """
        [defaults]
        kind = "loop"
        backend = "sim"
        cwd = "work"
        [backend.sim]
        preset = "claude"
        command = "python3 sim.py --fast"
        submit_delay = 0.1
        [[agent]]
        name = "builder"
        [[agent]]
        name = "reviewer"
        kind = "persistent"
        wake = { interval = 600 }
    """)
    builder, reviewer = cfg.agents
    assert (builder.kind, reviewer.kind) == ("loop", "persistent")
    sim = cfg.backends["sim"]
    assert sim.command == ["python3", "sim.py", "--fast"]  # shlex-split, overridden
    assert sim.submit_delay == 0.1  # overridden
    assert sim.busy == cfg.backends["claude"].busy  # inherited field by field
    assert sim.session_id_flag == "--session-id"
    assert reviewer.wake.interval == 600 and reviewer.wake.message  # wake message defaulted
    assert builder.session == "t-builder" or builder.session.endswith("builder")
    assert cfg.watchdog.stall_idle == 900 and cfg.watchdog.backoff_base == 30  # the one table of defaults


def test_every_preset_exists_and_overrides_field_by_field(folder):
    cfg = load(folder, '[backend.claude]\nsubmit_key = "C-m"\n')
    assert set(ag.BACKEND_PRESETS) <= set(cfg.backends)
    assert {"claude", "codex", "gemini", "aider", "opencode", "shell"} <= set(cfg.backends)
    claude = cfg.backends["claude"]
    assert claude.submit_key == "C-m"
    assert claude.command[0] == "claude" and claude.transcripts == "claude"


def test_a_backend_env_is_added_to_the_presets(folder):
    cfg = load(folder, '[backend.gemini]\nenv = { GOOGLE_GEMINI_BASE_URL = "http://127.0.0.1:9", CI = "0" }\n')
    # The preset keeps Gemini CLI interactive under CI=true; the user's keys are added, and win.
    assert cfg.backends["gemini"].env == {"CI": "0", "GITHUB_ACTIONS": "false",
                                         "GOOGLE_GEMINI_BASE_URL": "http://127.0.0.1:9"}
    assert load(folder, "").backends["gemini"].env == {"CI": "false", "GITHUB_ACTIONS": "false"}


def test_kickoff_template_fills_known_names_only(folder):
    (folder / "prompts" / "kick.md").write_text('You are {name} in {phase}; write {done_marker} to {status_file}. '
                                                'Code: {"a": 1} and ${HOME} stay.')
    cfg = load(folder, """
        [[agent]]
        name = "builder"
        kind = "loop"
        cwd = "work"
        [loop]
        repo = "work"
        phases = [{ id = "p1", kickoff = "@prompts/kick.md" }]
    """)
    text = ag.kickoff_for(cfg, cfg.agents[0], {"units": {}})
    assert text == 'You are builder in p1; write ## DONE to STATUS-p1.md. Code: {"a": 1} and ${HOME} stay.'


def test_config_found_by_env_then_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AGENTS_CONFIG", raising=False)
    assert ag.find_config_path(None) == tmp_path / "agents.toml"
    monkeypatch.setenv("AGENTS_CONFIG", str(tmp_path / "other.toml"))
    assert ag.find_config_path(None) == tmp_path / "other.toml"
    assert ag.find_config_path("x.toml") == tmp_path / "x.toml"


def test_config_after_the_command(project):
    (project.root / "work").mkdir()
    project.write(GOOD)
    import subprocess
    import sys
    result = subprocess.run([sys.executable, str(ag.__file__), "check", "--config", str(project.config)],
                            capture_output=True, text=True, env=project.env())
    assert result.returncode == 0, result.stderr
    assert "builder" in result.stdout and "python3 sim.py --session-id" in result.stdout


def test_check_shows_what_up_would_start(project):
    (project.root / "work").mkdir()
    project.write(GOOD)
    result = project.run("check")
    assert result.returncode == 0, result.stderr
    assert "`up` would start 1 agent(s) and 0 service(s)" in result.stdout
    assert "kickoff 'build builder'" in result.stdout
    assert "WARNING" not in result.stdout  # python3 is on PATH


def test_check_warns_when_a_program_is_missing(project):
    (project.root / "work").mkdir()
    project.write(GOOD.replace('["python3", "sim.py"]', '["no-such-agent-cli-xyz"]'))
    result = project.run("check")
    assert result.returncode == 0
    assert "WARNING: 'no-such-agent-cli-xyz' is not on PATH" in result.stdout
    up = project.run("up", "--no-watchdog")
    assert up.returncode == 2
    assert up.stderr.strip() == ("agents.toml: [[agent]] 'builder' backend: 'no-such-agent-cli-xyz' is not on PATH "
                                 "(backend sim: command no-such-agent-cli-xyz)")
    assert project.sessions() == []


def test_example_config_validates():
    """agents.example.toml, the annotated full example, is a valid config."""
    cfg = ag.Loader(ag.Path(ag.__file__).parent / "agents.example.toml").load()
    assert [agent.name for agent in cfg.agents] == ["builder", "adversary"]
    assert cfg.loop and [phase.id for phase in cfg.loop.phases] == ["p1"]
    kickoff = ag.kickoff_for(cfg, cfg.agents[0], {"units": {}})
    assert kickoff.startswith("You are builder") and "Phase p1 starts now" in kickoff
    assert "{" not in kickoff  # every placeholder filled


def test_readme_documents_every_key():
    """The README's configuration reference names every key the loader accepts."""
    import dataclasses
    import re

    readme = (ag.Path(ag.__file__).parent / "README.md").read_text()
    for cls in (ag.WatchdogConfig, ag.Backend, ag.Agent, ag.Wake, ag.Service, ag.LoopConfig, ag.Phase, ag.Handoff,
                ag.Inbox):
        for item in dataclasses.fields(cls):
            if "doc" in item.metadata:
                assert re.search(rf"`[^`]*\b{item.name}\b[^`]*`", readme), \
                    f"README does not document {cls.__name__}.{item.name}"
