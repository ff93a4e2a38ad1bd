#!/usr/bin/env bash
# Installs the clients the compatibility tests drive: npm packages (from the lock files) and
# python-socketio in compat-tests/.venv. Idempotent; quick when already installed. The browser
# test also needs Chromium (Debian's `chromium` package), which .ci/run installs.
set -euo pipefail
cd "$(dirname "$0")/.."

for dir in compat-tests compat-tests/mongoose compat-tests/browser; do
  [[ -f "$dir/package.json" ]] || continue
  if [[ ! -d "$dir/node_modules" || "$dir/package-lock.json" -nt "$dir/node_modules" ]]; then
    (cd "$dir" && npm ci --no-audit --no-fund)
  fi
done

if [[ -f compat-tests/python/requirements.txt ]]; then
  if [[ ! -x compat-tests/.venv/bin/python ]]; then
    python3 -m venv compat-tests/.venv
  fi
  compat-tests/.venv/bin/pip install --quiet --disable-pip-version-check -r compat-tests/python/requirements.txt
fi
