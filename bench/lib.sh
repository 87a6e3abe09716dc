# shellcheck shell=bash
# Shared by the benchmark scripts: tool installs, ports, readiness waits and wrk parsing.
# Source it from a script that has cd'ed to the repository root.

# Installs the Debian packages named, if their commands are missing ("command:package" pairs).
install_debian_tools() {
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
  done
  if ((${#missing[@]})); then
    echo "installing ${missing[*]}" >&2
    local sudo=""
    [[ $(id -u) -eq 0 ]] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits (bounded) until an HTTP URL answers 2xx.
wait_http() {
  local url=$1
  for _ in $(seq 1 300); do
    if curl -fsS -o /dev/null "$url" 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "not ready: $url" >&2
  return 1
}

# Waits (bounded) until something listens on a loopback port.
wait_port() {
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "nothing listens on $1" >&2
  return 1
}

# Runs wrk with the given arguments and prints "req/s p50 p99" (latencies in ms).
wrk_summary() {
  wrk "$@" | awk '
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
    END {
      if (bad > 0) { printf "non-2xx answers: %s\n", bad > "/dev/stderr" }
      printf "%.0f %.2f %.2f\n", rps, p50, p99
    }'
}
