#!/usr/bin/env bash
# Stop the workers scripts/start-workers.sh started: SIGTERM (running activities get the worker's graceful
# shutdown time, then Temporal retries them elsewhere), SIGKILL after $STOP_TIMEOUT seconds (default 60).
#
#   scripts/stop-workers.sh                  # every group with a pid file
#   scripts/stop-workers.sh --group video
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
var_dir="${CONVEYOR_VAR_DIR:-$root/var}"
timeout="${STOP_TIMEOUT:-60}"
pidfiles=()

while [[ $# -gt 0 ]]; do
  case "$1" in
    --group|-g) pidfiles+=("$var_dir/run/worker-$2.pid"); shift 2 ;;
    --video-only) pidfiles+=("$var_dir/run/worker-video.pid"); shift ;;
    -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [[ ${#pidfiles[@]} -eq 0 ]]; then
  shopt -s nullglob
  pidfiles=("$var_dir"/run/worker-*.pid)
fi

for pidfile in "${pidfiles[@]}"; do
  name="$(basename "$pidfile" .pid)"
  if [[ ! -f "$pidfile" ]]; then
    echo "$name: not running (no pid file)"
    continue
  fi
  pid="$(cat "$pidfile")"
  if kill -TERM "$pid" 2>/dev/null; then
    for _ in $(seq "$((timeout * 10))"); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
      echo "$name: killed after ${timeout}s (pid $pid)"
    else
      echo "$name: stopped (pid $pid)"
    fi
  else
    echo "$name: was not running (stale pid $pid)"
  fi
  rm -f "$pidfile"
done
