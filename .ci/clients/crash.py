"""Crash safety of the embedded store under load.

Clients POST continuously, each with a new Idempotency-Key, while the service is killed:
SIGKILL at a random moment for several rounds, then SIGTERM. After every restart the
route's count must lie between the acknowledged and the sent POSTs, and every acknowledged
key must replay (Idempotent-Replayed: true) with the count it was first answered.
After SIGTERM the process must exit 0.

Flags after the rounds go to the service: with `--embedded-checkpoint-interval 1ms` its
checkpoints run back to back, so that the kills land in the middle of them; each round prints
how many checkpoints had finished before its kill.

    python crash.py <binary> <data-dir> [rounds] [service flags...]
"""

import http.client
import json
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

BIN, DATA = sys.argv[1], sys.argv[2]
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 3
SERVICE_FLAGS = sys.argv[4:]
CLIENTS = 8
MAX_PER_CLIENT = 20000  # bounds each load phase even if the kill never lands
ROUTE = "CR0042"
PATH = "/transactions/" + ROUTE


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


PORT = free_port()
sent = set()  # keys sent at least once
acked = {}  # key -> count answered
errors = []  # unexpected answers seen by the clients


def start():
    proc = subprocess.Popen(
        [
            BIN,
            "--bind",
            f"127.0.0.1:{PORT}",
            "--store",
            "embedded",
            "--data-dir",
            DATA,
            "--log-level",
            "warn",
            *SERVICE_FLAGS,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"service exited at start with {proc.returncode}")
        try:
            status, _, _ = request("GET", "/readyz")
            if status == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.05)
    proc.kill()
    sys.exit("service not ready within 20s")


def request(method, path, headers=None, conn=None):
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
    finally:
        if own:
            conn.close()


def client(stop, lock):
    conn = None
    for _ in range(MAX_PER_CLIENT):
        if stop.is_set():
            break
        key = str(uuid.uuid4())
        with lock:
            sent.add(key)
        try:
            conn = conn or http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
            status, _, body = request("POST", PATH, {"Idempotency-Key": key}, conn)
        except (OSError, http.client.HTTPException):
            if conn:
                conn.close()
            conn = None
            time.sleep(0.01)
            continue
        if status == 200:
            with lock:
                acked[key] = json.loads(body)["transactions"]
        elif status != 503:
            errors.append(f"unexpected answer {status} {body!r}")
            break
    if conn:
        conn.close()


def load_then(proc, sig):
    stop, lock = threading.Event(), threading.Lock()
    threads = [threading.Thread(target=client, args=(stop, lock)) for _ in range(CLIENTS)]
    before = len(acked)
    for t in threads:
        t.start()
    time.sleep(random.uniform(0.5, 2.0))
    checkpoints = checkpoints_so_far()
    proc.send_signal(sig)
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = "timeout"
    time.sleep(0.2)  # let clients see refused connections
    stop.set()
    for t in threads:
        t.join()
    if errors:
        sys.exit("; ".join(errors[:5]))
    print(f"{sig.name}: {checkpoints} checkpoints finished in this process before it")
    return code, len(acked) - before


def checkpoints_so_far():
    try:
        status, _, body = request("GET", "/metrics")
    except OSError:
        return "?"
    if status != 200:
        return "?"
    for line in body.decode().splitlines():
        if line.startswith("flight_counter_store_checkpoint_duration_seconds_count"):
            return int(float(line.split()[-1]))
    return 0


def verify(label):
    status, _, body = request("GET", PATH)
    assert status == 200, (status, body)
    count = json.loads(body)["transactions"]
    if not len(acked) <= count <= len(sent):
        sys.exit(f"{label}: count {count} outside [acknowledged {len(acked)}, sent {len(sent)}]")
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
    for key, want in acked.items():
        status, headers, body = request("POST", PATH, {"Idempotency-Key": key}, conn)
        got = json.loads(body).get("transactions") if status == 200 else None
        if status != 200 or headers.get("idempotent-replayed") != "true" or got != want:
            sys.exit(
                f"{label}: key {key} acknowledged with {want}, replay answered {status} "
                f"replayed={headers.get('idempotent-replayed')} {body!r}"
            )
    conn.close()
    # Replays change nothing.
    status, _, body = request("GET", PATH)
    if json.loads(body)["transactions"] != count:
        sys.exit(f"{label}: replays changed the count")
    print(
        f"{label}: count {count}, acknowledged {len(acked)}, sent {len(sent)}; "
        f"all {len(acked)} acknowledged keys replay"
    )


proc = start()
for n in range(1, ROUNDS + 1):
    code, new = load_then(proc, signal.SIGKILL)
    if new == 0:
        sys.exit(f"SIGKILL round {n}: no POST acknowledged before the kill")
    proc = start()
    verify(f"SIGKILL round {n} (+{new} acknowledged)")
code, new = load_then(proc, signal.SIGTERM)
if code != 0:
    sys.exit(f"SIGTERM: exit code {code}, expected 0")
proc = start()
verify(f"SIGTERM (+{new} acknowledged, exit 0)")
proc.send_signal(signal.SIGTERM)
if proc.wait(timeout=30) != 0:
    sys.exit("final SIGTERM: non-zero exit")
