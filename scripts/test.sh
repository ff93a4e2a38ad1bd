#!/usr/bin/env bash
# Runs every test: Rust unit and integration tests (SQLite, MongoDB and Redis variants), the
# Socket.IO compatibility suite (socket.io-client and python-socketio) on SQLite and on
# MongoDB, and the Mongoose data round trip.
#
# Test servers: a MongoDB-wire server and Redis are taken from CHAT_TEST_MONGODB_URI and
# CHAT_TEST_REDIS_URL when set (CI sets them); otherwise scripts/test-services.sh starts them
# for the duration of this run.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if [[ -z "${CHAT_TEST_MONGODB_URI:-}" || -z "${CHAT_TEST_REDIS_URL:-}" ]]; then
  scripts/test-services.sh start
  trap 'scripts/test-services.sh stop' EXIT
  # shellcheck disable=SC1091
  source .test-services.env
fi
export CHAT_TEST_MONGODB_URI CHAT_TEST_REDIS_URL

step() { printf '\n==> %s\n' "$*"; }

step "installing test clients (npm, python)"
scripts/install-test-clients.sh

step "building"
cargo build --locked --bins
export CHAT_SERVICE_BIN="$root/target/debug/chat-service"

step "Rust tests (unit, REST on SQLite, store contract on SQLite and MongoDB, cluster, agent)"
cargo test --locked

step "REST integration tests on the MongoDB store"
CHAT_TEST_STORE=mongo cargo test --locked --test 'rest_*'

step "Socket.IO compatibility suite on SQLite"
(cd compat-tests && npm test)

step "Socket.IO compatibility suite on MongoDB"
(cd compat-tests && CHAT_TEST_STORE=mongo npm test)

if [[ -d compat-tests/mongoose ]]; then
  step "Mongoose data round trip"
  (cd compat-tests/mongoose && npm test)
fi

step "all tests passed"
