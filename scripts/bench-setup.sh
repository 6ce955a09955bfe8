#!/usr/bin/env bash
# Idempotent set-up of the benchmarks' own peers: Debian's redis-server and Celery + redis-py in .venv.
# Bench-only: the project never imports them. A second run with nothing missing does no work.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
  echo "bench-setup: installing Debian package redis-server"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends redis-server
fi

if ! .venv/bin/python -c "import celery, redis" >/dev/null 2>&1; then
  echo "bench-setup: installing celery[redis] and redis into .venv"
  .venv/bin/pip install --quiet --disable-pip-version-check 'celery[redis]>=5.4,<6' 'redis>=5'
fi
