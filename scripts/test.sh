#!/usr/bin/env bash
# Runs the whole test suite: unit, property and black-box API tests on every store, the
# DynamoDB store against two DynamoDB-compatible servers (dynalite and moto), which this
# installs into .tools/ while the tests build (quick when already there).
# Usage: scripts/test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

# The service under test reaches the local servers with a region and dummy credentials, and
# never asks an instance metadata endpoint for any.
export AWS_EC2_METADATA_DISABLED=true

# While the tests build (CPU), the emulators are installed (network) and the throttling proxy
# the DynamoDB scale tests run behind checks itself (mostly waiting out its windows).
(scripts/install-emulators.sh && python3 -m unittest scripts/test_dynamodb_throttle_proxy.py) &
preparing=$!
cargo test --workspace --locked --no-run
wait "$preparing"

if (($#)); then
  # A chosen subset, as asked.
  cargo test --workspace --locked "$@"
else
  # The DynamoDB scale and fault tests measure exactness and batching under load on this
  # machine's cores: they run last, one at a time, with no other test taking their CPU
  # (alongside the rest, a loaded two-core machine stretched slow transactions past the commit
  # timeout), and none of them waits for its turn in a slot another test could use.
  cargo test --workspace --locked -- --skip dynamodb_faults:: --skip dynamodb_scale::
  cargo test --locked --test api -- dynamodb_scale:: dynamodb_faults:: --test-threads 1
fi
