"""Hostile clients against the pod's memory limit and connection slots, on loopback.

Each check starts the release binary afresh (so that its peak RSS, VmHWM from /proc, belongs to
that check alone), attacks it within a bounded count and time, and asserts on what the service
did and on its peak RSS:

  http2-flood     one connection sends the HTTP/2 preface, a zero window and 100,000 HEADERS
                  frames: the preface is refused with GOAWAY HTTP_1_1_REQUIRED and peak RSS
                  stays under 96 MiB.
  header-flood    2,000 connections each send 384 KiB of a header section that never ends: each
                  is refused with a JSON 431 and peak RSS stays under 200 MiB.
  header-hold     2,000 connections each hold 15 KiB of a header section (just under the bound),
                  unfinished, until the request timeout: peak RSS stays under 200 MiB, and each
                  is cut off with a 408.
  crlf-keepalive  50 connections send only CRLF every second, with --idle-timeout 3s and
                  --request-timeout 2s: every one is closed within 5 s of its first byte, while a
                  normal client is answered throughout.
  metrics-port    with --metrics-bind, /metrics is a JSON 404 on the API port and the
                  Prometheus text on its own port.

    python hostile_limits.py <release-binary> <work-dir>

Prints one line of figures per check and exits non-zero if any check fails.
"""

import json
import os
import resource
import selectors
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

BIN, WORK = sys.argv[1], sys.argv[2]
MIB = 1024 * 1024
problems = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """The release binary on a free loopback port, on the embedded store."""

    def __init__(self, name, *args):
        self.port = free_port()
        self.data = os.path.join(WORK, name)
        os.makedirs(self.data, exist_ok=True)
        self.log = open(os.path.join(WORK, f"{name}.log"), "wb")
        self.proc = subprocess.Popen(
            [BIN, "--bind", f"127.0.0.1:{self.port}", "--data-dir", self.data, "--log-level", "warn", *args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{name}: the service exited at start")
            try:
                if self.get("/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise SystemExit(f"{name}: the service was not ready in 15 s")

    def get(self, path, port=None, timeout=5):
        url = f"http://127.0.0.1:{port or self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.headers, err.read()

    def peak_rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def check(name, ok, detail):
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    if not ok:
        problems.append(f"{name}: {detail}")


def open_many(port, count):
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.setblocking(False)
        socks.append(s)
    return socks


def drain_all(socks, wait):
    """What the server sent on each socket until it closed it, within `wait` seconds in all.
    Returns [(data, closed)] in the order of `socks`."""
    data = [b""] * len(socks)
    closed = [False] * len(socks)
    sel = selectors.DefaultSelector()
    for i, s in enumerate(socks):
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, i)
    deadline = time.monotonic() + wait
    open_count = len(socks)
    while open_count and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=max(0.0, deadline - time.monotonic())):
            i = key.data
            try:
                chunk = socks[i].recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if chunk:
                data[i] += chunk
            else:
                closed[i] = True
                open_count -= 1
                sel.unregister(socks[i])
    sel.close()
    return list(zip(data, closed, strict=False))


def json_error(answer, status):
    head, _, body = answer.partition(b"\r\n\r\n")
    if not head.startswith(f"HTTP/1.1 {status} ".encode()):
        return None
    try:
        return json.loads(body).get("error")
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def http2_flood():
    svc = Service("http2-flood")
    try:
        before = svc.peak_rss_mib()
        s = socket.create_connection(("127.0.0.1", svc.port), timeout=5)
        # SETTINGS_INITIAL_WINDOW_SIZE = 0: the server could never send a response body.
        preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(0x4, 0, 0, struct.pack(">HI", 0x4, 0))
        # :method GET, :scheme http, :path /, then :authority (literal, indexed name 1).
        block = b"\x82\x86\x84\x41\x09127.0.0.1"
        streams = b"".join(frame(0x1, 0x5, 2 * i + 1, block) for i in range(100_000))
        sent = 0
        try:
            s.sendall(preface)
            for at in range(0, len(streams), 1 << 16):
                s.sendall(streams[at : at + (1 << 16)])
                sent += min(1 << 16, len(streams) - at)
        except (ConnectionResetError, BrokenPipeError):
            pass
        [(answer, closed)] = drain_all([s], 5)
        s.close()
        time.sleep(0.5)
        peak = svc.peak_rss_mib()
        settings_ok = answer[:9] == frame(0x4, 0, 0)
        goaway = answer[9:]
        code = struct.unpack(">I", goaway[13:17])[0] if len(goaway) >= 17 and goaway[3] == 0x7 else None
        try:
            debug = json.loads(goaway[17:]).get("error")
        except ValueError:
            debug = None
        check(
            "http2-flood",
            settings_ok
            and code == 0xD
            and debug == "http_version_not_supported"
            and closed
            and peak < 96
            and svc.alive(),
            f"{len(streams) / MIB:.1f} MiB of HEADERS frames for 100,000 streams, {sent / MIB:.1f} MiB "
            f"taken before the close; answer SETTINGS={settings_ok}, GOAWAY code={code}, "
            f"debug error={debug!r}, closed={closed}; peak RSS {before:.1f} -> {peak:.1f} MiB (bound 96)",
        )
        status = svc.get("/healthz")[0]
        check("http2-flood: HTTP/1.1 still served", status == 200, f"GET /healthz -> {status}")
    finally:
        svc.stop()


def header_flood(name, per_connection, connections=2000, hold=None):
    # The default --max-connections (2048) admits them all: the default must be safe.
    args = []
    if hold:
        args += ["--request-timeout", f"{hold}s", "--commit-timeout", "1s"]
    svc = Service(name, *args)
    try:
        socks = open_many(svc.port, connections)
        head = b"GET /transactions/AR1133 HTTP/1.1\r\nHost: x\r\nX-Pad: "
        payload = head + b"a" * (per_connection - len(head))
        sent = [0] * len(socks)
        started = time.monotonic()
        # Push as much of each payload as the sockets take, round after round, for at most 20 s.
        while time.monotonic() - started < 20:
            progress = False
            for i, s in enumerate(socks):
                if sent[i] >= len(payload):
                    continue
                try:
                    n = s.send(payload[sent[i] : sent[i] + 65536])
                    sent[i] += n
                    progress = progress or n > 0
                except BlockingIOError:
                    pass
                except (ConnectionResetError, BrokenPipeError):
                    sent[i] = len(payload)
            if not progress:
                break
        if hold:
            # Measured once the service has read what it takes, before the deadline.
            time.sleep(hold * 0.7)
        peak_during = svc.peak_rss_mib()
        if hold:
            time.sleep(hold * 0.3 + 1.5)
        refused, timed_out, other = 0, 0, []
        for s, (answer, _) in zip(socks, drain_all(socks, 10), strict=False):
            if json_error(answer, 431) == "request_header_fields_too_large":
                refused += 1
            elif json_error(answer, 408) == "request_timeout":
                timed_out += 1
            else:
                other.append(answer[:80])
            s.close()
        peak = svc.peak_rss_mib()
        expected = timed_out if hold else refused
        check(
            name,
            expected == len(socks) and peak < 200 and svc.alive(),
            f"{len(socks)} connections x {per_connection // 1024} KiB of unfinished headers "
            f"({sum(sent) / MIB:.0f} MiB sent): {refused} JSON 431, {timed_out} JSON 408, "
            f"{len(other)} other {other[:2]}; peak RSS {peak_during:.1f} MiB while held, "
            f"{peak:.1f} MiB overall (bound 200)",
        )
        status = svc.get("/healthz")[0]
        check(f"{name}: still served", status == 200, f"GET /healthz -> {status}")
    finally:
        svc.stop()


def crlf_keepalive():
    svc = Service(
        "crlf-keepalive", "--idle-timeout", "3s", "--request-timeout", "2s", "--commit-timeout", "1s"
    )
    try:
        socks = open_many(svc.port, 50)
        first_byte = {}
        closed_after = {}
        stop = threading.Event()

        def keep():
            end = time.monotonic() + 12
            while time.monotonic() < end and not stop.is_set():
                for i, s in enumerate(socks):
                    if i in closed_after:
                        continue
                    try:
                        s.send(b"\r\n")
                        first_byte.setdefault(i, time.monotonic())
                    except OSError:
                        closed_after[i] = time.monotonic() - first_byte.get(i, time.monotonic())
                    try:
                        if s.recv(65536) == b"":
                            closed_after[i] = time.monotonic() - first_byte[i]
                    except BlockingIOError:
                        pass
                    except OSError:
                        closed_after[i] = time.monotonic() - first_byte.get(i, time.monotonic())
                if len(closed_after) == len(socks):
                    return
                time.sleep(0.1 if any(i not in first_byte for i in range(len(socks))) else 1.0)

        keeper = threading.Thread(target=keep)
        keeper.start()
        served, slowest = 0, 0.0
        while keeper.is_alive():
            t0 = time.monotonic()
            status = svc.get("/transactions/AR1133")[0]
            slowest = max(slowest, time.monotonic() - t0)
            served += status == 200
            if status != 200:
                problems.append(f"crlf-keepalive: a normal GET answered {status}")
            time.sleep(0.25)
        stop.set()
        keeper.join()
        for s in socks:
            s.close()
        worst = max(closed_after.values(), default=float("inf"))
        check(
            "crlf-keepalive",
            len(closed_after) == len(socks) and worst <= 5.0,
            f"{len(closed_after)}/{len(socks)} CRLF-only connections closed, the last "
            f"{worst:.1f} s after its first byte (bound 5 s); {served} normal GETs answered "
            f"meanwhile, slowest {slowest * 1000:.0f} ms",
        )
    finally:
        svc.stop()


def metrics_port():
    metrics = free_port()
    svc = Service("metrics-port", "--metrics-bind", f"127.0.0.1:{metrics}")
    try:
        status, headers, body = svc.get("/metrics")
        try:
            code = json.loads(body).get("error")
        except ValueError:
            code = None
        check(
            "metrics-port: /metrics on the API port",
            status == 404 and code == "not_found",
            f"{status} {body[:80]!r}",
        )
        status, headers, body = svc.get("/metrics", port=metrics)
        check(
            "metrics-port: /metrics on its own port",
            status == 200 and b"flight_counter_" in body and "text/plain" in headers.get("content-type", ""),
            f"{status}, {len(body)} bytes",
        )
        status = svc.get("/transactions/AR1133", port=metrics)[0]
        check("metrics-port: the API is not on the metrics port", status == 404, f"{status}")
    finally:
        svc.stop()


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.makedirs(WORK, exist_ok=True)
    http2_flood()
    header_flood("header-flood", 384 * 1024)
    header_flood("header-hold", 15 * 1024, hold=3)
    crlf_keepalive()
    metrics_port()
    for p in problems:
        print("problem:", p)
    sys.exit(1 if problems else 0)


main()
