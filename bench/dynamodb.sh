#!/usr/bin/env bash
# DynamoDB store benchmark on loopback emulators: POST throughput and latency, and what the
# service asked of DynamoDB for it (from its own metrics). Prints markdown tables:
#
#   1. keyless, dynalite: one hot route and many routes, group commit on and off (one process,
#      CONNECTIONS clients); then 1 and 3 processes sharing one table on the hot route
#   2. keyed (a new Idempotency-Key on every POST), moto (dynalite has no transactions): 1, 2
#      and 3 processes sharing one table on the hot route
#   3. throttled: 3 processes on the hot route through scripts/dynamodb-throttle-proxy.py, which
#      refuses writes over a per-item budget as DynamoDB does; keyless on dynalite, keyed on moto
#   4. with BASELINE_REV set: that revision built too, and run ("before") right after this
#      tree's ("after") on the keyless hot-route and many-route rows (dynalite direct, group
#      commit on) and on the keyed 2-process row, with the after/before ratios
#   5. keyed, moto, 2 processes on the hot route through bench/latency-proxy at each of
#      LATENCIES ms of added round trip: do batches grow with latency (write requests per
#      1,000 keyed POSTs)?
#   6. faults: the same load through scripts/dynamodb-throttle-proxy.py honouring client
#      request tokens, with FAULT_DROP of the transactions' answers dropped and FAULT_LATE held
#      past the service's 1 s attempt timeout (the default): POSTs per second, the share
#      answered 200, write requests per 1,000 keyed POSTs
#
# Tables 1 and 2 run twice: straight to the emulator, then through bench/latency-proxy adding
# RTT_MS of round trip, as a real DynamoDB endpoint a few milliseconds away would.
#
# Usage: bench/dynamodb.sh
#   TABLES="keyless keyed throttled latency faults"  which tables to run (all by default;
#                         the baseline rows go with keyless and keyed)
#   DURATION=10s          length of every load
#   CONNECTIONS=128       wrk clients of the one-process rows of table 1
#   PROCESS_CONNECTIONS=32  wrk clients per process in the multi-process rows
#   PROCESS_COUNTS="1 2 3"  processes of the keyed rows
#   WORKERS=1 RTT_MS=3 THROTTLE_BUDGET=100 KEYED_THROTTLE_BUDGET=50
#   LATENCIES="0 20 100" FAULT_DROP=0.04 FAULT_LATE=0.2 FAULT_LATE_MS=1500
#   BASELINE_REV=4ce71a0  also build and measure that revision (several minutes to build)
# Installs wrk from Debian and the emulators (scripts/install-emulators.sh) if missing, and
# builds the release binary. Loopback only; every load is bounded by DURATION; every process
# started here is killed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
# wrk is a closed loop: each connection waits for its answer. Behind a round trip of a few ms,
# 32 connections cap a hot route at 32 POSTs per two commits whatever the service does; 128
# stand for the many reservation systems that post at once.
CONNECTIONS=${CONNECTIONS:-128}
PROCESS_CONNECTIONS=${PROCESS_CONNECTIONS:-32}
PROCESS_COUNTS=${PROCESS_COUNTS:-1 2 3}
# Clients, services and emulators share the machine's cores: one runtime thread per service.
WORKERS=${WORKERS:-1}
RTT_MS=${RTT_MS:-3}
# Per-item write budgets of the throttle proxy, in units per second (DynamoDB's own is about
# 1,000). moto runs a few hundred keyed POSTs per second here, so the keyed budget is lower
# for the throttle to bite.
THROTTLE_BUDGET=${THROTTLE_BUDGET:-100}
KEYED_THROTTLE_BUDGET=${KEYED_THROTTLE_BUDGET:-50}
BASELINE_REV=${BASELINE_REV:-}
TABLES=${TABLES:-keyless keyed throttled latency faults}
LATENCIES=${LATENCIES:-0 20 100}
FAULT_DROP=${FAULT_DROP:-0.04}
FAULT_LATE=${FAULT_LATE:-0.2}
FAULT_LATE_MS=${FAULT_LATE_MS:-1500}
# moto serves one request at a time for every process: an attempt can queue behind the others'
# for over a second, and the default 1 s attempt timeout would cut it off and send it again,
# adding load. 5 s is the commit timeout: an attempt then runs as long as its POST may wait.
ATTEMPT_TIMEOUT=5s
wants() { [[ " $TABLES " == *" $1 "* ]]; }
# The fault row runs with the service's default instead: a late answer is one past it.
FAULT_ATTEMPT_TIMEOUT=1s
# Longer than the service's 5 s commit timeout: every request is answered by the service (a 503
# at worst) and counted, rather than given up by wrk at its 2 s default and left out.
WRK_TIMEOUT=15s
# The route of every hot-route script in bench/wrk.
HOT_ROUTE=AR1133

WORK=$(mktemp -d)
PIDS=()
BASELINE_TREE=""

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [[ -z $BASELINE_TREE ]] || git worktree remove --force "$BASELINE_TREE" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# shellcheck source=bench/lib.sh
source bench/lib.sh

export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
export AWS_EC2_METADATA_DISABLED=true

# --- Builds ------------------------------------------------------------------------------------

# Builds BASELINE_REV's release binary into $WORK/flight-counter-before, from a temporary
# worktree. Its target directory stays under target/ so that a second run rebuilds nothing.
build_baseline() {
  BASELINE_TREE="$WORK/baseline"
  git worktree add --detach --quiet "$BASELINE_TREE" "$BASELINE_REV" >&2
  echo "building $BASELINE_REV (the baseline)..." >&2
  cargo build --release --locked -p flight-counter --manifest-path "$BASELINE_TREE/Cargo.toml" \
    --target-dir "$PWD/target/bench-baseline" >&2
  cp target/bench-baseline/release/flight-counter "$WORK/flight-counter-before"
  git worktree remove --force "$BASELINE_TREE"
  BASELINE_TREE=""
}

# --- Servers -----------------------------------------------------------------------------------

start_dynalite() {
  local port=$1
  node .tools/node_modules/dynalite/cli.js --host 127.0.0.1 --port "$port" --createTableMs 0 \
    >"$WORK/dynalite.log" 2>&1 &
  PIDS+=($!)
  wait_port "$port"
}

start_moto() {
  local port=$1
  .tools/venv/bin/python scripts/moto-server.py --host 127.0.0.1 --port "$port" --quiet \
    >"$WORK/moto.log" 2>&1 &
  PIDS+=($!)
  wait_port "$port"
}

start_latency_proxy() {
  local port=$1 upstream=$2 rtt=${3:-$RTT_MS}
  python3 bench/latency-proxy/proxy.py --listen "127.0.0.1:$port" --upstream "127.0.0.1:$upstream" \
    --rtt-ms "$rtt" >"$WORK/latency-proxy-$port.log" 2>&1 &
  PIDS+=($!)
  wait_port "$port"
}

# Starts a throttle proxy in front of an upstream port (more flags after the budget); sets
# THROTTLE_PORT to the port it listens on (it picks a free one itself and says which on its
# first line).
start_throttle_proxy() {
  local upstream=$1 budget=$2 log
  shift 2
  log="$WORK/throttle-proxy-$upstream-$budget.log"
  python3 scripts/dynamodb-throttle-proxy.py --listen 127.0.0.1:0 --upstream "127.0.0.1:$upstream" \
    --writes-per-second "$budget" "$@" >"$log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 200); do
    if grep -q '^listening on ' "$log"; then
      THROTTLE_PORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -1)
      return 0
    fi
    sleep 0.05
  done
  echo "the throttle proxy did not start:" >&2
  cat "$log" >&2
  return 1
}

# Starts COUNT service processes sharing one table, each on its own port; sets SERVICE_PORTS
# and SERVICE_PIDS. One at a time: the first creates the table, the others find it there.
start_services() {
  local count=$1 binary=$2 endpoint=$3 table=$4
  shift 4 # the rest: more flags
  SERVICE_PORTS=()
  SERVICE_PIDS=()
  local i port
  for ((i = 0; i < count; i++)); do
    port=$(free_port)
    RUST_LOG=warn "$binary" --bind "127.0.0.1:$port" --worker-threads "$WORKERS" \
      --store dynamodb --create-table --table "$table" --endpoint-url "$endpoint" \
      --dynamodb-attempt-timeout "${SERVICE_ATTEMPT_TIMEOUT:-$ATTEMPT_TIMEOUT}" "$@" \
      >"$WORK/service-$port.log" 2>&1 &
    PIDS+=($!)
    SERVICE_PIDS+=($!)
    SERVICE_PORTS+=("$port")
    wait_http "http://127.0.0.1:$port/readyz" || { cat "$WORK/service-$port.log" >&2; exit 1; }
  done
}

# Stops the service processes; their logs stay in $WORK until exit, and warnings are shown.
stop_services() {
  local pid port
  for pid in "${SERVICE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${SERVICE_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  for port in "${SERVICE_PORTS[@]}"; do
    if [[ -s $WORK/service-$port.log ]]; then
      echo "  service :$port logged $(wc -l <"$WORK/service-$port.log") lines, the first:" >&2
      head -3 "$WORK/service-$port.log" | cut -c1-300 >&2
    fi
  done
}

# --- Measurements ------------------------------------------------------------------------------

# Prints "posts writes gets throttled batched commits", summed over the services on the given
# ports: POSTs answered 200; write requests sent to DynamoDB (UpdateItem, TransactWriteItems and
# PutItem attempts, whatever their outcome); GetItem attempts; write attempts refused as
# throttled; transactions carried by commits, and commits (the batch size histogram's sum and
# count).
counters() {
  local port
  for port in "$@"; do curl -fsS "http://127.0.0.1:$port/metrics"; done | awk '
    index($0, "flight_counter_http_requests_total{") == 1 && /method="POST"/ &&
      index($0, "path=\"/transactions/{route}\"") && /status="200"/ { posts += $NF }
    index($0, "flight_counter_dynamodb_calls_total{") == 1 {
      if ($0 ~ /operation="(UpdateItem|TransactWriteItems|PutItem)"/) {
        writes += $NF
        if ($0 ~ /outcome="throttled"/) throttled += $NF
      } else if ($0 ~ /operation="GetItem"/) gets += $NF
    }
    index($0, "flight_counter_store_commit_batch_size_sum") == 1 { batched += $NF }
    index($0, "flight_counter_store_commit_batch_size_count") == 1 { commits += $NF }
    END { printf "%d %d %d %d %d %d\n", posts, writes, gets, throttled, batched, commits }'
}

# Transactions per commit in the last measured row (keys per TransactWriteItems in a keyed
# load: each commit is one transaction, sent again with its token when its answer is lost).
keys_per_transaction() {
  awk -v b="$R_BATCHED" -v c="$R_COMMITS" 'BEGIN { if (c > 0) printf "%.1f", b / c; else print "n/a" }'
}

# Prints "req/s p50 p99 non-2xx socket-errors" of one wrk output (latencies in ms).
wrk_figures() {
  awk '
    function ms(v) {
      if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
      if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
      if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 }
      return v
    }
    /Requests\/sec/ { rps = $2 }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    /Non-2xx/ { bad = $NF }
    /Socket errors/ { gsub(/,/, ""); sock = $4 + $6 + $8 + $10 }
    END { printf "%.1f %.2f %.2f %d %d\n", rps, p50, p99, bad, sock }' "$1"
}

# Runs one wrk per port at once (the load of one process each), each with its own key prefix
# for keyed scripts. Writes to $WORK/load "req/s p50 p99 non-2xx socket-errors seconds"
# (not printed: it runs in this shell, so that the trap knows its wrk processes): req/s summed over
# the instances, the median of their p50s, the worst of their p99s (wrk cannot merge its
# histograms across processes), errors summed, and the wall-clock seconds the load took.
load_all() {
  local script=$1 connections=$2 prefix=$3
  shift 3 # the rest: ports
  local i=0 port pids=() started
  started=$EPOCHREALTIME
  for port in "$@"; do
    wrk -t1 "-c$connections" "-d$DURATION" --timeout "$WRK_TIMEOUT" --latency -s "$script" \
      "http://127.0.0.1:$port" -- "$prefix-$i" >"$WORK/wrk-$i.out" 2>&1 &
    pids+=($!)
    PIDS+=($!)
    i=$((i + 1))
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || { echo "wrk failed:" >&2; cat "$WORK/wrk-$i.out" >&2; exit 1; }
  done
  local seconds
  seconds=$(awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
  for i in "${!pids[@]}"; do wrk_figures "$WORK/wrk-$i.out"; done | sort -n -k2 | awk -v s="$seconds" '
    { rps += $1; p50[NR] = $2; if ($3 > p99) p99 = $3; bad += $4; sock += $5 }
    END {
      # p50s are sorted: the middle one, or the mean of the middle two.
      m = (NR % 2) ? p50[(NR + 1) / 2] : (p50[NR / 2] + p50[NR / 2 + 1]) / 2
      printf "%.0f %.2f %.2f %d %d %s\n", rps, m, p99, bad, sock, s
    }' >"$WORK/load"
}

# Prints "units/s peak-window refused" for the hot route's item from a throttle proxy's stats:
# write units it accepted on the item per second since the last reset, the most it accepted in
# any one window (never over the budget), and the requests it refused over the item.
hot_item_from_proxy() {
  curl -fsS "http://127.0.0.1:$1/__proxy/stats" | python3 -c '
import json, sys
stats, route = json.load(sys.stdin), sys.argv[1]
hot = [i for i in stats["items"] if i["key"].get("route", {}).get("S") == route]
units = sum(i["accepted_units"] for i in hot)
peak = max([i["max_units_in_any_window"] for i in hot] or [0])
refused = sum(i["throttled_requests"] for i in hot)
print("%.0f %d %d" % (units / max(stats["elapsed_seconds"], 1e-9), peak, refused))
' "$HOT_ROUTE"
}

# Runs one row: COUNT processes of BINARY on a fresh table behind ENDPOINT, one wrk each with
# SCRIPT and CONNECTIONS clients; THROTTLE is the throttle proxy's port in front of the
# emulator when the row goes through one (empty otherwise); HOT says whether the load is on
# the one hot route. Sets the R_* figures of the row.
measure() {
  local count=$1 binary=$2 endpoint=$3 table=$4 script=$5 connections=$6 throttle=$7 hot=$8
  shift 8 # the rest: more service flags
  start_services "$count" "$binary" "$endpoint" "$table" "$@"
  local posts0 writes0 gets0 thr0 batched0 commits0 posts1 writes1 gets1 thr1 batched1 commits1
  read -r posts0 writes0 gets0 thr0 batched0 commits0 <<<"$(counters "${SERVICE_PORTS[@]}")"
  [[ -z $throttle ]] || curl -fsS -X POST -o /dev/null "http://127.0.0.1:$throttle/__proxy/reset"
  load_all "$script" "$connections" "$table" "${SERVICE_PORTS[@]}"
  read -r R_RPS R_P50 R_P99 R_BAD R_SOCK R_SECONDS <"$WORK/load"
  read -r posts1 writes1 gets1 thr1 batched1 commits1 <<<"$(counters "${SERVICE_PORTS[@]}")"
  R_POSTS=$((posts1 - posts0))
  R_WRITES=$((writes1 - writes0))
  R_GETS=$((gets1 - gets0))
  R_THROTTLED=$((thr1 - thr0))
  R_BATCHED=$((batched1 - batched0))
  R_COMMITS=$((commits1 - commits0))
  R_WRITES_K=$(per_thousand "$R_WRITES" "$R_POSTS")
  R_GETS_K=$(per_thousand "$R_GETS" "$R_POSTS")
  if [[ -n $throttle ]]; then
    local units peak refused
    read -r units peak refused <<<"$(hot_item_from_proxy "$throttle")"
    R_HOT="$units units/s (peak $peak)"
    R_REFUSED=$refused
  elif [[ $hot == hot ]]; then
    # One hot route: every write request of the run writes its item (see the footnote).
    R_HOT=$(awk -v w="$R_WRITES" -v s="$R_SECONDS" 'BEGIN { printf "%.0f", w / s }')
    R_REFUSED=""
  else
    R_HOT="—"
    R_REFUSED=""
  fi
  stop_services
  printf '  %s req/s, p50 %s ms, p99 %s ms, non-2xx %s, socket errors %s; %s POSTs: %s writes, %s GetItems, %s throttled; hot item %s\n' \
    "$R_RPS" "$R_P50" "$R_P99" "$R_BAD" "$R_SOCK" "$R_POSTS" "$R_WRITES" "$R_GETS" \
    "$R_THROTTLED" "$R_HOT" >&2
}

per_thousand() {
  awk -v n="$1" -v p="$2" 'BEGIN { if (p > 0) printf "%.1f", 1000 * n / p; else print "n/a" }'
}

# "non-2xx" cell: wrk's count, with socket errors (timeouts, resets) added when there were any.
errors_cell() {
  if ((R_SOCK > 0)); then echo "$R_BAD (+$R_SOCK socket errors)"; else echo "$R_BAD"; fi
}

# The measured cells every table ends with.
figures_cells() {
  echo "$R_RPS | $R_P50 | $R_P99 | $(errors_cell) | $R_WRITES_K | $R_GETS_K | $R_THROTTLED | $R_HOT"
}

FIGURES_HEAD="POST req/s | p50 ms | p99 ms | non-2xx | write requests per 1,000 POSTs | GetItems per 1,000 POSTs | throttled write attempts | hot item writes/s"
FIGURES_ALIGN="---:|---:|---:|---:|---:|---:|---:|---:"

# --- Setup -------------------------------------------------------------------------------------

install_debian_tools wrk:wrk
scripts/install-emulators.sh
echo "building the release binary..." >&2
cargo build --release --locked -p flight-counter >&2
AFTER=./target/release/flight-counter
# What "after" is: this tree's commit, and whether the service's sources differ from it.
AFTER_REV=$(git rev-parse --short HEAD)
git diff --quiet HEAD -- app Cargo.toml Cargo.lock || AFTER_REV="$AFTER_REV with local changes"
[[ -z $BASELINE_REV ]] || build_baseline
BEFORE=$WORK/flight-counter-before

DYNALITE_PORT=$(free_port)
start_dynalite "$DYNALITE_PORT"
MOTO_PORT=$(free_port)
start_moto "$MOTO_PORT"
DYNALITE_RTT_PORT=$(free_port)
start_latency_proxy "$DYNALITE_RTT_PORT" "$DYNALITE_PORT"
MOTO_RTT_PORT=$(free_port)
start_latency_proxy "$MOTO_RTT_PORT" "$MOTO_PORT"
start_throttle_proxy "$DYNALITE_PORT" "$THROTTLE_BUDGET"
DYNALITE_THROTTLE_PORT=$THROTTLE_PORT
start_throttle_proxy "$MOTO_PORT" "$KEYED_THROTTLE_BUDGET"
MOTO_THROTTLE_PORT=$THROTTLE_PORT
LOAD_AVERAGE=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$SECONDS

# path label and endpoint of each way to an emulator
PATH_DIRECT=direct
PATH_RTT="proxy, +${RTT_MS} ms RTT"

# --- 1. Keyless, dynalite ----------------------------------------------------------------------

KEYLESS_ROWS=()
KEYLESS_COMPARE_ROWS=()
declare -A KEYLESS_AFTER_RPS KEYLESS_BEFORE_RPS
if wants keyless; then
  for path in "$PATH_DIRECT" "$PATH_RTT"; do
    endpoint="http://127.0.0.1:$DYNALITE_PORT"
    [[ $path == "$PATH_DIRECT" ]] || endpoint="http://127.0.0.1:$DYNALITE_RTT_PORT"
    slug=direct
    [[ $path == "$PATH_DIRECT" ]] || slug=proxied
    for group in true false; do
      label="on"
      [[ $group == true ]] || label="off (1 UpdateItem per POST)"
      for routes in hot many; do
        echo "running: keyless, dynalite $path, group commit $label, $routes, 1 × $CONNECTIONS" >&2
        measure 1 "$AFTER" "$endpoint" "bench-$slug-$group-$routes" "bench/wrk/post-$routes.lua" \
          "$CONNECTIONS" "" "$routes" --group-commit "$group"
        what="one hot route"
        [[ $routes == hot ]] || what="many routes"
        KEYLESS_ROWS+=("| $path | 1 × $CONNECTIONS | $what | $label | $(figures_cells) |")
        if [[ -n $BASELINE_REV && $path == "$PATH_DIRECT" && $group == true ]]; then
          KEYLESS_AFTER_RPS[$routes]=$R_RPS
          KEYLESS_COMPARE_ROWS+=("| $what | after ($AFTER_REV) | $(figures_cells) |")
          echo "running: keyless, dynalite direct, $routes, 1 × $CONNECTIONS, $BASELINE_REV" >&2
          measure 1 "$BEFORE" "$endpoint" "bench-baseline-$routes" "bench/wrk/post-$routes.lua" \
            "$CONNECTIONS" "" "$routes"
          KEYLESS_BEFORE_RPS[$routes]=$R_RPS
          KEYLESS_COMPARE_ROWS+=("| $what | before ($BASELINE_REV) | $(figures_cells) |")
        fi
      done
    done
    # Several processes on one table, as several pods would run.
    for count in 1 3; do
      echo "running: keyless, dynalite $path, hot, $count × $PROCESS_CONNECTIONS" >&2
      measure "$count" "$AFTER" "$endpoint" "bench-$slug-keyless-$count" bench/wrk/post-hot.lua \
        "$PROCESS_CONNECTIONS" "" hot
      KEYLESS_ROWS+=("| $path | $count × $PROCESS_CONNECTIONS | one hot route | on | $(figures_cells) |")
    done
  done
fi

# --- 2. Keyed, moto (and 4. the baseline) ------------------------------------------------------

KEYED_ROWS=()
COMPARE_ROWS=()
if wants keyed; then
  for path in "$PATH_DIRECT" "$PATH_RTT"; do
    endpoint="http://127.0.0.1:$MOTO_PORT"
    [[ $path == "$PATH_DIRECT" ]] || endpoint="http://127.0.0.1:$MOTO_RTT_PORT"
    slug=direct
    [[ $path == "$PATH_DIRECT" ]] || slug=proxied
    for count in $PROCESS_COUNTS; do
      echo "running: keyed, moto $path, hot, $count × $PROCESS_CONNECTIONS" >&2
      measure "$count" "$AFTER" "$endpoint" "bench-$slug-keyed-$count" \
        bench/wrk/post-hot-keyed-prefix.lua "$PROCESS_CONNECTIONS" "" hot
      KEYED_ROWS+=("| $path | $count × $PROCESS_CONNECTIONS | $(figures_cells) |")
      if [[ $path == "$PATH_DIRECT" && $count == 2 ]]; then
        AFTER_RPS=$R_RPS AFTER_WRITES_K=$R_WRITES_K
        COMPARE_ROWS+=("| after ($AFTER_REV) | $(figures_cells) |")
        if [[ -n $BASELINE_REV ]]; then
          # Right after the same row of this tree, on the same moto, so both see the same machine.
          echo "running: keyed, moto direct, hot, 2 × $PROCESS_CONNECTIONS, $BASELINE_REV" >&2
          measure 2 "$BEFORE" "$endpoint" "bench-baseline-keyed-2" \
            bench/wrk/post-hot-keyed-prefix.lua "$PROCESS_CONNECTIONS" "" hot
          BEFORE_RPS=$R_RPS BEFORE_WRITES_K=$R_WRITES_K
          COMPARE_ROWS+=("| before ($BASELINE_REV) | $(figures_cells) |")
        fi
      fi
    done
  done
fi

# --- 3. Throttled ------------------------------------------------------------------------------

THROTTLED_ROWS=()
if wants throttled; then
  echo "running: keyless, dynalite through the throttle proxy ($THROTTLE_BUDGET/s), 3 × $PROCESS_CONNECTIONS" >&2
  measure 3 "$AFTER" "http://127.0.0.1:$DYNALITE_THROTTLE_PORT" bench-throttled-keyless \
    bench/wrk/post-hot.lua "$PROCESS_CONNECTIONS" "$DYNALITE_THROTTLE_PORT" hot
  THROTTLED_ROWS+=("| keyless, dynalite | $THROTTLE_BUDGET | 3 × $PROCESS_CONNECTIONS | $(figures_cells) | $R_REFUSED |")
  echo "running: keyed, moto through the throttle proxy ($KEYED_THROTTLE_BUDGET/s), 3 × $PROCESS_CONNECTIONS" >&2
  measure 3 "$AFTER" "http://127.0.0.1:$MOTO_THROTTLE_PORT" bench-throttled-keyed \
    bench/wrk/post-hot-keyed-prefix.lua "$PROCESS_CONNECTIONS" "$MOTO_THROTTLE_PORT" hot
  THROTTLED_ROWS+=("| keyed, moto | $KEYED_THROTTLE_BUDGET | 3 × $PROCESS_CONNECTIONS | $(figures_cells) | $R_REFUSED |")
fi

# --- 5. Latency: do keyed batches grow with it? -------------------------------------------------

LATENCY_ROWS=()
if wants latency; then
  for rtt in $LATENCIES; do
    port=$(free_port)
    start_latency_proxy "$port" "$MOTO_PORT" "$rtt"
    echo "running: keyed, moto through +$rtt ms RTT, hot, 2 × $PROCESS_CONNECTIONS" >&2
    measure 2 "$AFTER" "http://127.0.0.1:$port" "bench-latency-$rtt" \
      bench/wrk/post-hot-keyed-prefix.lua "$PROCESS_CONNECTIONS" "" hot
    LATENCY_ROWS+=("| +$rtt ms | 2 × $PROCESS_CONNECTIONS | $R_RPS | $R_P50 | $R_P99 | $(errors_cell) | $R_WRITES_K | $(keys_per_transaction) |")
  done
fi

# --- 6. Lost answers ---------------------------------------------------------------------------

FAULT_ROWS=()
if wants faults; then
  start_throttle_proxy "$MOTO_PORT" 1000000 --honour-tokens --fault-operations TransactWriteItems \
    --faults "drop=$FAULT_DROP,late=$FAULT_LATE" --late-ms "$FAULT_LATE_MS" --seed 1
  FAULT_PORT=$THROTTLE_PORT
  echo "running: keyed, moto through the fault proxy (drop $FAULT_DROP, late $FAULT_LATE), 2 × $PROCESS_CONNECTIONS" >&2
  SERVICE_ATTEMPT_TIMEOUT=$FAULT_ATTEMPT_TIMEOUT measure 2 "$AFTER" "http://127.0.0.1:$FAULT_PORT" \
    bench-faults bench/wrk/post-hot-keyed-prefix.lua "$PROCESS_CONNECTIONS" "$FAULT_PORT" hot
  read -r dropped late replayed in_progress <<<"$(curl -fsS "http://127.0.0.1:$FAULT_PORT/__proxy/stats" | python3 -c '
import json, sys
s = json.load(sys.stdin)
print(s["faults"]["drop"], s["faults"]["late"], s["tokens"]["replayed"], s["tokens"]["in_progress"])')"
  share=$(awk -v ok="$R_POSTS" -v bad="$R_BAD" -v sock="$R_SOCK" \
    'BEGIN { n = ok + bad + sock; if (n > 0) printf "%.2f%%", 100 * ok / n; else print "n/a" }')
  posts_per_second=$(awk -v p="$R_POSTS" -v s="$R_SECONDS" 'BEGIN { printf "%.0f", p / s }')
  FAULT_ROWS+=("| drop $FAULT_DROP, late $FAULT_LATE (${FAULT_LATE_MS} ms) | 2 × $PROCESS_CONNECTIONS | $posts_per_second | $share | $R_P99 | $R_WRITES_K | $(keys_per_transaction) | $dropped / $late | $replayed / $in_progress |")
fi

# --- Report ------------------------------------------------------------------------------------

ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f", a / b; else print "n/a" }'
}
ratio2() {
  awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'
}

echo
echo "flight-counter $AFTER_REV; dynalite $(node -p 'require("./.tools/node_modules/dynalite/package.json").version')," \
  "moto $(.tools/venv/bin/python -c 'import moto; print(moto.__version__)') (single-threaded," \
  "scripts/moto-server.py) on loopback; wrk -t1 -d$DURATION --timeout $WRK_TIMEOUT per process;" \
  "service --worker-threads $WORKERS --dynamodb-attempt-timeout $ATTEMPT_TIMEOUT;" \
  "$(nproc) cores, load average $LOAD_AVERAGE at the start; loads took $((SECONDS - STARTED)) s"
if ((${#KEYLESS_ROWS[@]})); then
  echo
  echo "Keyless POSTs, dynalite"
  echo
  echo "| path to dynalite | processes × clients | routes | group commit | $FIGURES_HEAD |"
  echo "|---|---|---|---|$FIGURES_ALIGN|"
  printf '%s\n' "${KEYLESS_ROWS[@]}"
fi
if ((${#KEYED_ROWS[@]})); then
  echo
  echo "Keyed POSTs (a new Idempotency-Key each), moto, one hot route"
  echo
  echo "| path to moto | processes × clients | $FIGURES_HEAD |"
  echo "|---|---|$FIGURES_ALIGN|"
  printf '%s\n' "${KEYED_ROWS[@]}"
fi
if ((${#THROTTLED_ROWS[@]})); then
  echo
  echo "Throttled: one hot route through scripts/dynamodb-throttle-proxy.py (budget in write units per second on one item)"
  echo
  echo "| load | budget | processes × clients | $FIGURES_HEAD | requests the proxy refused |"
  echo "|---|---:|---|$FIGURES_ALIGN|---:|"
  printf '%s\n' "${THROTTLED_ROWS[@]}"
fi
if ((${#LATENCY_ROWS[@]})); then
  echo
  echo "Keyed POSTs, moto, one hot route, through bench/latency-proxy (added round trip; target: at most 74 write requests per 1,000 keyed POSTs)"
  echo
  echo "| added RTT | processes × clients | POST req/s | p50 ms | p99 ms | non-2xx | write requests per 1,000 POSTs | keys per TransactWriteItems |"
  echo "|---:|---|---:|---:|---:|---:|---:|---:|"
  printf '%s\n' "${LATENCY_ROWS[@]}"
fi
if ((${#FAULT_ROWS[@]})); then
  echo
  echo "Keyed POSTs, moto, one hot route, through scripts/dynamodb-throttle-proxy.py --honour-tokens losing transactions' answers (service --dynamodb-attempt-timeout $FAULT_ATTEMPT_TIMEOUT; target: at most 74 write requests per 1,000 keyed POSTs)"
  echo
  echo "| answers lost | processes × clients | POSTs/s answered 200 | share 200 | p99 ms | write requests per 1,000 POSTs | keys per TransactWriteItems | dropped / late | token replays / in progress |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
  printf '%s\n' "${FAULT_ROWS[@]}"
fi
if [[ -n $BASELINE_REV ]] && wants keyless && wants keyed; then
  echo
  echo "Before and after: keyless POSTs, dynalite direct, 1 process × $CONNECTIONS clients, group commit on"
  echo
  echo "| routes | build | $FIGURES_HEAD |"
  echo "|---|---|$FIGURES_ALIGN|"
  printf '%s\n' "${KEYLESS_COMPARE_ROWS[@]}"
  echo
  echo "- keyless hot-route throughput, after/before: $(ratio2 "${KEYLESS_AFTER_RPS[hot]}" "${KEYLESS_BEFORE_RPS[hot]}") (target >= 0.90)"
  echo "- keyless many-route throughput, after/before: $(ratio2 "${KEYLESS_AFTER_RPS[many]}" "${KEYLESS_BEFORE_RPS[many]}") (target >= 0.90)"
  echo
  echo "Before and after: keyed POSTs, moto direct, 2 processes × $PROCESS_CONNECTIONS clients, one hot route"
  echo
  echo "| build | $FIGURES_HEAD |"
  echo "|---|$FIGURES_ALIGN|"
  printf '%s\n' "${COMPARE_ROWS[@]}"
  echo
  echo "- keyed hot-route throughput, 2 processes, after/before: $(ratio "$AFTER_RPS" "$BEFORE_RPS") (target >= 10)"
  echo "- keyed write requests per 1,000 POSTs, before/after: $(ratio "$BEFORE_WRITES_K" "$AFTER_WRITES_K") (target >= 20)"
fi
echo
echo "POST req/s: summed over the wrk instances, one per process, all answers counted. p50: the"
echo "median of the instances' p50s; p99: the worst instance's p99 (wrk's histograms cannot be"
echo "merged). non-2xx: wrk's count, summed. Write requests: UpdateItem, TransactWriteItems and"
echo "PutItem attempts of all processes, retries and refused ones included, from their"
echo "flight_counter_dynamodb_calls_total; per 1,000 POSTs answered 200 (their"
echo "flight_counter_http_requests_total). Throttled write attempts: the same metric's"
echo "outcome=\"throttled\". Hot item writes/s: through the throttle proxy, the write units it"
echo "accepted on the hot route's item per second (a TransactWriteItems entry costs 2 units, as in"
echo "DynamoDB) and the most in any one-second window; elsewhere, all write requests of the run over"
echo "its duration: with one hot route every write request writes the route's item (key records"
echo "ride in the same transactions), so that is the item's write rate."
