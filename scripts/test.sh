#!/usr/bin/env bash
# Runs the whole test suite: unit, property and black-box API tests on every store.
# Usage: scripts/test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace --locked "$@"
