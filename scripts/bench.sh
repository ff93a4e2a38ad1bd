#!/usr/bin/env bash
# The performance table of the README, measured side by side in one run on this machine:
# chat-service (SQLite), the bare socketioxide hot path (examples/bare_socketioxide.rs) and the
# Node Socket.IO reference (bench/node-reference), each driven by examples/loadgen.rs.
#
#   scripts/bench.sh            # full run (about 10-12 minutes on 2 cores)
#   scripts/bench.sh --quick    # short durations and small populations: checks the setup works
#
# Throughput runs pin the server to core $SERVER_CORE and the load generator to $LOADGEN_CORE
# (taskset); memory and churn runs are not pinned. Every figure comes from the load generator's
# `RESULT` lines; their full output is kept under $OUT. Parameters (environment):
#   DURATION=10 WARMUP=2 DRAIN=5     seconds measured, warmed up, and allowed for late deliveries
#   CLIENTS=2000 ROOM=40             throughput population
#   RATES="40000 80000"              offered deliveries/s reported as rows
#   SAT_RATES="120000 160000 200000 240000 260000 280000 320000 400000 440000 480000"
#                                    saturation search (points where deliveries were lost do
#                                    not count): stops at the first rate a server delivers
#                                    less than 90 % of
#   MEM_CLIENTS=18000 MEM_RATE=40000 memory: idle connections, then joined and chatting at MEM_RATE
#   CHURN_CYCLES=10000               connect/join/disconnect cycles
#   SERVERS="chat bare node"         which servers to run
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if [[ "${1:-}" == "--quick" ]]; then
  : "${DURATION:=3}" "${WARMUP:=1}" "${DRAIN:=3}" "${RATES:=20000 40000}" "${SAT_RATES:=80000}"
  : "${MEM_CLIENTS:=2000}" "${MEM_RATE:=10000}" "${CHURN_CYCLES:=1000}"
fi
: "${DURATION:=10}" "${WARMUP:=2}" "${DRAIN:=5}" "${CLIENTS:=2000}" "${ROOM:=40}"
: "${RATES:=40000 80000}" "${SAT_RATES:=120000 160000 200000 240000 260000 280000 320000 400000 440000 480000}"
: "${MEM_CLIENTS:=18000}" "${MEM_RATE:=40000}" "${CHURN_CYCLES:=10000}"
: "${SERVERS:=chat bare node}" "${SERVER_CORE:=0}" "${LOADGEN_CORE:=1}"
: "${OUT:=$root/target/bench}"
SECRET=bench-secret-0123456789abcdef
PORT=${BENCH_PORT:-4190}
mkdir -p "$OUT"

# Every connection is a descriptor, on the server and in the load generator.
ulimit -n "$(ulimit -Hn)"
if (( $(ulimit -n) < MEM_CLIENTS + 100 )); then
  echo "open-file limit $(ulimit -n) is below MEM_CLIENTS=$MEM_CLIENTS; lower MEM_CLIENTS or raise the hard limit" >&2
  exit 1
fi

echo "building release binaries..." >&2
cargo build --release --quiet --bin chat-service --example loadgen --example bare_socketioxide
loadgen="$root/target/release/examples/loadgen"
if [[ " $SERVERS " == *" node "* ]]; then
  command -v node >/dev/null || { echo "node is needed for the Node reference (or set SERVERS)" >&2; exit 1; }
  if [[ ! -d bench/node-reference/node_modules ]]; then
    (cd bench/node-reference && npm ci --silent --no-audit --no-fund)
  fi
fi

server_pid=""
data_dir=""
stop_server() {
  if [[ -n "$server_pid" ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
  if [[ -n "$data_dir" ]]; then rm -rf "$data_dir"; data_dir=""; fi
}
trap stop_server EXIT

start_server() { # name, cpu list ("" for unpinned), extra environment (NAME=value ...) for chat
  local name=$1 pin=() extra=("${@:3}")
  [[ -n "$2" ]] && pin=(taskset -c "$2")
  case $name in
    chat)
      data_dir=$(mktemp -d)
      env JWT_SECRET=$SECRET PORT=$PORT DATA_DIR="$data_dir" RUST_LOG=warn MAX_CONNECTIONS_PER_IP=0 \
        SOCKET_MESSAGE_LIMIT=1000000 RATE_LIMIT_MAX=1000000 LEGACY_EVENTS=true "${extra[@]}" \
        "${pin[@]}" "$root/target/release/chat-service" >"$OUT/$name.log" 2>&1 &
      ;;
    bare)
      env PORT=$PORT "${pin[@]}" "$root/target/release/examples/bare_socketioxide" >"$OUT/$name.log" 2>&1 &
      ;;
    node)
      (cd bench/node-reference && exec env JWT_SECRET=$SECRET PORT=$PORT LEGACY_EVENTS=true \
        "${pin[@]}" node server.js) >"$OUT/$name.log" 2>&1 &
      ;;
  esac
  server_pid=$!
  for _ in $(seq 1 300); do
    if curl -s -o /dev/null "http://127.0.0.1:$PORT/socket.io/?EIO=4&transport=polling"; then return 0; fi
    sleep 0.1
  done
  echo "$name did not start, see $OUT/$name.log" >&2
  exit 1
}

run_loadgen() { # output file, pin ("" for none), loadgen args...
  local file=$1 pin=$2
  shift 2
  local cmd=("$loadgen" --url "http://127.0.0.1:$PORT" --secret $SECRET --server-pid "$server_pid" "$@")
  [[ -n "$pin" ]] && cmd=(taskset -c "$pin" "${cmd[@]}")
  "${cmd[@]}" >"$file" 2>&1 || { echo "loadgen failed, see $file" >&2; cat "$file" >&2; }
  grep '^RESULT' "$file" | tail -1 || true
}

field() { # result line, key
  sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<" ${1#RESULT }"
}

# Saturation search: keeps the most delivered point so far (in best, best_line) and sets got.
consider() { # offered rate, result line
  got=$(field "$2" delivered_per_s); got=${got:-0}
  local lost; lost=$(field "$2" lost); lost=${lost:-1}
  if (( got > best && lost == 0 )); then best=$got best_line="${got}/s (offered $1, p50 $(field "$2" p50_ms) ms, p99 $(field "$2" p99_ms) ms)"; fi
}

declare -A cell
for s in $SERVERS; do
  echo "== $s: throughput" >&2
  start_server "$s" "$SERVER_CORE"
  open=(--mode open --clients "$CLIENTS" --room-size "$ROOM" --duration "$DURATION" --warmup "$WARMUP" --drain "$DRAIN")
  # Saturation is the most delivered at any point where nothing was lost, the rows' rates
  # included: a server that keeps up by closing slow sockets (their clients never get those
  # messages) has not delivered what it was offered.
  best=0 best_line=""
  for rate in $RATES; do
    r=$(run_loadgen "$OUT/$s-open-$rate.txt" "$LOADGEN_CORE" "${open[@]}" --rate "$rate")
    echo "   $rate/s offered: $r" >&2
    cell[$s,rate$rate]="$(field "$r" us_per_delivery) us/delivery, p99 $(field "$r" p99_ms) ms, $(field "$r" delivered_per_s)/s delivered, $(field "$r" lost) lost, $(field "$r" ctx_switches_per_s) cs/s"
    consider "$rate" "$r"
  done
  for rate in $SAT_RATES; do
    r=$(run_loadgen "$OUT/$s-sat-$rate.txt" "$LOADGEN_CORE" "${open[@]}" --rate "$rate")
    echo "   $rate/s offered: $r" >&2
    consider "$rate" "$r"
    if (( got * 10 < rate * 9 )); then break; fi
  done
  cell[$s,sat]="${best_line:-n/a}"
  stop_server

  echo "== $s: memory" >&2
  start_server "$s" ""
  r=$(run_loadgen "$OUT/$s-memory.txt" "" --mode memory --clients "$MEM_CLIENTS" --room-size "$ROOM" \
      --rate "$MEM_RATE" --duration "$DURATION" --warmup "$WARMUP" --drain "$DRAIN")
  echo "   $r" >&2
  cell[$s,idle]="$(field "$r" idle_kb_per_conn) KB"
  cell[$s,chat]="$(field "$r" rss_peak_mb) MB (p99 $(field "$r" p99_ms) ms, $(field "$r" lost) lost)"
  stop_server

  echo "== $s: churn" >&2
  if [[ $s == chat ]]; then
    # Sockets that drop their transport leave a recovery session for RECOVERY_WINDOW_MS (two
    # minutes by default): with a 20 s window the run shows RSS both while the 10,000 sessions
    # are kept (after 15 s) and once they expired (40 s later).
    start_server "$s" "" RECOVERY_WINDOW_MS=20000
    r=$(run_loadgen "$OUT/$s-churn.txt" "" --mode churn --cycles "$CHURN_CYCLES" --late 40)
    cell[$s,churn]="$(field "$r" rss_before_mb) -> $(field "$r" rss_late_mb) MB ($(field "$r" rss_late_change_pct) %); $(field "$r" rss_after_mb) MB ($(field "$r" rss_change_pct) %) while the disconnected sessions are kept; $(field "$r" rss_cold_mb) MB before any connection"
  else
    start_server "$s" ""
    r=$(run_loadgen "$OUT/$s-churn.txt" "" --mode churn --cycles "$CHURN_CYCLES")
    cell[$s,churn]="$(field "$r" rss_before_mb) -> $(field "$r" rss_after_mb) MB ($(field "$r" rss_change_pct) %); $(field "$r" rss_cold_mb) MB before any connection"
  fi
  echo "   $r" >&2
  stop_server
done

title() { case $1 in chat) echo "chat-service, SQLite";; bare) echo "bare socketioxide, in memory";; node) echo "Node Socket.IO 4.8 reference";; esac; }
row() { # label, key
  local line="| $1 |"
  for s in $SERVERS; do line+=" ${cell[$s,$2]:-} |"; done
  echo "$line"
}
echo
echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), $(uname -sr);"
echo "servers on core $SERVER_CORE, load generator on core $LOADGEN_CORE; $CLIENTS clients in rooms of $ROOM, \`message\` and \`message:new\` both emitted; ${DURATION}s per point."
echo
header="| |"; sep="|---|"
for s in $SERVERS; do header+=" $(title "$s") |"; sep+="---|"; done
echo "$header"; echo "$sep"
for rate in $RATES; do row "$((rate / 1000))k deliveries/s offered" "rate$rate"; done
row "saturation, one core (most delivered/s with nothing lost)" sat
row "$MEM_CLIENTS idle connections, per connection" idle
row "$MEM_CLIENTS joined and chatting at $((MEM_RATE / 1000))k/s, RSS peak" chat
row "$CHURN_CYCLES connect/disconnect cycles, RSS" churn
