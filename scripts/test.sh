#!/usr/bin/env bash
# Runs the whole test suite: unit, property and black-box API tests on every store, the
# DynamoDB store against two DynamoDB-compatible servers (dynalite and moto), which this
# installs into .tools/ first (quick when already there).
# Usage: scripts/test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-emulators.sh

# The service under test reaches the local servers with a region and dummy credentials, and
# never asks an instance metadata endpoint for any.
export AWS_EC2_METADATA_DISABLED=true

# The throttling proxy the DynamoDB scale tests run behind checks itself first.
python3 -m unittest scripts/test_dynamodb_throttle_proxy.py

cargo test --workspace --locked "$@"
