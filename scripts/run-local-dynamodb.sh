#!/usr/bin/env bash
# Runs the service on the dynamodb store against a local DynamoDB-compatible server (dynalite),
# for development: installs dynalite if needed, starts it on 127.0.0.1 (data kept in
# ./data/dynalite), creates the table, and serves on 127.0.0.1:8080 until Ctrl-C.
# Usage: scripts/run-local-dynamodb.sh [extra flight-counter flags, e.g. --bind 127.0.0.1:9000]
#        DYNALITE_PORT=4567 to change the server's port.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${DYNALITE_PORT:-4567}
scripts/install-emulators.sh
mkdir -p data/dynalite

node .tools/node_modules/dynalite/cli.js --host 127.0.0.1 --port "$PORT" --path data/dynalite &
DYNALITE=$!
trap 'kill "$DYNALITE" 2>/dev/null || true; wait "$DYNALITE" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done

# A local server still wants a region and some credentials; none of them are real.
export AWS_REGION=${AWS_REGION:-us-east-1}
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-local}
export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-local}
export AWS_EC2_METADATA_DISABLED=true

cargo run --release --locked -p flight-counter -- \
  --store dynamodb --create-table --endpoint-url "http://127.0.0.1:$PORT" "$@"
