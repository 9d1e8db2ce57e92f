#!/usr/bin/env bash
# Offline smoke, in a sandbox (a temporary folder, a private tmux server, a throwaway HOME), with the
# simulated agent (examples/simagent.py): no agent CLI, no network, no API key.
#
#   ./smoke.sh          the Builder/Adversary loop (examples/builder-adversary): real git commits on a
#                       local bare remote, driven by the watchdog through both phases to
#                       SEQUENCE-COMPLETE (about half a minute)
#   ./smoke.sh --demo   the small demo team (examples/demo): up, a message, a crash healed, down
#
# Exit 0 only if the run did what it should and left no tmux session and no process behind.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mode=loop
case "${1:-}" in
  "") ;;
  --demo) mode=demo ;;
  -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: $0 [--demo]" >&2; exit 2 ;;
esac
[[ $# -le 1 ]] || { echo "usage: $0 [--demo]" >&2; exit 2; }
command -v tmux >/dev/null || { echo "smoke: tmux is required" >&2; exit 2; }
command -v git >/dev/null || { echo "smoke: git is required" >&2; exit 2; }

started=$SECONDS
sandbox=$(mktemp -d "${TMPDIR:-/tmp}/agents-smoke.XXXXXX")
socket="agents-smoke-$$"
config="$sandbox/agents.toml"   # the loop mode points it at its copy of the example
agents() { python3 "$here/agents.py" --config "$config" "$@"; }

# Processes (other than this script) whose command line or working folder is in the sandbox.
sandbox_pids() {
  local entry pid cmd cwd
  for entry in /proc/[0-9]*; do
    pid=${entry#/proc/}
    [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
    cmd=$(tr '\0' ' ' <"$entry/cmdline" 2>/dev/null) || continue
    cwd=$(readlink "$entry/cwd" 2>/dev/null) || cwd=""
    if [[ $cmd == *"$sandbox"* || $cwd == "$sandbox" || $cwd == "$sandbox/"* ]]; then
      echo "$pid"
    fi
  done
}

cleanup() {
  local rc=$? pid left=() i
  trap - EXIT
  agents down >/dev/null 2>&1 || true
  tmux -L "$socket" kill-server 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do   # let what the server's end hung up exit (up to 5 s)
    mapfile -t left < <(sandbox_pids)
    ((${#left[@]} == 0)) && break
    sleep 0.1
  done
  if ((${#left[@]})); then
    echo "smoke: ${#left[@]} process(es) left behind:" >&2
    for pid in "${left[@]}"; do
      echo "  $pid $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" >&2
      kill -KILL "$pid" 2>/dev/null || true   # ours: it carries the sandbox path; by pid only
    done
    ((rc == 0)) && rc=1
  fi
  rm -f "${TMUX_TMPDIR:-/tmp}/tmux-$(id -u)/$socket"
  rm -rf "$sandbox"
  if ((rc == 0)); then
    echo "smoke: OK in $((SECONDS - started)) s ($1, and nothing left behind)"
  else
    echo "smoke: FAILED (exit $rc) after $((SECONDS - started)) s" >&2
  fi
  exit "$rc"
}

export HOME="$sandbox/home"
mkdir -p "$HOME"
export GIT_TERMINAL_PROMPT=0
unset TMUX AGENTS_CONFIG

step() { printf '\n== %s\n' "$*"; }
no_sessions_left() {
  local left
  left=$( (tmux -L "$socket" ls 2>/dev/null || true) | wc -l)
  [[ $left == 0 ]] || { echo "smoke: $left session(s) left after down" >&2; tmux -L "$socket" ls >&2 || true; return 1; }
}

# -- the Builder/Adversary loop ----------------------------------------------------------------------
loop_smoke() {
  trap 'cleanup "the builder and the adversary finished both phases"' EXIT
  # Same layout as the repo: the agents run ../../../simagent.py from work/<name>.
  cp -r "$here/examples/builder-adversary" "$sandbox/builder-adversary"
  rm -rf "$sandbox/builder-adversary/work" "$sandbox/builder-adversary/.agents"  # never a local run's leftovers
  cp "$here/examples/simagent.py" "$sandbox/simagent.py"
  config="$sandbox/builder-adversary/agents.toml"
  sed -i -e "s|^tmux_socket = .*|tmux_socket = \"$socket\"|" "$config"
  grep -q "^tmux_socket = \"$socket\"" "$config" || { echo "smoke: could not set the tmux socket" >&2; return 1; }
  local complete="$sandbox/builder-adversary/.agents/logs/SEQUENCE-COMPLETE"

  step "setup (a bare remote and three clones, offline)"
  "$sandbox/builder-adversary/setup.sh"
  step "check"
  agents check
  step "up"
  agents up
  step "wait for the sequence to complete (deadline 170 s)"
  local deadline=$((SECONDS + 170)) done=0 last="" now
  while ((SECONDS < deadline)); do
    if [[ -e $complete ]] || agents status --json 2>/dev/null | python3 -c '
import json, sys
sys.exit(0 if (json.load(sys.stdin).get("phase") or {}).get("complete") else 1)'; then
      done=1; break
    fi
    now=$(agents status --json 2>/dev/null | python3 -c '
import json, sys
p = json.load(sys.stdin).get("phase") or {}
print(p.get("current"), p.get("last_handoff") or "")' 2>/dev/null || true)
    [[ $now != "$last" ]] && { echo "  $((SECONDS - started)) s: phase $now"; last=$now; }
    sleep 0.5
  done
  if ((!done)); then
    echo "smoke: the sequence did not complete within 170 s" >&2
    agents status >&2 || true
    agents events -n 30 >&2 || true
    return 1
  fi
  echo "  sequence complete after $((SECONDS - started)) s"
  step "phase show"
  agents phase show
  step "what the watchdog did"
  agents events -n 0 --kind handoff --kind ping --kind advance --kind sequence-complete
  step "the token bill (per phase and gate, from the agents' transcripts)"
  agents tokens
  agents tokens --json | python3 -c "
import json, sys
rows = json.load(sys.stdin)['rows']
phases = {row['phase_id'] for row in rows if not row.get('in_flight')}
sys.exit(0 if {'p1', 'p2'} <= phases else 'smoke: the token log lacks a phase record: ' + ', '.join(sorted(phases)))"
  step "what the agents pushed"
  git --git-dir "$sandbox/builder-adversary/work/remote.git" log --reverse --format='%an %s' main
  step "down"
  agents down
  no_sessions_left
}

# -- the small demo team -----------------------------------------------------------------------------
wait_state() {  # wait_state NAME STATE-PREFIX SECONDS [RESTARTS]
  local deadline=$((SECONDS + $3))
  while ((SECONDS < deadline)); do
    agents status --json | python3 -c "
import json, sys
row = {r['name']: r for r in json.load(sys.stdin)['agents']}['$1']
sys.exit(0 if row['state'].startswith('$2') and row['restarts'] >= ${4:-0} else 1)" && return 0
    sleep 0.2
  done
  echo "smoke: $1 never became $2" >&2; agents status >&2; return 1
}

demo_smoke() {
  trap 'cleanup "the demo came up, took a message, survived a crash"' EXIT
  cp -r "$here/examples/demo/prompts" "$sandbox/"
  cp "$here/examples/simagent.py" "$sandbox/"
  # The demo's own [watchdog] table, if you added one as its README suggests, gives way to ours.
  sed -e "s|tmux_socket = \"agents-demo\"|tmux_socket = \"$socket\"|" \
      -e "s|\"../simagent.py\", \"--work\", \"4\"|\"$sandbox/simagent.py\", \"--work\", \"2\"|" \
      -e '/^\[watchdog\]/,/^\[/{/^\[watchdog\]/d;/^\[/!d}' \
      "$here/examples/demo/agents.toml" > "$config"
  cat >> "$config" <<'TOML'

[watchdog]
signal_interval = 1
backoff_base = 2
TOML
  step "check"
  agents check
  step "up"
  agents up
  wait_state builder idle 15; wait_state reviewer idle 15
  agents status
  step "send (quotes, \$(…), backticks and ; arrive verbatim and run nothing)"
  agents send builder "hello \"builder\"; \$(touch $sandbox/pwned) \`id\`"
  [[ ! -e $sandbox/pwned ]] || { echo "smoke: a message ran a command!" >&2; return 1; }
  agents status
  step "crash: the watchdog heals it"
  agents send builder "SIM:die 3" || true
  wait_state builder idle 30 1
  agents events --kind lifecycle --kind start -n 4
  step "down"
  agents down
  no_sessions_left
}

"${mode}_smoke"
