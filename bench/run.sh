#!/usr/bin/env bash
# HTTP benchmark of the service, side by side with nginx in one run on this machine.
#
#   (a) embedded store, group commit on           POST, one hot route and many routes
#                                                 keyless, and with a unique Idempotency-Key
#                                                 on every request (each a new transaction);
#                                                 and the hot route with a write API key
#                                                 (the service started with a keys file)
#       and GET /transactions with 100 routes in one read (a dashboard's multi-route read)
#   (p) with BASELINE_REV set: that revision's release build, (a)'s keyless POSTs, so this
#       build's figures are compared with the previous one's in the same run
#   (b) embedded store, group commit off          POST, one durable commit per request
#   (c) GET /version through the same poem-openapi stack: the service's own HTTP ceiling;
#       and POSTs on the memory store (no disk), hot and many routes: the HTTP and ledger path
#       alone, the reference of the price of durability
#   (h) hyper alone on one runtime thread (bench/harness/src/bin/http_ceiling.rs): the HTTP
#       library's ceiling, beneath the framework
#   (n) nginx, one worker, `return 200` with the same JSON: the machine's HTTP ceiling
#   (r) Redis with `appendfsync always` (every acknowledged INCR fsynced, what a user would
#       pick instead of the service), redis-benchmark INCR on one key and on random keys among
#       as many as (a)'s routes, at the same connection counts: the durable reference
# The headline comes first: the durable store against Redis @32 and against the memory store
# @128, each pair measured in alternation over HEADLINE_ROUNDS rounds (3 by default). Then
# the embedded store's commit latency beside a raw append + fdatasync on the same disk
# (bench/harness/src/bin/commit_latency.rs), and the footprint: peak RSS of (a) under that
# load, start-up time to /readyz, binary sizes.
#
# Usage: bench/run.sh   (DURATION=10s CONNECTION_COUNTS="32 128" WORKERS=1 HEADLINE_ROUNDS=3
#        change the load; BASELINE_REV=<commit> adds the previous build's rows, built in a temporary worktree)
# Installs wrk, nginx-light and redis-server from Debian if missing. Loopback only; every run is
# bounded.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
# Each load runs at every connection count: 32 clients, and 128 (many reservation systems).
CONNECTION_COUNTS=${CONNECTION_COUNTS:-32 128}
# Client and server share the machine's cores; one runtime thread leaves the other to wrk.
WORKERS=${WORKERS:-1}
BENCH_DIR=$(mktemp -d)
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [[ -d "$BENCH_DIR/baseline" ]] && git worktree remove --force "$BENCH_DIR/baseline" 2>/dev/null
  rm -rf "$BENCH_DIR"
}
trap cleanup EXIT

# shellcheck source=bench/lib.sh
source bench/lib.sh

# Runs wrk at the current connection count and prints "req/s p50 p99".
load() {
  local url=$1 script=${2:-}
  local args=(-t1 "-c$CONNECTIONS" "-d$DURATION" --latency)
  [[ -n "$script" ]] && args+=(-s "$script")
  wrk_summary "${args[@]}" "$url"
}

start_service() {
  start_binary ./target/release/flight-counter "$@"
}

start_binary() {
  local binary=$1 port=$2; shift 2
  RUST_LOG=warn "$binary" --bind "127.0.0.1:$port" \
    --worker-threads "$WORKERS" "$@" >"$BENCH_DIR/service-$port.log" 2>&1 &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$port/readyz"
}

install_debian_tools wrk:wrk nginx:nginx-light redis-server:redis-server redis-benchmark:redis-tools
echo "building the release binaries..." >&2
cargo build --release --locked -p flight-counter --bin flight-counter -p flight-counter-bench \
  --bin commit-latency --bin http-ceiling >&2
BASELINE_BINARY=""
if [[ -n "${BASELINE_REV:-}" ]]; then
  echo "building $BASELINE_REV for the baseline rows..." >&2
  git worktree add --detach "$BENCH_DIR/baseline" "$BASELINE_REV" >&2
  # Its own target directory: the dependencies are built again, once.
  (cd "$BENCH_DIR/baseline" && cargo build --release --locked -p flight-counter \
    --target-dir "$BENCH_DIR/baseline-target" >&2)
  BASELINE_BINARY="$BENCH_DIR/baseline-target/release/flight-counter"
fi

# Runs redis-benchmark for about as many requests as the service answers in DURATION, at the
# current connection count, and prints "req/s p50 p99". Extra arguments: the command to send.
redis_load() {
  local seconds=${DURATION%s}
  redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -c "$CONNECTIONS" -n $((seconds * 60000)) --csv "$@" |
    awk -F'"' 'NR == 2 { printf "%.0f %.2f %.2f\n", $4, $10, $14 }'
}

declare -A RPS P50 P99
record() { # key "rps p50 p99"
  read -r "RPS[$1]" "P50[$1]" "P99[$1]" <<<"$2"
  printf '  %-34s %8s req/s  p50 %6s ms  p99 %6s ms\n' "$1" "${RPS[$1]}" "${P50[$1]}" "${P99[$1]}" >&2
}

# Every server runs for the whole benchmark; only the one under load does any work.
NGINX_PORT=$(free_port)
mkdir -p "$BENCH_DIR/nginx"
sed -e "s#__DIR__#$BENCH_DIR/nginx#g" -e "s#__PORT__#$NGINX_PORT#g" bench/nginx.conf >"$BENCH_DIR/nginx/nginx.conf"
nginx -c "$BENCH_DIR/nginx/nginx.conf" -p "$BENCH_DIR/nginx" &
PIDS+=($!)
wait_http "http://127.0.0.1:$NGINX_PORT/"
C_PORT=$(free_port)
start_service "$C_PORT" --store memory
H_PORT=$(free_port)
./target/release/http-ceiling "$H_PORT" >"$BENCH_DIR/http-ceiling.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$H_PORT/"
A_PORT=$(free_port)
start_service "$A_PORT" --store embedded --data-dir "$BENCH_DIR/a"
A_PID=${PIDS[-1]}
# Keyed POSTs get their own instance, so the keys they store never weigh on the keyless runs.
# Every key is the anonymous client's, a million or more over the run: its quota of new keys is
# lifted, or every keyed POST past the first 100,000 would be a 429 and measure nothing.
K_PORT=$(free_port)
start_service "$K_PORT" --store embedded --data-dir "$BENCH_DIR/k" --client-max-idempotency-keys 0
B_PORT=$(free_port)
start_service "$B_PORT" --store embedded --data-dir "$BENCH_DIR/b" --group-commit false
# Authenticated POSTs: the same setup as (a), with a keys file and a key made by the binary.
API_KEY=$(./target/release/flight-counter api-key --client bench --scope write 2>>"$BENCH_DIR/api-keys")
export API_KEY
S_PORT=$(free_port)
start_service "$S_PORT" --store embedded --data-dir "$BENCH_DIR/s" --api-keys-file "$BENCH_DIR/api-keys"
REDIS_PORT=$(free_port)
mkdir -p "$BENCH_DIR/redis"
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$BENCH_DIR/redis" --save "" \
  --appendonly yes --appendfsync always --daemonize no --loglevel warning >"$BENCH_DIR/redis.log" 2>&1 &
PIDS+=($!)
wait_port "$REDIS_PORT"
if [[ -n "$BASELINE_BINARY" ]]; then
  P_PORT=$(free_port)
  start_binary "$BASELINE_BINARY" "$P_PORT" --store embedded --data-dir "$BENCH_DIR/p"
fi

RUNS=("a hot, group commit" "a hot, authenticated" "a many, group commit" "a hot, keyed" "a many, keyed"
      "a GET 100 routes")
[[ -n "$BASELINE_BINARY" ]] && RUNS+=("p hot, previous build" "p many, previous build")
RUNS+=("r redis INCR, one key" "r redis INCR, random keys")
RUNS+=("b hot, commit per POST" "b many, commit per POST" "c GET /version" "c hot, memory store"
      "c many, memory store" "h hyper alone" "n nginx")
# The loads both the rows and the headline measure, at the current connection count.
durable_hot() { load "http://127.0.0.1:$A_PORT" bench/wrk/post-hot.lua; }
durable_many() { load "http://127.0.0.1:$A_PORT" bench/wrk/post-many.lua; }
memory_hot() { load "http://127.0.0.1:$C_PORT" bench/wrk/post-hot.lua; }
memory_many() { load "http://127.0.0.1:$C_PORT" bench/wrk/post-many.lua; }
redis_hot() { redis_load INCR AR1133; }
# 260,000 keys, as many as post-many.lua's routes.
redis_many() { redis_load -r 260000 INCR route:__rand_int__; }

for CONNECTIONS in $CONNECTION_COUNTS; do
  echo "wrk: 1 thread, $CONNECTIONS connections, $DURATION per run; service: $WORKERS runtime thread(s)" >&2
  record "n nginx @$CONNECTIONS" "$(load "http://127.0.0.1:$NGINX_PORT/transactions/AR1133")"
  record "h hyper alone @$CONNECTIONS" "$(load "http://127.0.0.1:$H_PORT/")"
  record "c GET /version @$CONNECTIONS" "$(load "http://127.0.0.1:$C_PORT/version")"
  record "c hot, memory store @$CONNECTIONS" "$(memory_hot)"
  record "c many, memory store @$CONNECTIONS" "$(memory_many)"
  record "a hot, group commit @$CONNECTIONS" "$(durable_hot)"
  record "a hot, authenticated @$CONNECTIONS" "$(load "http://127.0.0.1:$S_PORT" bench/wrk/post-hot-authenticated.lua)"
  record "a many, group commit @$CONNECTIONS" "$(durable_many)"
  record "a hot, keyed @$CONNECTIONS" "$(load "http://127.0.0.1:$K_PORT" bench/wrk/post-hot-keyed.lua)"
  record "a many, keyed @$CONNECTIONS" "$(load "http://127.0.0.1:$K_PORT" bench/wrk/post-many-keyed.lua)"
  record "a GET 100 routes @$CONNECTIONS" "$(load "http://127.0.0.1:$A_PORT" bench/wrk/get-many-routes.lua)"
  if [[ -n "$BASELINE_BINARY" ]]; then
    record "p hot, previous build @$CONNECTIONS" "$(load "http://127.0.0.1:$P_PORT" bench/wrk/post-hot.lua)"
    record "p many, previous build @$CONNECTIONS" "$(load "http://127.0.0.1:$P_PORT" bench/wrk/post-many.lua)"
  fi
  record "r redis INCR, one key @$CONNECTIONS" "$(redis_hot)"
  record "r redis INCR, random keys @$CONNECTIONS" "$(redis_many)"
  record "b hot, commit per POST @$CONNECTIONS" "$(load "http://127.0.0.1:$B_PORT" bench/wrk/post-hot.lua)"
  record "b many, commit per POST @$CONNECTIONS" "$(load "http://127.0.0.1:$B_PORT" bench/wrk/post-many.lua)"
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

# The headline: the two comparisons the durable store is held to, each side measured in turn
# with the other, HEADLINE_ROUNDS times (which goes first alternates), so that both sides of
# every ratio see the same machine at the same moment.
#   @32, where HTTP is not the bound: a durable POST against Redis's INCR with every write
#   fsynced (the durable reference);
#   @128, where one runtime thread of the HTTP stack is the bound: a durable POST against the
#   same binary's memory-store POST (the price of durability on the same stack).
HEADLINE_ROUNDS=${HEADLINE_ROUNDS:-3}
declare -A HEAD_NUM HEAD_DEN
# Each row: its name, connections, the load measured, the reference load, the goal.
HEAD_ROWS=(
  "@32 hot route: durable POST / Redis INCR|32|durable_hot|redis_hot|>= 1.0"
  "@32 random routes: durable POST / Redis INCR|32|durable_many|redis_many|>= 1.0"
  "@128 hot route: durable POST / memory-store POST|128|durable_hot|memory_hot|>= 0.9"
  "@128 random routes: durable POST / memory-store POST|128|durable_many|memory_many|>= 0.9"
)
for round in $(seq "$HEADLINE_ROUNDS"); do
  for row in "${HEAD_ROWS[@]}"; do
    IFS='|' read -r name CONNECTIONS measured reference _ <<<"$row"
    if ((round % 2)); then
      num=$($measured); den=$($reference)
    else
      den=$($reference); num=$($measured)
    fi
    HEAD_NUM[$name]+="${num%% *} "
    HEAD_DEN[$name]+="${den%% *} "
    echo "  headline round $round, $name: ${num%% *} / ${den%% *} req/s" >&2
  done
done

echo
echo "Headline: $HEADLINE_ROUNDS rounds, each side in turn, $DURATION per run"
echo
echo "| comparison | median req/s | reference median req/s | ratio each round | median ratio | goal |"
echo "|---|---:|---:|---|---:|---|"
for row in "${HEAD_ROWS[@]}"; do
  IFS='|' read -r name _ _ _ goal <<<"$row"
  awk -v name="$name" -v goal="$goal" -v nums="${HEAD_NUM[$name]}" -v dens="${HEAD_DEN[$name]}" '
    function median(a, n,   i, j, t) {
      for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    BEGIN {
      n = split(nums, num, " "); split(dens, den, " ")
      each = ""
      for (i = 1; i <= n; i++) { r[i] = den[i] > 0 ? num[i] / den[i] : 0; each = each sprintf("%s%.2f", i > 1 ? " " : "", r[i]) }
      for (i = 1; i <= n; i++) { a[i] = num[i]; b[i] = den[i] }
      printf "| %s | %.0f | %.0f | %s | %.2f | %s |\n", name, median(a, n), median(b, n), each, median(r, n), goal
    }'
done

echo
printf '| run |'; for c in $CONNECTION_COUNTS; do printf ' req/s @%s | p50 ms | p99 ms |' "$c"; done; echo
printf '|---|'; for _ in $CONNECTION_COUNTS; do printf -- '---:|---:|---:|'; done; echo
for name in "${RUNS[@]}"; do
  printf '| %s |' "$name"
  for c in $CONNECTION_COUNTS; do
    k="$name @$c"
    printf ' %s | %s | %s |' "${RPS[$k]}" "${P50[$k]}" "${P99[$k]}"
  done
  echo
done
echo
printf '| ratio (same run) | target |'; for c in $CONNECTION_COUNTS; do printf ' @%s |' "$c"; done; echo
printf '|---|---|'; for _ in $CONNECTION_COUNTS; do printf -- '---:|'; done; echo
row() { # label target numerator-run denominator-run
  printf '| %s | %s |' "$1" "$2"
  for c in $CONNECTION_COUNTS; do printf ' %s |' "$(ratio "${RPS[$3 @$c]}" "${RPS[$4 @$c]}")"; done
  echo
}
row "c / n: service stack vs nginx" ">= 0.70" "c GET /version" "n nginx"
row "a hot / n: durable hot POST vs nginx" ">= 0.50" "a hot, group commit" "n nginx"
row "a hot / r: durable hot POST vs Redis INCR" ">= 1.0" "a hot, group commit" "r redis INCR, one key"
row "a many / r: random-route POST vs Redis random INCR" ">= 1.0" "a many, group commit" "r redis INCR, random keys"
# No durable POST can beat what the same stack serves with no store, or with no disk: where
# the first two rows below are under 1.0, the two above cannot reach their target on this stack
# and thread count. The third is hyper with nothing above it: what the library itself allows.
row "c / r: the stack's own ceiling (GET /version) vs Redis INCR" "bound" "c GET /version" "r redis INCR, one key"
row "c hot memory / r: HTTP and ledger, no disk, vs Redis INCR" "bound" "c hot, memory store" "r redis INCR, one key"
row "h / r: hyper alone vs Redis INCR" "bound" "h hyper alone" "r redis INCR, one key"
row "c / h: poem-openapi stack vs hyper alone" "none" "c GET /version" "h hyper alone"
row "a hot / b hot: group commit gain" ">= 5" "a hot, group commit" "b hot, commit per POST"
row "keyed / keyless (hot route)" ">= 0.5" "a hot, keyed" "a hot, group commit"
row "keyed / keyless (many routes)" "none" "a many, keyed" "a many, group commit"
row "authenticated / unauthenticated hot route" ">= 0.95" "a hot, authenticated" "a hot, group commit"
if [[ -n "$BASELINE_BINARY" ]]; then
  row "this build / $BASELINE_REV (hot route)" ">= 0.90" "a hot, group commit" "p hot, previous build"
  row "this build / $BASELINE_REV (many routes)" ">= 0.90" "a many, group commit" "p many, previous build"
fi

# The commit itself, without HTTP: its median beside a raw append + fdatasync, same disk.
echo
echo "commit latency (embedded store, $BENCH_DIR's disk):"
./target/release/commit-latency "$BENCH_DIR" 3000 16

# Footprint: memory high-water mark of (a) after all its load, start-up time, binary sizes.
peak_rss_kib=$(awk '/^VmHWM:/ { print $2 }' "/proc/$A_PID/status")
read -r ready_median ready_worst <<<"$(python3 bench/startup.py ./target/release/flight-counter "$BENCH_DIR/startup" 5)"
binary_bytes=$(stat -c %s target/release/flight-counter)
strip -o "$BENCH_DIR/flight-counter.stripped" target/release/flight-counter
stripped_bytes=$(stat -c %s "$BENCH_DIR/flight-counter.stripped")
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

echo
echo "| footprint | value | target |"
echo "|---|---:|---|"
echo "| peak RSS of (a) after every load above (VmHWM) | $(mib $((peak_rss_kib * 1024))) MiB | < 64 MiB |"
echo "| start-up to first /readyz 200, embedded store (median of 5, worst) | ${ready_median} ms (${ready_worst} ms) | < 200 ms |"
echo "| release binary | $(mib "$binary_bytes") MiB | |"
echo "| stripped binary (what the image ships) | $(mib "$stripped_bytes") MiB | |"
