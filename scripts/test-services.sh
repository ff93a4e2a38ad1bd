#!/usr/bin/env bash
# Starts and stops the servers the tests talk to, each on a free loopback port:
#   - a real redis-server (Debian package `redis-server`);
#   - SecantusDB, a MongoDB wire-protocol server (PyPI `secantusdb`), in memory;
#   - moto's S3-compatible server (PyPI `moto[server]`), in memory, for uploaded files.
#
#   scripts/test-services.sh install   # install them if missing (apt, a virtualenv)
#   scripts/test-services.sh start     # start both, write .test-services.env
#   scripts/test-services.sh stop      # stop what `start` started
#
# `.test-services.env` exports CHAT_TEST_REDIS_URL, CHAT_TEST_MONGODB_URI and CHAT_TEST_S3_ENDPOINT
# for the tests, and
# CHAT_TEST_MONGOD_BIN for tests that start (and stop) a MongoDB wire server of their own.
# Tests that need one of these servers fail (never skip) when the variable is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
state="$root/.test-services"
venv="$state/venv"
SECANTUSDB_VERSION=0.7.0b3
MOTO_VERSION=5.2.5

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_for_port() { # port, name, log
  for _ in $(seq 1 200); do
    if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 0.2)" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "$2 did not start on port $1; its log:" >&2
  cat "$3" >&2 || true
  return 1
}

install() {
  if ! command -v redis-server >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  fi
  mkdir -p "$state"
  if [[ ! -x "$venv/bin/secantusd-py" ]]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "secantusdb==$SECANTUSDB_VERSION"
  fi
  if [[ ! -x "$venv/bin/moto_server" ]]; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
  fi
}

start() {
  install
  stop >/dev/null 2>&1 || true
  mkdir -p "$state"
  local redis_port mongo_port s3_port
  redis_port=$(free_port)
  redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
    --daemonize no >"$state/redis.log" 2>&1 &
  echo $! >"$state/redis.pid"
  mongo_port=$(free_port)
  "$venv/bin/secantusd-py" --host 127.0.0.1 --port "$mongo_port" --storage-path :memory: \
    --standalone >"$state/mongo.log" 2>&1 &
  echo $! >"$state/mongo.pid"
  s3_port=$(free_port)
  "$venv/bin/moto_server" -H 127.0.0.1 -p "$s3_port" >"$state/s3.log" 2>&1 &
  echo $! >"$state/s3.pid"
  wait_for_port "$redis_port" redis-server "$state/redis.log"
  wait_for_port "$mongo_port" secantusdb "$state/mongo.log"
  wait_for_port "$s3_port" moto_server "$state/s3.log"
  cat >"$root/.test-services.env" <<EOF
export CHAT_TEST_REDIS_URL=redis://127.0.0.1:$redis_port
export CHAT_TEST_REDIS_PORT=$redis_port
export CHAT_TEST_MONGODB_URI=mongodb://127.0.0.1:$mongo_port
export CHAT_TEST_MONGOD_BIN=$venv/bin/secantusd-py
export CHAT_TEST_S3_ENDPOINT=http://127.0.0.1:$s3_port
EOF
  echo "redis-server on 127.0.0.1:$redis_port, secantusdb on 127.0.0.1:$mongo_port, moto_server (S3) on 127.0.0.1:$s3_port"
}

stop() {
  for name in redis mongo s3; do
    if [[ -f "$state/$name.pid" ]]; then
      kill "$(cat "$state/$name.pid")" 2>/dev/null || true
      rm -f "$state/$name.pid"
    fi
  done
  rm -f "$root/.test-services.env"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
