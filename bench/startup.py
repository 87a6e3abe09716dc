"""Time from starting flight-counter to its first `200` on /readyz, in milliseconds.

Usage: python3 bench/startup.py BINARY DATA_DIR [ROUNDS]
Starts the binary ROUNDS times (default 5) on a free loopback port with an embedded store in a
fresh subdirectory of DATA_DIR, polls /readyz every millisecond (bounded to 10 s), stops it with
SIGTERM, and prints the median and the worst start-up time.
"""

import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ready(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=0.2)
        conn.request("GET", "/readyz")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


def one_start(binary: str, data_dir: str) -> float:
    port = free_port()
    started = time.monotonic()
    proc = subprocess.Popen(
        [binary, "--bind", f"127.0.0.1:{port}", "--store", "embedded", "--data-dir", data_dir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "RUST_LOG": "warn"},
    )
    try:
        while time.monotonic() - started < 10:
            if ready(port):
                return (time.monotonic() - started) * 1000
            time.sleep(0.001)
        raise SystemExit("service never became ready")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


def main() -> None:
    binary, data_dir = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    times = [one_start(binary, os.path.join(data_dir, f"start-{i}")) for i in range(rounds)]
    print(f"{statistics.median(times):.1f} {max(times):.1f}")


if __name__ == "__main__":
    main()
