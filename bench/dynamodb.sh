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

# shellcheck source=bench/lib.sh
source bench/lib.sh
install_debian_tools wrk:wrk
scripts/install-emulators.sh
cargo build --release --locked -p flight-counter >&2

export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
export AWS_EC2_METADATA_DISABLED=true

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
  stats=$(wrk_summary -t1 "-c$CONNECTIONS" "-d$DURATION" --latency -s "$script" "$base")
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
  wait_http "http://127.0.0.1:$port/readyz" || { cat "$WORK/service-$port.log" >&2; exit 1; }
  local label
  [[ $group == true ]] && label="on" || label="off (1 UpdateItem per POST)"
  for routes in hot many; do
    echo "running: $path, group commit $label, $routes" >&2
    read -r rps p50 p99 per <<<"$(load "http://127.0.0.1:$port" "bench/wrk/post-$routes.lua")"
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
