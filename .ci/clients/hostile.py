"""Hostile input at scale: odd paths, huge headers, odd methods, many slow connections.
The service must stay up, answer no 5xx other than the documented 503, put every error in its
JSON error shape (those of the HTTP parser included), keep serving others while slow clients
hold connections, cut the slow clients off with a 408 once its request timeout passes, and keep
its memory bounded (peak RSS, VmHWM). With an API key, every probe carries it (so that hostile
input reaches the operations), and forged, overlong and non-ASCII `Authorization` headers must
each get a JSON 401 with `WWW-Authenticate: Bearer` (or, past the service's bound on a request's
head, a JSON 431 before any key is read).

    python hostile.py <host> <port> <pid> [max-peak-rss-mib] [request-timeout-seconds] [write-api-key]
"""

import json
import os
import socket
import sys
import threading
import time

HOST, PORT, PID = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
MAX_HWM_MIB = int(sys.argv[4]) if len(sys.argv) > 4 else 256
# The service's --request-timeout; when given, every slow connection must be cut off in time.
REQUEST_TIMEOUT = float(sys.argv[5]) if len(sys.argv) > 5 and sys.argv[5] else None
# A write key of the service under test: sent with every probe but the authentication ones.
API_KEY = sys.argv[6].encode() if len(sys.argv) > 6 else None
# The service's bound on a request's head (app/src/connection/request_head.rs, MAX_HEAD).
MAX_HEAD = 16 * 1024
problems = []
last_answer = {}
statuses = {}


def alive():
    try:
        os.kill(PID, 0)
    except OSError:
        return False
    with open(f"/proc/{PID}/status") as f:
        return "zombie" not in f.read()


def read_answer(s, buf):
    """Reads one answer (head and Content-Length body) from `s`, `buf` holding what came already.
    Returns (status, lower-cased head, body, rest)."""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1."):
        return None, b"", b"", b""
    head = head.lower()
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        rest += chunk
    return int(head.split(b" ", 2)[1]), head, rest[:length], rest[length:]


def raw(data, timeout=10, method=None):
    """Sends raw bytes and returns the final status code (None if the connection closed
    unanswered). Every error answer must be the service's JSON error shape, including the
    ones the HTTP parser gives to requests that are not valid HTTP."""
    s = socket.create_connection((HOST, PORT), timeout=timeout)
    try:
        try:
            s.sendall(data)
        except (ConnectionResetError, BrokenPipeError):
            # The server may answer and close before taking the whole of a huge request.
            pass
        status, head, body, rest = read_answer(s, b"")
        while status is not None and 100 <= status < 200:
            status, head, body, rest = read_answer(s, rest)
    except (ConnectionResetError, BrokenPipeError):
        return None
    except TimeoutError:
        return "timeout"
    finally:
        s.close()
    last_answer.update(status=status, head=head, body=body)
    if status is not None and status >= 400 and method != "HEAD":
        try:
            shape = json.loads(body)
            is_json = b"content-type: application/json" in head
            ok = is_json and isinstance(shape, dict) and set(shape) == {"error", "message"}
        except ValueError:
            ok = False
        if not ok:
            problems.append(f"{status} without the JSON error shape: {head[:120]!r} {body[:120]!r}")
    return status


def probe(label, data, method=None):
    status = raw(data, method=method)
    statuses[status] = statuses.get(status, 0) + 1
    if isinstance(status, int) and status >= 500 and status != 503:
        problems.append(f"{label}: {status}")
    if not alive():
        problems.append(f"{label}: the service died")
        report()


def req(method, target, headers=(), body=b"", authenticated=True):
    lines = [f"{method} ".encode() + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    if API_KEY and authenticated:
        lines.append(b"Authorization: Bearer " + API_KEY)
    lines += list(headers)
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def report():
    with open(f"/proc/{PID}/status") as f:
        hwm = next(line.split()[1] for line in f if line.startswith("VmHWM"))
    hwm_mib = int(hwm) / 1024
    print(f"answers by status: { {str(k): v for k, v in sorted(statuses.items(), key=str)} }")
    print(f"peak RSS (VmHWM): {hwm_mib:.1f} MiB (limit {MAX_HWM_MIB} MiB)")
    if hwm_mib > MAX_HWM_MIB:
        problems.append(f"peak RSS {hwm_mib:.1f} MiB over {MAX_HWM_MIB} MiB")
    for p in problems:
        print("problem:", p)
    sys.exit(1 if problems else 0)


# Paths: long, percent-encoded, Unicode, traversal, control bytes.
paths = [b"/transactions/" + b"A" * n for n in (5, 64, 1024, 8192, 65536, 200000)]
paths += [
    b"/transactions/" + p.encode() if isinstance(p, str) else b"/transactions/" + p
    for p in [
        "%41R1133",
        "%2e%2e%2fmetrics",
        "..%2f..%2fetc%2fpasswd",
        "../../etc/passwd",
        "%00",
        "AR1%00",
        "%ZZ",
        "%",
        "%C0%AF",
        "%EF%BC%A1%EF%BC%B21133",
        "%E2%80%AEAR1133",
        "A%CC%8AR1133",
        "AR1133%2F",
        "AR1133/",
        "AR1133/extra",
        "AR1133;x=1",
        "AR1133?q=" + "x" * 4000,
        "AR1133#frag",
        "%F0%9F%9B%AB",
        "%FF%FE",
        "AR%20133",
        "AR1133%0d%0aX-Injected:%201",
        "~root",
        "%252e%252e",
    ]
]
paths += [
    b"//transactions//AR1133",
    b"/transactions",
    b"/transactions/",
    b"/../../../etc/passwd",
    b"/%2e%2e/%2e%2e/etc/passwd",
    b"*",
    b"http://127.0.0.1/transactions/AR1133",
    b"/\xff\xfe",
    "/transactions/ＡＲ１１３３".encode(),
    b"/transactions/AR1\x01",
]
# The dashboards' reads: huge and odd query strings.
paths += [
    b"/transactions?" + b"route=AR1&" * 5000,
    b"/transactions?route=" + b"A" * 60000,
    b"/transactions?route=%00&route=%FF",
    b"/transactions?route[]=AR1&route=LA1",
    b"/transactions/AR1/daily?from=" + b"9" * 5000,
    b"/transactions/AR1/daily?from=2026-02-30",
    b"/transactions/AR1/daily?to=-2026-11-21",
    b"/transactions/AR1/monthly?from=%FF%FE",
    b"/transactions/AR1/monthly?from=2026-11&from=2025-01",
    b"/transactions/AR1/daily?to=%00",
]
for method in ("GET", "POST", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH", "TRACE", "FOO"):
    for p in paths:
        probe(f"{method} {p[:40]!r}", req(method, p), method)

# Headers: huge values, many headers, odd lengths and encodings.
big = b"x" * 1_000_000
header_sets = [
    [b"X-Big: " + b"x" * 16384],
    [b"X-Big: " + b"x" * 1_000_000],
    [b"Cookie: " + big],
    [f"X-H{i}: {i}".encode() for i in range(500)],
    [b"Idempotency-Key: " + b"k" * 100000],
    [b"Idempotency-Key: a", b"Idempotency-Key: b"],
    [b"Idempotency-Key: \xff\xfe"],
    [b"Idempotency-Key:"],
    [b"Content-Length: -1"],
    [b"Content-Length: 99999999999999999999999"],
    [b"Content-Length: 5", b"Content-Length: 6"],
    [b"Transfer-Encoding: chunked, identity"],
    [b"Transfer-Encoding: gzip"],
    [b"Content-Type: application/json; charset=\xff"],
    [b"Accept: " + b"a/b," * 5000],
    [b"Host: " + b"h" * 50000],
    [b"Expect: 100-continue"],
    [b"Connection: upgrade", b"Upgrade: h2c"],
]
for i, hs in enumerate(header_sets):
    for method in ("GET", "POST"):
        probe(f"{method} header set {i}", req(method, b"/transactions/AR1133", hs))
probe("body over the limit", req("POST", b"/transactions/AR1133", [b"Content-Length: 17000"], b"x" * 17000))
probe(
    "chunked body",
    req("POST", b"/transactions/AR1133", [b"Transfer-Encoding: chunked"], b"4\r\nabcd\r\n0\r\n\r\n"),
)
# Authorization: forged, overlong, non-ASCII, repeated, the wrong scheme. Each is a JSON 401
# with WWW-Authenticate: Bearer, before the route or the Idempotency-Key is looked at.
if API_KEY:
    forged = [
        b"Bearer fck_" + b"A" * 43,
        b"Bearer " + API_KEY[:-1],
        b"Bearer " + API_KEY + b"x",
        b"bearer " + API_KEY.lower() + b"!",
        b"Bearer " + b"k" * 10_000,
        b"Bearer " + b"k" * 100_000,
        b"Bearer " + "ключ-ünïcødé".encode(),
        b"Bearer \xff\xfe\xfd",
        b"Bearer caf\xc3\xa9",
        "Bearer ＡＰＩ".encode(),
        b"\xff" * 64,
        b"Bearer",
        b"Bearer ",
        b"",
        b"Basic " + API_KEY,
        b"Token " + API_KEY,
        API_KEY,
        b"Bearer " + API_KEY + b" " + API_KEY,
        b"Bearer %00" + API_KEY,
    ]
    auth_probes = [[b"Authorization: " + value] for value in forged]
    auth_probes.append([b"Authorization: Bearer " + API_KEY, b"Authorization: Bearer fck_other"])
    auth_probes.append([])  # no Authorization at all
    refused_right = 0
    for i, headers in enumerate(auth_probes):
        for method, target, extra in (
            ("POST", b"/transactions/AR1133", []),
            ("POST", b"/transactions/not-a-route", [b"Idempotency-Key: has space"]),
            ("GET", b"/transactions/AR1133", []),
        ):
            label = f"{method} {target!r} authorization probe {i}"
            probe(label, req(method, target, headers + extra, authenticated=False), method)
            head, body = last_answer.get("head", b""), last_answer.get("body", b"")
            try:
                code = json.loads(body).get("error")
            except ValueError:
                code = None
            if sum(map(len, headers)) > MAX_HEAD:
                # Past the service's bound on a request's head, the connection layer refuses
                # it before any key is read.
                if last_answer.get("status") != 431 or code != "request_header_fields_too_large":
                    problems.append(
                        f"{label}: expected a JSON 431 for a head over {MAX_HEAD} "
                        f"bytes, got {last_answer.get('status')} {body[:120]!r}"
                    )
                else:
                    refused_right += 1
            elif (
                last_answer.get("status") != 401
                or code != "unauthorized"
                or b"\r\nwww-authenticate: bearer" not in head
            ):
                problems.append(
                    f"{label}: expected a JSON 401 with WWW-Authenticate: Bearer, "
                    f"got {last_answer.get('status')} {body[:120]!r}"
                )
            else:
                refused_right += 1
    print(
        f"{refused_right} forged, overlong, non-ASCII or missing Authorization headers: JSON 401 each "
        f"(JSON 431 where the head is over {MAX_HEAD} bytes)"
    )
probe("garbage request line", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 500)
probe("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

# Many concurrent slow connections (slowloris): each sends a partial request, then a header
# line every half second, bounded in count and time; meanwhile a normal client must still be
# answered. With a request timeout, the service must cut each one off with a JSON 408.
SLOW, SLOW_SECONDS = 300, 6
stop = threading.Event()
socks = []
for _ in range(SLOW):
    try:
        s = socket.create_connection((HOST, PORT), timeout=5)
        s.sendall(b"POST /transactions/SL0001 HTTP/1.1\r\nHost: x\r\n")
        socks.append(s)
    except OSError:
        break
opened = time.monotonic()
cut_off = {}  # socket index -> seconds after opening when the server answered or closed it


def drip():
    end = time.monotonic() + SLOW_SECONDS
    while time.monotonic() < end and not stop.is_set():
        for i, s in enumerate(socks):
            if i in cut_off:
                continue
            try:
                s.sendall(b"X-a: b\r\n")
            except OSError:
                cut_off[i] = time.monotonic() - opened
        time.sleep(0.5)


t = threading.Thread(target=drip)
t.start()
worst = 0.0
for _ in range(SLOW_SECONDS * 4):
    t0 = time.monotonic()
    status = raw(req("GET", b"/healthz"), timeout=5)
    worst = max(worst, time.monotonic() - t0)
    if status != 200:
        problems.append(f"/healthz answered {status} while {len(socks)} slow connections were open")
        break
    time.sleep(0.25)
stop.set()
t.join()
answers_408 = 0
still_open = 0
for i, s in enumerate(socks):
    s.settimeout(0.5)
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        cut_off.setdefault(i, time.monotonic() - opened)
    except TimeoutError:
        still_open += 1
    except OSError:
        cut_off.setdefault(i, time.monotonic() - opened)
    if data.startswith(b"HTTP/1.1 408 "):
        head, _, body = data.partition(b"\r\n\r\n")
        try:
            if json.loads(body).get("error") == "request_timeout":
                answers_408 += 1
        except ValueError:
            problems.append(f"a 408 without a JSON body: {data[:200]!r}")
    elif data:
        problems.append(f"a slow connection got {data[:120]!r}")
    s.close()
print(
    f"{len(socks)} slow connections for {SLOW_SECONDS}s; /healthz slowest answer {worst * 1000:.0f} ms; "
    f"{len(cut_off)} cut off by the service ({answers_408} with a JSON 408 read back), {still_open} still open"
)
if REQUEST_TIMEOUT is not None:
    if still_open:
        problems.append(
            f"{still_open} slow connections still open past the {REQUEST_TIMEOUT:g}s request timeout"
        )
    late = [t for t in cut_off.values() if t > REQUEST_TIMEOUT + 2.5]
    if late:
        problems.append(f"{len(late)} slow connections cut off late (up to {max(late):.1f}s)")
    if answers_408 == 0:
        problems.append("no slow connection read a 408 back")
if not alive():
    problems.append("the service died")
status = raw(req("GET", b"/transactions/AR1133"))
if status != 200:
    problems.append(f"after everything, GET answered {status}")
report()
