#!/usr/bin/env bash
# nginx in front of two nodes, as compose.yaml runs it, with the nginx configuration rendered
# from the same template (docker/nginx.conf) for local addresses:
#   1. `nginx -t` on that configuration;
#   2. nginx started on it (as the current user, everything under a temporary directory) in
#      front of two nodes that share Redis and MongoDB, and the compatibility suite's transports
#      test run through it: long-polling only, WebSocket only, polling upgraded to WebSocket;
#   3. nginx's access log read back: the clients' requests went through nginx, WebSocket
#      upgrades included, and every request of one Engine.IO session reached the same node.
#
# Needs nginx (Debian package `nginx`; .ci/run installs it), the test servers
# (scripts/test-services.sh start; source .test-services.env) and the npm packages
# (scripts/install-test-clients.sh). scripts/test.sh runs it after the other suites.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

nginx_bin=$(command -v nginx || true)
[[ -z "$nginx_bin" && -x /usr/sbin/nginx ]] && nginx_bin=/usr/sbin/nginx
if [[ -z "$nginx_bin" ]]; then
  echo "$0: nginx is not installed (Debian: apt-get install nginx; .ci/run does it)" >&2
  exit 1
fi
: "${CHAT_TEST_REDIS_URL:?needs the test servers: scripts/test-services.sh start && source .test-services.env}"
: "${CHAT_TEST_MONGODB_URI:?needs the test servers: scripts/test-services.sh start && source .test-services.env}"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

work=$(mktemp -d "${TMPDIR:-/tmp}/chat-nginx.XXXXXX")
nginx_pid=
cleanup() {
  if [[ -n "$nginx_pid" ]]; then
    kill "$nginx_pid" 2>/dev/null || true
    wait "$nginx_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

listen_port=$(free_port)
node_1_port=$(free_port)
node_2_port=$(free_port)
scripts/nginx-conf.sh "127.0.0.1:$listen_port" "127.0.0.1:$node_1_port" "127.0.0.1:$node_2_port" >"$work/chat.conf"

# The main context the nginx image provides, with every path in the temporary directory.
# `user` only matters (and is only allowed) when started as root: keep the workers as the
# current user, who owns the directory.
{
  [[ $EUID -eq 0 ]] && echo "user $(id -un) $(id -gn);"
  cat <<EOF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/error.log warn;
events { worker_connections 1024; }
http {
    log_format chat '\$remote_addr "\$request_method \$uri" transport=\$arg_transport sid=\$arg_sid status=\$status upstream=\$upstream_addr';
    access_log $work/access.log chat;
    client_body_temp_path $work/client_body;
    proxy_temp_path $work/proxy;
    fastcgi_temp_path $work/fastcgi;
    uwsgi_temp_path $work/uwsgi;
    scgi_temp_path $work/scgi;
    include $work/chat.conf;
}
EOF
} >"$work/nginx.conf"

nginx_args=(-p "$work/" -c "$work/nginx.conf" -e "$work/error.log")
echo "nginx -t on docker/nginx.conf rendered for 127.0.0.1:$listen_port -> 127.0.0.1:$node_1_port, 127.0.0.1:$node_2_port"
"$nginx_bin" -t "${nginx_args[@]}"

"$nginx_bin" "${nginx_args[@]}" -g 'daemon off;' &
nginx_pid=$!
for _ in $(seq 1 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $listen_port), 0.2)" 2>/dev/null && break
  if ! kill -0 "$nginx_pid" 2>/dev/null; then
    echo "nginx exited; its log:" >&2
    cat "$work/error.log" >&2 || true
    exit 1
  fi
  sleep 0.1
done

echo "transports test through nginx on 127.0.0.1:$listen_port (two nodes, Redis, MongoDB)"
(
  cd compat-tests
  CHAT_TEST_PROXY_URL="http://127.0.0.1:$listen_port" CHAT_TEST_NODE_PORTS="$node_1_port,$node_2_port" \
    CHAT_TEST_NODES=2 CHAT_TEST_WITH_REDIS=1 CHAT_TEST_STORE=mongo \
    node --test test/transports.test.js
)

# Reopened log buffers are flushed when nginx stops.
kill -QUIT "$nginx_pid"
wait "$nginx_pid" || true
nginx_pid=
if ! python3 - "$work/access.log" <<'EOF'
import re, sys
from collections import Counter, defaultdict

log = sys.argv[1]
lines = [l for l in open(log) if '/socket.io/' in l]
entry = re.compile(r'transport=(\S*) sid=(\S*) status=(\d+) upstream=(.*)$')
nodes_of_session, per_node, upgrades, polls, unanswered = defaultdict(set), Counter(), 0, 0, 0
for line in lines:
    m = entry.search(line.strip())
    if not m:
        continue
    transport, sid, status, upstream = m.groups()
    if status in ('502', '504') or ',' in upstream or ':' not in upstream:
        # nginx answered, no node did: the suite's last disconnects after it stopped the nodes.
        unanswered += 1
        continue
    per_node[upstream] += 1
    polls += transport == 'polling'
    upgrades += transport == 'websocket' and status == '101'
    if sid != '-':  # nginx logs an empty value as '-': the handshake has no sid yet
        nodes_of_session[sid].add(upstream)
moved = {sid: nodes for sid, nodes in nodes_of_session.items() if len(nodes) > 1}
print(f"through nginx: {len(lines)} Socket.IO requests ({unanswered} after the nodes stopped), {polls} long-polling, "
      f"{upgrades} WebSocket upgrades; {len(nodes_of_session)} long-polling sessions; requests per node: {dict(per_node)}")
problems = []
if polls == 0:
    problems.append('no long-polling request went through nginx')
if upgrades == 0:
    problems.append('no WebSocket upgrade (101) went through nginx')
if moved:
    problems.append(f'sessions whose requests reached more than one node: {moved}')
for p in problems:
    print('FAILED:', p, file=sys.stderr)
sys.exit(1 if problems else 0)
EOF
then
  echo "nginx's access log:" >&2
  cat "$work/access.log" >&2
  echo "nginx's error log:" >&2
  cat "$work/error.log" >&2
  exit 1
fi
