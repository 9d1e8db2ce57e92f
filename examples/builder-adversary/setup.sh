#!/usr/bin/env bash
# Make the example's git world, offline: a bare remote seeded with PLAN.md, and three clones of
# it: one per agent (builder, adversary) and one the watchdog reads (watch).
# Idempotent: what exists is left as it is. `setup.sh --reset` deletes work/ and .agents/ first.
set -euo pipefail

here="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
work="$here/work"
remote="$work/remote.git"
export GIT_TERMINAL_PROMPT=0
git_as_setup=(git -c user.name=setup -c user.email=setup@sim -c commit.gpgsign=false)

if [[ "${1:-}" == "--reset" ]]; then
    rm -rf -- "$work" "$here/.agents"
elif [[ $# -gt 0 ]]; then
    echo "usage: $0 [--reset]" >&2
    exit 2
fi

mkdir -p -- "$work"

if [[ ! -d "$remote" ]]; then
    seed="$(mktemp -d)"
    trap 'rm -rf -- "$seed"' EXIT
    git init -q --bare -b main -- "$remote"
    git init -q -b main -- "$seed"
    printf '%s\n' \
        '# Gates per phase: "<phase>: <gate> <gate>..."; a gate ending in "!" fails its first review.' \
        'p1: p1-g1 p1-g2!' \
        'p2: p2-g1 p2-g2' >"$seed/PLAN.md"
    printf '%s\n' '.simagent/' >"$seed/.gitignore"
    "${git_as_setup[@]}" -C "$seed" add PLAN.md .gitignore
    "${git_as_setup[@]}" -C "$seed" commit -q -m "plan: two phases"
    "${git_as_setup[@]}" -C "$seed" push -q -- "$remote" HEAD:main
    echo "created $remote"
fi

for clone in builder adversary watch; do
    if [[ ! -d "$work/$clone/.git" ]]; then
        git clone -q -b main -- "$remote" "$work/$clone"
        echo "cloned $work/$clone"
    fi
done
