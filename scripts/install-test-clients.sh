#!/usr/bin/env bash
# Installs the clients the compatibility tests drive: npm packages (from the lock files),
# python-socketio in compat-tests/.venv, and what the Rust client rust_socketio (a
# dev-dependency) links against: OpenSSL's headers, found with pkg-config. Idempotent; quick
# when already installed. The browser test also needs Chromium (Debian's `chromium`
# package), which .ci/run installs.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v pkg-config >/dev/null || ! pkg-config --exists openssl; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libssl-dev pkg-config >/dev/null
fi

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
