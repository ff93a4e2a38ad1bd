#!/usr/bin/env bash
# Runs every test: Rust unit and integration tests (the real binary driven over HTTP), and
# the Socket.IO compatibility suite (socket.io-client 4.8 and python-socketio) against a
# freshly built server binary.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n==> %s\n' "$*"; }

step "installing test clients (npm packages, python-socketio)"
scripts/install-test-clients.sh

step "building"
cargo build --locked --bins
export CHAT_SERVICE_BIN="$root/target/debug/chat-service"

step "Rust tests (unit, REST integration)"
cargo test --locked

step "Socket.IO compatibility suite"
(cd compat-tests && npm test)

step "all tests passed"
