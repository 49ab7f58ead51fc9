#!/usr/bin/env bash
# Real-terminal check of the workbench TUI: start `wb` in a detached tmux pane (100x30), type a query
# with send-keys, read the screen back with capture-pane, and require both result columns in it.
#
#   bench/tui_tmux_check.sh [WORKSPACE]
#
# Without WORKSPACE, a few folders of sample_corpora/python-docs are indexed into a temp workspace.
# Env: PYTHON (default .venv/bin/python), WB_TUI_STATE (default: a temp file), SIZE (default 100x30).
# Prints the captured screen and "both columns found" on success; exits 1 otherwise.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$REPO/.venv/bin/python}
SIZE=${SIZE:-100x30}
COLS=${SIZE%x*}
ROWS=${SIZE#*x}
TMP=$(mktemp -d)
SESSION="wbcheck$$"
STATE=${WB_TUI_STATE:-$TMP/state.json}
cleanup() { tmux kill-session -t "$SESSION" 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

command -v tmux >/dev/null || { echo "tmux is not installed (apt-get install -y tmux)"; exit 2; }

WS=${1:-}
if [ -z "$WS" ]; then
  WS="$TMP/ws"
  mkdir -p "$TMP/corpus"
  for d in shutil time itertools tempfile; do cp -r "$REPO/sample_corpora/python-docs/$d" "$TMP/corpus/"; done
  "$PY" -m workbench.cli.main index "$TMP/corpus" -w "$WS" >/dev/null
fi

screen() { tmux capture-pane -t "$SESSION" -p; }
wait_for() {  # wait_for REGEX SECONDS
  local deadline=$((SECONDS + $2))
  while [ $SECONDS -lt $deadline ]; do
    if screen | grep -Eq -- "$1"; then return 0; fi
    sleep 0.5
  done
  echo "timed out waiting for /$1/; screen:"; screen; return 1
}

tmux new-session -d -s "$SESSION" -x "$COLS" -y "$ROWS" \
  "cd '$REPO' && env WB_TUI_STATE='$STATE' TERM=xterm-256color '$PY' -m workbench.cli.main -w '$WS'; echo wb-exited-\$?; sleep 60"

wait_for "models ready" 180
tmux send-keys -t "$SESSION" "remove a directory tree"
tmux send-keys -t "$SESSION" Enter
wait_for "hits ·.*hits ·" 120          # both column headers report their hits on one line

SHOT=$(screen)
echo "$SHOT"
header=$(echo "$SHOT" | grep -E "hybrid .*hits ·.*hybrid\+rerank .*hits ·" || true)
first=$(echo "$SHOT" | grep -E "│ +1 .*│ │ +1 " || true)
moves=$(echo "$SHOT" | grep -Ec "│ *[0-9]+ +(=|new|↑[0-9]+|↓[0-9]+) " || true)
if [ -z "$header" ] || [ -z "$first" ] || [ "$moves" -lt 3 ]; then
  echo "FAILED: header='$header' first='$first' movement rows=$moves"
  exit 1
fi

# leave the query box, quit with q (pressed twice): the app must exit cleanly
tmux send-keys -t "$SESSION" Escape
sleep 0.3
tmux send-keys -t "$SESSION" q q  # q twice: one q alone only asks
wait_for "wb-exited-0" 30
echo "both columns found (left hybrid, right hybrid+rerank with $moves movement marks); clean exit"
