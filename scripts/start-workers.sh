#!/usr/bin/env bash
# Start Conveyor workers in the background, one process per worker group, with pid files and logs.
#
#   scripts/start-workers.sh                 # one worker process per pipeline
#   scripts/start-workers.sh --video-only    # the video pipeline's queues (video.render, video.preview, …)
#   scripts/start-workers.sh --group crawl --group persona
#
# Pid files go to $CONVEYOR_VAR_DIR/run/worker-<group>.pid, logs to $CONVEYOR_VAR_DIR/logs/worker-<group>.log.
# scripts/stop-workers.sh stops them. Workers connect to $CONVEYOR_TEMPORAL_ADDRESS (a running server).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
conveyor="${CONVEYOR_BIN:-$root/.venv/bin/conveyor}"
var_dir="${CONVEYOR_VAR_DIR:-$root/var}"
groups=()

while [[ $# -gt 0 ]]; do
  case "$1" in
    --group|-g) groups+=("$2"); shift 2 ;;
    --video-only) groups+=(video); shift ;;
    --analysis-only) groups+=(analysis); shift ;;
    --crawl-only) groups+=(crawl); shift ;;
    --persona-only) groups+=(persona); shift ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
# one group per pipeline manifest (workers/pipelines.py)
mapfile -t known < <(cd "$root" && "${CONVEYOR_PYTHON:-$root/.venv/bin/python}" -c \
  'from workers.pipelines import PIPELINES; print("\n".join(p.name for p in PIPELINES))')
if [[ ${#groups[@]} -eq 0 ]]; then
  groups=("${known[@]}")
fi
for group in "${groups[@]}"; do
  if [[ ! " ${known[*]} " == *" $group "* ]]; then
    echo "error: unknown worker group $group; known: ${known[*]}" >&2
    exit 2
  fi
done

mkdir -p "$var_dir/run" "$var_dir/logs"
for group in "${groups[@]}"; do
  pidfile="$var_dir/run/worker-$group.pid"
  if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "worker-$group already running (pid $(cat "$pidfile"))"
    continue
  fi
  log="$var_dir/logs/worker-$group.log"
  CONVEYOR_VAR_DIR="$var_dir" nohup "$conveyor" worker --group "$group" >>"$log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  sleep 0.5
  if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    rm -f "$pidfile"
    echo "error: worker-$group exited at once; see $log" >&2
    tail -n 5 "$log" >&2 || true
    exit 1
  fi
  echo "worker-$group started (pid $(cat "$pidfile"), log $log)"
done
