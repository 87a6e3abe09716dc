#!/usr/bin/env bash
# Clients generated from the served OpenAPI document, each running one scenario against the
# release binary on loopback:
#   - Python: openapi-python-client, the client and the scenario type-checked with
#     `mypy --strict`, against the document of a service with API keys (scenario_keys.py) and
#     of one without (scenario_open.py);
#   - TypeScript: openapi-typescript and openapi-fetch, `tsc --strict`, run with node
#     (scenario.mts), against the service with API keys.
# Generator versions are pinned (python/requirements.txt, typescript/package-lock.json).
#
#   bash .ci/clients/generated/run.sh <release-binary> <work-dir> <tools-dir>
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN="$1"
WORK="$2"
TOOLS="$3"
VENV="$TOOLS/generated-venv"
NODE_TOOLS="$TOOLS/generated-node"
mkdir -p "$WORK" "$TOOLS"

PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

# Tools, reinstalled only when their pins change.
py_want="$(sha256sum <"$HERE/python/requirements.txt" | cut -d' ' -f1) $(python3 -c 'import sys; print(sys.version.split()[0])')"
if [[ ! -x "$VENV/bin/python" || "$(cat "$VENV/.stamp" 2>/dev/null)" != "$py_want" ]]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$HERE/python/requirements.txt"
  echo "$py_want" >"$VENV/.stamp"
fi
npm_want="$(cat "$HERE/typescript/package.json" "$HERE/typescript/package-lock.json" | sha256sum | cut -d' ' -f1)"
if [[ "$(cat "$NODE_TOOLS/.stamp" 2>/dev/null)" != "$npm_want" || ! -d $NODE_TOOLS/node_modules/openapi-fetch ]]; then
  rm -rf "$NODE_TOOLS"
  mkdir -p "$NODE_TOOLS"
  cp "$HERE/typescript/package.json" "$HERE/typescript/package-lock.json" "$NODE_TOOLS/"
  (cd "$NODE_TOOLS" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$npm_want" >"$NODE_TOOLS/.stamp"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# serve NAME ARGS...: starts the release binary on a free port; sets BASE.
serve() {
  local name="$1"; shift
  local port; port="$(free_port)"
  BASE="http://127.0.0.1:$port"
  "$BIN" --bind "127.0.0.1:$port" --store memory --log-level warn "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=("$!")
  for _ in $(seq 1 200); do
    curl -fsS -o /dev/null "$BASE/readyz" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "$name: the service was not ready"; cat "$WORK/$name.log"; return 1
}

# python_client NAME: generates the Python client from $BASE's document into $WORK/NAME and
# type-checks it with the scenarios.
python_client() {
  local dir="$WORK/$1"
  rm -rf "$dir"; mkdir -p "$dir"
  curl -fsS "$BASE/openapi.json" -o "$dir/openapi.json"
  # A warning means part of the document was not understood: that fails the check.
  "$VENV/bin/openapi-python-client" generate --path "$dir/openapi.json" \
    --config "$HERE/python/config.yaml" --meta none --output-path "$dir/flight_counter_client" \
    --fail-on-warning
  cp "$HERE/python/common.py" "$HERE/python/scenario_keys.py" "$HERE/python/scenario_open.py" "$dir/"
}

KEYS="$WORK/api-keys"
: >"$KEYS"
WRITE_KEY="$("$BIN" api-key --client generated-writer --scope write 2>>"$KEYS")"
READ_KEY="$("$BIN" api-key --client generated-reader --scope read 2>>"$KEYS")"

echo "== Python client, service with API keys"
serve keys --api-keys-file "$KEYS"
python_client python-keys
(cd "$WORK/python-keys" && "$VENV/bin/mypy" --strict --no-incremental common.py scenario_keys.py flight_counter_client)
(cd "$WORK/python-keys" && "$VENV/bin/python" scenario_keys.py "$BASE" "$WRITE_KEY" "$READ_KEY")

echo "== TypeScript client, service with API keys"
ts="$WORK/typescript"
rm -rf "$ts"; mkdir -p "$ts"
curl -fsS "$BASE/openapi.json" -o "$ts/openapi.json"
cp "$HERE/typescript/scenario.mts" "$HERE/typescript/tsconfig.json" "$ts/"
ln -s "$NODE_TOOLS/node_modules" "$ts/node_modules"
(cd "$ts" && node_modules/.bin/openapi-typescript openapi.json -o schema.d.ts && node_modules/.bin/tsc -p tsconfig.json)
(cd "$ts" && node dist/scenario.mjs "$BASE" "$WRITE_KEY" "$READ_KEY")

echo "== Python client, service without API keys"
serve open
python_client python-open
(cd "$WORK/python-open" && "$VENV/bin/mypy" --strict --no-incremental common.py scenario_open.py flight_counter_client)
(cd "$WORK/python-open" && "$VENV/bin/python" scenario_open.py "$BASE")
echo "generated clients: every scenario passed"
