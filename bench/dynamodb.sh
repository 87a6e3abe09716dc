#!/usr/bin/env bash
# DynamoDB store benchmark against dynalite on loopback: POST throughput and latency on one hot
# route and on many routes, with group commit on and off, and the UpdateItem calls the service
# sent per 1,000 acknowledged POSTs (from its own metrics). Runs twice: straight to dynalite,
# then through bench/latency-proxy adding a few milliseconds of round trip, as a real DynamoDB
# endpoint would. Prints a markdown table.
#
# Usage: bench/dynamodb.sh      (DURATION=10s CONNECTIONS=128 WORKERS=1 RTT_MS=3 to change it)
# Installs wrk from Debian and dynalite (scripts/install-emulators.sh) if missing, and builds the
# release binary. Loopback only; every run is bounded (about 2.5 minutes in all).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
# wrk is a closed loop: each connection waits for its answer. Behind a round trip of a few ms,
# 32 connections cap a hot route at 32 POSTs per two commits whatever the service does; 128
# stand for the many reservation systems that post at once.
CONNECTIONS=${CONNECTIONS:-128}
# Client, service and dynalite share the machine's cores: one runtime thread for the service.
WORKERS=${WORKERS:-1}
RTT_MS=${RTT_MS:-3}
WORK=$(mktemp -d)
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

if ! command -v wrk >/dev/null; then
  echo "installing wrk" >&2
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk >/dev/null
fi
scripts/install-emulators.sh
cargo build --release --locked -p flight-counter >&2

export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
export AWS_EC2_METADATA_DISABLED=true

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_for() {
  local url=$1
  for _ in $(seq 1 300); do
    if curl -fsS -o /dev/null "$url" 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "not ready: $url" >&2
  return 1
}

wait_port() {
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "nothing listens on $1" >&2
  return 1
}

cat >"$WORK/hot.lua" <<'LUA'
wrk.method = "POST"
wrk.path = "/transactions/AR1133"
LUA
cat >"$WORK/many.lua" <<'LUA'
wrk.method = "POST"
math.randomseed(os.time())
request = function()
  local route = "R" .. string.char(65 + math.random(0, 25)) .. math.random(1, 9999)
  return wrk.format("POST", "/transactions/" .. route)
end
LUA

# Sum of the samples of one metric whose line matches a pattern.
metric() {
  local base=$1 pattern=$2
  curl -fsS "$base/metrics" | awk -v p="$pattern" 'index($0, p) == 1 { s += $NF } END { printf "%d\n", s }'
}

# Runs wrk and prints "req/s p50 p99 updates-per-1000" (latencies in ms).
load() {
  local base=$1 script=$2
  local posts='flight_counter_http_requests_total{method="POST",path="/transactions/{route}",status="200"}'
  local updates='flight_counter_dynamodb_calls_total{operation="UpdateItem"'
  local posts0 updates0 posts1 updates1
  posts0=$(metric "$base" "$posts")
  updates0=$(metric "$base" "$updates")
  local stats
  stats=$(wrk -t1 "-c$CONNECTIONS" "-d$DURATION" --latency -s "$script" "$base" | awk '
    function ms(v) {
      if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
      if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
      if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 }
      return v
    }
    /Requests\/sec/ { rps = $2 }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    /Non-2xx/ { bad = $4 }
    END {
      if (bad > 0) { printf "non-2xx answers: %s\n", bad > "/dev/stderr" }
      printf "%.0f %.2f %.2f\n", rps, p50, p99
    }')
  posts1=$(metric "$base" "$posts")
  updates1=$(metric "$base" "$updates")
  local per_thousand
  per_thousand=$(awk -v u=$((updates1 - updates0)) -v p=$((posts1 - posts0)) \
    'BEGIN { if (p > 0) printf "%.1f", 1000 * u / p; else print "n/a" }')
  echo "$stats $per_thousand"
}

DYNALITE_PORT=$(free_port)
node .tools/node_modules/dynalite/cli.js --host 127.0.0.1 --port "$DYNALITE_PORT" \
  --createTableMs 0 >"$WORK/dynalite.log" 2>&1 &
PIDS+=($!)
PROXY_PORT=$(free_port)
python3 bench/latency-proxy/proxy.py --listen "127.0.0.1:$PROXY_PORT" \
  --upstream "127.0.0.1:$DYNALITE_PORT" --rtt-ms "$RTT_MS" >"$WORK/proxy.log" 2>&1 &
PIDS+=($!)
wait_port "$DYNALITE_PORT"
wait_port "$PROXY_PORT"

ROWS=()
run_case() {
  local path=$1 endpoint=$2 group=$3 slug=$4
  local port
  port=$(free_port)
  RUST_LOG=warn ./target/release/flight-counter --bind "127.0.0.1:$port" \
    --worker-threads "$WORKERS" --store dynamodb --create-table \
    --table "bench-$slug-$group" --endpoint-url "$endpoint" \
    --group-commit "$group" >"$WORK/service-$port.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  wait_for "http://127.0.0.1:$port/readyz" || { cat "$WORK/service-$port.log" >&2; exit 1; }
  local label
  [[ $group == true ]] && label="on" || label="off (1 UpdateItem per POST)"
  for routes in hot many; do
    echo "running: $path, group commit $label, $routes" >&2
    read -r rps p50 p99 per <<<"$(load "http://127.0.0.1:$port" "$WORK/$routes.lua")"
    local what="one hot route"
    [[ $routes == many ]] && what="many routes"
    ROWS+=("| $path | $label | $what | $rps | $p50 | $p99 | $per |")
  done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

for group in true false; do
  run_case direct "http://127.0.0.1:$DYNALITE_PORT" "$group" direct
done
for group in true false; do
  run_case "proxy, +${RTT_MS} ms RTT" "http://127.0.0.1:$PROXY_PORT" "$group" proxied
done

echo
echo "dynalite $(node -p 'require("./.tools/node_modules/dynalite/package.json").version') on loopback;" \
  "wrk -t1 -c$CONNECTIONS -d$DURATION; service --worker-threads $WORKERS; $(nproc) cores"
echo
echo "| path to dynalite | group commit | routes | POST req/s | p50 ms | p99 ms | UpdateItem per 1,000 POSTs |"
echo "|---|---|---|---:|---:|---:|---:|"
printf '%s\n' "${ROWS[@]}"
