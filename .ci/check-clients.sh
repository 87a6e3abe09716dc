#!/usr/bin/env bash
# Checks flight-counter with real clients, on loopback only:
#   - swagger-ui: a headless Chromium (Debian's chromium, driven by playwright-core) uses the
#     Swagger UI at / with API keys on: a GET without a key shows the 401, then "Authorize"
#     with a write key, POST and GET a route, and read the counts the page renders;
#   - dashboard: the page at /dashboard in the same Chromium, on a known data set (a history
#     imported with `flight-counter import`, then today's POSTs): the key form, a refused key, a
#     read key, and every number of its tables (top routes today and this month, a route's days
#     and months, routes compared) equal to the API's answers; errors shown, keyboard use,
#     accessible names, live refresh, nothing blocked by its Content Security Policy; then
#     without API keys, no key asked (.ci/clients/dashboard.mjs);
#   - openapi-spec: the served /openapi.json is a valid OpenAPI 3 document
#     (openapi-spec-validator) and passes a small Spectral ruleset (.ci/clients/spectral.yaml);
#   - schemathesis: every documented operation fuzzed with all checks, with valid and with
#     schema-breaking inputs, bounded in examples and time, in each authentication mode: API
#     keys (with a write key), authentication off, and --public-reads (with no key);
#   - generated clients: Python (openapi-python-client, mypy --strict) and TypeScript
#     (openapi-typescript + openapi-fetch, tsc --strict, node) clients generated from the
#     served document each run a scenario (.ci/clients/generated/run.sh);
#   - cors: a page on another origin, in Chromium, reads and records through
#     --cors-allow-origin, and a page on an unlisted origin is blocked (.ci/clients/cors.mjs);
#   - promtool / prometheus: `promtool check metrics` accepts /metrics, and a real Prometheus
#     scrapes the service and answers a PromQL query on the request counter;
#   - monitoring: the generated rules, PrometheusRule, promtool tests and Grafana dashboard match
#     their sources (monitoring/generate.py --check); `promtool check rules` accepts both rules
#     files and `promtool test rules` passes (each alert fires on a series that breaks it and
#     stays silent on a healthy one); then real traffic (keyless, keyed, errors, throttling, a
#     store outage) through the service on the DynamoDB store (the throttling
#     proxy in front of moto), and every recording rule, alert signal and dashboard query returns a result from
#     a real Prometheus that scrapes it and evaluates the rules (.ci/clients/monitoring.py);
#   - crash-safety: keyed POSTs under load while the embedded-store service is killed
#     (SIGKILL rounds, then SIGTERM); no acknowledged transaction or key is lost; and again with
#     checkpoints back to back (--embedded-checkpoint-interval 1ms), so that kills land in the
#     middle of them;
#   - hostile: hostile paths, headers and slow connections, forged, overlong and non-ASCII
#     Authorization headers; no crash, no unexpected 5xx, every error in the JSON shape, every
#     bad key a 401, slow clients cut off with a 408, bounded memory;
#   - hostile-limits: against the pod's memory limit and connection slots, each on a fresh
#     service: an HTTP/2 stream flood (refused with GOAWAY, peak RSS under 96 MiB), 2,000
#     connections of endless or held header sections (peak RSS under 200 MiB), CRLF-only
#     keep-alives (closed within 5 s), and /metrics only on --metrics-bind
#     (.ci/clients/hostile_limits.py).
# The service runs with an API keys file made by its own `api-key` subcommand, except for the
# metrics checks (which count anonymous requests).
#
#   bash .ci/check-clients.sh
#
# Installs its tools idempotently: chromium and prometheus from Debian (apt), playwright-core
# and Spectral from npm into .tools/clients/, schemathesis and openapi-spec-validator from PyPI
# into a virtualenv (FLIGHT_COUNTER_CLIENTS_VENV, default ${TMPDIR:-/tmp}/flight-counter-clients-venv).
# Uses the release binary (built here if needed). Screenshots go to ci-artifacts/.
# Prints PASS/FAIL per check and exits non-zero if any check fails.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$PWD"
CLIENTS="$REPO/.ci/clients"
TOOLS="$REPO/.tools/clients"
ARTIFACTS="$REPO/ci-artifacts"
VENV="${FLIGHT_COUNTER_CLIENTS_VENV:-${TMPDIR:-/tmp}/flight-counter-clients-venv}"
BIN="$REPO/target/release/flight-counter"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/flight-counter-clients.XXXXXX")"
SERVICE_PID=""
PROM_PID=""
MON_PIDS=()
cleanup() {
  if [[ -n $SERVICE_PID ]]; then kill -KILL "$SERVICE_PID" 2>/dev/null || true; fi
  if [[ -n $PROM_PID ]]; then kill -KILL "$PROM_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

started=$SECONDS
passed=0
failed=0
failed_names=()

log() { printf '%s\n' "$*"; }

# run NAME COMMAND...: run one check, print PASS/FAIL, show its output (tail on failure).
run() {
  local name="$1"; shift
  local out="$WORK/${name//[^A-Za-z0-9_.-]/_}.log"
  local t0=$SECONDS
  # In the background so that `set -e` holds inside the check (an `if` would suspend it).
  ("$@") >"$out" 2>&1 &
  if wait "$!"; then
    passed=$((passed + 1))
    log "PASS  $name ($((SECONDS - t0))s)"
    grep -v '^ts=' "$out" | sed -e 's/^/      | /' | tail -n 8
  else
    failed=$((failed + 1))
    failed_names+=("$name")
    log "FAIL  $name ($((SECONDS - t0))s)"
    sed -e 's/^/      | /' "$out" | tail -n 60
  fi
}

# ---------------------------------------------------------------------------
# Tools

as_root() {
  if [[ "$(id -u)" == 0 ]]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi
}

apt_updated=0
apt_install() { # apt_install PACKAGE...: install the Debian packages not yet installed
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  ((${#missing[@]})) || return 0
  if ((apt_updated == 0)); then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

setup() {
  local pkgs=(chromium)
  command -v node >/dev/null || pkgs+=(nodejs)
  command -v npm >/dev/null || pkgs+=(npm)
  command -v curl >/dev/null || pkgs+=(curl)
  python3 -c 'import ensurepip' 2>/dev/null || pkgs+=(python3-venv)
  apt_install "${pkgs[@]}"
  if ! command -v promtool >/dev/null; then
    # The Debian package would start a system-wide server on all interfaces; this script
    # runs its own on loopback, so no service is started while it installs.
    local policy=/usr/sbin/policy-rc.d placed=0
    if [[ ! -e $policy ]]; then
      printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
      as_root chmod +x "$policy"
      placed=1
    fi
    apt_install prometheus
    ((placed)) && as_root rm -f "$policy"
  fi

  local npm_want; npm_want="$(cat "$CLIENTS/package.json" "$CLIENTS/package-lock.json" | sha256sum | cut -d' ' -f1)"
  if [[ "$(cat "$TOOLS/.stamp" 2>/dev/null)" != "$npm_want" || ! -d $TOOLS/node_modules/playwright-core ]]; then
    mkdir -p "$TOOLS"
    # Keep the tools out of git, as scripts/install-emulators.sh does.
    [[ -f $REPO/.tools/.gitignore ]] || printf '*\n' >"$REPO/.tools/.gitignore"
    cp "$CLIENTS/package.json" "$CLIENTS/package-lock.json" "$TOOLS/"
    # Playwright's own browser download is not used: the system chromium is.
    (cd "$TOOLS" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
    echo "$npm_want" >"$TOOLS/.stamp"
  fi

  local py_want; py_want="$(sha256sum <"$CLIENTS/requirements.txt" | cut -d' ' -f1) $(python3 -c 'import sys; print(sys.version.split()[0])')"
  if [[ ! -x "$VENV/bin/python" || "$(cat "$VENV/.stamp" 2>/dev/null)" != "$py_want" ]]; then
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$CLIENTS/requirements.txt"
    echo "$py_want" >"$VENV/.stamp"
  fi

  # moto (and dynalite) for the monitoring check's DynamoDB store; quick when already there.
  scripts/install-emulators.sh

  if [[ ! -x $BIN || -n "${CI:-}" ]]; then
    cargo build --release --locked -p flight-counter
  fi
}

# ---------------------------------------------------------------------------
# The service

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_service ARGS...: start the release binary on a free loopback port; sets PORT, BASE,
# SERVICE_PID; waits for /readyz.
start_service() {
  PORT="$(free_port)"
  BASE="http://127.0.0.1:$PORT"
  "$BIN" --bind "127.0.0.1:$PORT" --log-level warn "$@" >>"$WORK/service.log" 2>&1 &
  SERVICE_PID=$!
  for _ in $(seq 1 200); do
    curl -fsS -o /dev/null "$BASE/readyz" 2>/dev/null && return 0
    kill -0 "$SERVICE_PID" 2>/dev/null || { echo "service exited at start"; tail "$WORK/service.log"; return 1; }
    sleep 0.05
  done
  echo "service not ready after 10s"; return 1
}

stop_service() {
  if [[ -n $SERVICE_PID ]]; then
    kill -TERM "$SERVICE_PID" 2>/dev/null || true
    wait "$SERVICE_PID" 2>/dev/null || true
    SERVICE_PID=""
  fi
}

# ---------------------------------------------------------------------------
# Checks

check_swagger_ui() {
  mkdir -p "$ARTIFACTS"
  CLIENTS_NODE_MODULES="$TOOLS/node_modules" timeout 120 node "$CLIENTS/swagger-ui.mjs" "$BASE" "ua2024" "$ARTIFACTS" "$WRITE_KEY"
}

check_dashboard() {
  # Runs in run's subshell: it stops the services it started itself.
  trap stop_service EXIT
  mkdir -p "$ARTIFACTS"
  local data="$WORK/dashboard-data"
  node "$CLIENTS/dashboard.mjs" history >"$WORK/dashboard-history.jsonl"
  "$BIN" import --input "$WORK/dashboard-history.jsonl" --data-dir "$data"
  start_service --store embedded --data-dir "$data" --api-keys-file "$KEYS_FILE"
  CLIENTS_NODE_MODULES="$TOOLS/node_modules" timeout 240 node "$CLIENTS/dashboard.mjs" keys "$BASE" \
    "$ARTIFACTS" "$READ_KEY" "$WRITE_KEY"
  stop_service
  start_service --store embedded --data-dir "$data"
  CLIENTS_NODE_MODULES="$TOOLS/node_modules" timeout 180 node "$CLIENTS/dashboard.mjs" open "$BASE" "$ARTIFACTS"
}

check_openapi_spec() {
  "$VENV/bin/python" "$CLIENTS/spec.py" "$BASE" "$WORK/openapi.json"
  "$TOOLS/node_modules/.bin/spectral" lint --quiet --fail-severity warn \
    --ruleset "$CLIENTS/spectral.yaml" "$WORK/openapi.json"
  echo "spectral: no warnings or errors (ruleset .ci/clients/spectral.yaml)"
}

# schemathesis_run [ARGS...]: every check, on valid inputs and on inputs that break the schema
# (negative mode), a bounded number of examples per operation, bounded in time as a whole.
# Allowances, each with its reason, in .ci/clients/schemathesis.toml.
schemathesis_run() {
  (cd "$WORK" && timeout 600 "$VENV/bin/st" --no-color --config-file "$CLIENTS/schemathesis.toml" \
    run "$BASE/openapi.json" "$@" --checks all --mode all --max-examples 200 --seed 20261121 \
    --request-timeout 10)
}

check_schemathesis() { schemathesis_run -H "Authorization: Bearer $WRITE_KEY"; }
check_schemathesis_open() { schemathesis_run; }
# Reads need no key, writes do: without a key, schemathesis sees the writes' 401s, which the
# document promises for them.
check_schemathesis_public_reads() { schemathesis_run; }

check_generated_clients() {
  timeout 600 bash "$CLIENTS/generated/run.sh" "$BIN" "$WORK/generated" "$TOOLS"
}

check_cors() {
  CLIENTS_NODE_MODULES="$TOOLS/node_modules" timeout 120 node "$CLIENTS/cors.mjs" "$BASE" \
    "$CORS_PAGE_PORT" "$(free_port)" "$WRITE_KEY"
}

check_promtool() {
  curl -fsS "$BASE/metrics" -o "$WORK/metrics.txt"
  local rc=0
  promtool check metrics <"$WORK/metrics.txt" >"$WORK/promtool.txt" 2>&1 || rc=$?
  # promtool's linter flags any counter whose name contains "_counter_", which every metric
  # here does through its "flight_counter_" prefix; that one message is not a problem.
  # Anything else it says (a parse error, another lint problem) fails the check.
  local others
  others="$(grep -v "^flight_counter_[a-z_]* metric name should not include type 'counter'$" "$WORK/promtool.txt" || true)"
  if [[ -n $others ]] || { ((rc != 0)) && [[ ! -s $WORK/promtool.txt ]]; }; then
    echo "promtool exit $rc:"; cat "$WORK/promtool.txt"; return 1
  fi
  echo "promtool: $(grep -c '^# TYPE' "$WORK/metrics.txt") metric families accepted" \
    "($(wc -l <"$WORK/promtool.txt") prefix-name notes ignored)"
}

check_prometheus() {
  local pport; pport="$(free_port)"
  mkdir -p "$WORK/prom-data"
  cat >"$WORK/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: flight-counter
    static_configs:
      - targets: ["127.0.0.1:$PORT"]
YAML
  promtool check config "$WORK/prometheus.yml"
  prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/prom-data" \
    --web.listen-address="127.0.0.1:$pport" >"$WORK/prometheus.log" 2>&1 &
  PROM_PID=$!
  local rc=0
  echo "prometheus on 127.0.0.1:$pport scraping 127.0.0.1:$PORT every 1s"
  "$VENV/bin/python" "$CLIENTS/prom.py" "$BASE" "http://127.0.0.1:$pport" || rc=$?
  kill -TERM "$PROM_PID" 2>/dev/null || true
  wait "$PROM_PID" 2>/dev/null || true
  PROM_PID=""
  ((rc == 0)) || tail -n 20 "$WORK/prometheus.log"
  return "$rc"
}

stop_monitoring() {
  local pid
  for pid in "${MON_PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}

check_monitoring() {
  # Runs in run's subshell: it stops what it started itself.
  trap stop_monitoring EXIT
  "$VENV/bin/python" monitoring/generate.py --check
  promtool check rules monitoring/prometheus/flight-counter.rules.yml
  # The PrometheusRule's groups, as a plain rules file, through promtool too.
  "$VENV/bin/python" -c 'import sys, yaml; d = yaml.safe_load(open(sys.argv[1])); yaml.safe_dump({"groups": d["spec"]["groups"]}, open(sys.argv[2], "w"))' \
    kubernetes/components/monitoring/prometheusrule.yaml "$WORK/prometheusrule-groups.yml"
  promtool check rules "$WORK/prometheusrule-groups.yml"
  (cd monitoring/prometheus && promtool test rules flight-counter.rules.test.yml flight-counter.rules.slow-test.yml)

  # The service on the DynamoDB store: moto (which has transactions, for keyed POSTs) behind
  # the proxy that throttles hot items as DynamoDB does.
  local dport pport sport proxy_out
  dport="$(free_port)"
  .tools/venv/bin/python scripts/moto-server.py --host 127.0.0.1 --port "$dport" --quiet >"$WORK/moto.log" 2>&1 &
  local dynamo=$!
  MON_PIDS+=("$dynamo")
  for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$dport") 2>/dev/null && break; sleep 0.1; done
  proxy_out="$WORK/proxy.out"
  python3 scripts/dynamodb-throttle-proxy.py --listen 127.0.0.1:0 --upstream "127.0.0.1:$dport" \
    --writes-per-second 20 >"$proxy_out" 2>&1 &
  MON_PIDS+=("$!")
  for _ in $(seq 1 100); do grep -q '^listening on' "$proxy_out" && break; sleep 0.1; done
  local proxy; proxy="$(sed -n 's/^listening on //p' "$proxy_out")"
  sport="$(free_port)"
  AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_EC2_METADATA_DISABLED=true \
    "$BIN" --bind "127.0.0.1:$sport" --log-level warn --store dynamodb --create-table \
    --endpoint-url "http://$proxy" --api-keys-file "$KEYS_FILE" \
    --request-timeout 2s --commit-timeout 1s >"$WORK/monitoring-service.log" 2>&1 &
  MON_PIDS+=("$!")
  for _ in $(seq 1 200); do curl -fsS -o /dev/null "http://127.0.0.1:$sport/readyz" 2>/dev/null && break; sleep 0.1; done

  pport="$(free_port)"
  mkdir -p "$WORK/mon-prom-data"
  # The target labels namespace and pod are those the PodMonitor (or the kubernetes-pods job of
  # a plain Prometheus) gives the series in a cluster.
  cat >"$WORK/mon-prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $REPO/monitoring/prometheus/flight-counter.rules.yml
scrape_configs:
  - job_name: flight-counter
    static_configs:
      - targets: ["127.0.0.1:$sport"]
        labels:
          namespace: flight-counter
          pod: flight-counter-ci-0
YAML
  promtool check config "$WORK/mon-prometheus.yml"
  prometheus --config.file="$WORK/mon-prometheus.yml" --storage.tsdb.path="$WORK/mon-prom-data" \
    --web.listen-address="127.0.0.1:$pport" >"$WORK/mon-prometheus.log" 2>&1 &
  MON_PIDS+=("$!")
  local rc=0
  timeout 400 "$VENV/bin/python" "$CLIENTS/monitoring.py" "http://127.0.0.1:$sport" "http://127.0.0.1:$pport" \
    "$dynamo" "$WRITE_KEY" || rc=$?
  if ((rc != 0)); then
    tail -n 20 "$WORK/monitoring-service.log" "$WORK/mon-prometheus.log"
  fi
  return "$rc"
}

check_crash() {
  mkdir -p "$WORK/crash-data"
  timeout 300 "$VENV/bin/python" "$CLIENTS/crash.py" "$BIN" "$WORK/crash-data" 3
}

check_crash_in_checkpoints() {
  mkdir -p "$WORK/crash-checkpoint-data"
  timeout 300 "$VENV/bin/python" "$CLIENTS/crash.py" "$BIN" "$WORK/crash-checkpoint-data" 5 \
    --embedded-checkpoint-interval 1ms
}

check_hostile_limits() {
  timeout 300 "$VENV/bin/python" "$CLIENTS/hostile_limits.py" "$BIN" "$WORK/hostile-limits"
}

check_hostile() {
  timeout 300 "$VENV/bin/python" "$CLIENTS/hostile.py" 127.0.0.1 "$PORT" "$SERVICE_PID" 256 3 "$WRITE_KEY"
}

# ---------------------------------------------------------------------------

if ! setup >"$WORK/setup.log" 2>&1; then
  log "FAIL  setup"; sed -e 's/^/      | /' "$WORK/setup.log" | tail -n 60; exit 1
fi
log "PASS  setup ($((SECONDS - started))s)"

# API keys made the way an operator makes them: the key on stdout, the file's line on stderr.
KEYS_FILE="$WORK/api-keys"
WRITE_KEY="$("$BIN" api-key --client ci-writer --scope write 2>>"$KEYS_FILE")"
READ_KEY="$("$BIN" api-key --client ci-reader --scope read 2>>"$KEYS_FILE")"

start_service --store memory --api-keys-file "$KEYS_FILE"
run swagger-ui check_swagger_ui
run openapi-spec check_openapi_spec
stop_service

run dashboard check_dashboard

start_service --store memory --api-keys-file "$KEYS_FILE"
run schemathesis check_schemathesis
stop_service

start_service --store memory
run schemathesis-auth-off check_schemathesis_open
stop_service

start_service --store memory --api-keys-file "$KEYS_FILE" --public-reads
run schemathesis-public-reads check_schemathesis_public_reads
stop_service

run generated-clients check_generated_clients

CORS_PAGE_PORT="$(free_port)"
start_service --store memory --api-keys-file "$KEYS_FILE" --cors-allow-origin "http://127.0.0.1:$CORS_PAGE_PORT"
run cors check_cors
stop_service

start_service --store memory
run promtool check_promtool
run prometheus check_prometheus
stop_service

run monitoring check_monitoring

run crash-safety check_crash
run crash-in-checkpoints check_crash_in_checkpoints

mkdir -p "$WORK/hostile-data"
# A short request timeout, so that the slow clients are cut off within the check.
start_service --store embedded --data-dir "$WORK/hostile-data" --request-timeout 3s --commit-timeout 2s \
  --api-keys-file "$KEYS_FILE"
run hostile check_hostile
stop_service

run hostile-limits check_hostile_limits

log ""
log "real clients: $passed passed, $failed failed ($((SECONDS - started))s)"
if ((failed)); then
  log "failed: ${failed_names[*]}"
  exit 1
fi
