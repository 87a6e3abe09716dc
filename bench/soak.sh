#!/usr/bin/env bash
# Soak of the embedded store (not run in CI): keyed POSTs, each with a new Idempotency-Key, over
# a million routes, 2 million by default, while it prints every few seconds the service's RSS
# and the sizes of its database and journal. RSS must level off under the cache bound
# (--embedded-cache-mib, 32 MiB by default, plus the process's own few MiB), however many keys
# and routes are stored.
#
# Usage: bench/soak.sh   (SOAK_REQUESTS=2000000 CONNECTIONS=64 CACHE_MIB=32 EVERY=5 change it)
# Installs wrk from Debian if missing. Loopback only; it stops when the requests are answered.
set -euo pipefail
cd "$(dirname "$0")/.."

SOAK_REQUESTS=${SOAK_REQUESTS:-2000000}
CONNECTIONS=${CONNECTIONS:-64}
CACHE_MIB=${CACHE_MIB:-32}
EVERY=${EVERY:-5}
SOAK_DIR=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$SOAK_DIR"
}
trap cleanup EXIT

# shellcheck source=bench/lib.sh
source bench/lib.sh
install_debian_tools wrk:wrk
cargo build --release --locked -p flight-counter --bin flight-counter >&2

PORT=$(free_port)
# Every key is the anonymous client's: its quota of new keys is lifted, or the soak would stop
# at the first 100,000.
RUST_LOG=warn ./target/release/flight-counter --bind "127.0.0.1:$PORT" --store embedded \
  --data-dir "$SOAK_DIR/data" --embedded-cache-mib "$CACHE_MIB" \
  --client-max-idempotency-keys 0 >"$SOAK_DIR/service.log" 2>&1 &
SERVICE_PID=$!
PIDS+=("$SERVICE_PID")
wait_http "http://127.0.0.1:$PORT/readyz"

mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
size_of() { stat -c %s "$@" 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'; }
RECORDED=0
sample() {
  local rss_kib
  rss_kib=$(awk '/^VmRSS:/ { print $2 }' "/proc/$SERVICE_PID/status")
  RECORDED=$(curl -fsS "http://127.0.0.1:$PORT/metrics" |
    awk '/^flight_counter_transactions_recorded_total/ { s += $2 } END { printf "%d", s }')
  printf '| %6s | %10s | %8s | %10s | %8s |\n' "$1" "$RECORDED" "$(mib $((rss_kib * 1024)))" \
    "$(mib "$(size_of "$SOAK_DIR/data/flight-counter.redb")")" \
    "$(mib "$(size_of "$SOAK_DIR"/data/flight-counter.journal.*)")"
}

echo "soak: $SOAK_REQUESTS keyed POSTs over 1,000,000 routes, $CONNECTIONS connections, cache $CACHE_MIB MiB"
echo
echo "| s | recorded | RSS MiB | database MiB | journal MiB |"
echo "|---:|---:|---:|---:|---:|"
wrk -t1 "-c$CONNECTIONS" -d1h -s bench/wrk/soak-keyed.lua "http://127.0.0.1:$PORT" >"$SOAK_DIR/wrk.out" 2>&1 &
WRK_PID=$!
PIDS+=("$WRK_PID")
started=$SECONDS
sample 0
while ((RECORDED < SOAK_REQUESTS)) && kill -0 "$WRK_PID" 2>/dev/null; do
  sleep "$EVERY"
  sample $((SECONDS - started))
done
kill -INT "$WRK_PID" 2>/dev/null || true
wait "$WRK_PID" 2>/dev/null || true
# After the load: what it settles at.
sleep "$EVERY"
sample $((SECONDS - started))
echo
grep -E 'Requests/sec|requests in|Non-2xx' "$SOAK_DIR/wrk.out" || true
echo "peak RSS (VmHWM): $(mib $(($(awk '/^VmHWM:/ { print $2 }' "/proc/$SERVICE_PID/status") * 1024))) MiB"
