#!/usr/bin/env bash
# Installs the DynamoDB-compatible servers the tests and benchmarks run against, into .tools/
# (ignored by git): dynalite from npm and moto[server] from PyPI in a virtualenv. Idempotent and
# quick when everything is already there. Needs node/npm and python3 (with venv) on PATH.
# Usage: scripts/install-emulators.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DYNALITE_VERSION=4.0.0
MOTO_VERSION=5.2.5
TOOLS=.tools

need() {
  command -v "$1" >/dev/null 2>&1 || {
    echo "install-emulators: $1 is required (e.g. apt-get install $2)" >&2
    exit 1
  }
}

mkdir -p "$TOOLS"
# Keep the whole directory out of git without touching the repository's .gitignore.
[[ -f $TOOLS/.gitignore ]] || printf '*\n' >"$TOOLS/.gitignore"

# dynalite: a Node.js DynamoDB server backed by LevelDB (in memory, or on disk with --path).
dynalite_installed() {
  [[ -f $TOOLS/node_modules/dynalite/package.json ]] &&
    grep -q "\"version\": \"$DYNALITE_VERSION\"" "$TOOLS/node_modules/dynalite/package.json"
}
if ! dynalite_installed; then
  need node nodejs
  need npm npm
  echo "install-emulators: installing dynalite $DYNALITE_VERSION into $TOOLS/" >&2
  [[ -f $TOOLS/package.json ]] || printf '{ "name": "flight-counter-tools", "private": true }\n' >"$TOOLS/package.json"
  npm install --prefix "$TOOLS" --no-audit --no-fund --loglevel=error --save-exact \
    "dynalite@$DYNALITE_VERSION" >&2
fi

# moto: the Python AWS mock, run as a single-threaded server by scripts/moto-server.py.
moto_installed() {
  [[ -x $TOOLS/venv/bin/python ]] &&
    "$TOOLS/venv/bin/python" -c "import moto, werkzeug; assert moto.__version__ == '$MOTO_VERSION'" 2>/dev/null
}
if ! moto_installed; then
  need python3 python3
  echo "install-emulators: installing moto[server] $MOTO_VERSION into $TOOLS/venv" >&2
  if [[ ! -x $TOOLS/venv/bin/python ]]; then
    python3 -m venv "$TOOLS/venv" || {
      echo "install-emulators: python3 -m venv failed (apt-get install python3-venv)" >&2
      exit 1
    }
  fi
  "$TOOLS/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "moto[server,dynamodb]==$MOTO_VERSION" >&2
fi

dynalite_installed || { echo "install-emulators: dynalite is still missing" >&2; exit 1; }
moto_installed || { echo "install-emulators: moto is still missing" >&2; exit 1; }
