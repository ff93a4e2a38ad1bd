#!/usr/bin/env bash
# Runs every test: Rust unit and integration tests (the real binary driven over HTTP and
# WebSocket, including two nodes sharing one Redis, and the Rust client rust_socketio), the
# store contract suite on SQLite and MongoDB, and the Socket.IO compatibility suite
# (socket.io-client 4.8 and python-socketio) against a freshly built server binary: on the
# embedded store, on two nodes sharing Redis with clients spread over both, and on MongoDB;
# then nginx with the compose configuration in front of two nodes (scripts/test-nginx.sh),
# and the admin console in headless Chromium.
# The test servers (redis-server, a MongoDB wire server) are started on free loopback ports
# first and stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n==> %s\n' "$*"; }

step "installing test clients (npm packages, python-socketio)"
scripts/install-test-clients.sh

step "starting test servers (redis-server, MongoDB wire server)"
trap 'scripts/test-services.sh stop' EXIT
scripts/test-services.sh start
# shellcheck disable=SC1091
source .test-services.env

step "building"
cargo build --locked --bins
export CHAT_SERVICE_BIN="$root/target/debug/chat-service"

step "Rust tests (unit, store contract, REST integration and API document, two nodes on Redis, rust_socketio client, fuzz) on the embedded store"
cargo test --locked

step "REST integration, agent, socket delivery, shutdown and archive tests on MongoDB"
CHAT_TEST_STORE=mongo cargo test --locked --test 'rest_*' --test agent --test socket_delivery --test shutdown --test archive --test attachments --test audit

# Half the volume on MongoDB: every REST request there is a round trip to the Python wire
# server, and what this run adds over the embedded one is the store's own answers.
step "fuzz test on MongoDB"
CHAT_TEST_STORE=mongo FUZZ_SCALE=0.5 cargo test --locked --test fuzz

step "Socket.IO compatibility suite on the embedded store"
(cd compat-tests && npm test)

step "Socket.IO compatibility suite on two nodes sharing Redis and MongoDB, clients spread over both"
(cd compat-tests && CHAT_TEST_STORE=mongo CHAT_TEST_WITH_REDIS=1 CHAT_TEST_NODES=2 npm test)

step "Socket.IO compatibility suite on MongoDB"
(cd compat-tests && CHAT_TEST_STORE=mongo npm test)

step "MongoDB data compatibility with the sibling services' Mongoose models"
(cd compat-tests/mongoose && npm test)

step "nginx in front of two nodes: nginx -t on docker/nginx.conf, then the transports test through it"
scripts/test-nginx.sh

step "Admin console in headless Chromium"
(cd compat-tests/browser && npm test)

step "all tests passed"
