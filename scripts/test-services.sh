#!/usr/bin/env bash
# Starts (or stops) the servers the tests need, on free loopback ports: a real redis-server
# (Debian package) and a MongoDB-wire test server (SecantusDB from PyPI, in a virtualenv).
# `start` writes their URLs to .test-services.env as CHAT_TEST_REDIS_URL and
# CHAT_TEST_MONGODB_URI; `stop` stops what `start` started.
set -euo pipefail
cd "$(dirname "$0")/.."
state=.test-services
mkdir -p "$state"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_for_port() { # port, name, seconds
  for _ in $(seq 1 $(( $3 * 10 ))); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "$2 did not start on port $1" >&2
  return 1
}

start_redis() {
  if ! command -v redis-server >/dev/null; then
    if [[ $(id -u) -eq 0 ]]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    else
      echo "redis-server is not installed (apt-get install redis-server)" >&2
      return 1
    fi
  fi
  local port
  port=$(free_port)
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --pidfile "$PWD/$state/redis.pid" --logfile "$PWD/$state/redis.log"
  wait_for_port "$port" redis-server 20
  echo "CHAT_TEST_REDIS_URL=redis://127.0.0.1:$port" >> .test-services.env
}

start_mongo() {
  local uri
  uri=$(scripts/mongo-test-server.sh start)
  echo "CHAT_TEST_MONGODB_URI=$uri" >> .test-services.env
}

case "${1:-}" in
  start)
    : > .test-services.env
    start_redis
    start_mongo
    cat .test-services.env
    ;;
  stop)
    if [[ -f "$state/redis.pid" ]]; then
      kill "$(cat "$state/redis.pid")" 2>/dev/null || true
      rm -f "$state/redis.pid"
    fi
    scripts/mongo-test-server.sh stop || true
    rm -f .test-services.env
    ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
