#!/usr/bin/env bash
# Offline smoke: the demo team (examples/demo) brought up in a sandbox — a
# temporary folder, a private tmux server, a throwaway HOME — talked to, watched
# by the watchdog through a crash, stopped, and cleaned up. No agent CLI needed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
command -v tmux >/dev/null || { echo "smoke: tmux is required" >&2; exit 2; }

sandbox=$(mktemp -d "${TMPDIR:-/tmp}/agents-smoke.XXXXXX")
socket="agents-smoke-$$"
agents() { python3 "$here/agents.py" --config "$sandbox/agents.toml" "$@"; }
cleanup() {
  agents down >/dev/null 2>&1 || true
  tmux -L "$socket" kill-server 2>/dev/null || true
  rm -f "${TMUX_TMPDIR:-/tmp}/tmux-$(id -u)/$socket"
  rm -rf "$sandbox"
}
trap cleanup EXIT

cp -r "$here/examples/demo/prompts" "$sandbox/"
cp "$here/examples/simagent.py" "$sandbox/"
sed -e "s|tmux_socket = \"agents-demo\"|tmux_socket = \"$socket\"|" \
    -e "s|\"../simagent.py\", \"--work\", \"4\"|\"$sandbox/simagent.py\", \"--work\", \"2\"|" \
    "$here/examples/demo/agents.toml" > "$sandbox/agents.toml"
cat >> "$sandbox/agents.toml" <<'TOML'

[watchdog]
signal_interval = 1
backoff_base = 2
TOML
export HOME="$sandbox/home"
mkdir -p "$HOME"

step() { printf '\n== %s\n' "$*"; }
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

step "check"
agents check
step "up"
agents up
wait_state builder idle 15; wait_state reviewer idle 15
agents status
step "send (quotes, \$(…), backticks and ; arrive verbatim and run nothing)"
agents send builder "hello \"builder\"; \$(touch $sandbox/pwned) \`id\`"
[[ ! -e $sandbox/pwned ]] || { echo "smoke: a message ran a command!" >&2; exit 1; }
agents status
step "crash: the watchdog heals it"
agents send builder "SIM:die 3" || true
wait_state builder idle 30 1
agents events --kind lifecycle --kind start -n 4
step "down"
agents down
left=$( (tmux -L "$socket" ls 2>/dev/null || true) | wc -l)
[[ $left == 0 ]] || { echo "smoke: $left session(s) left" >&2; exit 1; }
echo
echo "smoke: OK (the demo came up, took a message, survived a crash, and left nothing behind)"
