#!/usr/bin/env bash
# Lints of the scripts around the service: ruff (lint and format, ruff.toml) on every Python
# file, shellcheck on every shell script.
#
#   bash .ci/check-lint.sh
#
# Installs ruff (pinned) from PyPI into a virtualenv outside the repository
# (FLIGHT_COUNTER_LINT_VENV, default ${TMPDIR:-/tmp}/flight-counter-lint-venv), and shellcheck
# from Debian (apt) when it is not on PATH. Exits non-zero if any check fails.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

RUFF_VERSION=0.17.6
VENV="${FLIGHT_COUNTER_LINT_VENV:-${TMPDIR:-/tmp}/flight-counter-lint-venv}"

# Files left out of both checks until the changes being made to them are formatted.
# Remove each entry once ruff and shellcheck pass on it.
PENDING=()

as_root() {
  if [[ "$(id -u)" == 0 ]]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi
}

pending() {
  local p
  for p in "${PENDING[@]}"; do [[ "$1" == "$p" ]] && return 0; done
  return 1
}

# ruff, pinned, in its own virtualenv.
if [[ "$("$VENV/bin/ruff" --version 2>/dev/null)" != "ruff $RUFF_VERSION" ]]; then
  rm -rf "$VENV"
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    # Debian's python3 ships venv separately.
    rm -rf "$VENV"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "ruff==$RUFF_VERSION"
fi

if ! command -v shellcheck >/dev/null; then
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends shellcheck >/dev/null
fi

# Every shell script: *.sh, and files without an extension that start with a sh or bash shebang.
shell_scripts=()
while IFS= read -r -d '' f; do
  f="${f#./}"
  pending "$f" && continue
  case "${f##*/}" in
    *.sh) shell_scripts+=("$f") ;;
    *.*) ;;
    *) if head -n 1 "$f" | grep -qE '^#!.*[/ ](ba)?sh( |$)'; then shell_scripts+=("$f"); fi ;;
  esac
done < <(find . \( -path ./.git -o -path ./.tools -o -path ./target -o -path ./ci-artifacts \
  -o -path ./node_modules \) -prune -o -type f -print0 | sort -z)

ruff_exclude=()
for p in "${PENDING[@]}"; do
  [[ "$p" == *.py ]] && ruff_exclude+=(--extend-exclude "$p")
done

status=0
check() {
  local name="$1"; shift
  if "$@"; then
    printf 'PASS  %s\n' "$name"
  else
    printf 'FAIL  %s\n' "$name"
    status=1
  fi
}

check "ruff check" "$VENV/bin/ruff" check --no-cache "${ruff_exclude[@]}" .
check "ruff format --check" "$VENV/bin/ruff" format --check --no-cache "${ruff_exclude[@]}" .
check "shellcheck (${#shell_scripts[@]} scripts: ${shell_scripts[*]})" shellcheck -x "${shell_scripts[@]}"
exit "$status"
